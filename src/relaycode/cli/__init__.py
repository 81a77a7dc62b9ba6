"""The `relay` command line. Thin: parse flags, call the library, print.

Each command group lives in its own module and imports what it needs inside
the command function, so `relay --help` and `relay --version` stay fast.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

import typer

from relaycode import __version__
from relaycode.errors import EXIT_INTERRUPTED, EXIT_USAGE, RelayError

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
    from relaycode.cli._common import print_error

    # typer (>= 0.29) carries its own copy of click; its exceptions are reached through its public ones.
    usage_error: type[Exception] = typer.BadParameter.__mro__[1]  # click's UsageError: bad option, ...
    click_error: type[Exception] = typer.BadParameter.__mro__[2]  # click's ClickException

    _register()
    # relay's terminal is relay's: pydantic-ai would otherwise print its first-run banner mid-run, naming
    # models by its own wire names (`openai:...` for a local model). Set in the environment rather than
    # on the pydantic_ai module so `relay --help` does not import it.
    os.environ.setdefault("PYDANTIC_AI_NO_BANNER", "1")
    # SIGTERM (kill, pkill, a CI timeout) ends relay like Ctrl-C: runs keep their files and the local
    # model servers relay started are stopped by their atexit hook. Python's default SIGTERM action
    # skips atexit, which left two llama-servers running after a killed review-eval.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # Not standalone: click's own usage errors come back here and are printed in relay's one-line
        # style, like every RelayError, instead of a box on a terminal and a paragraph elsewhere.
        code = app(args=argv, prog_name="relay", standalone_mode=False)
    except usage_error as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `relay` alone: its help
            typer.echo(ctx.get_help())
            sys.exit(EXIT_USAGE)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print_error(f"{_one_line(exc)}{where}")
        sys.exit(EXIT_USAGE)
    except click_error as exc:
        print_error(_one_line(exc))
        sys.exit(int(getattr(exc, "exit_code", 1)))
    except RelayError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("relay: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(exc: Exception) -> str:
    """click's message for `exc`, on one line."""
    return " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
