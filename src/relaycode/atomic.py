"""Atomic file replacement for relay's own files: readers see the old content or the new, never a mix.

One rule for run files, state and records, the trust store, installed binaries and model files: the
new content goes to a temporary file in the target's directory (so the rename stays on one file
system), is flushed to disk, and is renamed over the target in one step; if anything fails before,
the temporary file is removed. Files inside a repository or worktree are written by
`pathsafety.write_in_root` instead, which does the same through directory file descriptors so that
no link planted by the repository is followed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, *, temp_suffix: str | None = None) -> Iterator[Path]:
    """A temporary file next to `path` for the block to fill; renamed over `path` when the block ends
    normally, removed when it raises.

    The temporary file is created private (mode 0600) with a unique name; `temp_suffix` names it
    `path` + suffix instead, for a large file a killed process may leave behind: the next attempt then
    overwrites it rather than leaving another copy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if temp_suffix is None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = path.with_name(path.name + temp_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` (text as UTF-8). The file is private (0600) unless `mode` says otherwise."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with replacing(path) as tmp, tmp.open("wb") as fh:
        fh.write(raw)
        fh.flush()
        if mode is not None:
            os.fchmod(fh.fileno(), mode)
        os.fsync(fh.fileno())
