"""Stats: Wilson CI values, the paired table and McNemar p, the oracle, re-pricing arithmetic."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from relaycode.bench.stats import (
    config_summary,
    mcnemar_exact,
    oracle,
    paired,
    parse_price_as,
    reprice,
    wilson,
)
from relaycode.errors import UsageError


def rec(case: str, config: str, passed: bool, usd: str | None = "0", cpu: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"case": case, "config": config, "passed": passed, "usd": usd, "cpu_s": {"total": cpu},
            "wall_s": cpu * 2, "model_s": cpu, **extra}


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (0, 10, 0.0, 0.2775328),
    (5, 10, 0.2365931, 0.7634069),
    (8, 10, 0.4901625, 0.9433178),
    (10, 10, 0.7224672, 1.0),
    (1, 1, 0.2065493, 1.0),
])
def test_wilson_matches_published_values(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson(k, n)
    assert got[0] == pytest.approx(lo, abs=1e-7) and got[1] == pytest.approx(hi, abs=1e-7)


def test_wilson_edge_cases() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_mcnemar_exact() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 6) == pytest.approx(2 * (1 + 7) / 128)  # 0.125
    assert mcnemar_exact(6, 1) == mcnemar_exact(1, 6)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0


def test_paired_table_only_counts_common_cases() -> None:
    records = [
        rec("c1", "A", True), rec("c1", "B", True),    # both
        rec("c2", "A", True), rec("c2", "B", False),   # A only
        rec("c3", "A", False), rec("c3", "B", True),   # B only
        rec("c4", "A", True), rec("c4", "B", False),   # A only
        rec("c5", "A", False), rec("c5", "B", False),  # neither
        rec("c6", "A", True),                          # B never ran c6: not paired
    ]
    p = paired(records, "A", "B")
    assert (p.n, p.both, p.a_only, p.b_only, p.neither) == (5, 1, 2, 1, 1)
    assert p.p_value == pytest.approx(1.0)  # 2 vs 1 discordant: 2 * (1 + 3) / 8 = 1


def test_oracle_picks_cheapest_solver_then_less_compute() -> None:
    records = [
        rec("c1", "A", True, "0.30", cpu=5), rec("c1", "B", True, "0.10", cpu=9), rec("c1", "C", False, "0.01"),
        rec("c2", "A", True, "0", cpu=7), rec("c2", "B", True, "0", cpu=3), rec("c2", "C", True, "0", cpu=4),
        rec("c3", "A", False, "0.20"), rec("c3", "B", False, "0.05"), rec("c3", "C", False, "0.50"),
        rec("c4", "A", True, None), rec("c4", "B", True, "0.40"),  # unknown cost never wins
    ]
    o = oracle(records)
    assert o["chosen"] == {"c1": "B", "c2": "B", "c3": None, "c4": "B"}
    assert (o["n"], o["passed"], o["pass_rate"]) == (4, 3, 0.75)
    # c1 0.10 + c2 0 + c3 cheapest attempt 0.05 + c4 0.40
    assert o["usd_total"] == pytest.approx(0.55)
    assert o["usd_per_case"] == pytest.approx(0.55 / 4)
    assert o["wins"] == {"B": 3}


def test_config_summary_numbers() -> None:
    records = [
        rec("c1", "A", True, "0.25", cpu=2, stages={"plan": {"requests": 1, "input_tokens": 100, "output_tokens": 10},
                                                  "implement": {"requests": 2, "input_tokens": 300, "output_tokens": 30}}),
        rec("c2", "A", False, "0.15", cpu=4, timed_out=True, error_kind="budget",
            stages={"implement": {"requests": 1, "input_tokens": 200, "output_tokens": 20}}),
    ]
    s = config_summary(records)
    assert (s["n"], s["passed"], s["pass_rate"]) == (2, 1, 0.5)
    assert s["usd_total"] == pytest.approx(0.40) and s["usd_per_case"] == pytest.approx(0.20)
    assert s["usd_per_solved"] == pytest.approx(0.40)
    assert s["tokens_by_stage"] == {"plan": {"requests": 1, "input_tokens": 100, "output_tokens": 10},
                                    "implement": {"requests": 3, "input_tokens": 500, "output_tokens": 50}}
    assert s["tokens_per_case"] == 330
    assert s["compute_s_mean"] == 3 and s["wall_s_mean"] == 6 and s["compute_measure"] == "cpu"
    assert s["timed_out"] == 1 and s["errors"] == {"budget": 1}
    assert not s["zero_cost"]
    unknown = config_summary([*records, rec("c3", "A", True, None)])
    assert unknown["usd_total"] is None and unknown["usd_unknown_records"] == 1
    assert unknown["usd_priced_part"] == pytest.approx(0.40)
    assert config_summary([rec("c1", "L", True, "0")])["zero_cost"]


PRICE_AS = "plan=anthropic:claude-opus-4-5,implement=google:gemini-2.5-flash,review=openai:gpt-5-mini"


def test_reprice_per_request_exactly() -> None:
    mapping = parse_price_as(PRICE_AS)
    assert mapping == {"plan": "anthropic:claude-opus-4-5", "implement": "google:gemini-2.5-flash",
                       "review": "openai:gpt-5-mini"}
    record = rec("c1", "local", True, "0", requests=[
        {"stage": "plan", "input_tokens": 1000, "output_tokens": 200, "usd": "0"},
        {"stage": "implement", "input_tokens": 2000, "output_tokens": 400, "cache_read_tokens": 1500, "usd": "0"},
        {"stage": "implement", "input_tokens": 1000, "output_tokens": 0, "usd": "0"},
        {"stage": "review", "input_tokens": 4000, "output_tokens": 1000, "usd": "0"},
        {"stage": "summarise", "input_tokens": 10, "output_tokens": 10, "usd": "0.5"},  # unmapped: kept
    ])
    usd, per_request = reprice(record, mapping)
    # opus 4.5 $5/$25, gemini 2.5 flash $0.30/$2.50, gpt-5-mini $0.25/$2.00 per M; cache ignored (uncached input)
    expected = (Decimal(1000 * 5 + 200 * 25) + Decimal(3000) * Decimal("0.3") + Decimal(400) * Decimal("2.5")
                + Decimal(4000) * Decimal("0.25") + Decimal(1000 * 2)) / 1_000_000 + Decimal("0.5")
    assert usd == expected == Decimal("0.5149")
    assert per_request


def test_reprice_falls_back_to_stage_sums_and_unknown_stays_unknown() -> None:
    mapping = parse_price_as("implement=google:gemini-2.5-flash")
    record = rec("c1", "x", True, "0", stages={"implement": {"input_tokens": 1_000_000, "output_tokens": 0}})
    assert reprice(record, mapping) == (Decimal("0.3"), False)
    unknown = rec("c1", "x", True, None, requests=[{"stage": "review", "input_tokens": 1, "output_tokens": 1,
                                                    "usd": None}])
    assert reprice(unknown, mapping) == (None, True)


@pytest.mark.parametrize(("text", "message"), [
    ("plan", "expected STAGE=provider:model"),
    ("verify=openai:gpt-5-mini", "unknown stage 'verify'"),
    ("plan=nope:model", "unknown provider"),
    ("plan=openai:no-such-model-xyz", "no list price"),
    ("", "no STAGE=model"),
])
def test_bad_price_as(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_price_as(text)


def test_case_bootstrap_is_seeded_and_resamples_whole_cases() -> None:
    from relaycode.bench.stats import case_bootstrap

    cases = [[True, True, True], [False, False, False], [True, False, True], [False, True, False]]
    lo, hi = case_bootstrap(cases)
    assert (lo, hi) == case_bootstrap(cases)  # the same records, the same interval
    assert 0 <= lo < 0.5 < hi <= 1
    assert case_bootstrap([[True, True]] * 5) == (1.0, 1.0)  # every case always passes: no doubt left
    assert case_bootstrap([]) == (0.0, 1.0)
    # More cases with the same pass rate: a narrower interval.
    wide, narrow = case_bootstrap(cases), case_bootstrap(cases * 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_paired_compares_case_and_repeat_pairs() -> None:
    records = [
        {"case": "c", "config": "a", "repeat": 0, "passed": True},
        {"case": "c", "config": "a", "repeat": 1, "passed": False},
        {"case": "c", "config": "b", "repeat": 0, "passed": True},
        {"case": "c", "config": "b", "repeat": 1, "passed": True},
        {"case": "c", "config": "b", "repeat": 2, "passed": True},  # a has no repeat 2: not compared
    ]
    p = paired(records, "a", "b")
    assert (p.n, p.both, p.a_only, p.b_only, p.neither) == (2, 1, 0, 1, 0)


def test_first_attempt_is_a_pass_with_one_iteration_and_derived_for_older_records() -> None:
    from relaycode.bench.stats import first_attempt_passed, record_first_attempt_passed

    assert first_attempt_passed(True, 1) and not first_attempt_passed(True, 2) and not first_attempt_passed(False, 1)
    assert record_first_attempt_passed({"passed": True, "iterations": 1})
    assert not record_first_attempt_passed({"passed": True, "iterations": 3})
    assert not record_first_attempt_passed({"passed": True, "iterations": 1, "first_attempt_passed": False})
