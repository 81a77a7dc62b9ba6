"""`relay costs --by model --json` after a few real pipeline runs equals the sum of their ledgers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaycode.cli import _register, app
from relaycode.config import config_from_dict
from relaycode.pipeline import RunOptions, run_task
from relaycode.testing.sample_repos import PAGINATION_FIX as FIX
from relaycode.testing.sample_repos import PAGINATION_TASK, make_demo_repo
from relaycode.testing.scripted import scripted_output, scripted_text


def test_costs_by_model_equal_the_runs_ledgers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(var, "test-key")
    _register()
    cfg = config_from_dict({"stages": {
        "plan": {"model": "anthropic:claude-opus-4-5"},
        "implement": {"model": "google:gemini-2.5-flash"},
        "review": {"models": ["openai:gpt-5-mini"]},
        "verify": {"commands": ["python -m pytest -q"], "timeout_s": 60}}})
    plan = {"goal": "fix pagination", "files": ["shop/pagination.py"], "steps": ["(page - 1)"], "acceptance": []}
    ledgers = []
    for i in range(3):
        repo = make_demo_repo(tmp_path / f"shop{i}", bug="pagination")
        result = run_task(RunOptions(repo=repo, task=PAGINATION_TASK, config=cfg, yes=True, history=True,
                                     model_overrides={
                                         "anthropic:claude-opus-4-5": scripted_output([plan], usage=(1000 + i, 200)),
                                         "google:gemini-2.5-flash": scripted_text([FIX], usage=(3000, 150 + i)),
                                         "openai:gpt-5-mini": scripted_output([{"findings": []}], usage=(900, 9)),
                                     }))
        assert result.status == "succeeded", result.error
        ledgers.append(json.loads((result.run_dir / "ledger.json").read_text()))
    out = CliRunner().invoke(app, ["costs", "--by", "model", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    groups = {g["key"]: g for g in data["groups"]}
    for model in ("anthropic:claude-opus-4-5", "google:gemini-2.5-flash", "openai:gpt-5-mini"):
        runs = [ledger["by_model"][model] for ledger in ledgers]
        assert groups[model]["requests"] == sum(r["requests"] for r in runs)
        assert groups[model]["input_tokens"] == sum(r["input_tokens"] for r in runs)
        assert groups[model]["output_tokens"] == sum(r["output_tokens"] for r in runs)
        # exact: the per-request prices of every run's ledger entries, summed
        expected = sum((Decimal(e["usd"]) for ledger in ledgers for e in ledger["entries"] if e["model"] == model),
                       Decimal(0))
        assert Decimal(groups[model]["usd"]) == expected
    total = sum((Decimal(e["usd"]) for ledger in ledgers for e in ledger["entries"]), Decimal(0))
    assert Decimal(data["total"]["usd"]) == total
