"""benchmarks/generated_checks_choice.py: the paired comparison of the checks' choice and the preference order's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
from relaycode.bench.suite import Case, load_suite

pytestmark = pytest.mark.sandbox

MODEL = "google:gemini-2.5-flash"
CLAMP = 'def clamp(x, lo, hi):\n    """x limited to the range [lo, hi]."""\n    return max(lo, min(x, lo))\n'
WRONG = ("clampx.py\n<<<<<<< SEARCH\n    return max(lo, min(x, lo))\n=======\n    return max(lo, min(x, hi + 1))\n"
         ">>>>>>> REPLACE\n")
RIGHT = WRONG.replace("hi + 1", "hi")
CHECKS = [{"call": "clamp(5, 0, 10)", "expected": "5"}, {"call": "clamp(20, 0, 10)", "expected": "10"},
          {"call": "clamp(11, 0, 10)", "expected": "10"}]
CASE = {"id": "tiny/clamp", "suite": "tiny", "kind": "bugfix",
        "instruction": "clamp in clampx.py is wrong for values inside the range; fix it.",
        "files": {"clampx.py": CLAMP},
        "hidden_files": {"test_clampx.py": "from clampx import clamp\n\n\ndef test_it():\n"
                                           "    assert clamp(20, 0, 10) == 10 and clamp(5, 0, 10) == 5\n"},
        "test_command": "python -m pytest -q -p no:cacheprovider test_clampx.py", "timeout_s": 60,
        "reference": {"clampx.py": CLAMP.replace("min(x, lo)", "min(x, hi)")}, "bug_lines": {"clampx.py": [3]}}


def overrides(case: Case, config: str) -> dict[str, Model]:
    """Two answers agree on a wrong fix, one is right; the check request gets checks only the right one passes."""
    queue = [WRONG, WRONG, RIGHT]

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if info.output_tools:
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"checks": CHECKS})])
        return ModelResponse(parts=[TextPart(queue.pop(0))])

    return {MODEL: FunctionModel(answer)}


def script(name: str) -> Any:
    """The benchmark script `benchmarks/<name>.py`, loaded as a module."""
    path = Path(__file__).parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scripted_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, Case]]:
    """A one-case bench of 3 sampled candidates with generated checks, answered by `overrides`: its
    --out directory and its cases."""
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps(CASE) + "\n")
    config = tmp_path / "sampled.toml"
    config.write_text(f'diversity = "off"\nmax_iterations = 1\n[stages.implement]\nmodel = "{MODEL}"\n'
                      "samples = 3\ngenerate_checks = true\n")
    out = tmp_path / "out"
    run_bench(BenchOptions(cases=load_suite(suite), configs=resolve_configs([str(config)]), out=out,
                           model_overrides=overrides))
    return out, {c.id: c for c in load_suite(suite)}


def test_the_preferred_candidate_is_rebuilt_and_judged_by_the_hidden_tests(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    [row] = script("generated_checks_choice").analyse(*scripted_bench(tmp_path, monkeypatch))
    # The checks chose the right fix (hidden tests pass); the preference order would have kept the
    # two agreeing wrong answers, which the hidden tests fail.
    assert row["with_checks"] is True and row["choice_changed"] is True and row["without_checks"] is False
    assert (row["checks"], row["weighted"], row["status"]) == (3, 3, "unverified")
