"""Git worktrees for runs (path safety for model-supplied paths lives in `pathsafety`, re-exported here).

A run works on its own branch `relay/<run_id>` in a worktree kept under the
repository's git directory (`<common dir>/relay/worktrees/<run_id>`): outside
the user's checkout, so it never shows in `git status` and is never committed,
and the user's working tree, index and stash are never touched.

Every git call disables hooks and every other command git's config or a
repository's attributes could run (`gitguard.host_git_options`), never
prompts, never takes optional locks (so even read-only calls do not
rewrite the user's index) and commits as a fixed identity, so it works on
machines without any git config.

Worktree file access goes through `pathsafety` (`open_in_root`, `safe_path`), so a symlink a
command planted in the tree cannot redirect it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from relaycode.errors import RelayError, UsageError
from relaycode.gitguard import GitLayout, host_git_options
from relaycode.pathsafety import open_in_root, read_text_in_root, safe_path, write_in_root

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


class GitError(RelayError):
    """A git command failed unexpectedly; the message has the command and git's stderr."""


class FileTree(Protocol):
    """The files of a checkout, as an implement strategy sees them (`Worktree` is the real one)."""

    @property
    def root(self) -> Path: ...

    def list_files(self) -> list[str]: ...

    def read_text(self, rel: str) -> str: ...

    def write_text(self, rel: str, text: str) -> None: ...


class RunTree(FileTree, Protocol):
    """A run's checkout as the run loop uses it: files, commits of attempts, diffs against a ref.

    `Worktree` is the real one; `relaycode.testing.loop.DirTree` keeps commits in memory, so the
    loop's logic is tested without git.
    """

    @property
    def base(self) -> str: ...

    @property
    def branch(self) -> str: ...

    def diff(self, base: str | None = None) -> str: ...

    def commit(self, message: str) -> str | None: ...

    def reset_hard(self, sha: str) -> None: ...

    def read_tree(self, ref: str) -> None: ...


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
        env = _env(identity, extra_env)
        proc = subprocess.run(
            ["git", *host_git_options(cwd, env), *args],
            cwd=cwd,
            env=env,
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
        write_in_root(self.root, rel, text.encode("utf-8"))

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
            args = ["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", sha]
            return self.git(*args, env=env).stdout

    def changed_files(self, base: str | None = None) -> list[str]:
        """Paths that differ from `base` (default: the run's base commit), new files included."""
        sha = self.repo.resolve(base) if base else self.base
        with self._snapshot_index() as env:
            out = self.git("diff", "--cached", "--name-only", "-z", "--no-renames", "--no-textconv", sha,
                           env=env).stdout
        return sorted(n for n in out.split("\0") if n)

    def commit(self, message: str) -> str | None:
        """Stage everything and commit; return the new sha, or None when nothing changed."""
        self.git("add", "-A")
        if self.git("diff", "--cached", "--quiet", "--no-ext-diff", "--no-textconv", "HEAD",
                    check=False).returncode == 0:
            return None
        self.git("commit", "--quiet", "--no-verify", "-m", message)
        return self.git("rev-parse", "HEAD").stdout.strip()

    def reset_hard(self, sha: str) -> None:
        """Return the worktree to commit `sha`: tracked files reset, untracked (not ignored) files removed."""
        commit = self.repo.resolve(sha)
        self.git("reset", "--hard", "--quiet", commit)
        self.git("clean", "-fd", "--quiet")

    def read_tree(self, ref: str) -> None:
        """Put `ref`'s files in the tree (and index) without moving the branch: the next commit
        records them on top of what the branch already holds."""
        self.git("read-tree", "--reset", "-u", self.repo.resolve(ref))

    def remove(self, keep_branch: bool = True) -> None:
        """Delete the checkout; keep the branch (the run's result) unless told otherwise."""
        if self.repo.git("worktree", "remove", "--force", str(self.root), check=False).returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            self.repo.git("worktree", "prune")
        if not keep_branch:
            self.repo.git("branch", "-D", "--quiet", self.branch)
            run_id = self.branch.removeprefix("relay/")
            self.repo._base_file(run_id).unlink(missing_ok=True)
