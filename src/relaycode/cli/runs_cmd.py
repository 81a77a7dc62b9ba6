"""`relay runs`: recent runs from the run history; `relay runs show RUN_ID` prints or writes a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from relaycode.cli import app
from relaycode.cli._common import JsonOpt, RepoOpt, print_json

if TYPE_CHECKING:
    from relaycode.history import History, RunRecord

runs_app = typer.Typer(help="Recent runs and their reports, from the run history.", invoke_without_command=True)
app.add_typer(runs_app, name="runs")


def _open_history() -> History:
    from relaycode.cli._common import die
    from relaycode.history import History, HistoryError

    try:
        return History.open()
    except HistoryError as exc:
        raise die(exc) from None


@runs_app.callback()
def runs(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs, newest first."),
    as_json: bool = JsonOpt,
) -> None:
    """List recent runs (newest first): status, cost, time and task."""
    if ctx.invoked_subcommand is not None:
        return
    with _open_history() as history:
        records = history.list_runs(limit)
    if as_json:
        print_json([r.to_dict() for r in records])
        return

    from datetime import datetime

    from relaycode.cli._render import fitted_table
    from relaycode.report import fmt_seconds, fmt_usd
    from relaycode.termconsole import TerminalConsole

    console = TerminalConsole()
    if not records:
        console.print("No runs in the run history yet.")
        return
    rows = []
    for r in records:
        started = datetime.fromtimestamp(r.started_at).strftime("%Y-%m-%d %H:%M")
        cost = "—" if r.status == "running" else fmt_usd(r.usd, r.unpriced_requests)
        requests = "—" if r.status == "running" else str(r.requests)  # totals are written when a run ends
        rows.append([r.run_id, r.kind, r.status, started, fmt_seconds(r.wall_s), requests, cost,
                     Path(r.repo).name if r.repo else "—", " ".join((r.task or "").split())])
    # The run id is what every other command takes: it is never cut; the task is shortened, then
    # repo, kind, requests and start time are left out on a narrow terminal (all are in --json).
    console.print(fitted_table(["run", "kind", "status", "started", "wall", "requests", "cost", "repo", "task"],
                               rows, width=console.width, right=(4, 5, 6), shorten=(8,), optional=(7, 1, 5, 3)))


def run_data(record: RunRecord, history: History) -> dict[str, Any]:
    """A run's report data: from its run directory when it still exists, else rebuilt from the history."""
    from relaycode.report import load_run, run_from_history

    data = load_run(Path(record.run_dir)) if record.run_dir else None
    if data is None:
        return run_from_history(record, history.calls(record.run_id))
    for key, value in (("status", record.status), ("repo", record.repo), ("config", record.config_name),
                       ("task", record.task), ("started_at", record.started_at), ("wall_s", record.wall_s)):
        if data.get(key) is None and value is not None:
            data[key] = value
    return data


@runs_app.command("show")
def show(
    run_id: str = typer.Argument(..., help="The run id (or a unique prefix of it)."),
    html: Path | None = typer.Option(None, "--html", help="Write the HTML report to this file instead of printing."),
    as_json: bool = JsonOpt,
) -> None:
    """Print a run's report (its report.md), its data as JSON with --json, or write the HTML report with --html FILE."""
    from relaycode.cli._common import die
    from relaycode.errors import UsageError
    from relaycode.report import render_html, render_markdown

    with _open_history() as history:
        record = history.get_run(run_id)
        if record is None:
            raise die(UsageError(f"no run {run_id!r} in the run history {history.path}; see `relay runs`"))
        data = run_data(record, history)
    if as_json:
        print_json(data)
        return
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(data), encoding="utf-8")
        typer.echo(f"wrote {html}")
        return
    from relaycode.termsafe import clean

    report_md = Path(record.run_dir) / "report.md" if record.run_dir else None
    if report_md is not None and report_md.is_file():
        text = report_md.read_text(encoding="utf-8")
    else:
        text = render_markdown(data)
    # A report quotes failing tests, findings and file names; the report.md on disk may come from another
    # relay (or be edited since): what reaches the terminal is cleaned here, whichever it is.
    typer.echo(clean(text), nl=False)


@runs_app.command("clean")
def clean(
    repo: Path = RepoOpt,
    keep: list[str] | None = typer.Option(None, "--keep", help="Keep this run (id or unique prefix); repeatable."),
    keep_succeeded: bool = typer.Option(False, "--keep-succeeded", help="Keep the runs that succeeded."),
    unfinished: bool = typer.Option(False, "--unfinished", help="Also remove interrupted and killed runs, "
                                    "which --resume could otherwise continue."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only list what would be removed."),
) -> None:
    """Remove the relay/* branches and worktrees of ended runs (their reports stay in the run directory).

    Only what relay made is touched: runs of this repository, never a branch checked out by you.
    """
    from relaycode.cli._common import die
    from relaycode.errors import RelayError
    from relaycode.runs_clean import decide, find_leftovers, remove
    from relaycode.workspace import open_repo

    try:
        git_repo = open_repo(repo)
        decisions = decide(find_leftovers(git_repo), keep=keep or (), keep_succeeded=keep_succeeded,
                           unfinished=unfinished)
        if not decisions:
            typer.echo("no relay runs with a branch or worktree in this repository")
        removed = 0
        for d in decisions:
            what = " and ".join(x for x in (d.run.branch, "worktree" if d.run.worktree else None) if x)
            if not d.remove:
                typer.echo(f"keep    {d.run.run_id}  {d.reason}")
                continue
            if not dry_run:
                remove(git_repo, d.run)
            removed += 1
            typer.echo(f"{'would remove' if dry_run else 'removed'} {d.run.run_id}  {d.reason}: {what}")
    except RelayError as exc:
        raise die(exc) from None
    if decisions:
        verb = "would remove" if dry_run else "removed"
        typer.echo(f"{verb} {removed} of {len(decisions)} runs' branches and worktrees")
