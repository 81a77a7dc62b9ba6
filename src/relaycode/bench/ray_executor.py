"""The Ray executor: each (case, config, repeat) pair is a Ray task on a cluster (or a local instance).

Placement. A node serves a local model when it advertises the custom resource
`relay-model:<name>` (`ray start ... --resources '{"relay-model:qwen2.5-coder-1.5b": 1}'`).
A pair needs one unit of the resource of each local model its config uses, so
it runs only on a node that serves all of them, and the amount a node advertises
is how many pairs may use its server at once (1 keeps server CPU accounting
exact). Pairs whose configs use only API models need no such resource and run
anywhere. Each serving node gets one `ModelHost` actor that starts the servers
of the models it serves once, for the whole bench, and stops them at the end.
Without `--address` a local Ray instance is started for the run, advertising
every model the configs need with `--jobs` units and `--jobs` CPUs, and stopped
at the end.

Failures. Ray's own task retries are off: the driver resubmits a pair whose
worker process or node died under it (Ray then starts a fresh worker, on another
node if that one is gone), at most `max_attempts` times in all, and then
records it as a harness error (`bench_worker_lost`). A pair raising in the task
(a harness bug) is recorded at once (`bench_exception`). Every pair thus yields
exactly one record, written by the driver.

CPU accounting on a node: the task's worker process runs one pair at a time,
so the same meter as the local executor applies there (`cpu`): the worker
process and its reaped children by getrusage, the node's servers of the
config's models from that node's /proc. A Ray worker also runs Ray's own
threads (its core worker), whose CPU lands in the pair's `relay` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from relaycode.bench.cpu import local_model_names
from relaycode.bench.executor import NOT_INSTALLED, ExecutorSpec, start_local_servers
from relaycode.bench.runner import CaseJob, harness_error_record, run_case
from relaycode.errors import UsageError

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.types import ObjectRef

T = TypeVar("T")
R = TypeVar("R")

#: Prefix of the custom resource a node advertises for each local model it serves.
MODEL_RESOURCE_PREFIX = "relay-model:"


def model_resource(model: str) -> str:
    return MODEL_RESOURCE_PREFIX + model


def pair_resources(models: frozenset[str]) -> dict[str, float]:
    """Custom resources a pair needs: one unit of each of its local models' resource."""
    return {model_resource(m): 1.0 for m in sorted(models)}


def served_models(node_resources: Mapping[str, float], wanted: frozenset[str]) -> frozenset[str]:
    """The models of `wanted` a node serves, by its advertised resources."""
    return frozenset(m for m in wanted if node_resources.get(model_resource(m), 0) >= 1)


def shares_servers(node_resources: Mapping[str, float]) -> bool:
    """Whether pairs on a node may overlap on one server (its CPU is then counted in each)."""
    return any(v > 1 for k, v in node_resources.items() if k.startswith(MODEL_RESOURCE_PREFIX))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(NOT_INSTALLED) from None
    return ray


# ---------------------------------------------------------------- what runs on the nodes


def call(fn: Callable[[T, int], R], item: T, attempt: int) -> R:
    """The Ray task of `RayExecutor.map`."""
    return fn(item, attempt)


def run_pair(job: CaseJob, attempt: int, *, shared_by_node: Mapping[str, bool]) -> dict[str, Any]:
    """Run one pair on this node and say where it ran."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    record = run_case(dataclasses.replace(job, shared_servers=shared_by_node.get(node, True)))
    record["executor"] = {"kind": "ray", "node": node, "host": socket.gethostname(), "attempt": attempt}
    return record


class ModelHost:
    """One per serving node: keeps that node's servers of the bench's local models running."""

    def __init__(self, models: list[str]) -> None:
        start_local_servers(frozenset(models))
        self.models = models

    def ready(self) -> list[str]:
        return self.models

    def stop(self) -> None:
        """Exit this actor's process; servers it started stop with it (their manager's exit hook)."""
        import ray

        ray.actor.exit_actor()


# ---------------------------------------------------------------- the driver side


class RayExecutor:
    """Connects (or starts a local instance), places model hosts, runs pairs; see the module docstring."""

    def __init__(self, spec: ExecutorSpec, local_models: frozenset[str], *, start_servers: bool = True) -> None:
        self.spec = spec
        self.local_models = local_models
        self.start_servers = start_servers
        self.ray: Any = None
        self.hosts: list[ActorHandle] = []
        self.shared_by_node: dict[str, bool] = {}
        self.started_instance = False

    def __enter__(self) -> RayExecutor:
        ray = self.ray = _import_ray()
        if ray.is_initialized():
            raise UsageError("--executor ray: this process is already connected to a Ray cluster")
        if self.spec.address:
            try:
                ray.init(address=self.spec.address, logging_level="WARNING", log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise UsageError(f"--address {self.spec.address}: cannot connect to a Ray cluster: {exc}") from None
        else:
            # "local": a new instance for this run, never one that happens to run on this machine.
            ray.init(address="local", num_cpus=self.spec.jobs, include_dashboard=False,
                     resources={model_resource(m): float(self.spec.jobs) for m in self.local_models},
                     logging_level="WARNING", log_to_driver=False)
            self.started_instance = True
        try:
            self._place_model_hosts()
        except BaseException:
            self._close()
            raise
        return self

    def _place_model_hosts(self) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.shared_by_node = {n["NodeID"]: shares_servers(n["Resources"]) for n in nodes}
        served: set[str] = set()
        host_cls = ray.remote(num_cpus=0, max_restarts=0)(ModelHost)
        for node in nodes:
            models = served_models(node["Resources"], self.local_models)
            served |= models
            if models and self.start_servers:
                strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
                self.hosts.append(host_cls.options(scheduling_strategy=strategy).remote(sorted(models)))
        missing = sorted(self.local_models - served)
        if missing:
            # Its pairs could never be scheduled: refuse now rather than wait forever.
            raise UsageError(f"--executor ray: no node of the cluster serves local model {', '.join(missing)}; "
                             f"start a node with --resources '{{\"{model_resource(missing[0])}\": 1}}'")
        for host in self.hosts:
            try:
                ray.get(host.ready.remote())
            except ray.exceptions.RayError as exc:
                raise UsageError(f"--executor ray: a node could not start its model servers: {exc}") from None

    def run(self, jobs: Sequence[CaseJob]) -> Iterator[dict[str, Any]]:
        def lost(job: CaseJob, attempts: int, why: str) -> dict[str, Any]:
            return harness_error_record(job, "bench_worker_lost", f"its worker died {attempts} times (last: {why})")

        def failed(job: CaseJob, why: str) -> dict[str, Any]:
            return harness_error_record(job, "bench_exception", why)

        fn = functools.partial(run_pair, shared_by_node=dict(self.shared_by_node))
        for _job, record in self.map(fn, jobs, resources=lambda j: pair_resources(local_model_names(j.config.config)),
                                     lost=lost, failed=failed):
            yield record

    def map(self, fn: Callable[[T, int], R], items: Sequence[T], *, resources: Callable[[T], dict[str, float]],
            lost: Callable[[T, int, str], R], failed: Callable[[T, str], R]) -> Iterator[tuple[T, R]]:
        """`fn(item, attempt)` as a Ray task per item, yielding (item, result) as each finishes.

        An item whose worker or node died is submitted again up to `max_attempts` tries in all, then
        yields `lost(item, tries, why)`; one whose task raised yields `failed(item, why)`. So every
        item yields exactly once. `fn` must be picklable (a module-level function or a partial of one).
        """
        ray = self.ray
        task = ray.remote(call)
        retryable = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                     ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError,
                     ray.exceptions.OutOfMemoryError)

        def submit(item: T, attempt: int) -> ObjectRef[R]:
            options = task.options(num_cpus=1, resources=resources(item), max_retries=0, scheduling_strategy="SPREAD")
            ref: ObjectRef[R] = options.remote(fn, item, attempt)
            return ref

        pending: dict[ObjectRef[R], tuple[T, int]] = {submit(item, 1): (item, 1) for item in items}
        try:
            while pending:
                [ready], _ = ray.wait(list(pending), num_returns=1)
                item, attempt = pending.pop(ready)
                try:
                    result = ray.get(ready)
                except retryable as exc:
                    if attempt < self.spec.max_attempts:
                        pending[submit(item, attempt + 1)] = (item, attempt + 1)
                        continue
                    result = lost(item, attempt, _first_line(exc))
                except ray.exceptions.RayError as exc:
                    result = failed(item, str(exc))
                yield item, result
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def _close(self) -> None:
        ray = self.ray
        for host in self.hosts:
            # exit_actor ends the call with an actor error; a dead host has nothing to stop.
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(host.stop.remote(), timeout=60)
        self.hosts.clear()
        # Disconnects from a cluster; a local instance started here is stopped with it.
        ray.shutdown()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
