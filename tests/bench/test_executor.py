"""Executor choice and refusals; these need no Ray (the Ray executor's own tests: test_ray_executor.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from relaycode.bench.executor import ExecutorSpec
from relaycode.bench.ray_executor import pair_resources, served_models, shares_servers
from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
from relaycode.bench.suite import load_suite
from relaycode.errors import UsageError

from . import fakes
from .test_cli import invoke


def test_spec_refusals_name_the_flag() -> None:
    with pytest.raises(UsageError, match="--executor: unknown executor 'dask'; choose local or ray"):
        ExecutorSpec(kind="dask")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--jobs must be at least 1"):
        ExecutorSpec(jobs=0)
    with pytest.raises(UsageError, match="--address needs --executor ray"):
        ExecutorSpec(address="10.0.0.1:6379")
    assert ExecutorSpec(kind="ray", address="10.0.0.1:6379").max_attempts == 3


def test_ray_executor_without_ray_installed_is_refused_before_the_out_dir_is_touched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if not installed
    opts = BenchOptions(cases=load_suite(fakes.write_suite(tmp_path / "s.jsonl")),
                        configs=resolve_configs(fakes.write_configs(tmp_path)), out=tmp_path / "out",
                        executor=ExecutorSpec(kind="ray"), model_overrides=fakes.overrides)
    with pytest.raises(UsageError, match=r"^--executor ray: ray is not installed; install it with: "
                                         r"pip install 'relaycode\[ray\]'$"):
        run_bench(opts)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_unknown_executor_and_an_address_without_ray(tmp_path: Path) -> None:
    suite = str(fakes.write_suite(tmp_path / "s.jsonl"))
    bad = invoke("bench", suite, "--executor", "dask", "--out", str(tmp_path / "o"))
    assert bad.exit_code == 2 and "--executor: unknown executor 'dask'" in bad.output
    bad = invoke("bench", suite, "--address", "10.0.0.1:6379", "--out", str(tmp_path / "o"))
    assert bad.exit_code == 2 and "--address needs --executor ray" in bad.output
    bad = invoke("bench", suite, "--repeat", "0", "--configs", str(fakes.write_configs(tmp_path)[0]),
                 "--out", str(tmp_path / "o"))
    assert bad.exit_code == 2 and "--repeat must be at least 1" in bad.output


def test_placement_follows_the_model_resources_nodes_advertise() -> None:
    wanted = frozenset({"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"})
    assert pair_resources(wanted) == {"relay-model:qwen2.5-coder-0.5b": 1.0, "relay-model:qwen2.5-coder-1.5b": 1.0}
    assert pair_resources(frozenset()) == {}  # API models only: any node
    node = {"CPU": 8.0, "relay-model:qwen2.5-coder-1.5b": 1.0, "relay-model:other": 4.0}
    assert served_models(node, wanted) == {"qwen2.5-coder-1.5b"}
    assert shares_servers(node) and not shares_servers({"CPU": 8.0, "relay-model:qwen2.5-coder-1.5b": 1.0})

