"""relay's rich Console: no terminal control that was in printed text reaches the output; rich's own do."""

from __future__ import annotations

import io
import re

import pytest
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from relaycode.termconsole import TerminalConsole

#: A clipboard write (OSC 52, ST-terminated), a screen clear, a C1 CSI and a BEL: what a terminal acts on.
ATTACK = "\x1b]52;c;Y3VybA==\x1b\\\x1b[2J\x9b2J\x07"
#: rich's own colours (SGR): the only escape sequences a printed line may carry.
SGR = re.compile(r"\x1b\[[0-9;]*m")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _console(width: int = 200) -> tuple[TerminalConsole, io.StringIO]:
    out = io.StringIO()
    return TerminalConsole(file=out, force_terminal=True, color_system="standard", width=width), out


def _controls(output: str) -> list[str]:
    return CONTROL.findall(SGR.sub("", output))


@pytest.mark.parametrize("how", ["markup", "plain", "table cell", "Text", "Markdown"])
def test_text_printed_in_any_form_reaches_the_terminal_without_its_controls(how: str) -> None:
    console, out = _console()
    text = f"pytest -q{ATTACK} done"
    if how == "markup":
        console.print(f"[red]$ {text}[/red]")
    elif how == "plain":
        console.print(text, markup=False)
    elif how == "table cell":
        table = Table("command")
        table.add_row(text)
        console.print(table)
    elif how == "Text":
        console.print(Text(text, style="bold"))
    else:
        console.print(Markdown(f"* {text}"))
    assert _controls(out.getvalue()) == [], repr(out.getvalue())
    assert "\\x1b]52;c;Y3VybA==\\x1b\\\\x1b[2J\\x9b2J" in SGR.sub("", out.getvalue())  # shown, as text


def test_rich_keeps_its_own_colours_and_live_cursor_controls(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.live import Live

    monkeypatch.setenv("TERM", "xterm-256color")
    console, out = _console()
    with Live("working", console=console, transient=True):
        console.print("[green]ok[/green]")
    assert "\x1b[32mok" in out.getvalue()  # a colour (a style, not text)
    assert "\x1b[?25l" in out.getvalue()  # the live display hid the cursor (a control segment, not text)


def test_strings_are_cleaned_before_rich_lays_them_out() -> None:
    # Each ESC is laid out as the four characters shown, not as the zero-width character it was: a line
    # that only fits when ESC has no width wraps, and no shown character is cut off at the edge.
    console, out = _console(width=40)
    console.print("a" * 30 + "\x1b" * 4 + "z", markup=False)
    assert "".join(out.getvalue().split("\n")) == "a" * 30 + "\\x1b" * 4 + "z"
