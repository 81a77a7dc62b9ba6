"""The Ray executor on a two-node Ray cluster on this machine, with scripted models.

One cluster per module (Ray start-up is slow on two cores): node A advertises the local model
`fakes.LOCAL`, node B does not. Each test's bench connects to it with `--address`, as a user's
bench connects to a real cluster.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaycode.bench.executor import ExecutorSpec
from relaycode.bench.ray_executor import model_resource
from relaycode.bench.results import read_records
from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
from relaycode.bench.suite import load_suite
from relaycode.errors import UsageError

from . import fakes

ray = pytest.importorskip("ray", reason="ray is not installed (the `ray` extra: pip install 'relaycode[ray]')")

pytestmark = pytest.mark.sandbox

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
#: Scripted models; keys only satisfy the pipeline's pre-flight (the network is blocked anyway).
KEYS = ("OPENAI_API_KEY", "GEMINI_API_KEY")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    # Ray's worker processes must import this relay source and the test doubles (`bench.fakes`), and
    # have the keys the pipeline's pre-flight asks for: a node's workers get the node's environment.
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", *KEYS)}
    old = saved["PYTHONPATH"]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), *([old] if old else [])])
    os.environ.update({k: "test-key" for k in KEYS})
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {model_resource("qwen2.5-coder-0.5b"): 1}, "include_dashboard": False})
    c.add_node(num_cpus=1)
    try:
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v




@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in KEYS:  # the driver's side (tests start with a clean environment)
        monkeypatch.setenv(var, "test-key")


def options(tmp_path: Path, configs: list[str], **kw: Any) -> BenchOptions:
    cases = [c for c in load_suite(fakes.write_suite(tmp_path / "tiny.jsonl")) if c.id != "tiny/spin"]
    kw.setdefault("out", tmp_path / "out")
    kw.setdefault("model_overrides", fakes.local_overrides)
    return BenchOptions(cases=cases, configs=resolve_configs(configs), **kw)


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on where a pair ran (times, ids and places may)."""
    keep = ("case", "config", "repeat", "seed", "passed", "first_attempt_passed", "status", "iterations",
            "verify_passed", "usd", "tokens", "models_used", "escalations", "malformed_outputs", "error_kind",
            "test_exit_code", "timed_out")
    out = {k: record[k] for k in keep}
    out["stages"] = {s: {k: v for k, v in t.items() if k != "model_s"} for s, t in record["stages"].items()}
    return out


def test_pairs_spread_over_both_nodes_local_models_only_where_served_and_match_the_local_executor(
        tmp_path: Path, cluster: Any) -> None:
    configs = [*fakes.write_configs(tmp_path), fakes.write_local_config(tmp_path)]
    spec = ExecutorSpec(kind="ray", address=cluster.address)
    opts = options(tmp_path, configs, executor=spec, repeat=2)
    opts.cases = opts.cases[:1]
    records = run_bench(opts)
    assert len(records) == 3 * 2 and len({(r["case"], r["config"], r["repeat"]) for r in records}) == 6
    nodes = {n["NodeID"]: n for n in ray_nodes(cluster)}
    [serving] = [i for i, n in nodes.items() if model_resource("qwen2.5-coder-0.5b") in n["Resources"]]
    ran_on = {r["executor"]["node"] for r in records}
    assert ran_on == set(nodes), "pairs did not spread over both nodes"
    assert {r["executor"]["node"] for r in records if r["config"] == "good-local"} == {serving}
    assert all(r["executor"]["attempt"] == 1 for r in records)

    local_opts = options(tmp_path, configs, out=tmp_path / "local", repeat=2)
    local_opts.cases = local_opts.cases[:1]
    local = run_bench(local_opts)
    by_key = {(r["case"], r["config"], r["repeat"]): comparable(r) for r in local}
    on_ray = {(r["case"], r["config"], r["repeat"]): comparable(r) for r in records}
    assert on_ray == by_key, [(k, f, on_ray[k][f], by_key[k][f]) for k in by_key for f in by_key[k] if on_ray[k][f] != by_key[k][f]]
    assert sum(r["passed"] for r in local) == 4  # good and good-local pass, bad fails


def ray_nodes(cluster: Any) -> list[dict[str, Any]]:
    ray.init(address=cluster.address, logging_level="WARNING")
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()


def test_a_killed_worker_fails_over_and_a_pair_that_keeps_killing_it_is_recorded_once(
        tmp_path: Path, cluster: Any) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = ExecutorSpec(kind="ray", address=cluster.address, max_attempts=2)
    opts = options(tmp_path, fakes.write_configs(tmp_path)[:1], executor=spec,
                   model_overrides=functools.partial(fakes.dying_overrides, str(marks)))
    records = {r["case"]: r for r in run_bench(opts)}
    assert records["tiny/add"]["passed"] and records["tiny/add"]["executor"]["attempt"] == 2
    mul = records["tiny/mul"]
    assert not mul["passed"] and mul["error_kind"] == "bench_worker_lost" and "died 2 times" in mul["error"]
    assert sorted(p.name for p in marks.iterdir()) == ["add-1", "add-2", "mul-1", "mul-2"]  # bounded: 2 tries
    lines = (opts.out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["case"] for line in lines) == ["tiny/add", "tiny/mul"]  # once each


KILL_SCRIPT = """
import sys
sys.path[:0] = {paths!r}
from pathlib import Path
from relaycode.bench.executor import ExecutorSpec
from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
from relaycode.bench.suite import load_suite
from relaycode.errors import UsageError
from bench import fakes
cases = load_suite(Path({suite!r}))
spec = ExecutorSpec(kind="ray", address={address!r})
run_bench(BenchOptions(cases=cases, configs=resolve_configs([{good!r}]), out=Path({out!r}), executor=spec,
                       model_overrides=fakes.slow_overrides))
"""


def test_the_driver_killed_mid_bench_and_resumed_records_every_pair_once(tmp_path: Path, cluster: Any) -> None:
    good = fakes.write_configs(tmp_path)[0]
    opts = options(tmp_path, [good], executor=ExecutorSpec(kind="ray", address=cluster.address))
    results = opts.out / "results.jsonl"
    script = KILL_SCRIPT.format(paths=[str(SRC), str(TESTS)], suite=str(tmp_path / "tiny.jsonl"), good=good,
                                out=str(opts.out), address=cluster.address)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (results.is_file() and results.read_text().count("\n") >= 1):
            assert proc.poll() is None, "bench exited early"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = results.read_text()
    assert first.count("\n") == 1 and json.loads(first)["case"] == "tiny/add"
    opts.resume = True
    opts.cases = load_suite(tmp_path / "tiny.jsonl")  # the killed bench's cases
    t0 = time.monotonic()
    records = run_bench(opts)
    text = results.read_text()
    assert text.startswith(first) and text.count("\n") == 3
    assert sorted(r["case"] for r in read_records(results)) == ["tiny/add", "tiny/mul", "tiny/spin"]
    assert {r["case"]: r["passed"] for r in records} == {"tiny/add": True, "tiny/mul": True, "tiny/spin": True}
    # The killed driver's tasks (hanging for 120 s) were stopped with it: they held no CPU the resume needed.
    assert time.monotonic() - t0 < 100


def test_without_an_address_a_local_instance_is_started_for_the_run_and_stopped(tmp_path: Path, cluster: Any) -> None:
    configs = [fakes.write_configs(tmp_path)[0], fakes.write_local_config(tmp_path)]
    opts = options(tmp_path, configs, executor=ExecutorSpec(kind="ray", jobs=2))
    opts.cases = opts.cases[:1]
    records = run_bench(opts)
    assert sorted((r["config"], r["passed"]) for r in records) == [("good", True), ("good-local", True)]
    # Its own instance (advertising the configs' local models), not the cluster that runs on this machine.
    assert not {r["executor"]["node"] for r in records} & {n["NodeID"] for n in ray_nodes(cluster)}
    assert not ray.is_initialized()


def test_a_local_model_no_node_serves_is_refused_before_any_pair(tmp_path: Path, cluster: Any) -> None:
    path = tmp_path / "big.toml"
    path.write_text('diversity = "off"\n[stages.implement]\nmodel = "local:qwen2.5-coder-1.5b"\n')
    opts = options(tmp_path, [str(path)], executor=ExecutorSpec(kind="ray", address=cluster.address))
    with pytest.raises(UsageError, match=r"no node of the cluster serves local model qwen2\.5-coder-1\.5b; "
                                         r"start a node with --resources"):
        run_bench(opts)
    assert not (opts.out / "results.jsonl").exists() and not ray.is_initialized()
