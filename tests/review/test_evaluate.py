"""review-eval pieces: suite loading, diffs of case files, true-finding matching, metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from relaycode.errors import UsageError
from relaycode.review.diff import parse_diff
from relaycode.review.evaluate import Tally, evaluate, load_suite, markdown_table, true_findings, unified_diff
from relaycode.review.findings import Finding
from relaycode.session import ModelSession

from .helpers import config, flag_added, reviewer


def finding(start: int, end: int | None = None, path: str = "f.py") -> Finding:
    return Finding(path=path, start_line=start, end_line=end or start, severity="major", category="bug",
                   message="m", models=["m1"])


def test_load_suite_keeps_bugfix_cases_and_limits(tmp_path: Path) -> None:
    suite = tmp_path / "s.jsonl"
    rows = [{"id": "a", "bug_lines": {"x.py": [1]}}, {"id": "b", "bug_lines": {}},
            {"id": "c", "bug_lines": {"y.py": [2]}}]
    suite.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert [c["id"] for c in load_suite(suite)] == ["a", "c"]
    assert [c["id"] for c in load_suite(suite, 1)] == ["a"]
    suite.write_text("{not json\n")
    with pytest.raises(UsageError, match=r"s\.jsonl:1: not JSON"):
        load_suite(suite)
    with pytest.raises(UsageError, match="cannot read"):
        load_suite(tmp_path / "missing.jsonl")


def test_unified_diff_without_final_newline_parses() -> None:
    [fd] = parse_diff(unified_diff("f.py", "a\nb", "a\nc"))
    assert fd.added_lines() == {2}
    assert [ln.no_newline for ln in fd.hunks[0].lines] == [False, True, True]


def test_true_findings_touch_a_bug_line_within_one() -> None:
    bugs = [10]
    assert true_findings([finding(9), finding(11), finding(5, 9), finding(12), finding(8)], "f.py", bugs) == 3
    assert true_findings([finding(10, path="g.py")], "f.py", bugs) == 0


def test_metrics() -> None:
    t = Tally(bugs=4, found=2, buggy_findings=8, true_findings=2, clean_changes=4, clean_findings=6,
              clean_flagged=3, reviews=8, usd=0.8, tokens=8000, seconds=16)
    s = t.summary()
    assert (s["recall"], s["precision"]) == (0.5, 0.25)
    assert s["f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert (s["false_alarms_per_clean"], s["clean_flagged_share"]) == (1.5, 0.75)
    assert (s["usd_per_review"], s["tokens_per_review"], s["seconds_per_review"]) == (0.1, 1000, 2)
    empty = Tally().summary()
    assert empty["recall"] is None and empty["precision"] is None and empty["f1"] == 0.0
    t.add_cost({"usd": None, "input_tokens": 1}, 1.0)
    assert t.summary()["usd_per_review"] is None  # an unpriced request makes the cost unknown, not $0
    assert "unknown" in markdown_table({"x": t.summary()})


def test_evaluate_with_scripted_reviewers(allow_model_requests: None) -> None:
    buggy = "def f(x):\n    return x - 1\n"
    fixed = "def f(x):\n    return x + 1\n"
    cases = [{"id": "t/f", "files": {"f.py": buggy}, "reference": {"f.py": fixed}, "bug_lines": {"f.py": [2]}}]
    q05, gpt = "local:qwen2.5-coder-0.5b", "openai:gpt-5-mini"

    def never(_p: str, _i: object) -> dict[str, list[object]]:
        return {"findings": []}

    models = {q05: reviewer(flag_added()), gpt: reviewer(never)}
    said: list[str] = []
    saved: list[int] = []
    run = asyncio.run(evaluate(lambda: ModelSession(config(), model_overrides=models), cases * 2,
                               checkpoint=lambda r: saved.append(len(r.reviews)), reviewers=[q05, gpt], progress=said.append))
    s = run.summary()
    assert (s[q05]["found"], s[q05]["precision"], s[q05]["false_alarms_per_clean"]) == (2, 1.0, 1.0)
    assert (s[gpt]["found"], s[gpt]["precision"], s[gpt]["false_alarms_per_clean"]) == (0, None, 0.0)
    assert saved == [2, 4]  # after every case
    assert s["ensemble"]["found"] == 2 and s["ensemble"]["reviews"] == 4
    assert s[gpt]["usd_per_review"] > 0 and s[q05]["usd_per_review"] == 0
    assert said[0].startswith("[1/2] t/f buggy: 1 true of 1 (") and said[1].startswith("[1/2] t/f clean: 1 false")
    assert [r["kind"] for r in run.to_dict()["reviews"]] == ["buggy", "clean", "buggy", "clean"]


def test_a_saved_run_resumes_to_the_same_tallies(tmp_path: Path, allow_model_requests: None) -> None:
    """Stop after the first case, resume from review_eval.json: only the rest is reviewed, and the
    tallies equal those of one uninterrupted run."""
    from relaycode.review.evaluate import EvalRun, save

    def case(n: int) -> dict[str, object]:
        buggy, fixed = f"def f(x):\n    return x - {n}\n", f"def f(x):\n    return x + {n}\n"
        return {"id": f"t/{n}", "files": {"f.py": buggy}, "reference": {"f.py": fixed}, "bug_lines": {"f.py": [2]}}

    cases = [case(1), case(2), case(3)]
    q05, gpt = "local:qwen2.5-coder-0.5b", "openai:gpt-5-mini"
    calls: list[str] = []

    def counting(_p: str, _i: object) -> dict[str, list[object]]:
        calls.append("gpt")
        return {"findings": []}

    models = {q05: reviewer(flag_added()), gpt: reviewer(counting)}

    def session() -> ModelSession:
        return ModelSession(config(), model_overrides=models)

    whole = asyncio.run(evaluate(session, cases, reviewers=[q05, gpt]))
    first = asyncio.run(evaluate(session, cases[:1], reviewers=[q05, gpt],
                                 resume=EvalRun([q05, gpt], 1, "s.jsonl", commit="aaa")))
    save(first, tmp_path)
    calls.clear()
    said: list[str] = []
    saved = EvalRun.resume(tmp_path / "review_eval.json", suite="s.jsonl", reviewers=[q05, gpt], min_agree=1,
                           commit="bbb")
    assert saved.cases_done == 1
    resumed = asyncio.run(evaluate(session, cases, reviewers=[q05, gpt], resume=saved, progress=said.append))
    assert len(calls) == 4 and not any("t/1" in m for m in said)  # cases 2 and 3, buggy and clean
    assert resumed.cases_done == 3 and [r["case"] for r in resumed.reviews] == [r["case"] for r in whole.reviews]
    assert resumed.commits() == {"aaa": 1, "bbb": 2}  # each row keeps the commit that reviewed it

    def counts(run: EvalRun) -> dict[str, dict[str, object]]:
        return {k: {m: v for m, v in s.items() if m != "seconds_per_review"} for k, s in run.summary().items()}

    assert counts(resumed) == counts(whole)
    with pytest.raises(UsageError, match="another evaluation"):
        EvalRun.resume(tmp_path / "review_eval.json", suite="s.jsonl", reviewers=[gpt], min_agree=1)
    with pytest.raises(UsageError, match="another evaluation"):
        EvalRun.resume(tmp_path / "review_eval.json", suite="other.jsonl", reviewers=[q05, gpt], min_agree=1)
