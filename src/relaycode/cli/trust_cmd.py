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
    modified: bool = typer.Option(False, "--modified", help="Trust the file although it differs from the "
                                  "committed one (read `git diff relay.toml` first)."),
) -> None:
    """Trust the repository's relay.toml as it is now (sandbox, endpoints, environment, budgets, prices).

    By default a repository's own relay.toml may not weaken the sandbox, choose where requests and
    keys go, pass environment variables through or raise a budget: those keys are ignored with a
    warning. Trusting records the file's sha256 in ~/.config/relay/trusted.json: an edited file is
    untrusted again until you run this once more. Read the file first.
    """
    from relaycode import trust
    from relaycode.config import parse_toml, repo_config_path
    from relaycode.errors import RelayError, UsageError
    from relaycode.termsafe import clean

    path = repo_config_path(repo.resolve())
    try:
        if path is None:
            raise UsageError(f"{repo / 'relay.toml'} does not exist: nothing to trust")
        if revoke:
            found = trust.revoke(path)
            typer.echo(f"{'no longer trusted' if found else 'was not trusted'}: {path}")
            return
        raw = trust.read_repo_file(path)  # one read: the bytes checked, shown and trusted are the same
        data = parse_toml(raw, path)  # refuse links and malformed files before trusting
        if not modified and _differs_from_commit(path):
            # Commands run in this checkout (`relay verify` runs the repository's tests here) can rewrite
            # the file between the user reading it and trusting it.
            raise UsageError(f"{path} differs from the committed version (changed by you or by a command run "
                             "in this checkout): read `git diff relay.toml`, then `relay trust --modified`")
        digest = trust.trust(path, raw)
    except RelayError as exc:
        raise die(exc) from None
    typer.echo(f"trusted: {path} (sha256 {digest[:12]}…)")
    applied = [f"{key} = {value!r}" for key, value in _restricted_values(data)]
    if applied:
        typer.echo("its restricted settings now apply:\n  " + "\n  ".join(clean(a) for a in applied))


def _restricted_values(data: dict[str, object]) -> list[tuple[str, object]]:
    from relaycode.config import RESTRICTED, _flatten, _matches

    return [(".".join(path), value) for path, value in _flatten(data).items()
            if any(_matches(path, r) for r in RESTRICTED)]


def _differs_from_commit(path: Path) -> bool:
    """True when relay.toml is untracked or differs from HEAD (or git cannot tell)."""
    from relaycode.errors import RelayError
    from relaycode.workspace import open_repo

    try:
        repo = open_repo(path.parent)
    except RelayError:
        return True
    status = repo.git("status", "--porcelain", "--untracked-files=all", "--", str(path), check=False)
    return status.returncode != 0 or bool(status.stdout.strip())
