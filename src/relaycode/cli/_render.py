"""Terminal rendering for runs: live progress lines on stderr and the cost table at the end."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from relaycode.report import fmt_usd

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from relaycode.ledger import Ledger


class Progress:
    """Prints one line per stage boundary, model call and command, with running totals."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tokens = 0
        self.usd = Decimal(0)
        self.unpriced = False

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        c = self.console
        if kind == "stage_start":
            model = f" [dim]{event['model']}[/dim]" if event.get("model") else ""
            c.print(f"[bold cyan]▶ {event['stage']}[/bold cyan]{model}")
        elif kind == "model_call":
            tokens = event["tokens"]
            self.tokens += tokens["input"] + tokens["output"]
            if event["usd"] is None:
                self.unpriced = True
            else:
                self.usd += Decimal(event["usd"])
            total = fmt_usd(self.usd) + ("+unknown" if self.unpriced else "")
            status = "" if event["outcome"] == "ok" else f" [red]{event['outcome']}[/red]"
            c.print(f"  {event['model']}: {tokens['input']}→{tokens['output']} tok, {event['seconds']:.1f}s{status}"
                    f"  [dim](run: {self.tokens:,} tok, {total})[/dim]")
        elif kind == "command":
            ok = "[green]ok[/green]" if event["exit_code"] == 0 else f"[red]exit {event['exit_code']}[/red]"
            timed = " [red]timed out[/red]" if event.get("timed_out") else ""
            c.print(f"  $ {event['command']}  {ok}{timed} ({event['seconds']:.1f}s)")
        elif kind == "escalate":
            c.print(f"[yellow]↑ escalating to {event['to']}[/yellow]")
        elif kind == "stage_end" and event.get("error"):
            c.print(f"  [red]{event['stage']} stopped: {event['error']}[/red]")


def cost_table(ledger: Ledger, console: Console, *, title: str = "cost by stage and model") -> None:
    """Tokens, dollars and seconds per stage and model, with a total row."""
    groups = ledger.by(lambda e: f"{e.stage}\0{e.model}")
    order = {"plan": 0, "implement": 1, "review": 2}
    rows: list[list[str]] = []
    for key in sorted(groups, key=lambda k: (order.get(k.split("\0")[0], 9), k)):
        stage, model = key.split("\0")
        t = groups[key]
        rows.append([stage, model, str(t.requests), f"{t.tokens.input:,}", f"{t.tokens.output:,}",
                     fmt_usd(t.usd_known), f"{t.seconds:.1f}"])
    total = ledger.total()
    rows.append(["total", "", str(total.requests), f"{total.tokens.input:,}", f"{total.tokens.output:,}",
                 fmt_usd(total.usd_known), f"{total.seconds:.1f}"])
    console.print(fitted_table(["stage", "model", "requests", "tokens in", "tokens out", "dollars", "model s"],
                               rows, title=title, text_columns=2))


def fitted_table(headers: list[str], rows: list[list[str]], *, title: str | None = None,
                 text_columns: int = 1) -> Table:
    """A table that narrows by wrapping its headers and last text column, never by cutting a value.

    The first column names the row (a run id, a model): at 80 columns rich would otherwise end it in "…".
    Rows are plain text (no markup); the last row is bold when its first cell is "total".
    """
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        values = [row[i] for row in rows]
        widest = max((len(v) for v in values), default=1)
        numeric = i >= text_columns
        table.add_column(header, justify="right" if numeric else "left", overflow="fold",
                         min_width=widest if (numeric or i == 0) else None, no_wrap=numeric or i == 0)
    for row in rows:
        style = "bold" if row and row[0] == "total" else ""
        table.add_row(*(Text(cell, style=style) for cell in row))
    return table
