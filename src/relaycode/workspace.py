"""Git worktrees for runs, and path safety for model-supplied paths.

A run works on its own branch `relay/<run_id>` in a worktree kept under the
repository's git directory (`<common dir>/relay/worktrees/<run_id>`): outside
the user's checkout, so it never shows in `git status` and is never committed,
and the user's working tree, index and stash are never touched.

Every git call disables hooks (a repo's hooks must not run on relay's behalf),
never prompts, never takes optional locks (so even read-only calls do not
rewrite the user's index) and commits as a fixed identity, so it works on
machines without any git config.

Paths from models go through `safe_path` (the lexical and symlink check) and
`open_in_root` (component-by-component `openat`-style opening with
`O_NOFOLLOW`), so a symlink swapped in after the check cannot redirect access.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from relaycode.errors import PathEscape, RelayError, UsageError
from relaycode.gitguard import GitLayout

__all__ = [
    "GitError",
    "Identity",
    "Repo",
    "Worktree",
    "open_in_root",
    "open_repo",
    "read_text_in_root",
    "safe_path",
    "write_in_root",
]

_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_GIT_CONFIG = (
    "-c", "core.hooksPath=/dev/null",
    # Config that makes git run commands: a repository relay works on must not reach them,
    # whatever its git directory says.
    "-c", "core.fsmonitor=false",
    "-c", "core.sshCommand=false",
    "-c", "core.pager=cat",
    "-c", "diff.external=",
    "-c", "credential.helper=",
    "-c", "protocol.ext.allow=never",
    "-c", "commit.gpgSign=false",
    "-c", "tag.gpgSign=false",
    "-c", "gc.auto=0",  # no background gc in the user's repo on our account
    "-c", "advice.detachedHead=false",
)  # fmt: skip


class GitError(RelayError):
    """A git command failed unexpectedly; the message has the command and git's stderr."""


@dataclass(frozen=True)
class Identity:
    """Author and committer of relay's commits."""

    name: str = "relay"
    email: str = "relay@localhost"


def _env(identity: Identity, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # Variables that would point git at another repository or index (e.g. when relay
    # runs from inside a git hook) must not leak into our calls.
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY"):
        env.pop(var, None)
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",
        LC_ALL="C",
        GIT_AUTHOR_NAME=identity.name,
        GIT_AUTHOR_EMAIL=identity.email,
        GIT_COMMITTER_NAME=identity.name,
        GIT_COMMITTER_EMAIL=identity.email,
    )
    if extra:
        env.update(extra)
    return env


def _git(
    args: list[str],
    cwd: Path,
    identity: Identity,
    *,
    check: bool = True,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            ["git", *_GIT_CONFIG, *args],
            cwd=cwd,
            env=_env(identity, extra_env),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise UsageError("git is not installed or not on PATH") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise GitError(f"git {' '.join(args)} failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc


# --------------------------------------------------------------------------- path safety


def _lexical_parts(rel: str) -> list[str]:
    """Validate a model-supplied relative path and normalise it without touching the disk."""
    if not isinstance(rel, str) or not rel.strip():
        raise PathEscape("empty path: give a file path relative to the repository root")
    if "\x00" in rel:
        raise PathEscape(f"path {rel!r} contains a NUL byte")
    if PurePosixPath(rel).is_absolute():
        raise PathEscape(f"path {rel!r} is absolute: give it relative to the repository root")
    parts: list[str] = []
    for part in rel.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathEscape(f"path {rel!r} uses '..' to leave the repository")
            parts.pop()
            continue
        parts.append(part)
    if not parts:
        raise PathEscape(f"path {rel!r} names the repository root, not a file")
    _reject_git_dir(parts, rel)
    return parts


def _reject_git_dir(parts: tuple[str, ...] | list[str], rel: str) -> None:
    # casefold: on case-insensitive filesystems ".GIT" is the same directory.
    if any(p.casefold() == ".git" for p in parts):
        raise PathEscape(f"path {rel!r} goes through .git, which relay never reads or writes")


def safe_path(root: Path, rel: str) -> Path:
    """Resolve model-supplied `rel` to an absolute path inside `root`, or raise `PathEscape`.

    Rejects absolute paths, NUL bytes, `..` leaving the root, anything through
    `.git`, and symlinks (anywhere along the path) that resolve outside the root
    or into `.git`. The file itself need not exist. The result has every symlink
    resolved, which is what `open_in_root` then opens without following any.
    """
    parts = _lexical_parts(rel)
    real_root = Path(root).resolve(strict=True)
    try:
        target = real_root.joinpath(*parts).resolve(strict=False)
    except (RuntimeError, OSError) as exc:  # RuntimeError: pathlib's report of a symlink loop
        raise PathEscape(f"path {rel!r} cannot be resolved: {exc}") from None
    if not target.is_relative_to(real_root) or target == real_root:
        raise PathEscape(f"path {rel!r} resolves outside the repository (through a symlink)")
    _reject_git_dir(target.relative_to(real_root).parts, rel)
    return target


_MODE_FLAGS = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _escape_from(exc: OSError, rel: str) -> PathEscape:
    return PathEscape(f"path {rel!r} changed while being opened (a symlink or non-directory appeared): {exc}")


@contextlib.contextmanager
def _parent_fd(root: Path, rel: str, *, make_parents: bool) -> Iterator[tuple[int, str]]:
    """Yield (fd of the parent directory, final name) for `rel`, walked without following symlinks.

    `safe_path` resolved every symlink already, so any symlink met here was swapped
    in after the check: that is refused, not followed.
    """
    target = safe_path(root, rel)
    real_root = Path(root).resolve(strict=True)
    parts = target.relative_to(real_root).parts
    fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
            except FileNotFoundError:
                if not make_parents:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                try:
                    next_fd = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
                except OSError as exc:
                    raise _escape_from(exc, rel) from None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _escape_from(exc, rel) from None
                raise
            os.close(fd)
            fd = next_fd
        yield fd, parts[-1]
    finally:
        os.close(fd)


def open_in_root(root: Path, rel: str, mode: str = "r", *, make_parents: bool = False) -> IO[Any]:
    """Open `rel` inside `root` the way `open()` would, but immune to symlink swaps.

    `mode` is one of r, w, a, x, optionally with b; text modes use UTF-8 and keep
    line endings as they are (`newline=""`). Only regular files can be opened.
    """
    base = mode.replace("b", "")
    if base not in _MODE_FLAGS or mode.count("b") > 1:
        raise ValueError(f"unsupported mode {mode!r}")
    # O_NONBLOCK: opening a FIFO planted in the tree must not hang; cleared below.
    flags = _MODE_FLAGS[base] | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    with _parent_fd(root, rel, make_parents=make_parents and base != "r") as (dir_fd, name):
        try:
            fd = os.open(name, flags, 0o666, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _escape_from(exc, rel) from None
            raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PathEscape(f"path {rel!r} is not a regular file")
        os.set_blocking(fd, True)
        if "b" in mode:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise


def read_text_in_root(root: Path, rel: str, *, max_bytes: int = 1 << 20) -> str | None:
    """The text of `rel` inside `root`, or None when it is missing, not a regular file, reached through
    a symlink, larger than `max_bytes` or outside the root.

    Every read relay makes of a tree outside the sandbox (repo map, doc examples, config sniffing)
    goes through here: a repository must not make relay read a file outside it (a link to
    `~/.ssh/id_rsa` would end up in a prompt) or block on a FIFO.
    """
    try:
        with open_in_root(root, rel, "rb") as fh:
            if os.fstat(fh.fileno()).st_size > max_bytes:
                return None
            data: bytes = fh.read(max_bytes + 1)
    except (OSError, PathEscape):
        return None
    return data.decode("utf-8", errors="replace")


def write_in_root(root: Path, rel: str, data: bytes) -> None:
    """Write `rel` inside `root` atomically; no link, FIFO or directory planted at or above it is followed."""
    _atomic_write(root, rel, data)


def _atomic_write(root: Path, rel: str, data: bytes) -> None:
    """Write via a temp file in the same directory and rename over the target.

    Readers never see a half-written file; a symlink at the target is replaced,
    never followed. An existing file's permission bits are kept.
    """
    with _parent_fd(root, rel, make_parents=True) as (dir_fd, name):
        mode = 0o644
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                mode = stat.S_IMODE(st.st_mode)
            elif stat.S_ISDIR(st.st_mode):
                raise PathEscape(f"path {rel!r} is a directory, not a file")
        tmp = f".{name[:80]}.relay-{uuid.uuid4().hex[:12]}.tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise


# --------------------------------------------------------------------------- repository


def open_repo(path: str | os.PathLike[str], *, identity: Identity | None = None) -> Repo:
    """Open the git repository containing `path`; `UsageError` with a one-line reason if unusable."""
    ident = identity or Identity()
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{p} does not exist")
    if not p.is_dir():
        raise UsageError(f"{p} is not a directory")
    inside = _git(["rev-parse", "--is-inside-work-tree"], p, ident, check=False)
    if inside.returncode != 0:
        raise UsageError(f"{p} is not a git repository (run `git init` first)")
    if inside.stdout.strip() != "true":
        raise UsageError(f"{p} is not inside a git working tree (bare repository or .git directory)")
    root = Path(_git(["rev-parse", "--show-toplevel"], p, ident).stdout.strip()).resolve()
    common = _git(["rev-parse", "--git-common-dir"], root, ident).stdout.strip()
    if _git(["rev-parse", "--verify", "-q", "HEAD^{commit}"], root, ident, check=False).returncode != 0:
        raise UsageError(f"{root} has no commits yet: make a first commit before running relay")
    return Repo(root=root, git_dir=(root / common).resolve(), identity=ident)


@dataclass(frozen=True)
class Repo:
    """A user's git repository. `git_dir` is the common git directory (shared by all worktrees)."""

    root: Path
    git_dir: Path
    identity: Identity = field(default_factory=Identity)

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run git in the repository root with relay's safe settings."""
        return _git(list(args), self.root, self.identity, check=check)

    def head_sha(self) -> str:
        return self.git("rev-parse", "--verify", "HEAD^{commit}").stdout.strip()

    def resolve(self, ref: str) -> str:
        """The commit sha `ref` names; `UsageError` if it names none."""
        proc = self.git("rev-parse", "--verify", "-q", "--end-of-options", f"{ref}^{{commit}}", check=False)
        if not ref or ref.startswith("-") or proc.returncode != 0:
            raise UsageError(f"base branch/ref {ref} does not exist")
        return proc.stdout.strip()

    def _worktree_dir(self, run_id: str) -> Path:
        if not _RUN_ID_RE.fullmatch(run_id) or ".." in run_id or run_id.endswith((".lock", ".")):
            raise UsageError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
        return self.git_dir / "relay" / "worktrees" / run_id

    def _base_file(self, run_id: str) -> Path:
        # The base commit is kept next to (not inside) the worktree, so it is never a file in it.
        return self.git_dir / "relay" / "bases" / run_id

    def create_worktree(self, run_id: str, base: str = "HEAD") -> Worktree:
        """Create branch `relay/<run_id>` at `base` and check it out in a new worktree."""
        path = self._worktree_dir(run_id)
        branch = f"relay/{run_id}"
        sha = self.resolve(base)
        if path.exists():
            raise UsageError(f"run {run_id} already has a worktree at {path}; resume it instead")
        if self.git("rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False).returncode == 0:
            raise UsageError(f"branch {branch} already exists; pick another run id or delete the branch")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "--quiet", "-b", branch, str(path), sha)
        base_file = self._base_file(run_id)
        base_file.parent.mkdir(parents=True, exist_ok=True)
        base_file.write_text(sha + "\n", encoding="ascii")
        return Worktree(repo=self, root=path, branch=branch, base=sha, admin=self._admin_dir(path))

    def _admin_dir(self, path: Path) -> Path:
        """The linked worktree's own git dir, found from the common dir (which no sandbox can write),
        never from the checkout's `.git` pointer (which a command in the checkout could rewrite)."""
        wanted = str((path / ".git").resolve())
        listing = self.git_dir / "worktrees"
        for admin in sorted(listing.iterdir()) if listing.is_dir() else []:
            with contextlib.suppress(OSError):
                if (admin / "gitdir").read_text(encoding="utf-8").strip() == wanted:
                    return admin
        raise GitError(f"git worktree {path} is not registered in {listing}: run `git worktree prune` and retry")

    def open_worktree(self, run_id: str) -> Worktree:
        """Re-attach the worktree of an earlier run (re-creating the checkout if it was deleted)."""
        path = self._worktree_dir(run_id)
        branch = f"relay/{run_id}"
        if self.git("rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False).returncode != 0:
            raise UsageError(f"no relay run {run_id} in this repository (branch {branch} not found)")
        if not (path / ".git").exists():
            self.git("worktree", "prune")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.git("worktree", "add", "--quiet", str(path), branch)
        base_file = self._base_file(run_id)
        base = base_file.read_text(encoding="ascii").strip() if base_file.exists() else ""
        if not base:  # metadata lost: the best guess is where the branch left the user's HEAD
            base = self.git("merge-base", "HEAD", branch).stdout.strip()
        return Worktree(repo=self, root=path, branch=branch, base=base, admin=self._admin_dir(path))


@dataclass(frozen=True)
class Worktree:
    """A run's checkout. All file access goes through the path-safety layer."""

    repo: Repo
    root: Path
    branch: str
    base: str  # the commit the run started from
    admin: Path | None = None
    """The worktree's own git dir. Set, every git call names it and the tree explicitly, so the
    `.git` pointer in the tree (writable by commands run there) never chooses the repository."""

    @property
    def layout(self) -> GitLayout:
        """The git layout the sandbox mounts, from what relay knows rather than from the tree."""
        if self.admin is None:
            return GitLayout(root=self.root, admin=self.root / ".git", common=self.root / ".git")
        return GitLayout(root=self.root, admin=self.admin, common=self.repo.git_dir)

    def git(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        where = ["--git-dir", str(self.admin), "--work-tree", str(self.root)] if self.admin else []
        return _git([*where, *args], self.root, self.repo.identity, check=check, extra_env=env)

    def read_text(self, rel: str) -> str:
        with open_in_root(self.root, rel, "r") as fh:
            text: str = fh.read()
            return text

    def write_text(self, rel: str, text: str) -> None:
        _atomic_write(self.root, rel, text.encode("utf-8"))

    def list_files(self) -> list[str]:
        """Tracked and untracked-but-not-ignored files that exist, sorted."""
        out = self.git("ls-files", "-co", "--exclude-standard", "-z").stdout
        names = {n for n in out.split("\0") if n}
        return sorted(n for n in names if os.path.lexists(self.root / n))

    @contextlib.contextmanager
    def _snapshot_index(self) -> Iterator[dict[str, str]]:
        """Yield env for a throwaway index that stages everything in the worktree.

        Starts from a copy of the real index (so unchanged files are not re-hashed)
        and never writes the real one: diffs do not disturb the worktree's state.
        """
        real = Path(self.git("rev-parse", "--git-path", "index").stdout.strip())
        if not real.is_absolute():
            real = self.root / real
        with tempfile.TemporaryDirectory(prefix="relay-index-") as tmp:
            index = Path(tmp) / "index"
            if real.exists():
                shutil.copy2(real, index)  # keep the mtime: git needs it to detect racily-clean entries
            env = {"GIT_INDEX_FILE": str(index)}
            self.git("add", "-A", env=env)
            yield env

    def diff(self, base: str | None = None) -> str:
        """Unified diff of the whole worktree (new untracked files included) against `base`."""
        sha = self.repo.resolve(base) if base else self.base
        with self._snapshot_index() as env:
            args = ["diff", "--cached", "--no-color", "--no-ext-diff", "--no-renames", sha]
            return self.git(*args, env=env).stdout

    def changed_files(self, base: str | None = None) -> list[str]:
        """Paths that differ from `base` (default: the run's base commit), new files included."""
        sha = self.repo.resolve(base) if base else self.base
        with self._snapshot_index() as env:
            out = self.git("diff", "--cached", "--name-only", "-z", "--no-renames", sha, env=env).stdout
        return sorted(n for n in out.split("\0") if n)

    def commit(self, message: str) -> str | None:
        """Stage everything and commit; return the new sha, or None when nothing changed."""
        self.git("add", "-A")
        if self.git("diff", "--cached", "--quiet", "HEAD", check=False).returncode == 0:
            return None
        self.git("commit", "--quiet", "--no-verify", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def reset_hard(self, sha: str) -> None:
        """Return the worktree to commit `sha`: tracked files reset, untracked (not ignored) files removed."""
        commit = self.repo.resolve(sha)
        self.git("reset", "--hard", "--quiet", commit)
        self.git("clean", "-fd", "--quiet")

    def remove(self, keep_branch: bool = True) -> None:
        """Delete the checkout; keep the branch (the run's result) unless told otherwise."""
        if self.repo.git("worktree", "remove", "--force", str(self.root), check=False).returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            self.repo.git("worktree", "prune")
        if not keep_branch:
            self.repo.git("branch", "-D", "--quiet", self.branch)
            run_id = self.branch.removeprefix("relay/")
            self.repo._base_file(run_id).unlink(missing_ok=True)
