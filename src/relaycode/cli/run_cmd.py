"""`relay run`, `relay plan`, `relay verify` and `relay demo`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from relaycode.cli import app
from relaycode.cli._common import (
    ConfigOpt,
    JsonOpt,
    PresetOpt,
    RepoOpt,
    die,
    load_config_or_exit,
    print_json,
)

if TYPE_CHECKING:
    from rich.console import Console

    from relaycode.config import Config
    from relaycode.pipeline import RunResult
    from relaycode.stages.plan import Plan

NoSandboxOpt = typer.Option(False, "--no-sandbox", help="Run commands on model-written code WITHOUT the sandbox.")
TraceOpt = typer.Option(None, "--trace", help="Export OpenTelemetry spans: otlp (OTEL_EXPORTER_OTLP_*) or file.")
YesOpt = typer.Option(False, "--yes", "-y", help="Do not ask to approve the plan.")


def _approve_interactively(plan: Plan, plan_path: Path) -> Plan | None:
    """Show the plan; approve, edit in $EDITOR (re-read after), or abort."""
    import os
    import subprocess

    from rich.markdown import Markdown
    from rich.markup import escape

    from relaycode.stages.plan import Plan as PlanModel
    from relaycode.termconsole import TerminalConsole
    from relaycode.termsafe import clean

    console = TerminalConsole(stderr=True)
    while True:
        # A plan is model text, cleaned before rich parses it: Markdown lays text out (and sends link
        # addresses) before the console sees it.
        console.print(Markdown(clean(plan.to_markdown())))
        choice = typer.prompt("approve, edit or abort? [a/e/q]", default="a", err=True).strip().lower()
        if choice in ("a", "approve", "y", "yes"):
            return plan
        if choice in ("q", "abort", "n", "no"):
            return None
        if choice in ("e", "edit"):
            editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
            subprocess.run([*shlex.split(editor), str(plan_path)], check=False)
            try:
                plan = PlanModel.from_markdown(plan_path.read_text(encoding="utf-8"), source=str(plan_path))
            except Exception as exc:  # keep asking: a person is editing
                console.print(f"[red]{escape(str(exc))}[/red]")


def _configure(config: Config, trace: str | None, no_sandbox: bool) -> Config:
    updates: dict[str, Any] = {}
    if trace:
        if trace not in ("otlp", "file", "off"):
            from relaycode.errors import UsageError

            raise die(UsageError(f"--trace {trace!r}: choose one of otlp, file, off"))
        updates["trace"] = config.trace.model_copy(update={"exporter": trace})
    if no_sandbox:
        updates["sandbox"] = config.sandbox.model_copy(update={"enabled": False})
    return config.model_copy(update=updates) if updates else config


def execute(
    *, task: str, repo: Path, config: Config, yes: bool, as_json: bool, plan_file: Path | None = None,
    resume: str | None = None, no_sandbox: bool = False, stop_after_plan: bool = False, base: str = "HEAD",
) -> RunResult:
    from relaycode.cli._render import Progress, cost_table
    from relaycode.errors import RelayError
    from relaycode.pipeline import RunOptions, run_task
    from relaycode.termconsole import TerminalConsole

    console = TerminalConsole(stderr=True)
    if no_sandbox or not config.sandbox.enabled:
        why = "--no-sandbox" if no_sandbox else f"sandbox.enabled = false ({config.origins.get('sandbox.enabled', 'config')})"
        console.print(f"[bold red]WARNING: the sandbox is OFF ({why}): model-written code runs with your user's "
                      "full access.[/bold red]")
    interactive = sys.stdin.isatty() and not yes and config.stages.plan.approve
    progress = Progress(console)
    options = RunOptions(
        repo=repo, task=task, config=config, yes=not interactive, plan_file=plan_file, run_id=resume,
        resume=resume is not None, no_sandbox=no_sandbox, on_event=progress,
        approve=_approve_interactively if interactive else None, stop_after_plan=stop_after_plan, base=base,
    )
    try:
        result = run_task(options)
    except RelayError as exc:
        raise die(exc) from None
    finally:
        progress.close()
    if as_json:
        print_json(result.to_dict())
    else:
        cost_table(result.ledger, console)
        colour = {"succeeded": "green", "unverified": "yellow"}.get(result.status, "red")
        # soft_wrap: a branch, path or command split over two lines cannot be copied.
        console.print(f"[bold {colour}]{result.status}[/bold {colour}]  branch {result.branch}  "
                      f"iterations {result.iterations}  run dir {result.run_dir}", soft_wrap=True)
        console.print(f"config: {config.source}", markup=False, soft_wrap=True, highlight=False)
        overhead = max(0.0, result.wall_s - result.model_s)
        console.print(f"wall {result.wall_s:.1f}s, model {result.model_s:.1f}s, orchestration {overhead:.1f}s")
        if result.status == "unverified":
            console.print("[yellow]unverified: nothing this run could check would fail a wrong change "
                          f"(checks: {', '.join(result.checks) or 'none'}); review the change yourself[/yellow]")
        if result.status != "interrupted":
            _print_outcome(result, console, plan_only=stop_after_plan)
    if result.status == "interrupted":
        # The exact command, so a person who pressed Ctrl-C can copy it (stderr: --json keeps stdout clean).
        command = f"relay run --resume {result.run_id} --repo {shlex.quote(str(repo.resolve()))}"
        if no_sandbox:  # a resumed run is sandboxed unless this is said again
            command += " --no-sandbox"
        typer.echo(f"relay: interrupted; run {result.run_id} is saved, continue it with: {command}", err=True)
    return result


def _print_outcome(result: RunResult, console: Console, *, plan_only: bool) -> None:
    """Why the run failed, or what it changed and how to take it (the same words as its report.md)."""
    from rich.markup import escape

    from relaycode.report import load_run, take_commands, why_failed

    data = load_run(result.run_dir) or {}
    for reason in why_failed(data):
        console.print(f"[red]{escape(reason)}[/red]", soft_wrap=True)
    for path, added, removed in data.get("diffstat") or []:
        console.print(f"  {escape(path)}  [green]+{added}[/green] [red]-{removed}[/red]", soft_wrap=True)
    for finding in (data.get("review") or {}).get("findings") or []:
        console.print(f"  finding: {finding.get('path')}:{finding.get('start_line')} "
                      f"[{finding.get('severity')}] {finding.get('message')}", markup=False, soft_wrap=True)
    if result.status == "succeeded" and not plan_only:
        commands = take_commands(data)
        if commands:
            console.print("look at the change:  " + commands[0], markup=False, soft_wrap=True)
            console.print("take it:             " + commands[1] + "   (or " + commands[2] + ")", markup=False,
                          soft_wrap=True)
    console.print(f"report: {result.run_dir / 'report.md'}", markup=False, soft_wrap=True)


def _run_settings(config: Config) -> dict[str, Any]:
    """What a resumed run must keep: the config without the per-invocation flags (--trace, --no-sandbox)."""
    data = config.public_dict()
    data.pop("trace", None)
    data.get("sandbox", {}).pop("enabled", None)
    return data


def _exit_code(result: RunResult) -> int:
    from relaycode.errors import EXIT_INTERRUPTED

    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    # Unverified work is done, not failed: exit 0, and the status says what it is.
    return 0 if result.status in ("succeeded", "unverified") else 1


def resume_config(repo: Path, run_id: str, config_file: Path | None, preset: str | None) -> Config:
    """The config a resumed run continues with: the one it started with, saved in its state.json.

    A different --config/--preset on resume would switch models and budgets in the middle of a run,
    so it is refused; the same one (or none) is fine.
    """
    from relaycode.config import config_from_dict
    from relaycode.errors import ConfigError, RelayError, UsageError
    from relaycode.runstore import RunStore, runs_dir_of
    from relaycode.workspace import open_repo

    try:
        store = RunStore.open(runs_dir_of(open_repo(repo).git_dir), run_id)
        saved = store.load_state().config
        if saved is None:  # a run from before configs were saved: only what the user says
            return load_config_or_exit(config_file, preset, repo)
        started_with = saved.get("preset") or "its own config"
        try:
            cfg = config_from_dict(saved, source=f"run {run_id} (state.json)")
        except ConfigError as exc:
            raise UsageError(f"run {run_id}: its saved config no longer loads ({exc}); start a new run") from None
    except RelayError as exc:
        raise die(exc) from None
    # The saved config holds what --no-sandbox and --trace made of it when the run started. Those are
    # said again (or not) on each invocation: a resumed run is sandboxed unless --no-sandbox is given now.
    cfg = cfg.model_copy(update={"sandbox": cfg.sandbox.model_copy(update={"enabled": True})})
    if config_file is not None or preset is not None:
        asked = load_config_or_exit(config_file, preset, repo)
        if _run_settings(asked) != _run_settings(cfg):
            flag = f"--config {config_file}" if config_file is not None else f"--preset {preset}"
            raise die(UsageError(f"{flag}: run {run_id} was started with {started_with} and resumes with it; "
                                 f"drop {flag.split()[0]} (or start a new run)"))
    return cfg


@app.command("run")
def run(
    task: str = typer.Argument("", help="What to do, in words."),
    repo: Path = RepoOpt,
    config: Path | None = ConfigOpt,
    preset: str | None = PresetOpt,
    yes: bool = YesOpt,
    as_json: bool = JsonOpt,
    plan: Path | None = typer.Option(None, "--plan", help="Start from this plan.md (skip the planner)."),
    resume: str | None = typer.Option(None, "--resume", help="Continue run RUN_ID from its last completed stage."),
    base: str = typer.Option("HEAD", "--base", help="Commit or branch to start the run's branch from."),
    no_sandbox: bool = NoSandboxOpt,
    trace: str | None = TraceOpt,
) -> None:
    """Plan, implement, verify and review TASK in a new worktree and branch; your checkout is not touched."""
    loaded = resume_config(repo, resume, config, preset) if resume else load_config_or_exit(config, preset, repo)
    cfg = _configure(loaded, trace, no_sandbox)
    result = execute(task=task, repo=repo, config=cfg, yes=yes, as_json=as_json, plan_file=plan, resume=resume,
                     no_sandbox=no_sandbox, base=base)
    raise typer.Exit(_exit_code(result))


@app.command("plan")
def plan_cmd(
    task: str = typer.Argument(..., help="What to do, in words."),
    repo: Path = RepoOpt,
    config: Path | None = ConfigOpt,
    preset: str | None = PresetOpt,
    yes: bool = YesOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Only plan: write plan.md / plan.json to the run dir and stop (then `relay run --plan FILE`)."""
    cfg = load_config_or_exit(config, preset, repo)
    result = execute(task=task, repo=repo, config=cfg, yes=yes, as_json=as_json, stop_after_plan=True)
    if not as_json:
        typer.echo(str(result.run_dir / "plan.md"))
    raise typer.Exit(_exit_code(result))


@app.command("verify")
def verify(
    repo: Path = RepoOpt,
    config: Path | None = ConfigOpt,
    preset: str | None = PresetOpt,
    as_json: bool = JsonOpt,
    no_sandbox: bool = NoSandboxOpt,
) -> None:
    """Run the verify stage alone on the repository as it is (same commands, same sandbox, no model)."""
    from relaycode.errors import RelayError
    from relaycode.sandbox import require_sandbox, settings_from_config
    from relaycode.stages.verify import detect_commands, project_env, run_verify
    from relaycode.termconsole import TerminalConsole
    from relaycode.workspace import open_repo

    cfg = load_config_or_exit(config, preset, repo)
    try:
        root = open_repo(repo).root
        policy, limits = settings_from_config(cfg, no_sandbox=no_sandbox)
        require_sandbox(policy)
        if not policy.enabled:
            typer.echo("relay: WARNING: the sandbox is OFF: the repository's commands run with your user's full "
                       "access", err=True)
        configured = cfg.stages.verify.commands
        commands = list(configured) if configured is not None else detect_commands(root)
        result = run_verify(root, commands, policy=policy, limits=limits,
                            venv=project_env(root, cfg.stages.verify.python))
    except RelayError as exc:
        raise die(exc) from None
    if as_json:
        print_json(result.to_dict())
    else:
        from rich.markup import escape

        console = TerminalConsole()
        if not commands:
            console.print("nothing to verify: no verify.commands configured and none detected")
        for cmd in result.results:
            mark = "[green]ok[/green]" if cmd.exit_code == 0 else f"[red]exit {cmd.exit_code}[/red]"
            console.print(f"$ {escape(cmd.command)}  {mark}  ({cmd.seconds:.1f}s)")
            for name in cmd.failing_tests:
                console.print(f"    [red]FAILED[/red] {escape(name)}")
    raise typer.Exit(0 if result.passed else 1)


@app.command("demo")
def demo(
    preset: str = typer.Option("local", "--preset", "-p", help="Preset to run the demo with."),
    as_json: bool = JsonOpt,
    keep: Path | None = typer.Option(None, "--dir", help="Create the sample repo here (default: a temp dir)."),
) -> None:
    """Create a sample repository with a real bug and run the whole pipeline on it (local models, no key)."""
    import tempfile

    from relaycode.config import load_config
    from relaycode.presets import demo_config
    from relaycode.termconsole import TerminalConsole
    from relaycode.testing.sample_repos import DEMO_TASK, make_demo_repo

    console = TerminalConsole(stderr=True)
    root = keep or Path(tempfile.mkdtemp(prefix="relay-demo-")) / "shop"
    make_demo_repo(root)
    console.print(f"[bold]relay demo[/bold]: sample repository at {root}")
    console.print(f"task: {DEMO_TASK}")
    cfg = demo_config(load_config(preset=preset))  # seeded, several verified candidates per attempt
    result = execute(task=DEMO_TASK, repo=root, config=cfg, yes=True, as_json=as_json)
    raise typer.Exit(_exit_code(result))
