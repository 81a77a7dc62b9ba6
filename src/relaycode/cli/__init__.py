"""The `relay` command line. Thin: parse flags, call the library, print.

Each command group lives in its own module and imports what it needs inside
the command function, so `relay --help` and `relay --version` stay fast.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import typer

from relaycode import __version__
from relaycode.errors import RelayError

app = typer.Typer(
    name="relay",
    help="Run AI coding work as a multi-model pipeline: plan, implement, verify, review.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"relay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """relay: plan with one model, implement with another, verify with tools, review with others."""


def _register() -> None:
    # Each module adds its commands to `app` (or a sub-app) at import; these
    # modules import only typer and the standard library at top level.
    from relaycode.cli import commands  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `relay` console script."""
    _register()
    # SIGTERM (kill, pkill, a CI timeout) ends relay like Ctrl-C: runs keep their files and the local
    # model servers relay started are stopped by their atexit hook. Python's default SIGTERM action
    # skips atexit, which left two llama-servers running after a killed review-eval.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(args=argv, standalone_mode=True)
    except RelayError as exc:  # pragma: no cover - typer standalone mode exits before
        typer.echo(f"relay: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("relay: interrupted", err=True)
        sys.exit(130)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
