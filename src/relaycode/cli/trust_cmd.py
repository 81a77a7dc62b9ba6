"""`relay trust`: let one repository's relay.toml set what a repository config may not."""

from __future__ import annotations

from pathlib import Path

import typer

from relaycode.cli import app
from relaycode.cli._common import RepoOpt, die


@app.command("trust")
def trust_cmd(
    repo: Path = RepoOpt,
    revoke: bool = typer.Option(False, "--revoke", help="Forget this repository's relay.toml."),
) -> None:
    """Trust the repository's relay.toml as it is now (sandbox, endpoints, environment, budgets, prices).

    By default a repository's own relay.toml may not weaken the sandbox, choose where requests and
    keys go, pass environment variables through or raise a budget: those keys are ignored with a
    warning. Trusting records the file's sha256 in ~/.config/relay/trusted.json: an edited file is
    untrusted again until you run this once more. Read the file first.
    """
    from relaycode import trust
    from relaycode.config import RESTRICTED, read_toml, repo_config_path
    from relaycode.errors import RelayError, UsageError

    path = repo_config_path(repo.resolve())
    try:
        if path is None:
            raise UsageError(f"{repo / 'relay.toml'} does not exist: nothing to trust")
        if revoke:
            found = trust.revoke(path)
            typer.echo(f"{'no longer trusted' if found else 'was not trusted'}: {path}")
            return
        data = read_toml(path, repository=True)  # refuse links and malformed files before trusting
        digest = trust.trust(path)
    except RelayError as exc:
        raise die(exc) from None
    restricted = sorted({".".join(r) for r in RESTRICTED if r[0] in data})
    typer.echo(f"trusted: {path} (sha256 {digest[:12]}…)")
    if restricted:
        typer.echo(f"its restricted settings now apply: {', '.join(restricted)}")
