"""CPU seconds of one (case, config, repeat) pair, measured in the process that runs it.

A pair runs alone in its process (the bench's own process with `--jobs 1`, a
spawned worker process with more jobs, a Ray worker process with `--executor
ray`), so the rusage deltas of that process and of its reaped children (git,
unsandboxed commands) belong to the pair. Commands inside bubblewrap never
reach RUSAGE_CHILDREN (bwrap does not hand its PID namespace's rusage up), so
sandboxed verify and hidden-test CPU is not counted. Local model servers are
separate, long-lived processes on the same node: the CPU of the servers of the
config's own models is read from /proc over the pair's window, which is exact
when one pair at a time uses those servers and over-counts otherwise (a shared
server's CPU lands in every overlapping pair; records say `servers_shared`).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from relaycode.config import Config


class CpuSeconds(TypedDict):
    """The `cpu_s` field of a record."""

    relay: float
    children: float
    servers: float
    servers_shared: bool
    total: float


def _rusage_s() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def local_model_names(config: Config) -> frozenset[str]:
    """Names of the local models a config uses (their servers' CPU is the config's compute)."""
    from relaycode.providers import parse_model

    refs = (parse_model(spec, config.endpoints) for spec in config.all_models())
    return frozenset(ref.name for ref in refs if ref.is_local)


def _server_cpu(models: frozenset[str]) -> dict[int, float]:
    """CPU seconds so far of the running servers of `models` (pid → s); empty if none or unreadable.

    Only the config's own models count: servers of other models may be busy with other work.
    """
    if not models:
        return {}
    try:
        from relaycode.local.server import running_servers

        handles = [h for h in running_servers() if h.model in models]
    except Exception:  # the local package is optional for API-only benches
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for h in handles:
        try:
            fields = Path(f"/proc/{h.pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[h.pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return out


class CpuMeter:
    """CPU seconds between start and stop: this process, its reaped (unsandboxed) children, local servers."""

    def __init__(self, local_models: frozenset[str] = frozenset()) -> None:
        self.models = local_models
        self.self0, self.children0 = _rusage_s()
        self.servers0 = _server_cpu(local_models)

    def stop(self, *, shared_servers: bool) -> CpuSeconds:
        self_s, children_s = _rusage_s()
        servers = _server_cpu(self.models)
        server_s = sum(max(0.0, s - self.servers0.get(pid, 0.0)) for pid, s in servers.items())
        own = self_s - self.self0
        kids = children_s - self.children0
        return {
            "relay": round(own, 3),
            "children": round(kids, 3),
            "servers": round(server_s, 3),
            "servers_shared": shared_servers and bool(servers),
            "total": round(own + kids + server_s, 3),
        }
