"""Dollars as people read them: the one rule every report, message and table uses.

`$0` for nothing, four decimals below ten dollars (model requests cost fractions of a cent, and
`$0.00` would hide them), cents with thousands separators from ten dollars up. An unknown amount is
never shown as `$0`: it is the caller's word for unknown (`unknown`, `$?`).
"""

from __future__ import annotations

from decimal import Decimal


def usd_text(value: Decimal | float | str | None, *, unknown: str = "unknown") -> str:
    """`value` dollars as text (`$0`, `$0.0123`, `$1,234.56`), or `unknown` when it is None."""
    if value is None:
        return unknown
    amount = Decimal(str(value))
    if amount == 0:
        return "$0"
    return f"${amount:,.2f}" if abs(amount) >= 10 else f"${amount:.4f}"
