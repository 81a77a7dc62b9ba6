"""benchmarks/candidate_oracle.py: every drawn candidate re-tested by the hidden tests, beside relay's choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_generated_checks_choice import script, scripted_bench

pytestmark = pytest.mark.sandbox


def test_each_candidate_is_judged_by_the_hidden_tests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [row] = script("candidate_oracle").analyse(*scripted_bench(tmp_path, monkeypatch))
    # Two agreeing wrong answers and one right one (the scripted model's order); the checks chose the right one.
    assert row["candidates"] == {"1": False, "2": False, "3": True}
    assert row["any"] is True and row["chosen"] is True and row["passed"] is True
