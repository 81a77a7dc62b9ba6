"""Git metadata and the sandbox: what a sandboxed command may see of it, and proof it changed nothing.

git runs configuration as commands (`core.fsmonitor`, hooks, filters), and it finds that
configuration through files in the working tree: the `.git` entry of the checkout and of
every submodule or vendored repository inside it. A sandboxed command can write the tree,
so those entries are exactly what an attack on relay's *next* git call outside the sandbox
(or the user's next `git status`) rewrites. Three rules, all here:

* relay finds a checkout's git directories once, validates them (a linked worktree's pointer
  must lead to `<common>/worktrees/<name>` whose `gitdir` file points back), and never
  lets a path the sandbox could write choose a host directory to mount;
* inside the sandbox only what git needs to read the checkout is visible: objects, refs,
  HEAD, the index and a scrubbed config (no remotes, credentials or hooks; no other runs);
* every `.git` entry inside the tree is fingerprinted before a command and compared after:
  any difference is an attack. The changed entries are renamed out of git's way
  (quarantined, so no later git call finds them) and `SandboxViolation` stops the work.

And for git calls relay itself makes outside the sandbox, `host_git_options`: the `-c` options that
keep git from running hooks, helpers or filter drivers on content a repository, a PR or a model wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from relaycode.errors import SandboxViolation
from relaycode.pathsafety import walk

#: Parts of a git directory a sandboxed command may read: enough for `git status`, `git log`,
#: `git diff` and version tools such as setuptools-scm. Everything else (config with remotes and
#: credentials, hooks, logs, relay's run files and other runs' worktrees) stays invisible.
READABLE_PARTS = ("objects", "refs", "packed-refs", "HEAD", "index", "info", "shallow", "commondir", "gitdir")

#: Config keys copied into the scrubbed config the sandbox sees: what git needs to read the repository.
_CONFIG_KEEP = ("core.repositoryformatversion", "core.bare", "core.ignorecase", "core.precomposeunicode")
_CONFIG_KEEP_PREFIX = ("extensions.",)

#: A pointer file larger than this is not a git pointer.
_POINTER_MAX = 4096

QUARANTINE_SUFFIX = ".quarantined-by-relay"

#: `-c` options on every git call relay makes outside the sandbox (`host_git_options` adds the filter drivers).
HOST_GIT_CONFIG = (
    "-c", "core.hooksPath=/dev/null",
    # Config that makes git run commands: a repository relay works on must not reach them,
    # whatever its git directory says.
    "-c", "core.fsmonitor=false",
    "-c", "core.sshCommand=false",
    "-c", "core.pager=cat",
    "-c", "diff.external=",
    "-c", "credential.helper=",
    "-c", "protocol.ext.allow=never",
    "-c", "submodule.recurse=false",
    # A file a command left that is larger than this is diffed as binary: relay holds diffs in memory,
    # outside the sandbox's limits.
    "-c", "core.bigFileThreshold=2m",  # the user's `true` would make relay's reset and checkout touch submodules
    "-c", "commit.gpgSign=false",
    "-c", "tag.gpgSign=false",
    "-c", "gc.auto=0",  # no background gc in the user's repo on our account
    "-c", "advice.detachedHead=false",
)  # fmt: skip

_DRIVER_KEY = re.compile(r"^filter\.(.+)\.(clean|smudge|process|required)$")
_driver_cache: dict[str, list[str]] = {}


@dataclass(frozen=True)
class GitLayout:
    """Where a checkout's git metadata lives. For a plain checkout `admin == common == <root>/.git`."""

    root: Path
    admin: Path
    """The checkout's own git dir (HEAD, index): `<common>/worktrees/<name>` for a linked worktree."""
    common: Path
    """The repository's shared git dir (objects, refs, config)."""

    @property
    def linked(self) -> bool:
        return self.admin != self.common


def _read_pointer(path: Path) -> str:
    """The target of a `gitdir: X` file, read without following links; '' when it is not one."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        text = os.read(fd, _POINTER_MAX).decode("utf-8", errors="replace").strip()
    finally:
        os.close(fd)
    return text.removeprefix("gitdir:").strip() if text.startswith("gitdir:") else ""


def discover(root: Path) -> GitLayout | None:
    """The validated git layout of the checkout at `root`; None when `root/.git` does not exist.

    Raises SandboxViolation when `.git` is something relay did not create: a symlink, a pointer
    that does not lead to a worktree of a repository that points back, or a git dir at `/`.
    """
    root = root.resolve()
    dot_git = root / ".git"
    try:
        st = os.lstat(dot_git)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return GitLayout(root=root, admin=dot_git, common=dot_git)
    if not stat.S_ISREG(st.st_mode):
        raise SandboxViolation(f"{dot_git} is not a directory or a gitdir file: refusing to use it")
    target = _read_pointer(dot_git)
    if not target:
        raise SandboxViolation(f"{dot_git} is not a git pointer file: refusing to use it")
    admin = (root / target).resolve()
    common_file = admin / "commondir"
    try:
        common = (admin / common_file.read_text(encoding="utf-8").strip()).resolve()
        back = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        raise SandboxViolation(f"{dot_git} points to {admin}, which is not a git worktree directory") from None
    back = back if back.is_absolute() else (admin / back)
    ok = (
        admin.parent == common / "worktrees"
        and back.resolve() == dot_git
        and (common / "objects").is_dir()
        and common != Path("/")
    )
    if not ok:
        raise SandboxViolation(
            f"{dot_git} points to {admin}, which is not this checkout's worktree directory: refusing to use it"
        )
    return GitLayout(root=root, admin=admin, common=common)


def scrubbed_config(common: Path) -> str:
    """The repository config reduced to what reading the repository needs (no remotes, no secrets)."""
    try:
        out = subprocess.run(
            ["git", "config", "--file", str(common / "config"), "--no-includes", "--list", "-z"],
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=30,
        ).stdout.decode("utf-8", errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    sections: dict[str, list[str]] = {}
    for item in out.split("\0"):
        key, _, value = item.partition("\n")
        key = key.strip().lower()
        if not key or "\n" in value:
            continue
        if key in _CONFIG_KEEP or key.startswith(_CONFIG_KEEP_PREFIX):
            section, _, name = key.rpartition(".")
            sections.setdefault(section, []).append(f"\t{name} = {value}")
    sections.setdefault("core", []).append("\tfsmonitor = false")
    sections["core"].append("\thooksPath = /dev/null")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())


# --------------------------------------------------------------------------- relay's own git calls


def host_git_options(cwd: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """The `-c` options for a git call relay makes in `cwd` outside the sandbox: `HOST_GIT_CONFIG` and
    every filter driver the user's config defines turned into a plain copy.

    A repository's `.gitattributes` chooses which files go through which driver (git-lfs, sops,
    exiftool recipes live in the user's global config): relay's own `git add`, checkout, `archive`
    and `checkout-index` must not run them on content the repository, a PR or a model wrote. Diffs
    pass `--no-textconv` and `--no-ext-diff` for the same reason. Drivers are looked up once per
    directory: only the user edits config.
    """
    key = str(cwd)
    if key not in _driver_cache:
        proc = subprocess.run(["git", "config", "--name-only", "--get-regexp", r"^filter\."], cwd=cwd,
                              env=None if env is None else dict(env), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False)
        names = sorted({m.group(1) for line in proc.stdout.splitlines() if (m := _DRIVER_KEY.match(line.strip()))})
        opts: list[str] = []
        for name in names:
            opts += ["-c", f"filter.{name}.clean=cat", "-c", f"filter.{name}.smudge=cat",
                     "-c", f"filter.{name}.process=", "-c", f"filter.{name}.required=false"]
        _driver_cache[key] = opts
    return [*HOST_GIT_CONFIG, *_driver_cache[key]]


# --------------------------------------------------------------------------- .git entries in the tree


def git_entries(root: Path) -> Iterator[str]:
    """Relative paths of every entry named `.git` under root (top level and nested), not followed.

    A directory that cannot be listed (a command made it search-only: git can still open `x/.git`
    in it by name) is made listable again first when relay owns it, and otherwise reported as the
    entry `<dir>/.git?unlistable`, so a change there never goes unseen.
    """
    unlistable: list[str] = []
    for dirpath, dirnames, filenames in walk(root, onerror=lambda e: unlistable.append(str(e.filename))):
        rel = os.path.relpath(dirpath, root)
        for name in (*dirnames, *filenames):
            if name == ".git":
                yield os.path.normpath(os.path.join(rel, name))
        dirnames[:] = [d for d in dirnames if d != ".git"]
    for directory in unlistable:
        rel = os.path.relpath(directory, root)
        try:
            _make_usable(directory)
        except OSError:
            yield os.path.normpath(os.path.join(rel, ".git?unlistable"))
            continue
        for sub in git_entries(Path(directory)):
            yield os.path.normpath(os.path.join(rel, sub))


def _make_usable(directory: str) -> None:
    """Give the owner back list, write and search permission on a directory (never through a link)."""
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(directory)
    os.chmod(directory, stat.S_IMODE(st.st_mode) | 0o700)


def _fingerprint(path: Path) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:  # out of reach (a name past PATH_MAX): counted as a change, never skipped
        return f"unreachable:{exc.errno}"
    kind = stat.S_IFMT(st.st_mode)
    if stat.S_ISREG(kind):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                digest = hashlib.sha256(os.read(fd, 1 << 16)).hexdigest()
            finally:
                os.close(fd)
        except OSError:
            digest = "unreadable"
        return f"file:{st.st_ino}:{st.st_size}:{digest}"
    if stat.S_ISLNK(kind):
        return f"link:{os.readlink(path)}"
    return f"{kind:o}:{st.st_dev}:{st.st_ino}"


def snapshot(root: Path) -> dict[str, str]:
    """A fingerprint of every `.git` entry in the tree (type, inode and a pointer file's content)."""
    return {rel: _fingerprint(root / rel) for rel in git_entries(root)}


def check_unchanged(root: Path, before: dict[str, str], command: str) -> None:
    """Raise SandboxViolation (after quarantining them) if `.git` entries were added, removed or changed."""
    after = snapshot(root)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if not changed:
        return
    moved = [_short(_quarantine(root, rel)) for rel in changed if rel in after and not rel.endswith("?unlistable")]
    raise SandboxViolation(
        f"a sandboxed command ({command[:80]}) changed git metadata in the tree: "
        f"{', '.join(_short(p) for p in changed[:5])}"
        f"{' …' if len(changed) > 5 else ''}; stopped. Such a change makes a later git call run the "
        f"repository's commands; relay moved it out of git's way ({'; '.join(moved[:5]) or 'nothing to move'})"
    )


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else f"{text[:60]}…{text[-90:]}"


def _quarantine(root: Path, rel: str) -> str:
    """Move a changed `.git` entry out of git's way under a name nobody could have guessed; when it
    cannot be moved (its directory made read-only, a name taken), delete it. Never left live."""
    source = root / rel
    parent = source.parent
    with contextlib.suppress(OSError):  # a command may have made the directory read-only
        _make_usable(str(parent))
    target = parent / f".git{QUARANTINE_SUFFIX}-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(6)}"
    try:
        os.rename(source, target)
        return f"{rel} -> {target.name}"
    except OSError:
        pass
    try:
        if source.is_dir() and not source.is_symlink():
            try:
                shutil.rmtree(source)
            except RecursionError:  # a chain too deep for Python 3.11's recursive rmtree
                subprocess.run(["rm", "-rf", "--", str(source)], check=True, stdin=subprocess.DEVNULL)
        else:
            source.unlink()
        return f"{rel} (deleted: it could not be moved)"
    except OSError as exc:
        return f"{rel} (could neither be moved nor deleted: {exc.strerror}; remove it by hand)"
