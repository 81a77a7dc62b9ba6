"""Scripted models that misbehave are stopped by limits set in the public config, within budget."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from relaycode.config import config_from_dict
from relaycode.pipeline import RunOptions, RunResult, run_task
from relaycode.testing.sample_repos import PAGINATION_FIX as GOOD_FIX
from relaycode.testing.sample_repos import PAGINATION_TASK as DEMO_TASK
from relaycode.testing.sample_repos import make_demo_repo
from relaycode.testing.scripted import scripted_output, scripted_text

CHEAP = "google:gemini-2.5-flash"
REVIEWER = "openai:gpt-5-mini"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GEMINI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(var, "test-key")


def run(tmp_path: Path, overrides: dict[str, Any], **cfg: Any) -> RunResult:
    data: dict[str, Any] = {"stages": {"implement": {"model": CHEAP},
                                       "verify": {"commands": ["python -m pytest -q"], "timeout_s": 60}},
                            "budget": {"run_usd": 0.05}}
    for key, value in cfg.items():
        if key == "stages":
            for stage, settings in value.items():
                data["stages"][stage] = {**data["stages"].get(stage, {}), **settings}
        else:
            data[key] = value
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    result = run_task(RunOptions(repo=repo, task=DEMO_TASK, config=config_from_dict(data), model_overrides=overrides,
                                 history=False))
    run_usd = Decimal(str(data["budget"]["run_usd"]))
    assert result.ledger.total().usd <= run_usd  # spend never exceeds the budget
    return result


def test_endless_malformed_answers_hit_the_request_limit(tmp_path: Path) -> None:
    implementer = scripted_text([f"let me think about it some more ({i})..." for i in range(100)])
    result = run(tmp_path, {CHEAP: implementer}, max_iterations=50,
                 stages={"implement": {"max_steps": 50}}, budget={"run_usd": 0.05, "stage_requests": {"implement": 7}})
    assert result.status == "failed"
    assert "implement request limit reached (7 requests" in (result.error or "")
    assert len(implementer.calls) == 7


def test_ever_growing_output_hits_the_token_limit(tmp_path: Path) -> None:
    size = [100]

    def grow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        size[0] *= 2
        return ModelResponse(parts=[TextPart("x" * size[0])],
                             usage=RequestUsage(input_tokens=200, output_tokens=size[0] // 4))

    result = run(tmp_path, {CHEAP: FunctionModel(grow)}, max_iterations=50,
                 stages={"implement": {"max_steps": 50}},
                 models={CHEAP: {"max_tokens": 1000}},
                 budget={"run_usd": 0.05, "stage_tokens": {"implement": 20_000}})
    assert result.status == "failed"
    assert "implement token limit 20000" in (result.error or "")
    assert result.ledger.by_stage()["implement"].tokens.total <= 20_000


def test_a_hanging_command_is_killed_at_its_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(tmp_path, {CHEAP: scripted_text([GOOD_FIX])}, max_iterations=1,
                 stages={"verify": {"commands": ["sleep 600"], "timeout_s": 2}})
    assert result.status == "failed"
    assert result.verify_passed is False
    assert time.monotonic() - started < 60
    verify = (result.run_dir / "verify.json").read_text()
    assert '"timed_out": true' in verify


def test_budget_is_never_exceeded_by_parallel_reviewers(tmp_path: Path) -> None:
    reviewers = ["openai:gpt-5-mini", "openrouter:z-ai/glm-4.6"]
    import os

    os.environ["OPENROUTER_API_KEY"] = "test-key"
    try:
        result = run(tmp_path, {CHEAP: scripted_text([GOOD_FIX], usage=(1000, 200)),
                                reviewers[0]: scripted_output([{"findings": []}], usage=(1000, 3000)),
                                reviewers[1]: scripted_output([{"findings": []}], usage=(1000, 3000))},
                     stages={"review": {"models": reviewers}}, budget={"run_usd": 0.012})
    finally:
        del os.environ["OPENROUTER_API_KEY"]
    # implement fits; the two reviewers' reserved worst cases together do not: one of them is refused,
    # and a review cut short by the budget ends the run as budget_exceeded, with its files saved.
    assert result.status == "budget_exceeded"
    assert (result.run_dir / "review.json").is_file()
    assert result.ledger.by_stage()["review"].requests == 1
