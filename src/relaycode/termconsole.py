"""The rich Console relay prints with: no terminal control from a repository, a PR or a model reaches the terminal.

Callers escape rich markup in what they did not write, but escaping markup leaves ESC alone, and every
caller had to remember `termsafe.clean` besides: a verify command from a repository's relay.toml, a
stage's error, a model's evidence claim, a PR's file names each once reached the terminal with an OSC 52
clipboard write in it. The rule is held here instead, where rich turns text into output: every string
printed (markup or not, table cells too) is cleaned before rich lays it out, so widths stay right, and
what arrives already built (a rich Text, Markdown) is cleaned segment by segment as it is rendered.
rich's own colours, cursor moves and live lines are styles and control segments, not text, and pass.

Kept apart from `termsafe` so that `termsafe.clean` (the CLI's error line) does not import rich.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.segment import Segment

from relaycode.termsafe import clean

if TYPE_CHECKING:
    from rich.console import ConsoleOptions, RenderableType
    from rich.text import Text


class TerminalConsole(Console):
    """A rich Console whose output carries no control character that was in the text it printed."""

    def render_str(self, text: str, **options: Any) -> Text:
        # Before markup is parsed and lines are wrapped: `\x1b` is laid out as the four characters shown.
        return super().render_str(clean(text), **options)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        # What was not a string (Text, Markdown, a table of Text cells): clean its text as it is rendered.
        for segment in super().render(renderable, options):
            yield segment if segment.control else Segment(clean(segment.text), segment.style)
