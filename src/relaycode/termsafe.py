"""Text from repositories and models, made safe to print on a terminal.

A terminal acts on control bytes: ESC starts sequences that clear the screen, rewrite lines the
person already read (a plan's steps before they approve it), set the window title or write the
clipboard (OSC 52). Anything relay prints that a repository, a suite or a model wrote (plans,
findings, command output, config keys, file names) goes through `clean` first: C0 controls but tab
and newline, DEL and C1 controls become a visible `\\xNN`.

`clean` is applied where output reaches the terminal, not by each caller: relay's rich consoles are
`termconsole.TerminalConsole`s, which clean everything they print; `relay run`'s progress printer
cleans each line on whatever console it is given; the CLI's `relay: error:` and `relay: warning:`
lines are printed by `cli._common.print_error` / `print_warning`; the text reports (`relay runs show`,
review's Markdown) are cleaned whole.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """`text` with every terminal control character but tab and newline shown as `\\xNN`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
