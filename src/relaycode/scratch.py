"""A scratch copy of a worktree, for one sandboxed check that must not change the tree (a sampled
candidate's verification, the generated checks).

relay makes the copy itself, outside the sandbox, on the host's disk, from a tree that sandboxed
commands have written (a test of an earlier verify, the agent's `run`). So the copy takes only what
the tree can hold at the disk cost it had there:

* regular files, directories, and symlinks as links (never followed); FIFOs, sockets and devices
  are skipped (they carry no content, and opening a FIFO would block), and so is what cannot be
  read (a directory a test made unreadable);
* holes stay holes (a sparse file costs what it cost in the tree, not its apparent size), and files
  hard-linked to each other in the tree are hard-linked to each other in the copy. The copy never
  shares an inode with the tree itself: the sandbox writes into the copy, and a link to the tree's
  file would let it write the tree (copy_file_range still reflinks where the filesystem can, which
  is copy-on-write, so safe);
* directories past `MAX_DEPTH` are skipped, and a tree over `MAX_BYTES` of data or `MAX_ENTRIES`
  entries is refused with `ScratchCopyError` (once per candidate, a tree that large would fill
  the host's disk or take minutes), as is a copy that cannot be written (a full disk).

It walks with directory file descriptors and no recursion: a directory chain thousands deep or
names longer than PATH_MAX in total cannot crash it. `.git` entries are not copied, at any depth.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from relaycode.errors import ScratchCopyError

MAX_DEPTH = 128
"""Directories deeper than this are not copied (two descriptors are open per level while copying)."""

MAX_BYTES = 4 * 1024**3
"""Data (not holes, not repeated hard links) a scratch copy may write; far above any source tree."""

MAX_ENTRIES = 1_000_000
"""Files, directories and links a scratch copy may make."""

_HINT = "; sampling candidates needs one: set stages.implement.samples = 1"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


@dataclass
class _Frame:
    """One directory being copied: its descriptors on both sides and the names still to copy."""

    src: int
    dst: int
    mode: int
    names: list[str]
    rel: str


@dataclass
class _Copy:
    source: Path
    target: Path
    written: int = 0
    entries: int = 0
    first_copy: dict[tuple[int, int], str] = field(default_factory=dict)
    """A hard-linked source inode -> the path of its first copy."""

    def entry(self, rel: str) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise ScratchCopyError(f"cannot copy the worktree {self.source} to verify in: it holds more than "
                                      f"{MAX_ENTRIES} entries (at {rel!r}){_HINT}")

    def data(self, rel: str, size: int) -> None:
        self.written += size
        if self.written > MAX_BYTES:
            raise ScratchCopyError(f"cannot copy the worktree {self.source} to verify in: it holds more than "
                                      f"{MAX_BYTES >> 30} GiB of data (at {rel!r}){_HINT}")


def scratch_copy(source: Path, target: Path) -> Path:
    """Copy the tree at `source` into the new directory `target` (see the module's docstring); return `target`.

    An entry that cannot be read (unreadable, gone) is skipped like a special file. Raises ScratchCopyError
    past the bounds, or when the copy cannot be written (a full disk)."""
    copy = _Copy(source, target)
    rel = "."
    frames: list[_Frame] = []
    try:
        os.mkdir(target, 0o700)
        frames.append(_Frame(os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), -1, 0o755, [], ""))
        frames[0].dst = os.open(target, _DIR_FLAGS)
        frames[0].mode = stat.S_IMODE(os.fstat(frames[0].src).st_mode) & 0o777
        frames[0].names = sorted(os.listdir(frames[0].src), reverse=True)
        while frames:
            frame = frames[-1]
            if not frame.names:
                frames.pop()
                _close(frame, mode=frame.mode)
                continue
            name = frame.names.pop()
            if name == ".git":
                continue
            rel = f"{frame.rel}{name}"
            try:
                st = os.stat(name, dir_fd=frame.src, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and len(frames) <= MAX_DEPTH:
                _enter(copy, frames, name, rel, st)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    link = os.readlink(name, dir_fd=frame.src)
                except OSError:
                    continue
                copy.entry(rel)
                os.symlink(link, name, dir_fd=frame.dst)
            elif stat.S_ISREG(st.st_mode):
                _copy_file(copy, frame, name, rel, st)
            # anything else (FIFO, socket, device), or a directory past MAX_DEPTH: skipped
    except OSError as exc:
        raise ScratchCopyError(f"cannot copy the worktree {source} to verify in: {exc.strerror or exc} "
                               f"(at {rel!r})") from exc
    finally:
        for frame in frames:
            _close(frame, mode=None)
    return target


def _enter(copy: _Copy, frames: list[_Frame], name: str, rel: str, st: os.stat_result) -> None:
    """Start copying the directory `name` of the innermost frame (skipped when it cannot be listed)."""
    parent = frames[-1]
    try:
        src = os.open(name, _DIR_FLAGS, dir_fd=parent.src)
    except OSError:
        return
    try:
        names = sorted(os.listdir(src), reverse=True)
    except OSError:
        os.close(src)
        return
    child = _Frame(src, -1, stat.S_IMODE(st.st_mode) & 0o777, names, rel + "/")
    frames.append(child)  # from here on its descriptors are closed with the others
    copy.entry(rel)
    os.mkdir(name, 0o700, dir_fd=parent.dst)
    child.dst = os.open(name, _DIR_FLAGS, dir_fd=parent.dst)


def _close(frame: _Frame, *, mode: int | None) -> None:
    if frame.dst >= 0:
        with contextlib.suppress(OSError):
            if mode is not None:
                os.fchmod(frame.dst, mode)  # last: the directory stays writable while it is filled
        os.close(frame.dst)
    if frame.src >= 0:
        os.close(frame.src)


def _copy_file(copy: _Copy, frame: _Frame, name: str, rel: str, st: os.stat_result) -> None:
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in copy.first_copy:
        try:
            os.link(copy.first_copy[key], name, dst_dir_fd=frame.dst, follow_symlinks=False)
            copy.entry(rel)
            return
        except OSError:
            pass  # (a path past PATH_MAX, say): copied in full instead
    # O_NONBLOCK: a FIFO put in the file's place since the stat does not block the open.
    try:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=frame.src)
    except OSError:
        return  # unreadable or gone: skipped
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            return
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=frame.dst)
        try:
            _copy_data(copy, rel, src, dst, st.st_size)
            os.fchmod(dst, stat.S_IMODE(st.st_mode) & 0o777)  # never set-uid/set-gid in the copy
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)
    if st.st_nlink > 1:
        copy.first_copy[key] = str(copy.target / rel)


def _copy_data(copy: _Copy, rel: str, src: int, dst: int, size: int) -> None:
    """Copy the data of `src` into `dst`, leaving its holes as holes."""
    copy.entry(rel)
    pos = 0
    while pos < size:
        try:
            start = os.lseek(src, pos, os.SEEK_DATA)
            end = min(os.lseek(src, start, os.SEEK_HOLE), size)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # only a hole is left
            start, end = pos, size  # a filesystem without SEEK_DATA: all of it is data
        copy.data(rel, end - start)
        _copy_range(src, dst, start, end)
        pos = end
    os.ftruncate(dst, size)


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    while start < end:
        try:
            done = os.copy_file_range(src, dst, min(end - start, _CHUNK), start, start)
        except OSError:
            data = os.pread(src, min(end - start, _CHUNK), start)
            done = os.pwrite(dst, data, start) if data else 0
        if done == 0:
            return  # the file shrank under us
        start += done
