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


def row(kind: str, findings: list[dict[str, object]], name: str = "m1") -> dict[str, object]:
    system = {"findings": findings, "true": 0, "input_tokens": 10, "output_tokens": 5, "usd": "0", "seconds": 1.0,
              "failed": False, "evidence_seconds": 0.5}
    return {"case": "c", "path": "f.py", "kind": kind, "bug_lines": [10], "systems": {name: system}}


def fd(line: int, status: str = "unchecked", fix: bool | None = None) -> dict[str, object]:
    return {**finding(line).model_dump(mode="json"), "status": status, "fix_passes": fix}


def test_evidence_tallies_views_and_the_strict_score() -> None:
    from relaycode.review.evaluate import EvalRun

    run = EvalRun(["m1"], 1)
    # Buggy change 1: right line, confirmed (strictly true); wrong line, refuted.
    run.add_row(row("buggy", [fd(10, "confirmed"), fd(30, "refuted")]))
    # Buggy change 2: right line, unchecked, but its suggested fix passes the hidden tests (strictly true).
    run.add_row(row("buggy", [fd(11, "unchecked", fix=True)]))
    # Buggy change 3: right line, unchecked, no working fix: true on the line, not strictly.
    run.add_row(row("buggy", [fd(9, "unchecked", fix=False)]))
    # Clean changes: one refuted false alarm, one unchecked, one confirmed (a confirmed false alarm).
    run.add_row(row("clean", [fd(10, "refuted"), fd(20)]))
    run.add_row(row("clean", [fd(10, "confirmed")]))
    s = run.summary()["m1"]
    assert s["statuses_on_buggy"] == {"confirmed": 1, "refuted": 1, "unchecked": 2}
    assert s["statuses_on_clean"] == {"confirmed": 1, "refuted": 1, "unchecked": 1}
    every, kept, confirmed = (s["views"][v] for v in ("all", "kept", "confirmed"))
    assert (every["found"], every["true_findings"], every["findings_on_buggy"]) == (3, 3, 4)
    assert (every["strict_found"], every["strict_true"]) == (2, 2)
    assert every["strict_precision"] == 0.5 and every["false_alarms_per_clean"] == 1.5
    assert (kept["found"], kept["findings_on_buggy"], kept["false_alarms_per_clean"]) == (3, 3, 1.0)
    assert (confirmed["found"], confirmed["findings_on_buggy"], confirmed["strict_true"]) == (1, 1, 1)
    assert confirmed["false_alarms_per_clean"] == 0.5 and confirmed["strict_precision_all_changes"] == 0.5
    assert s["evidence_seconds_per_review"] == 0.5
    assert "| `m1` | confirmed | 1/3 |" in __import__("relaycode.review.evaluate", fromlist=["x"]).evidence_table(
        run.summary())


def test_fix_candidates_apply_suggestions_mechanically() -> None:
    from relaycode.review.evaluate import fix_candidates

    lines = ["def f(lo, hi):\n", "    while lo < hi:\n", "        lo += 1\n", "    return lo\n"]
    [changed] = fix_candidates("Change `lo < hi` to `lo <= hi`.", lines, 2, 2)[:1]
    assert changed[1] == "    while lo <= hi:\n" and changed[0] == lines[0] and len(changed) == 4
    [block] = fix_candidates("Use:\n```python\nwhile lo <= hi:\n    lo += 2\n```", lines, 2, 3)
    assert block[1:3] == ["    while lo <= hi:\n", "        lo += 2\n"]
    assert fix_candidates("Consider using dynamic programming instead.", lines, 2, 3) == []
    assert fix_candidates("`x`", lines, 9, 9) == []  # a line outside the file
    assert len(fix_candidates("`a` `b` `c` `d` `e`", lines, 2, 2, limit=3)) == 3


def test_remerge_and_weights_from_saved_rows() -> None:
    from relaycode.review.evaluate import ENSEMBLE, remerge, weights_from_eval
    from relaycode.review.weights import Weights

    prior = builtin_weights().default
    rows = []
    for n in range(6):
        r = row("buggy", [{**fd(10, "confirmed"), "models": ["m1"]}, {**fd(40), "models": ["m1"]}])
        r["systems"]["m2"] = {**r["systems"]["m1"], "findings": [{**fd(40), "models": ["m2"]}]}
        r["systems"][ENSEMBLE] = {**r["systems"]["m1"], "findings": []}
        r["case"] = f"c{n}"
        rows.append(r)
    w = weights_from_eval(rows, ["m1", "m2"], source="test", prior=prior)
    assert (w["m1"].confirmed, w["m1"].unchecked, w["m1"].refuted) == (1.0, 0.0, prior.refuted)  # refuted: too few
    assert w["m2"].unchecked == 0.0 and "unchecked 0/6" in w["m2"].source
    union = remerge(rows, ["m1", "m2"]).summary()[ENSEMBLE]
    assert union["findings_on_buggy"] == 12 and union["found"] == 6  # line 40 merged across m1 and m2
    weighted = remerge(rows, ["m1", "m2"], weights=Weights(default=prior, models=w), min_score=0.5).summary()
    assert weighted[ENSEMBLE]["findings_on_buggy"] == 6 and weighted[ENSEMBLE]["views"]["confirmed"]["found"] == 6


def builtin_weights():  # type: ignore[no-untyped-def]
    from relaycode.review.weights import builtin_weights as load

    return load()


@pytest.mark.sandbox
@pytest.mark.skipif(__import__("shutil").which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_review_case_runs_alone_with_evidence_and_hidden_tests(allow_model_requests: None) -> None:
    """review_case is a function of (case, reviewers, settings): evidence is checked against the case's
    base and changed file, and a suggested fix is tried against its hidden tests, all in the sandbox."""
    from relaycode.review.evaluate import ENSEMBLE, EvalSettings, review_case

    buggy = "def f(x):\n    return x - 1\n"
    fixed = "def f(x):\n    return x + 1\n"
    case = {"id": "t/f", "files": {"f.py": buggy}, "reference": {"f.py": fixed}, "bug_lines": {"f.py": [2]},
            "hidden_files": {"test_f.py": "from f import f\n\ndef test_f():\n    assert f(1) == 2\n"},
            "test_command": "python -m pytest -q -p no:cacheprovider test_f.py", "timeout_s": 60}

    def script(prompt: str, _info: object) -> dict[str, list[object]]:
        if "x - 1" not in prompt.split("CODE")[1]:
            return {"findings": [{"line": 2, "message": "fine?", "evidence": {"call": "f(1)", "expected": "2"}}]}
        return {"findings": [{"line": 2, "message": "should add", "suggestion": "Change `x - 1` to `x + 1`",
                              "evidence": {"call": "f(1)", "expected": "2"}}]}

    q05 = "local:qwen2.5-coder-0.5b"
    settings = EvalSettings(config(), evidence=True, weights=builtin_weights(), min_score=0.25)
    rows = asyncio.run(review_case(case, [q05], settings, new_session=lambda: ModelSession(
        config(), model_overrides={q05: reviewer(script)})))  # type: ignore[arg-type]
    buggy_row, clean_row = rows
    [b] = buggy_row["systems"][q05]["findings"]
    assert (b["status"], b["fix_passes"]) == ("confirmed", True)
    assert "f(1) returned 0, expected 2" in b["check"]
    [c] = clean_row["systems"][q05]["findings"]
    assert c["status"] == "refuted" and clean_row["systems"][ENSEMBLE]["findings"] == []  # dropped at 0.25



@pytest.mark.skipif(__import__("shutil").which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
@pytest.mark.parametrize(("suggestion", "passes"), [("`return x + 1`", True), ("`import os; os._exit(0)`", False)])
def test_a_suggested_fix_that_exits_0_mid_test_does_not_count_as_passing(suggestion: str, passes: bool) -> None:
    # A reviewer model's suggestion is model-written code: the hidden tests' verdict is the bench's rule
    # (bench/hidden.py), not an exit code it can fake.
    from relaycode.review.evaluate import EvalSettings, fix_passes

    buggy = "def f(x):\n    return x - 1\n"
    case = {"id": "t/f", "files": {"f.py": buggy}, "timeout_s": 60,
            "hidden_files": {"test_f.py": "from f import f\n\ndef test_f():\n    assert f(1) == 2\n"},
            "test_command": "python -m pytest -q -p no:cacheprovider test_f.py"}
    finding = {"suggestion": suggestion, "start_line": 2, "end_line": 2}
    settings = EvalSettings(config(), evidence=True, weights=builtin_weights(), min_score=0.25)
    assert fix_passes(case, "f.py", buggy, finding, settings) is passes

def test_remerge_keeps_a_members_passing_fix_for_the_strict_score() -> None:
    from relaycode.review.evaluate import ENSEMBLE, remerge

    r = row("buggy", [{**fd(10, fix=True), "models": ["m1"]}])
    r["systems"]["m2"] = {**r["systems"]["m1"], "findings": [{**fd(11), "models": ["m2"], "message": "other words"}]}
    r["systems"][ENSEMBLE] = {**r["systems"]["m1"], "findings": []}
    s = remerge([r], ["m1", "m2"]).summary()[ENSEMBLE]["views"]["all"]
    assert (s["findings_on_buggy"], s["strict_found"]) == (1, 1)


def test_sampled_reviewers_are_scored_by_their_vote_and_by_their_first_answers(allow_model_requests: None) -> None:
    from relaycode.review.core import ReviewResult
    from relaycode.review.evaluate import EvalRun, EvalSettings, first_answer_name

    q05 = "local:qwen2.5-coder-0.5b"
    lone = finding(2)  # raised by the first answer only: the vote dropped it
    result = ReviewResult(reviewers=[q05], per_reviewer={q05: []}, first_answers={q05: [lone]}, samples=3,
                          usage={q05: {"requests": 3, "input_tokens": 30, "output_tokens": 9, "wall_seconds": 1.5}})
    run = EvalRun([q05], 1)
    run.record("t/f", "f.py", "buggy", [2], result)
    run.record("t/f", "f.py", "clean", [2], result)
    s = run.summary()
    assert list(s) == [q05, first_answer_name(q05), "ensemble"]
    assert (s[q05]["found"], s[q05]["clean_findings"]) == (0, 0)
    single = s[first_answer_name(q05)]
    assert (single["found"], single["precision"], single["clean_findings"]) == (1, 1.0, 1)
    # Both are charged the same requests: the first answers came with the others.
    assert single["tokens_per_review"] == s[q05]["tokens_per_review"] == 39
    assert EvalSettings(samples=3).identity()["samples"] == 3 and "samples" not in EvalSettings().identity()

    # End to end: a sampled evaluation saves both systems in every row.
    buggy, fixed = "def f(x):\n    return x - 1\n", "def f(x):\n    return x + 1\n"
    cases = [{"id": "t/f", "files": {"f.py": buggy}, "reference": {"f.py": fixed}, "bug_lines": {"f.py": [2]}}]
    run = asyncio.run(evaluate(lambda: ModelSession(config(), model_overrides={q05: reviewer(flag_added())}), cases,
                               reviewers=[q05], settings=EvalSettings(samples=3)))
    assert all(set(row["systems"]) == {q05, first_answer_name(q05), "ensemble"} for row in run.reviews)
    assert run.summary()[q05]["found"] == 1 and run.summary()[q05]["clean_findings"] == 1  # 3 of 3 agree


def test_saved_rows_load_a_run_or_its_first_cases(tmp_path: Path) -> None:
    from relaycode.review.evaluate import saved_rows

    rows = [{"case": c, "kind": k} for c in ("a", "b", "c") for k in ("buggy", "clean")]
    path = tmp_path / "review_eval.json"
    path.write_text(json.dumps({"reviewers": ["m"], "reviews": rows}))
    assert saved_rows(path) == (["m"], rows)
    assert [r["case"] for r in saved_rows(path, 2)[1]] == ["a", "a", "b", "b"]
    path.write_text("{")
    with pytest.raises(UsageError, match="not a saved review-eval run"):
        saved_rows(path)
