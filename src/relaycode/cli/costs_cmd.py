"""`relay costs`: what model requests cost, from the run history, grouped by stage, model, day or repo."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import typer

from relaycode.cli import app
from relaycode.cli._common import JsonOpt, print_json

if TYPE_CHECKING:
    from relaycode.history import CostRow

_GROUPS = ("stage", "model", "day", "repo")


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """`7d`, `12h`, `2w` (ago), or a date / date-time (`2025-06-01`, `2025-06-01T12:00`); None = all time."""
    if value is None or value.strip() in ("", "all"):
        return None
    now = now or datetime.now()
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now - {"h": timedelta(hours=amount), "d": timedelta(days=amount), "w": timedelta(weeks=amount)}[unit]
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: use a duration like 7d, 30d, 12h, 2w or a date like 2025-06-01", param_hint="--since"
        ) from None


def _usd(row: CostRow) -> str:
    from relaycode.report import fmt_usd

    return fmt_usd(row.usd, row.unpriced, row.usd_priced)


def _share(part: float, whole: float) -> str:
    from relaycode.report import fmt_pct

    return fmt_pct(part, whole)


@app.command("costs")
def costs(
    since: str | None = typer.Option(None, "--since", help="Only requests since: 7d, 30d, 12h, 2w, or a date (2025-06-01). Default: all."),
    by: str = typer.Option("stage", "--by", help="Group by stage, model, day or repo."),
    as_json: bool = JsonOpt,
) -> None:
    """What model requests cost: requests, tokens and dollars per group, from the run history."""
    from relaycode.cli._common import die
    from relaycode.history import History, HistoryError

    if by not in _GROUPS:
        raise typer.BadParameter(f"{by!r}: use one of {', '.join(_GROUPS)}", param_hint="--by")
    start = parse_since(since)
    try:
        with History.open() as history:
            rows = history.query_costs(since=start, by=by)  # type: ignore[arg-type]
            path = history.path
    except HistoryError as exc:
        raise die(exc) from None

    usd_all = float(sum(r.usd_priced for r in rows))
    tok_all = sum(r.tokens for r in rows)
    unpriced = sum(r.unpriced for r in rows)
    if as_json:
        data: dict[str, Any] = {
            "since": start.isoformat() if start else None, "by": by, "history": str(path),
            "groups": [r.to_dict() | {"share_usd": float(r.usd_priced) / usd_all if usd_all else None,
                                      "share_tokens": r.tokens / tok_all if tok_all else None} for r in rows],
            "total": {
                "requests": sum(r.requests for r in rows),
                "input_tokens": sum(r.input_tokens for r in rows),
                "output_tokens": sum(r.output_tokens for r in rows),
                "cache_read_tokens": sum(r.cache_read_tokens for r in rows),
                "cache_write_tokens": sum(r.cache_write_tokens for r in rows),
                "usd": None if unpriced else str(sum((r.usd_priced for r in rows), start=Decimal(0))),
                "usd_priced_part": str(sum((r.usd_priced for r in rows), start=Decimal(0))),
                "unpriced_requests": unpriced,
            },
        }
        print_json(data)
        return

    from relaycode.cli._render import fitted_table
    from relaycode.history import CostRow as Row
    from relaycode.report import fmt_int
    from relaycode.termconsole import TerminalConsole

    console = TerminalConsole()
    when = f"since {start:%Y-%m-%d %H:%M}" if start else "all time"
    if not rows:
        console.print(f"No model requests in the run history ({when}, {path}).")
        return
    table_rows = [
        [r.key, fmt_int(r.requests), fmt_int(r.input_tokens), fmt_int(r.output_tokens),
         fmt_int(r.cache_read_tokens), fmt_int(r.cache_write_tokens), _usd(r),
         "unknown" if r.unpriced and not r.usd_priced else _share(float(r.usd_priced), usd_all),
         _share(r.tokens, tok_all)]
        for r in rows
    ]
    total = Row("total", requests=sum(r.requests for r in rows), input_tokens=sum(r.input_tokens for r in rows),
                output_tokens=sum(r.output_tokens for r in rows),
                cache_read_tokens=sum(r.cache_read_tokens for r in rows),
                cache_write_tokens=sum(r.cache_write_tokens for r in rows),
                usd_priced=sum((r.usd_priced for r in rows), start=Decimal(0)), unpriced=unpriced)
    table_rows.append(["total", fmt_int(total.requests), fmt_int(total.input_tokens), fmt_int(total.output_tokens),
                       fmt_int(total.cache_read_tokens), fmt_int(total.cache_write_tokens), _usd(total),
                       "100%" if usd_all else "—", "100%" if tok_all else "—"])
    # The group (a model, a repo) names the row and is never cut; on a narrow terminal the cache and
    # share columns are left out (all are in --json).
    console.print(fitted_table(
        [by, "requests", "input", "output", "cache read", "cache write", "cost", "% cost", "% tokens"], table_rows,
        width=console.width, title=f"relay costs by {by}, {when}", right=range(1, 9), optional=(5, 4, 8, 7)))
    if unpriced:
        console.print(f"{unpriced} request(s) had no known price: their cost is unknown, not counted as $0.")
