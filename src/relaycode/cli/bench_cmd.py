"""`relay bench SUITE` and `relay bench-report DIR`.

Only typer and the standard library at top level; the bench package is
imported inside the commands so `relay --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from relaycode.cli import app
from relaycode.cli._common import die


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


@app.command("bench")
def bench(
    suite: Annotated[Path, typer.Argument(help="A suite: one JSONL file or a directory of them.")],
    configs: Annotated[
        str, typer.Option("--configs", help="Comma-separated preset names or config file paths.")
    ] = "local",
    limit: Annotated[int | None, typer.Option("--limit", help="Run only the first N cases.")] = None,
    cases: Annotated[str | None, typer.Option("--cases", help="Comma-separated case ids to run.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Pairs run in parallel (local worker processes; "
                                      "with --executor ray and no --address, the local Ray instance's CPUs).")] = 1,
    repeat: Annotated[int, typer.Option("--repeat", help="Runs of each (case, config), each seeded on its own.")] = 1,
    executor: Annotated[str, typer.Option("--executor", help="Where pairs run: local or ray.")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="With --executor ray: a running cluster's "
                                                "address (default: start a local Ray instance for the run).")]
    = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("bench-out"),
    resume: Annotated[bool, typer.Option("--resume", help="Skip (case, config, repeat) pairs already in results.jsonl.")]
    = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the bench files of a non-empty --out.")] = False,
    no_sandbox: Annotated[
        bool, typer.Option("--no-sandbox", help="Run verify and hidden tests unsandboxed (not recommended).")
    ] = False,
    history: Annotated[bool, typer.Option("--history", help="Record each case's run in the history DB.")] = False,
) -> None:
    """Run every case of SUITE with each config; write results.jsonl, summary.json, report.md, pareto.png/html."""
    from relaycode.bench.executor import ExecutorSpec, executor_kind
    from relaycode.bench.report import write_reports
    from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
    from relaycode.bench.suite import load_suite, select_cases
    from relaycode.errors import RelayError

    try:
        spec = ExecutorSpec(kind=executor_kind(executor), jobs=jobs, address=address)
        chosen = select_cases(load_suite(suite), _split(cases), limit)
        options = BenchOptions(cases=chosen, configs=resolve_configs(_split(configs) or []), out=out, jobs=jobs,
                               repeat=repeat, executor=spec, resume=resume, force=force, no_sandbox=no_sandbox, history=history,
                               progress=sys.stderr, suite=str(suite))
        if no_sandbox:
            typer.echo("relay: warning: --no-sandbox: model-written code and hidden tests run unsandboxed", err=True)
        records = run_bench(options)
        paths = write_reports(out, records)
    except RelayError as exc:
        raise die(exc) from None
    for path in paths:
        typer.echo(str(path))


@app.command("bench-report")
def bench_report(
    out: Annotated[Path, typer.Argument(help="A bench output directory (with results.jsonl).")],
    price_as: Annotated[
        str | None,
        typer.Option(
            "--price-as",
            help="Re-price measured tokens per stage, e.g. plan=anthropic:claude-opus-4-5,"
            "implement=google:gemini-2.5-flash,review=openai:gpt-5-mini. Output is labelled ESTIMATE.",
        ),
    ] = None,
) -> None:
    """Re-render the reports of a bench from its results.jsonl (optionally re-priced as other models)."""
    from relaycode.bench.report import write_reports
    from relaycode.bench.results import read_records
    from relaycode.bench.stats import parse_price_as
    from relaycode.errors import RelayError, UsageError

    try:
        records = read_records(out / "results.jsonl")
        if not records:
            raise UsageError(f"{out}: no records in results.jsonl")
        mapping = parse_price_as(price_as) if price_as else None
        paths = write_reports(out, records, mapping)
    except RelayError as exc:
        raise die(exc) from None
    for path in paths:
        typer.echo(str(path))
