"""A memory cap for a whole command tree, where the kernel lets relay make one.

`RLIMIT_AS` caps each process on its own: a test suite that forks N workers may use N times
the limit. A memory cgroup caps the tree. relay creates a child of its own memory cgroup
(cgroup v2 with the memory controller enabled for children, or the v1 memory hierarchy), sets
the limit, and the command's first process moves itself into it before it execs anything
(`sh -c 'echo $$ > cgroup.procs && exec "$@"'`), so no child can start outside it. When the
cgroup file system is not writable (an ordinary user without delegation, most containers
without a writable /sys/fs/cgroup) nothing is created and the per-process rlimit is the only
memory bound: `available()` says which, and docs/security.md states the fallback.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


@dataclass(frozen=True)
class _Hierarchy:
    own: Path
    """relay's own cgroup directory."""
    limit_file: str
    """`memory.max` (v2) or `memory.limit_in_bytes` (v1)."""


def _own_memory_cgroup() -> _Hierarchy | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1
            own = _ROOT / "memory" / path.lstrip("/")
            if (own / "memory.limit_in_bytes").exists():
                return _Hierarchy(own, "memory.limit_in_bytes")
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if hid == "0":  # v2: the unified hierarchy, mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified
            for mount in (_ROOT, _ROOT / "unified"):
                own = mount / path.lstrip("/")
                try:
                    enabled = (own / "cgroup.subtree_control").read_text().split()
                except OSError:
                    continue
                if "memory" in enabled:
                    return _Hierarchy(own, "memory.max")
    return None


def available() -> bool:
    """Whether a memory cgroup can be created for a command here (probes once by creating one)."""
    try:
        with memory_cap(64 * 1024 * 1024) as procs:
            return procs is not None
    except OSError:
        return False


@contextlib.contextmanager
def memory_cap(limit_bytes: int) -> Iterator[Path | None]:
    """A fresh memory cgroup capped at `limit_bytes`; yields its `cgroup.procs` file (None: unavailable).

    On exit every process still in it is killed and the cgroup removed.
    """
    hierarchy = _own_memory_cgroup()
    if hierarchy is None:
        yield None
        return
    group = hierarchy.own / f"relay-{os.getpid()}-{next(_counter)}"
    try:
        group.mkdir()
        (group / hierarchy.limit_file).write_text(str(limit_bytes))
        swap = group / ("memory.memsw.limit_in_bytes" if hierarchy.limit_file.endswith("in_bytes") else "memory.swap.max")
        with contextlib.suppress(OSError):
            swap.write_text(str(limit_bytes) if swap.name.startswith("memory.memsw") else "0")
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        yield None
        return
    try:
        yield group / "cgroup.procs"
    finally:
        _remove(group)


def _remove(group: Path) -> None:
    for _ in range(50):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def join_prefix(procs: Path) -> list[str]:
    """A command prefix that moves the command's first process into the cgroup, then execs the rest."""
    return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "relay-cgroup"]
