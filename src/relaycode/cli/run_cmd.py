"""`relay run`, `relay plan`, `relay verify` and `relay demo`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from relaycode.cli import app
from relaycode.cli._common import ConfigOpt, JsonOpt, PresetOpt, RepoOpt, die, load_config_or_exit, print_json

if TYPE_CHECKING:
    from relaycode.config import Config
    from relaycode.pipeline import RunResult
    from relaycode.stages.plan import Plan

NoSandboxOpt = typer.Option(False, "--no-sandbox", help="Run commands on model-written code WITHOUT the sandbox.")
TraceOpt = typer.Option(None, "--trace", help="Export OpenTelemetry spans: otlp (OTEL_EXPORTER_OTLP_*) or file.")
YesOpt = typer.Option(False, "--yes", "-y", help="Do not ask to approve the plan.")


def _approve_interactively(plan: Plan, plan_path: Path) -> Plan | None:
    """Show the plan; approve, edit in $EDITOR (re-read after), or abort."""
    import os
    import shlex
    import subprocess

    from rich.console import Console
    from rich.markdown import Markdown

    from relaycode.stages.plan import Plan as PlanModel

    console = Console(stderr=True)
    while True:
        console.print(Markdown(plan.to_markdown()))
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
                console.print(f"[red]{exc}[/red]")


def _configure(config: Config, trace: str | None, no_sandbox: bool) -> Config:
    updates: dict[str, Any] = {}
    if trace:
        if trace not in ("otlp", "file", "off"):
            raise die(ValueError(f"--trace must be otlp, file or off, not {trace!r}"))
        updates["trace"] = config.trace.model_copy(update={"exporter": trace})
    if no_sandbox:
        updates["sandbox"] = config.sandbox.model_copy(update={"enabled": False})
    return config.model_copy(update=updates) if updates else config


def execute(
    *, task: str, repo: Path, config: Config, yes: bool, as_json: bool, plan_file: Path | None = None,
    resume: str | None = None, no_sandbox: bool = False, stop_after_plan: bool = False, base: str = "HEAD",
) -> RunResult:
    from rich.console import Console

    from relaycode.cli._render import Progress, cost_table
    from relaycode.errors import RelayError
    from relaycode.pipeline import RunOptions, run_task

    console = Console(stderr=True)
    if no_sandbox:
        console.print("[bold red]WARNING: --no-sandbox: model-written code runs with your user's full access.[/bold red]")
    interactive = sys.stdin.isatty() and not yes and config.stages.plan.approve
    options = RunOptions(
        repo=repo, task=task, config=config, yes=not interactive, plan_file=plan_file, run_id=resume,
        resume=resume is not None, no_sandbox=no_sandbox, on_event=Progress(console),
        approve=_approve_interactively if interactive else None, stop_after_plan=stop_after_plan, base=base,
    )
    try:
        result = run_task(options)
    except RelayError as exc:
        raise die(exc) from None
    if as_json:
        print_json(result.to_dict())
    else:
        cost_table(result.ledger, console)
        colour = {"succeeded": "green", "unverified": "yellow"}.get(result.status, "red")
        console.print(f"[bold {colour}]{result.status}[/bold {colour}]  branch {result.branch}  "
                      f"iterations {result.iterations}  run dir {result.run_dir}")
        overhead = max(0.0, result.wall_s - result.model_s)
        console.print(f"wall {result.wall_s:.1f}s, model {result.model_s:.1f}s, orchestration {overhead:.1f}s")
        if result.error:
            console.print(f"[red]{result.error}[/red]")
        if result.status == "unverified":
            console.print("[yellow]unverified: nothing this run could check would fail a wrong change "
                          f"(checks: {', '.join(result.checks) or 'none'}); review the change yourself[/yellow]")
    return result


def _exit_code(result: RunResult) -> int:
    # Unverified work is done, not failed: exit 0, and the status says what it is.
    return 0 if result.status in ("succeeded", "unverified") else 1


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
    cfg = _configure(load_config_or_exit(config, preset, repo), trace, no_sandbox)
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
    from rich.console import Console

    from relaycode.errors import RelayError
    from relaycode.sandbox import Limits, SandboxPolicy, require_sandbox
    from relaycode.stages.verify import detect_commands, project_env, run_verify
    from relaycode.workspace import open_repo

    cfg = load_config_or_exit(config, preset, repo)
    try:
        root = open_repo(repo).root
        policy = SandboxPolicy(enabled=cfg.sandbox.enabled and not no_sandbox, env_allow=tuple(cfg.sandbox.env_allow))
        require_sandbox(policy)
        commands = cfg.stages.verify.commands or detect_commands(root)
        limits = Limits(wall_s=cfg.stages.verify.timeout_s, memory_mb=cfg.sandbox.memory_mb,
                        max_procs=cfg.sandbox.max_procs)
        result = run_verify(root, commands, policy=policy, limits=limits,
                            venv=project_env(root, cfg.stages.verify.python))
    except RelayError as exc:
        raise die(exc) from None
    if as_json:
        print_json(result.to_dict())
    else:
        console = Console()
        if not commands:
            console.print("nothing to verify: no verify.commands configured and none detected")
        for cmd in result.results:
            mark = "[green]ok[/green]" if cmd.exit_code == 0 else f"[red]exit {cmd.exit_code}[/red]"
            console.print(f"$ {cmd.command}  {mark}  ({cmd.seconds:.1f}s)")
            for name in cmd.failing_tests:
                console.print(f"    [red]FAILED[/red] {name}")
    raise typer.Exit(0 if result.passed else 1)


@app.command("demo")
def demo(
    preset: str = typer.Option("local", "--preset", "-p", help="Preset to run the demo with."),
    as_json: bool = JsonOpt,
    keep: Path | None = typer.Option(None, "--dir", help="Create the sample repo here (default: a temp dir)."),
) -> None:
    """Create a sample repository with a real bug and run the whole pipeline on it (local models, no key)."""
    import tempfile

    from rich.console import Console

    from relaycode.config import load_config
    from relaycode.presets import demo_config
    from relaycode.testing.sample_repos import DEMO_TASK, make_demo_repo

    console = Console(stderr=True)
    root = keep or Path(tempfile.mkdtemp(prefix="relay-demo-")) / "shop"
    make_demo_repo(root)
    console.print(f"[bold]relay demo[/bold]: sample repository at {root}")
    console.print(f"task: {DEMO_TASK}")
    cfg = demo_config(load_config(preset=preset))  # seeded, several verified candidates per attempt
    result = execute(task=DEMO_TASK, repo=root, config=cfg, yes=True, as_json=as_json)
    if not as_json:
        console.print(f"see the change: git -C {root} diff main {result.branch}")
    raise typer.Exit(_exit_code(result))
