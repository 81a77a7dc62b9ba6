"""Merging by measured weights and evidence: the scoring math, group status, and the weights data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaycode.errors import UsageError
from relaycode.review.findings import STATUSES, Finding, Status, group_status, merge_findings
from relaycode.review.weights import ReviewerWeight, Weights, builtin_weights, load_weights, score, scorer

W = Weights(
    default=ReviewerWeight(unchecked=0.4, confirmed=0.9, refuted=0.05),
    models={"good": ReviewerWeight(unchecked=0.4, confirmed=0.95, refuted=0.05),
            "noisy": ReviewerWeight(unchecked=0.08, confirmed=0.9, refuted=0.02)},
)


def finding(model: str, status: Status = "unchecked", line: int = 5, check: str = "") -> Finding:
    return Finding(path="f.py", start_line=line, end_line=line, severity="major", category="bug",
                   message=f"bug by {model}", models=[model], status=status, check=check)


def test_score_is_noisy_or_of_each_reviewers_weight() -> None:
    assert score({"good": "unchecked"}, W) == 0.4
    assert score({"good": "unchecked", "noisy": "unchecked"}, W) == pytest.approx(1 - 0.6 * 0.92)
    assert score({"noisy": "confirmed"}, W) == 0.9
    assert score({"unknown-model": "unchecked"}, W) == 0.4  # the documented default
    assert score({}, W) == 0.0


STATUS = st.sampled_from(STATUSES)
CLAIMS = st.dictionaries(st.sampled_from(["good", "noisy", "other"]), STATUS, max_size=3)


@given(CLAIMS, st.sampled_from(["good", "noisy", "other"]), STATUS)
def test_score_properties(claims: dict[str, Status], extra: str, status: Status) -> None:
    s = score(claims, W)
    assert 0.0 <= s <= 1.0
    if extra not in claims:
        assert score({**claims, extra: status}, W) >= s  # another witness never lowers the score
    for spec, st_ in claims.items():
        if st_ != "confirmed":  # upgrading a claim to confirmed never lowers it
            assert score({**claims, spec: "confirmed"}, W) >= s


def test_one_confirmed_finding_beats_two_unchecked_ones() -> None:
    assert score({"noisy": "confirmed"}, W) > score({"good": "unchecked", "noisy": "unchecked"}, W)


def test_group_status() -> None:
    assert group_status([finding("a", "refuted"), finding("b", "confirmed", check="fail on the change")])[0] == "confirmed"
    assert group_status([finding("a", "refuted", check="passes"), finding("b", "refuted")])[0] == "refuted"
    status, decider, how = group_status([finding("a", "refuted", check="evidence passes on the change"), finding("b")])
    assert (status, decider) == ("unchecked", None) and how.startswith("1 of 2 claims refuted")


def test_weighted_merge_drops_what_scores_low_and_keeps_the_deciding_evidence() -> None:
    found = [finding("noisy", line=20),  # 0.08 alone: dropped at 0.25
             finding("good", "refuted", line=30, check="evidence passes on the change"),  # 0.05: dropped
             finding("noisy", "confirmed", line=40, check="fail on the change, passes on the base"),  # 0.9: kept
             finding("good", line=50), finding("noisy", "refuted", line=50)]  # good's unchecked stands: 0.4
    kept = merge_findings(found, reviewers=2, scorer=scorer(W), min_score=0.25)
    assert [(f.start_line, f.status, f.score) for f in kept] == [(40, "confirmed", 0.9), (50, "unchecked", 0.412)]
    assert kept[0].check == "fail on the change, passes on the base"
    everything = merge_findings(found, reviewers=2, scorer=scorer(W), min_score=0.0)
    assert len(everything) == 4 and [f.status for f in everything][1] == "refuted"  # kept and marked at 0
    assert all(f.score is None for f in merge_findings(found, reviewers=2))  # unweighted: as before


@given(st.lists(st.tuples(st.sampled_from(["good", "noisy"]), STATUS, st.integers(1, 30)), max_size=8),
       st.floats(0, 1))
def test_weighted_merge_properties(items: list[tuple[str, Status, int]], threshold: float) -> None:
    found = [finding(m, s, line) for m, s, line in items]
    kept = merge_findings(found, reviewers=2, scorer=scorer(W), min_score=threshold)
    assert all(f.score is not None and f.score >= threshold for f in kept)
    every = merge_findings(found, reviewers=2, scorer=scorer(W))
    assert len(kept) <= len(every)
    for f in every:  # confirmed only when a member's evidence reproduced (members lie within the merged range)
        members = [g for g in found if f.start_line <= g.start_line and g.end_line <= f.end_line]
        if f.status == "confirmed":
            assert any(g.status == "confirmed" for g in members)
        if f.status == "refuted":
            assert all(g.status == "refuted" for g in members if g.models[0] in f.models) and f.score is not None
            assert f.score <= 1 - (1 - 0.05) * (1 - 0.02) + 1e-9


def test_builtin_weights_cover_the_local_reviewers_and_say_where_they_come_from() -> None:
    weights = builtin_weights()
    for spec in ("local:qwen2.5-coder-1.5b", "local:qwen2.5-coder-0.5b"):
        assert spec in weights.models and weights.models[spec].source
    assert weights.default.source
    assert weights.for_model("openai:never-measured") == weights.default


def test_user_weights_override_per_model(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"models": {"local:qwen2.5-coder-0.5b": {"unchecked": 0.5, "confirmed": 0.99,
                                                                          "refuted": 0.0}}}))
    weights = load_weights(path)
    assert weights.for_model("local:qwen2.5-coder-0.5b").unchecked == 0.5
    assert "local:qwen2.5-coder-1.5b" in weights.models and weights.default == builtin_weights().default
    path.write_text('{"models": {"x": {"unchecked": 2}}}')
    with pytest.raises(UsageError, match=r"--weights .*w\.json: not a reviewer weights file"):
        load_weights(path)
    with pytest.raises(UsageError, match="--weights"):
        load_weights(tmp_path / "missing.json")
