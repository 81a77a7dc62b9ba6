"""The forgiving model schema and the merge rule."""

from __future__ import annotations

import pytest

from relaycode.review.findings import (
    Evidence,
    Finding,
    ModelFinding,
    ModelReview,
    consistent,
    majority,
    merge_findings,
    similar,
)


def f(model: str, start: int, end: int | None = None, *, severity: str = "major", category: str = "bug",
      message: str = "off by one in the loop bound", path: str = "a.py") -> Finding:
    return Finding(path=path, start_line=start, end_line=end or start, severity=severity,  # type: ignore[arg-type]
                   category=category, message=message, models=[model], confidence=0.5)  # type: ignore[arg-type]


def test_synonyms_and_sloppy_numbers_are_accepted() -> None:
    review = ModelReview.model_validate({"findings": [
        {"line": "12-14", "severity": "HIGH", "category": "logic", "message": "x"},
        {"line": "line 3", "severity": "critical", "category": "vulnerability", "message": "y"},
        {"line": 4, "severity": "whatever", "category": "strange"},
    ]})
    assert [(x.line, x.severity, x.category) for x in review.findings] == [
        (12, "major", "bug"), (3, "blocker", "security"), (4, "minor", "bug"),
    ]
    assert review.findings[2].message == ""


def test_schema_keeps_enums_for_constrained_decoding() -> None:
    schema = ModelReview.model_json_schema()
    item = schema["$defs"]["ModelFinding"]["properties"]
    assert item["severity"]["enum"] == ["blocker", "major", "minor", "nit"]
    assert set(item["category"]["enum"]) == {"bug", "security", "performance", "maintainability", "style"}
    assert schema["properties"]["findings"]["maxItems"] >= 5


def test_a_line_is_required() -> None:
    with pytest.raises(ValueError):
        ModelFinding.model_validate({"message": "no line"})


def test_duplicates_across_reviewers_merge_with_union_of_models() -> None:
    merged = merge_findings([f("m1", 10), f("m2", 12, 13, severity="minor"), f("m3", 40)], reviewers=3)
    assert [(m.start_line, m.end_line, m.models, m.confidence) for m in merged] == [
        (10, 13, ["m1", "m2"], pytest.approx(2 / 3, abs=1e-3)),
        (40, 40, ["m3"], pytest.approx(1 / 3, abs=1e-3)),
    ]
    assert merged[0].severity == "major"  # min_agree=1: the highest any reviewer gave


def test_adjacency_is_two_lines() -> None:
    assert len(merge_findings([f("m1", 10), f("m2", 12)], reviewers=2)) == 1
    assert len(merge_findings([f("m1", 10), f("m2", 15)], reviewers=2)) == 2
    assert len(merge_findings([f("m1", 10), f("m2", 15, path="b.py")], reviewers=2)) == 2


def test_different_category_merges_only_with_similar_message() -> None:
    a = f("m1", 10, category="bug", message="division by zero when the list is empty")
    b = f("m2", 10, category="performance", message="the list is copied on every call")
    c = f("m2", 11, category="security", message="Division by zero when list is empty")
    assert len(merge_findings([a, b], reviewers=2)) == 2
    assert len(merge_findings([a, c], reviewers=2)) == 1
    assert similar("a b c", "a b d") == 0.5


def test_min_agree_filters_and_sets_agreed_severity() -> None:
    findings = [f("m1", 5, severity="blocker"), f("m2", 5, severity="minor"), f("m3", 5, severity="nit"),
                f("m1", 30)]
    [merged] = merge_findings(findings, reviewers=3, min_agree=2)
    assert merged.models == ["m1", "m2", "m3"] and merged.start_line == 5
    assert merged.severity == "minor"  # two reviewers agree on at least minor; only one on blocker
    assert merged.confidence == 1.0
    assert merge_findings(findings, reviewers=3, min_agree=4) == []


def test_same_reviewer_twice_counts_once() -> None:
    [merged] = merge_findings([f("m1", 5), f("m1", 6)], reviewers=2, min_agree=1)
    assert merged.models == ["m1"] and merged.confidence == 0.5
    assert merge_findings([f("m1", 5), f("m1", 6)], reviewers=2, min_agree=2) == []


def test_lead_message_is_from_the_most_severe() -> None:
    merged = merge_findings([f("m1", 5, severity="nit", message="nit msg"), f("m2", 5, message="major msg")],
                            reviewers=2)
    assert merged[0].message == "major msg"


def _found(line: int, category: str = "bug", message: str = "wrong operator") -> Finding:
    return Finding(path="a.py", start_line=line, end_line=line, severity="major", category=category,
                   message=message, models=["m"])


def test_consistent_keeps_what_most_answers_raise_counting_each_answer_once() -> None:
    real, imagined = _found(10), _found(30, "performance", "slow loop")
    answers = [[real, imagined], [_found(11), _found(11, message="wrong operator again")], [_found(50, "style", "name")]]
    [kept] = consistent(answers, majority(len(answers)))
    # The member from the earliest answer represents the group; one answer raising it twice is one vote.
    assert (kept.start_line, kept.votes) == (10, 2)
    assert consistent(answers, 1) == sorted([kept, imagined.model_copy(update={"votes": 1}),
                                             _found(50, "style", "name").model_copy(update={"votes": 1})],
                                            key=lambda f: f.start_line)
    assert consistent([[real, real], [], []], 2) == []


def test_a_kept_finding_keeps_the_evidence_a_later_answer_gave_for_it() -> None:
    # With --evidence, the earliest answer may word the issue without a check while another answer
    # attached one: the vote keeps the wording and the check, or the checkable claim is lost.
    check = Evidence(call="f(3)", expected="6")
    answers = [[_found(10)], [_found(11).model_copy(update={"evidence": check})], []]
    [kept] = consistent(answers, majority(len(answers)))
    assert (kept.start_line, kept.votes, kept.evidence) == (10, 2, check)
    own = Evidence(call="f(1)", expected="2")
    [kept] = consistent([[_found(10).model_copy(update={"evidence": own})], answers[1]], 2)
    assert kept.evidence == own  # the earliest answer's own check stays


def test_majority_is_more_than_half() -> None:
    assert [majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_a_merged_finding_keeps_the_highest_vote_count() -> None:
    a, b = _found(10).model_copy(update={"votes": 2}), _found(10).model_copy(update={"models": ["n"], "votes": 3})
    [merged] = merge_findings([a, b], reviewers=2)
    assert merged.votes == 3
    assert merge_findings([_found(10)], reviewers=1)[0].votes is None
