"""Options and helpers shared by command modules. Imports only typer and the stdlib at top level."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from relaycode.config import Config
    from relaycode.errors import RelayError

ConfigOpt = typer.Option(None, "--config", "-c", help="Config file (TOML), layered over the preset, ~/.config/relay/config.toml and the repository's relay.toml (see `relay config show`).")
PresetOpt = typer.Option(None, "--preset", "-p", help="Built-in preset: local, local-noplan, local-cascade, local-sampled, local-1.5b-sampled, solo-local, smoke, api, solo.")
RepoOpt = typer.Option(Path("."), "--repo", "-r", help="The git repository to work on.")
JsonOpt = typer.Option(False, "--json", help="Print JSON on stdout.")


def load_config_or_exit(config_file: Path | None, preset: str | None, repo: Path | None) -> Config:
    """Load the config; a bad one is one line on stderr and exit 2."""
    from relaycode.config import load_config
    from relaycode.errors import RelayError

    try:
        config = load_config(config_file=config_file, preset=preset, repo=repo)
    except RelayError as exc:
        raise die(exc) from None
    for notice in config.notices:
        print_warning(notice)  # keys come from the repository's file
    return config


def die(exc: RelayError) -> typer.Exit:
    """Print a relay error on one line and return the Exit to raise (its exit code comes from its class).

    The one error helper of the CLI: `relay.cli.main` prints click's usage errors in the same style.
    """
    print_error(str(exc))
    return typer.Exit(code=exc.exit_code)


def print_error(message: str) -> None:
    """`relay: error: MESSAGE` on stderr: every error line of the CLI is printed here.

    Messages name paths, keys and commands that a repository, a PR or a model chose (a directory a test
    planted, named with an escape sequence): their terminal controls are shown as text, never sent.
    """
    typer.echo(f"relay: error: {_one_entry(message)}", err=True)


def print_warning(message: str) -> None:
    """`relay: warning: MESSAGE` on stderr, its terminal controls shown as text (see `print_error`)."""
    typer.echo(f"relay: warning: {_one_entry(message)}", err=True)


def _one_entry(message: str) -> str:
    """`message` cleaned of terminal controls, its continuation lines indented: a newline in a name
    the message quotes cannot start a line that reads as relay's own (`relay: ...`)."""
    from relaycode.termsafe import clean

    return "\n  ".join(clean(message).splitlines()) or clean(message)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
