"""Where a bench's pairs run: local processes (the default) or a Ray cluster, behind one Protocol.

An executor takes the pending pairs and yields one record per pair as each
finishes, in any order; the driver (`runner.run_bench`) appends every record to
the results file itself, so an executor never writes results. Exactly one
record per pair: a pair an executor could not finish (its worker kept dying)
comes back as a harness-error record, never as nothing and never twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from relaycode.bench.runner import CaseJob, run_case
from relaycode.errors import RelayError, UsageError

ExecutorKind = Literal["local", "ray"]
EXECUTORS: tuple[ExecutorKind, ...] = ("local", "ray")

NOT_INSTALLED = "--executor ray: ray is not installed; install it with: pip install 'relaycode[ray]'"

#: Tries of one pair whose worker or node died under it, before it is recorded as a harness error.
MAX_PAIR_ATTEMPTS = 3


@dataclass(frozen=True)
class ExecutorSpec:
    """What the command line chose: `--executor`, `--jobs`, `--address`."""

    kind: ExecutorKind = "local"
    jobs: int = 1
    """Local: worker processes. Ray without an address: the CPUs of the local instance it starts."""
    address: str | None = None
    """Ray only: an existing cluster's address (`ray start --head` prints it); None starts a local instance."""
    max_attempts: int = MAX_PAIR_ATTEMPTS

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UsageError(f"--executor: unknown executor {self.kind!r}; choose {' or '.join(EXECUTORS)}")
        if self.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        if self.address is not None and self.kind != "ray":
            raise UsageError("--address needs --executor ray")
        if self.max_attempts < 1:
            raise UsageError("max_attempts must be at least 1")


def executor_kind(text: str) -> ExecutorKind:
    """`--executor` → its kind, or a usage error naming the choices."""
    for kind in EXECUTORS:
        if text == kind:
            return kind
    raise UsageError(f"--executor: unknown executor {text!r}; choose {' or '.join(EXECUTORS)}")


def check_available(spec: ExecutorSpec) -> None:
    """Refuse before anything runs when the executor's engine is not installed."""
    import importlib.util

    if spec.kind == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError(NOT_INSTALLED)


class PairExecutor(Protocol):
    """Runs pairs; see the module docstring for the contract."""

    def run(self, jobs: Sequence[CaseJob]) -> Iterator[dict[str, Any]]:
        """Yield one record per job as it finishes (any order)."""
        ...


class LocalExecutor:
    """Pairs in this process (`jobs == 1`) or in `jobs` spawned worker processes on this machine."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, jobs: Sequence[CaseJob]) -> Iterator[dict[str, Any]]:
        if self.jobs <= 1:
            for job in jobs:
                yield run_case(job)
            return
        # With several workers, servers are shared by overlapping pairs: their CPU is over-counted.
        shared = [dataclasses.replace(job, shared_servers=True) for job in jobs]
        # spawn, not fork: the parent may hold threads (model clients, the server manager's state).
        with cf.ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_case, job) for job in shared]
            try:
                for fut in cf.as_completed(futures):
                    yield fut.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


def start_local_servers(models: frozenset[str]) -> None:
    """Start (or reuse) this machine's servers of `models`; the ones started here stop when relay exits."""
    from relaycode.local.server import ensure_server

    for name in sorted(models):
        try:
            ensure_server(name)
        except RelayError as exc:
            raise UsageError(f"local model {name}: {exc} (try `relay local setup`)") from None


@contextlib.contextmanager
def open_executor(spec: ExecutorSpec, local_models: frozenset[str], *, start_servers: bool = True
                  ) -> Iterator[PairExecutor]:
    """The executor of `spec` for pairs using `local_models`, with their servers running where the pairs
    will run (unless `start_servers` is off: test doubles stand in for the models)."""
    if spec.kind == "local":
        if start_servers:
            start_local_servers(local_models)
        yield LocalExecutor(spec.jobs)
        return
    check_available(spec)
    from relaycode.bench.ray_executor import RayExecutor

    with RayExecutor(spec, local_models, start_servers=start_servers) as executor:
        yield executor
