from __future__ import annotations

from decimal import Decimal

import genai_prices
import pytest

from relaycode.budget import BudgetGuard
from relaycode.config import config_from_dict, load_config
from relaycode.errors import BudgetExceeded, StepLimit
from relaycode.ledger import Ledger, LedgerEntry, Totals
from relaycode.models import resolve
from relaycode.pricing import Tokens, price_request, quote


def gp(model: str, provider: str, **usage: int) -> Decimal:
    return Decimal(genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=provider).total_price)


@pytest.mark.parametrize(
    ("spec", "model", "provider"),
    [
        ("anthropic:claude-opus-4-5", "claude-opus-4-5", "anthropic"),
        ("google:gemini-2.5-flash", "gemini-2.5-flash", "google"),
        ("openai:gpt-5-mini", "gpt-5-mini", "openai"),
        ("openrouter:z-ai/glm-4.6", "z-ai/glm-4.6", "openrouter"),
    ],
)
def test_price_matches_genai_prices_exactly(spec: str, model: str, provider: str) -> None:
    tokens = Tokens(input=12_345, output=678)
    assert price_request(spec, tokens) == gp(model, provider, input_tokens=12_345, output_tokens=678)


def test_cache_tokens_are_priced_at_cache_rates() -> None:
    tokens = Tokens(input=10_000, output=100, cache_read=5_000, cache_write=2_000)
    # Sonnet 4.5: $3/M input, $0.30/M cache read, $3.75/M cache write, $15/M output.
    expected = (Decimal(3_000) * 3 + Decimal(5_000) * Decimal("0.3") + Decimal(2_000) * Decimal("3.75") + 100 * 15) / 1_000_000
    assert price_request("anthropic:claude-sonnet-4-5", tokens) == expected


def test_tiers_are_per_request_not_per_total() -> None:
    # Gemini 2.5 Pro doubles its input price above 200k input tokens *per request*.
    small = Tokens(input=150_000, output=1_000)
    big = Tokens(input=250_000, output=1_000)
    p_small = price_request("google:gemini-2.5-pro", small)
    p_big = price_request("google:gemini-2.5-pro", big)
    assert p_small == gp("gemini-2.5-pro", "google", input_tokens=150_000, output_tokens=1_000)
    assert p_big == gp("gemini-2.5-pro", "google", input_tokens=250_000, output_tokens=1_000)
    assert p_big is not None and p_small is not None
    assert p_big / 250_000 > p_small / 150_000  # the big request crossed the threshold

    ledger = Ledger()
    for t, p in ((small, p_small), (small, p_small)):
        ledger.add(LedgerEntry("r", "implement", 0, "google:gemini-2.5-pro", "google", t, p, 1.0))
    # Two 150k requests stay at the low tier even though they sum to 300k tokens.
    assert ledger.total().usd == 2 * p_small
    assert ledger.total().usd != price_request("google:gemini-2.5-pro", small + small)


def test_local_models_cost_zero_but_keep_tokens() -> None:
    assert price_request("local:qwen2.5-coder-1.5b", Tokens(input=1000, output=1000)) == 0
    assert quote("local:qwen2.5-coder-1.5b").source == "local"  # type: ignore[union-attr]


def test_unknown_price_is_none_never_zero() -> None:
    assert price_request("openai:no-such-model-xyz", Tokens(input=10, output=10)) is None
    totals = Totals()
    totals.add(LedgerEntry("r", "review", 0, "openai:no-such-model-xyz", "openai", Tokens(10, 10), None, 0.1))
    totals.add(LedgerEntry("r", "review", 0, "openai:gpt-5-mini", "openai", Tokens(10, 10), Decimal("0.01"), 0.1))
    assert totals.usd_known is None
    assert totals.to_dict()["usd"] is None
    assert totals.unpriced == 1


def test_config_price_override() -> None:
    cfg = config_from_dict({
        "endpoints": {"box": {"base_url": "http://127.0.0.1:1/v1"}},
        "stages": {"implement": {"model": "box:m"}},
        "models": {"box:m": {"price": {"input_per_mtok": 1.5, "output_per_mtok": 4}}},
    })
    assert price_request("box:m", Tokens(input=1_000_000, output=500_000), cfg) == Decimal("3.5")


def test_ledger_sums_by_stage_model_attempt_and_round_trips() -> None:
    ledger = Ledger()
    rows = [
        ("plan", 0, "anthropic:claude-opus-4-5", Tokens(1000, 200)),
        ("implement", 1, "google:gemini-2.5-flash", Tokens(3000, 900)),
        ("implement", 2, "google:gemini-2.5-flash", Tokens(3500, 800, cache_read=1000)),
        ("review", 1, "openai:gpt-5-mini", Tokens(2000, 300)),
    ]
    for stage, attempt, spec, tokens in rows:
        ledger.add(LedgerEntry("r1", stage, attempt, spec, spec.split(":")[0], tokens, price_request(spec, tokens), 0.5))
    total = sum((price_request(s, t) or Decimal(0) for _, _, s, t in rows), Decimal(0))
    assert ledger.total().usd == total
    assert ledger.by_stage()["implement"].tokens == Tokens(6500, 1700, cache_read=1000)
    assert ledger.by_stage()["implement"].requests == 2
    assert set(ledger.by_model()) == {s for _, _, s, _ in rows}
    data = ledger.to_dict()
    assert data["by_attempt"]["implement#2"]["requests"] == 1
    again = Ledger.from_dict(data)
    assert again.total().usd == total and again.total().tokens == ledger.total().tokens


def _guard(budget: dict) -> BudgetGuard:
    cfg = load_config(preset="api")
    cfg = cfg.model_copy(update={"budget": type(cfg.budget).model_validate(budget)})
    return BudgetGuard(cfg, Ledger())


def test_budget_reserves_worst_case_before_request() -> None:
    guard = _guard({"run_usd": 0.05})
    # Opus: 1000 in + 1000 out worst case = $0.03; two in flight would be $0.06 > $0.05.
    first = guard.reserve("plan", resolve("anthropic:claude-opus-4-5"), 1000, 1000)
    with pytest.raises(BudgetExceeded, match="run budget"):
        guard.reserve("review", resolve("anthropic:claude-opus-4-5"), 1000, 1000)
    guard.release(first)
    guard.reserve("review", resolve("anthropic:claude-opus-4-5"), 1000, 1000)


def test_budget_counts_spend_and_stage_limits() -> None:
    guard = _guard({"stage_usd": {"review": 0.01}, "stage_requests": {"plan": 1}, "stage_tokens": {"implement": 5000}})
    guard.ledger.add(LedgerEntry("r", "review", 0, "openai:gpt-5-mini", "openai", Tokens(), Decimal("0.009"), 0))
    with pytest.raises(BudgetExceeded, match="review budget"):
        guard.reserve("review", resolve("openai:gpt-5-mini"), 1000, 1000)  # worst case $0.00225
    guard.ledger.add(LedgerEntry("r", "plan", 0, "anthropic:claude-opus-4-5", "anthropic", Tokens(1, 1), Decimal(0), 0))
    with pytest.raises(StepLimit, match="plan request limit"):
        guard.reserve("plan", resolve("anthropic:claude-opus-4-5"), 10, 10)
    guard.reserve("implement", resolve("google:gemini-2.5-flash"), 1000, 3000)
    with pytest.raises(StepLimit, match="implement token limit"):
        guard.reserve("implement", resolve("google:gemini-2.5-flash"), 500, 600)
