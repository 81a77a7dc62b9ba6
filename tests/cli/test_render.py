"""The live progress of a run: a spinner with elapsed seconds on a terminal, plain lines everywhere else."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from relaycode.cli._render import Progress, Waiting

CALL = {"kind": "model_call", "model": "local:qwen2.5-coder-1.5b", "tokens": {"input": 300, "output": 40},
        "usd": "0", "outcome": "ok", "seconds": 21.5}


def _run_events(progress: Progress) -> None:
    progress({"kind": "stage_start", "stage": "implement", "model": "local:qwen2.5-coder-1.5b"})
    live = progress._live is not None
    progress(CALL)
    progress({"kind": "stage_end", "stage": "implement", "model": None, "seconds": 21.6, "error": None})
    assert progress._live is None
    return live  # type: ignore[return-value]


def test_waiting_line_counts_the_seconds_of_the_stage() -> None:
    now = [100.0]
    waiting = Waiting("implement local:qwen2.5-coder-1.5b", clock=lambda: now[0])
    now[0] += 12.4
    assert waiting.text() == "implement local:qwen2.5-coder-1.5b  12s"
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=80).print(waiting)
    assert "implement local:qwen2.5-coder-1.5b  12s" in out.getvalue()


def test_a_terminal_gets_a_live_spinner_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    out = io.StringIO()
    progress = Progress(Console(file=out, force_terminal=True, width=80))
    assert _run_events(progress) is True
    assert "\x1b[?25l" in out.getvalue()  # the live display hid the cursor while it ran
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "local:qwen2.5-coder-1.5b: 300→40 tok, 21.5s" in plain


@pytest.mark.parametrize(("term", "terminal"), [("dumb", True), ("xterm-256color", False)])
def test_a_dumb_terminal_or_a_pipe_gets_plain_lines(monkeypatch: pytest.MonkeyPatch, term: str,
                                                    terminal: bool) -> None:
    monkeypatch.setenv("TERM", term)
    out = io.StringIO()
    progress = Progress(Console(file=out, force_terminal=terminal, width=80))
    assert _run_events(progress) is False
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("▶ implement local:qwen2.5-coder-1.5b") and "\x1b[?25l" not in out.getvalue()
    assert "300→40 tok, 21.5s" in lines[1] and len(lines) == 2


@pytest.mark.parametrize(("term", "terminal", "live"), [("xterm-256color", True, True), ("dumb", True, False),
                                                        ("xterm-256color", False, False)])
def test_waiting_block_is_live_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch, term: str, terminal: bool,
                                                  live: bool) -> None:
    from relaycode.cli._render import waiting

    monkeypatch.setenv("TERM", term)
    out = io.StringIO()
    with waiting(Console(file=out, force_terminal=terminal, width=80), "reviewing with m1"):
        pass
    assert ("\x1b[?25l" in out.getvalue()) is live
    assert ("reviewing with m1" in out.getvalue()) is live


def test_cost_table_at_80_columns_keeps_the_model_and_every_dollar() -> None:
    from decimal import Decimal

    from relaycode.cli._render import cost_table
    from relaycode.ledger import Ledger, LedgerEntry
    from relaycode.pricing import Tokens

    ledger = Ledger([LedgerEntry(run_id="r", stage="implement", attempt=1, model="local:qwen2.5-coder-1.5b",
                                 provider="local", tokens=Tokens(758, 217), usd=Decimal(0), seconds=488.0),
                     LedgerEntry(run_id="r", stage="review", attempt=1, model="openrouter:z-ai/glm-4.6",
                                 provider="openrouter", tokens=Tokens(12_000, 900), usd=Decimal("0.0123"),
                                 seconds=31.0)])
    out = io.StringIO()
    cost_table(ledger, Console(file=out, width=80))
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines), out.getvalue()
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert all(line.rstrip()[-1] in "┓┃┩│┘" for line in table), out.getvalue()  # not cropped at the right
    assert any("local:qwen2.5-coder-1.5b" in line and "488.0" in line for line in lines), out.getvalue()
    assert any("openrouter:z-ai/glm-4.6" in line and "$0.0123" in line for line in lines), out.getvalue()
    assert any(line.startswith("│ total") and "$0.0123" in line for line in lines), out.getvalue()


#: A clipboard write (OSC 52) and a screen clear, with rich markup beside them.
HOSTILE = "x\x1b]52;c;Y3VybA==\x1b\\\x1b[2J[bold]y"


@pytest.mark.parametrize("event", [
    {"kind": "stage_start", "stage": "implement", "model": HOSTILE},
    {**CALL, "model": HOSTILE, "outcome": HOSTILE},
    {"kind": "command", "command": HOSTILE, "exit_code": 1, "seconds": 0.1, "timed_out": True},
    {"kind": "escalate", "to": HOSTILE},
    {"kind": "stage_end", "stage": "verify", "error": HOSTILE},
], ids=lambda e: e["kind"])
def test_every_progress_line_shows_terminal_controls_as_text_on_any_console(event: dict[str, object]) -> None:
    # A verify command comes from a repository's relay.toml, an error names a model-written path: the
    # printer is safe on the plain rich Console a caller may give it, not only on relay's own.
    out = io.StringIO()
    progress = Progress(Console(file=out, force_terminal=True, width=200))
    progress.animated = False
    progress(event)
    printed = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # rich's own colours
    assert "\x1b" not in printed and "\\x1b]52;c;Y3VybA==" in printed
    assert "[bold]y" in printed  # markup in it is shown too, not applied


def test_the_waiting_line_shows_a_labels_controls_and_markup_as_text() -> None:
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=200).print(Waiting(f"implement {HOSTILE}", clock=lambda: 0.0))
    printed = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert "\x1b" not in printed and "\\x1b[2J[bold]y" in printed
