"""dollars.py: the one way relay writes an amount of dollars."""

from __future__ import annotations

from decimal import Decimal

import pytest

from relaycode.dollars import usd_text


@pytest.mark.parametrize(("value", "text"), [
    (0, "$0"), (Decimal("0.0000"), "$0"),
    (Decimal("0.00524"), "$0.0052"), (0.5, "$0.5000"), ("0.00006", "$0.0001"),
    (9.99994, "$9.9999"), (10, "$10.00"), (Decimal("1234.567"), "$1,234.57"),
])
def test_amounts(value: Decimal | float | str, text: str) -> None:
    assert usd_text(value) == text


def test_unknown_is_never_zero() -> None:
    assert usd_text(None) == "unknown" and usd_text(None, unknown="$?") == "$?"


def test_reports_and_budget_messages_write_dollars_this_way() -> None:
    from relaycode.budget import BudgetGuard
    from relaycode.config import load_config
    from relaycode.errors import BudgetExceeded
    from relaycode.ledger import Ledger
    from relaycode.models import resolve
    from relaycode.report import fmt_usd
    from relaycode.review.formats import usd_text as review_usd

    assert review_usd is usd_text
    assert fmt_usd(Decimal("12.5")) == "$12.50" and fmt_usd(0) == "$0"
    cfg = load_config(preset="api")
    guard = BudgetGuard(cfg.model_copy(update={"budget": type(cfg.budget)(run_usd=0.05)}), Ledger())
    opus = resolve("anthropic:claude-opus-4-5")
    guard.reserve("plan", opus, 1000, 1000)  # worst case $0.03
    with pytest.raises(BudgetExceeded) as refused:
        guard.reserve("review", opus, 1000, 1000)
    assert "run budget $0.0500 would be exceeded: spent $0.0300" in str(refused.value)
