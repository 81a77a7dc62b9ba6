"""Terminal rendering for runs: live progress lines on stderr and the cost table at the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from rich.markup import escape

from relaycode.report import fmt_usd
from relaycode.termsafe import clean

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live
    from rich.table import Table

    from relaycode.ledger import Ledger


class Waiting:
    """The live line while a stage works: a spinner, what is running and the seconds it has taken so far.

    Rendered afresh at each refresh of the live display, so the seconds count up during a model call
    that prints nothing for half a minute (local models).
    """

    def __init__(self, label: str, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.spinner import Spinner

        self.label = clean(label)  # stage and model names; shown as text, not markup
        self.clock = clock
        self.started = clock()
        self.spinner = Spinner("dots", style="cyan")

    def text(self) -> str:
        return f"{self.label}  {self.clock() - self.started:.0f}s"

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        self.spinner.update(text=Text(self.text()))
        yield self.spinner


@contextmanager
def waiting(console: Console, label: str) -> Iterator[None]:
    """A live spinner line with elapsed seconds while the block runs, on a terminal only (not TERM=dumb)."""
    if not (console.is_terminal and not console.is_dumb_terminal):
        yield
        return
    from rich.live import Live

    with Live(Waiting(label), console=console, refresh_per_second=4, transient=True):
        yield


class Progress:
    """Prints one line per stage boundary, model call and command, with running totals.

    On a terminal (not TERM=dumb) a live line under them shows a spinner and the seconds the current
    stage has taken; elsewhere (a pipe, a log, a dumb terminal) there are only the plain lines.

    Its lines name commands from a repository's relay.toml and errors naming model-written paths and
    test output: every line is printed by `_print`, which shows their terminal controls as text on
    whatever console it is given (markup in them is escaped where the line is written).
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tokens = 0
        self.usd = Decimal(0)
        self.unpriced = False
        self.animated = console.is_terminal and not console.is_dumb_terminal
        self._live: Live | None = None

    def _wait(self, label: str) -> None:
        from rich.live import Live

        self.close()
        self._live = Live(Waiting(label), console=self.console, refresh_per_second=4, transient=True)
        self._live.start()

    def close(self) -> None:
        """Stop the live line (at a stage's end, and before anything else takes the terminal)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _print(self, markup: str) -> None:
        # The whole line, relay's markup included: what `clean` writes holds no `[`, `]` and does not end
        # in a backslash, so relay's markup and the escapes in the line mean the same after it.
        self.console.print(clean(markup))

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "stage_start":
            model = f" [dim]{escape(event['model'])}[/dim]" if event.get("model") else ""
            self._print(f"[bold cyan]▶ {event['stage']}[/bold cyan]{model}")
            if self.animated:
                self._wait(f"{event['stage']} {event.get('model') or ''}".strip())
        elif kind == "model_call":
            tokens = event["tokens"]
            self.tokens += tokens["input"] + tokens["output"]
            if event["usd"] is None:
                self.unpriced = True
            else:
                self.usd += Decimal(event["usd"])
            total = fmt_usd(self.usd) + ("+unknown" if self.unpriced else "")
            status = "" if event["outcome"] == "ok" else f" [red]{escape(event['outcome'])}[/red]"
            self._print(f"  {escape(event['model'])}: {tokens['input']}→{tokens['output']} tok, "
                        f"{event['seconds']:.1f}s{status}  [dim](run: {self.tokens:,} tok, {total})[/dim]")
        elif kind == "command":
            ok = "[green]ok[/green]" if event["exit_code"] == 0 else f"[red]exit {event['exit_code']}[/red]"
            timed = " [red]timed out[/red]" if event.get("timed_out") else ""
            self._print(f"  $ {escape(event['command'])}  {ok}{timed} ({event['seconds']:.1f}s)")
        elif kind == "escalate":
            self._print(f"[yellow]↑ escalating to {escape(event['to'])}[/yellow]")
        elif kind == "stage_end":
            self.close()
            if event.get("error"):
                self._print(f"  [red]{event['stage']} stopped: {escape(str(event['error']))}[/red]")
        elif kind == "run_end":
            self.close()


def cost_table(ledger: Ledger, console: Console, *, title: str = "cost by stage and model") -> None:
    """Tokens, dollars and seconds per stage and model, with a total row."""
    groups = ledger.by(lambda e: f"{e.stage}\0{e.model}")
    order = {"plan": 0, "implement": 1, "review": 2}
    rows: list[list[str]] = []
    for key in sorted(groups, key=lambda k: (order.get(k.split("\0")[0], 9), k)):
        stage, model = key.split("\0")
        t = groups[key]
        rows.append([model, stage, str(t.requests), f"{t.tokens.input:,}", f"{t.tokens.output:,}",
                     fmt_usd(t.usd_known), f"{t.seconds:.1f}"])
    total = ledger.total()
    rows.append(["total", "", str(total.requests), f"{total.tokens.input:,}", f"{total.tokens.output:,}",
                 fmt_usd(total.usd_known), f"{total.seconds:.1f}"])
    # The model names the row, so it comes first and is never cut.
    console.print(fitted_table(["model", "stage", "requests", "tokens in", "tokens out", "dollars", "model s"],
                               rows, title=title, right=range(2, 7), width=console.width, optional=(2, 6)))


def fitted_table(headers: list[str], rows: list[list[str]], *, width: int, title: str | None = None,
                 right: Collection[int] = (), shorten: Collection[int] = (), optional: Sequence[int] = ()) -> Table:
    """A table for a terminal `width` columns wide that never cuts the value naming a row.

    The first column (a run id, a model) never wraps and is never shortened: at 80 columns rich would
    otherwise end it in "…". Other cells wrap at spaces; the `shorten` columns (free text such as a task)
    stay on one line ending in "…"; when even that does not fit, the `optional` columns are left out, in
    that order. The `right` columns (numbers) are right-aligned. Cells are plain text, not markup; a row
    whose first cell is "total" is bold.
    """
    from rich.table import Table
    from rich.text import Text

    def least(i: int) -> int:
        if i == 0:
            return max(len(row[0]) for row in [headers, *rows])
        if i in shorten:
            return 12
        return max(len(word) for cell in [headers[i], *(row[i] for row in rows)] for word in cell.split() or [""])

    keep = list(range(len(headers)))
    for i in optional:
        if sum(least(k) + 3 for k in keep) + 1 <= width:
            break
        keep.remove(i)
    def natural(i: int) -> int:
        return max(len(row[i]) for row in [headers, *rows])

    # Free text gets what the other columns leave at their natural width (but at least its minimum).
    spare = width - 1 - sum(natural(k) + 3 for k in keep if k not in shorten) - 3 * len(set(shorten) & set(keep))
    natural_fits = sum(natural(k) + 3 for k in keep) + 1 <= width
    table = Table(title=title, title_justify="left")
    for i in keep:
        justify: Literal["left", "right"] = "right" if i in right else "left"
        if i in shorten:
            share = max(least(i), spare // max(1, len(set(shorten) & set(keep))))
            table.add_column(headers[i], justify=justify, no_wrap=True, overflow="ellipsis", min_width=least(i),
                             max_width=share)
        else:
            # When the natural widths do not fit, the headers wrap at their words (rich alone may leave
            # the table a column too wide and cut its right border).
            table.add_column(headers[i], justify=justify, no_wrap=i == 0, min_width=least(i),
                             max_width=None if i == 0 or natural_fits else least(i))
    for row in rows:
        style = "bold" if row and row[0] == "total" else ""
        table.add_row(*(Text(row[i], style=style) for i in keep))
    return table
