"""benchmarks/candidate_oracle.py: every drawn candidate re-tested by the hidden tests, beside relay's choice."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
from relaycode.bench.suite import load_suite

from .test_generated_checks_choice import CASE, MODEL, overrides

pytestmark = pytest.mark.sandbox


def _script() -> Any:
    path = Path(__file__).parents[2] / "benchmarks" / "candidate_oracle.py"
    spec = importlib.util.spec_from_file_location("candidate_oracle", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_candidate_is_judged_by_the_hidden_tests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps(CASE) + "\n")
    config = tmp_path / "sampled.toml"
    config.write_text(f'diversity = "off"\nmax_iterations = 1\n[stages.implement]\nmodel = "{MODEL}"\n'
                      "samples = 3\ngenerate_checks = true\n")
    out = tmp_path / "out"
    run_bench(BenchOptions(cases=load_suite(suite), configs=resolve_configs([str(config)]), out=out,
                           model_overrides=overrides))
    [row] = _script().analyse(out, {c.id: c for c in load_suite(suite)})
    # Two agreeing wrong answers and one right one (the scripted model's order); the checks chose the right one.
    assert row["candidates"] == {"1": False, "2": False, "3": True}
    assert row["any"] is True and row["chosen"] is True and row["passed"] is True
