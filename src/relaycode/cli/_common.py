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
    from relaycode.termsafe import clean

    for notice in config.notices:
        typer.echo(f"relay: warning: {clean(notice)}", err=True)  # keys come from the repository's file
    return config


def die(exc: RelayError) -> typer.Exit:
    """Print a relay error on one line and return the Exit to raise (its exit code comes from its class).

    The one error helper of the CLI: `relay.cli.main` prints click's usage errors in the same style.
    """
    typer.echo(f"relay: error: {exc}", err=True)
    return typer.Exit(code=exc.exit_code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
