"""Path safety for paths that come from models or repositories: one layer for every read and write.

Model-written edit blocks, agent actions, review evidence, the repo map and the bench's hidden
tests name paths inside a tree that hostile code may have changed. Everything goes through here:
`safe_path` (the lexical and symlink check) and `open_in_root` (component-by-component
`openat`-style opening with `O_NOFOLLOW`), so a symlink swapped in after the check cannot redirect
access, a FIFO does not block, and only regular files are read or replaced. No git involved:
review and the repo map use it on any directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from relaycode.errors import PathEscape

__all__ = ["open_in_root", "read_text_in_root", "safe_path", "walk", "write_in_root"]


def walk(
    root: Path, onerror: Callable[[OSError], None] | None = None
) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk` without recursion and without following links (Python 3.11's recursive walk dies on
    a directory chain 1,000 deep, which any command in the tree can create). The caller may prune
    `dirnames` in place, as with `os.walk`."""
    stack = [str(root)]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as entries:
                listed = list(entries)
        except OSError as exc:
            if onerror is not None:
                onerror(exc)
            continue
        dirnames: list[str] = []
        filenames: list[str] = []
        for entry in listed:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            (dirnames if is_dir else filenames).append(entry.name)
        yield top, dirnames, filenames
        stack.extend(os.path.join(top, d) for d in reversed(dirnames))


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
    """The text of `rel` inside `root`, or None when it is missing, not a regular file, larger than
    `max_bytes` or outside the root (also through a symlink; a link to another file of the tree is
    followed, and one swapped in while opening is refused).

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


