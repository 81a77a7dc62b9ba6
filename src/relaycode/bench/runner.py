"""Run a suite × configs × repeats: one fresh repo per pair, the pipeline, then the hidden tests.

A pair is (case, config, repeat). Layout of an output dir:

    DIR/results.jsonl            one record per finished pair (see `results`), written by this process alone
    DIR/bench.json               the invocations (suite, configs, cases, repeats, executor, relay version/commit)
    DIR/work/<config>/<case>/    repo/ (the case's starting files, one commit; the run's worktree lives in
                                 its git dir) and runs/ (the run's files); repeat k > 0 in `<case>@r<k>/`
    DIR/summary.json, report.md, pareto.png, pareto.html

Pairs run on an executor (`executor`: local processes or a Ray cluster); the
driver (this process) writes every record. Each pair's model requests carry a
seed derived from (case, config, repeat), so a rerun asks the same questions
with the same seeds. CPU accounting: see `cpu`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from relaycode import __version__
from relaycode.atomic import atomic_write
from relaycode.bench.cpu import CpuMeter, local_model_names
from relaycode.bench.results import PairKey, append_record, pair_key, prepare_out_dir, read_records
from relaycode.bench.stats import first_attempt_passed
from relaycode.bench.suite import Case, materialise, write_files
from relaycode.dollars import usd_text
from relaycode.errors import ConfigError, RelayError, UsageError

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from relaycode.bench.executor import ExecutorSpec
    from relaycode.config import Config

#: Version of the record layout in results.jsonl.
RECORD_SCHEMA = 1

#: Characters of the hidden-test output kept in a record.
TEST_OUTPUT_CHARS = 2000

#: Test doubles: called in the process that runs the case, with the case and the config name.
#: Must be picklable when pairs run in other processes (a module-level function).
OverridesFactory = Callable[[Case, str], "Mapping[str, Model] | None"]


@dataclass(frozen=True)
class BenchConfig:
    """A config under test: `name` labels its records (preset name or config file stem)."""

    name: str
    config: Config
    source: str


def resolve_configs(specs: Sequence[str]) -> list[BenchConfig]:
    """Preset names or config file paths → configs; labels must be unique."""
    from relaycode.config import load_config
    from relaycode.presets import PRESETS

    out: list[BenchConfig] = []
    for spec in (s.strip() for s in specs):
        if not spec:
            continue
        path = Path(spec).expanduser()
        if spec in PRESETS and not path.is_file():
            out.append(BenchConfig(spec, load_config(preset=spec), f"preset {spec}"))
        elif path.is_file() or spec.endswith(".toml"):
            out.append(BenchConfig(path.stem, load_config(config_file=path), str(path)))
        else:
            raise UsageError(f"--configs: {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a config file")
    if not out:
        raise UsageError("--configs: no config given")
    names = [c.name for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"--configs: more than one config is named {', '.join(dupes)}; rename a config file")
    return out


def slug(text: str) -> str:
    """A directory name for a case id or config name (`quixbugs/bitcount` → `quixbugs__bitcount`)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "__", text).strip(".")
    return s or "_"


# ---------------------------------------------------------------- relay identity


def relay_commit() -> str | None:
    """The git commit of the relay source tree running now (`+dirty` if it has changes), if any."""
    src = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


# ---------------------------------------------------------------- one case


@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs to run one (case, config, repeat); picklable."""

    case: Case
    config: BenchConfig
    work: Path
    repeat: int = 0
    seed: int | None = None
    """The seed of the pair's model requests (`Config.seed` for its run); None keeps the config's."""
    no_sandbox: bool = False
    history: bool = False
    overrides: OverridesFactory | None = None
    relay_commit: str | None = None
    shared_servers: bool = False

    @property
    def key(self) -> PairKey:
        return (self.case.id, self.config.name, self.repeat)


def pair_seed(case_id: str, config_name: str, repeat: int, base: int | None = None) -> int:
    """A stable seed for a pair (31 bits: every server takes it). `base` (the config's own seed) shifts them all."""
    text = f"{base or 0}\0{case_id}\0{config_name}\0{repeat}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def pair_work_dir(out: Path, case_id: str, config_name: str, repeat: int) -> Path:
    """The pair's dirs; repeat 0 keeps the layout of benches that had no repeats."""
    name = slug(case_id) + (f"@r{repeat}" if repeat else "")
    return out / "work" / slug(config_name) / name


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _ledger_fields(ledger: Any) -> dict[str, Any]:
    stages = {}
    for stage, t in ledger.by_stage().items():
        stages[stage] = {
            "requests": t.requests,
            "input_tokens": t.tokens.input,
            "output_tokens": t.tokens.output,
            "usd": None if t.unpriced else str(t.usd),
            "model_s": round(t.seconds, 3),
        }
    requests = [
        {
            "stage": e.stage,
            "model": e.model,
            "attempt": e.attempt,
            "input_tokens": e.tokens.input,
            "output_tokens": e.tokens.output,
            "cache_read_tokens": e.tokens.cache_read,
            "cache_write_tokens": e.tokens.cache_write,
            "usd": None if e.usd is None else str(e.usd),
            "seconds": round(e.seconds, 3),
            "outcome": e.outcome,
        }
        for e in ledger.entries
    ]
    total = ledger.total()
    usd = total.usd_known
    return {
        "usd": None if usd is None else str(usd),
        "tokens": {"input": total.tokens.input, "output": total.tokens.output},
        "stages": stages,
        "requests": requests,
    }


def _run_hidden_tests(case: Case, worktree: Path, config: Config, no_sandbox: bool) -> dict[str, Any]:
    """Add the hidden files to the final worktree and run the case's test command in the sandbox."""
    from relaycode.bench.hidden import restore_harness, verdict_for
    from relaycode.sandbox import run as sandbox_run
    from relaycode.sandbox import settings_from_config
    from relaycode.stages.verify import tool_env

    shipped = {**case.files, **case.hidden_files}
    write_files(worktree, {**restore_harness(worktree, shipped), **case.hidden_files})
    verdict = verdict_for(case.test_command)
    policy, limits = settings_from_config(config, no_sandbox=no_sandbox)
    limits = dataclasses.replace(limits, wall_s=case.timeout_s)  # the case's own limit for its hidden tests
    # `python` in a test command must be relay's interpreter (pytest is a dependency of relay, and
    # preflight_test_tools checks it), not whatever is first on PATH: the same tool env as verify.
    env, policy = tool_env(None, policy)
    done = sandbox_run(verdict.command, worktree, policy=policy, limits=limits, extra_env=env, stdin=verdict.stdin)
    return {
        "passed": not done.timed_out and verdict.passed(done.exit_code, done.output_tail),
        "test_exit_code": done.exit_code,
        "timed_out": done.timed_out,
        "test_s": done.seconds,
        "test_output_tail": done.output_tail[-TEST_OUTPUT_CHARS:],
        "test_sandboxed": done.sandboxed,
    }


def base_record(job: CaseJob) -> dict[str, Any]:
    """A pair's record before anything ran: the fields every record has, as a failure with no result."""
    case, bc = job.case, job.config
    return {
        "schema": RECORD_SCHEMA,
        "case": case.id,
        "suite": case.suite,
        "kind": case.kind,
        "config": bc.name,
        "config_source": bc.source,
        "repeat": job.repeat,
        "seed": job.seed,
        "passed": False,
        "first_attempt_passed": False,
        "status": "error",
        "run_id": None,
        "iterations": 0,
        "verify_passed": None,
        "findings": 0,
        "usd": "0",
        "tokens": {"input": 0, "output": 0},
        "stages": {},
        "requests": [],
        "wall_s": 0.0,
        "model_s": 0.0,
        "run_wall_s": 0.0,
        "test_s": 0.0,
        "models_used": [],
        "escalations": [],
        "malformed_outputs": 0,
        "error": None,
        "error_kind": None,
        "test_exit_code": None,
        "timed_out": False,
        "test_output_tail": "",
        "relay_version": __version__,
        "relay_commit": job.relay_commit,
    }


def harness_error_record(job: CaseJob, error_kind: str, message: str) -> dict[str, Any]:
    """The record of a pair the harness could not run to the end (e.g. its worker kept dying)."""
    now = _now()
    return {**base_record(job), "error": message, "error_kind": error_kind, "cpu_s": None,
            "started_at": now, "ended_at": now}


def run_case(job: CaseJob) -> dict[str, Any]:
    """Run one (case, config, repeat) end to end and return its record. Never raises for a case's own failure."""
    from relaycode.pipeline import RunOptions, run_task

    case, bc = job.case, job.config
    config = bc.config if job.seed is None else bc.config.model_copy(update={"seed": job.seed})
    started = _now()
    t0 = time.perf_counter()
    meter = CpuMeter(local_model_names(bc.config))
    record = base_record(job)
    if job.work.exists():
        shutil.rmtree(job.work)  # left by a killed run: start the pair from scratch
    repo = job.work / "repo"
    try:
        materialise(case, repo)
        overrides = job.overrides(case, bc.name) if job.overrides is not None else None
        result = run_task(RunOptions(repo=repo, task=case.instruction, config=config, yes=True,
                                     no_sandbox=job.no_sandbox, model_overrides=overrides,
                                     runs_dir=job.work / "runs", history=job.history))
        if result.error_kind == "interrupted":
            # The pipeline turns Ctrl-C into an "aborted" run; for the bench it means stop, and the
            # pair must not be recorded as a failure (resume will redo it).
            raise KeyboardInterrupt
        record.update(
            status=result.status, run_id=result.run_id, iterations=result.iterations,
            verify_passed=result.verify_passed, verify_checks=list(result.checks), findings=result.findings,
            models_used=list(result.models_used), escalations=list(result.escalations),
            malformed_outputs=result.malformed_outputs, error=result.error, error_kind=result.error_kind,
            model_s=round(result.model_s, 3), run_wall_s=round(result.wall_s, 3), **_ledger_fields(result.ledger),
        )
        # Whatever the run's status, the final code is what counts: a "failed" run may still pass.
        if Path(result.worktree).is_dir():
            record.update(_run_hidden_tests(case, Path(result.worktree), config, job.no_sandbox))
        else:
            record["error"] = record["error"] or "the run left no worktree"
        record["first_attempt_passed"] = first_attempt_passed(bool(record["passed"]), result.iterations)
    except RelayError as exc:
        record.update(error=str(exc), error_kind=f"bench_{type(exc).__name__}")
    except Exception as exc:  # a bug must cost one record, not the whole bench
        record.update(error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}",
                      error_kind="bench_exception")
    record["wall_s"] = round(time.perf_counter() - t0, 3)
    record["cpu_s"] = dict(meter.stop(shared_servers=job.shared_servers))
    record["started_at"] = started
    record["ended_at"] = _now()
    return record


# ---------------------------------------------------------------- the bench


@dataclass
class BenchOptions:
    cases: Sequence[Case]
    configs: Sequence[BenchConfig]
    out: Path
    jobs: int = 1
    repeat: int = 1
    """Runs of each (case, config): repeat k of a pair is (case, config, k), with its own seed."""
    executor: ExecutorSpec | None = None
    """Where pairs run; None: the local executor with `jobs` workers."""
    resume: bool = False
    force: bool = False
    no_sandbox: bool = False
    history: bool = False
    """Record each case's run in relay's history DB (off: a bench would flood it)."""
    model_overrides: OverridesFactory | None = None
    progress: TextIO | None = field(default=None)
    suite: str = ""
    """The suite path, for bench.json."""
    start_servers: bool = True
    """Start the configs' local model servers once, before the cases (workers then share them)."""

    def executor_spec(self) -> ExecutorSpec:
        from relaycode.bench.executor import ExecutorSpec

        return self.executor if self.executor is not None else ExecutorSpec(jobs=self.jobs)


def preflight_configs(configs: Sequence[BenchConfig], *, no_sandbox: bool, fake_models: bool) -> None:
    """Refuse before any case: unpriced models, missing keys, no sandbox. These would fail every case."""
    from relaycode.sandbox import SandboxPolicy, require_sandbox

    for bc in configs:
        if not fake_models:
            from relaycode.pipeline import preflight

            try:
                preflight(bc.config)
            except RelayError as exc:
                raise ConfigError(f"config {bc.name}: {exc}") from None
        if bc.config.sandbox.enabled and not no_sandbox:
            require_sandbox(SandboxPolicy(enabled=True))


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def preflight_test_tools(cases: Sequence[Case]) -> None:
    """Refuse before any case when the hidden tests need pytest and relay's interpreter lacks it.

    Hidden tests run with relay's interpreter first on PATH; without pytest every case would
    "fail" with `No module named pytest`, a broken environment measured as a bad pipeline.
    """
    if any("pytest" in c.test_command for c in cases) and not _importable("pytest"):
        raise UsageError(f"the suite's test commands run pytest, which is not installed for {sys.executable} "
                         "(install it into relay's environment: pip install pytest)")


class Progress:
    """`[i/N] config case PASS|FAIL $ s` lines on stderr, with running totals."""

    def __init__(self, stream: TextIO | None, total: int, done_before: int) -> None:
        self.stream, self.total, self.done = stream, total, done_before
        self.usd = Decimal(0)
        self.usd_unknown = 0
        self.seconds = 0.0
        self.passed = 0
        self.t0 = time.monotonic()

    def line(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()

    def record(self, rec: Mapping[str, Any]) -> None:
        self.done += 1
        self.passed += bool(rec.get("passed"))
        usd = rec.get("usd")
        if usd is None:
            self.usd_unknown += 1
        else:
            self.usd += Decimal(str(usd))
        self.seconds += float(rec.get("wall_s") or 0)
        verdict = "PASS" if rec.get("passed") else "FAIL"
        label = rec["case"] + (f" #{rec['repeat']}" if rec.get("repeat") else "")
        extra = f" ({rec['error_kind']})" if rec.get("error_kind") else ""
        if rec.get("timed_out"):
            extra += " (test timeout)"
        cost = usd_text(usd, unknown="$?")
        total = usd_text(self.usd) + ("+?" if self.usd_unknown else "")
        self.line(f"[{self.done}/{self.total}] {rec['config']} {label} {verdict}{extra} "
                  f"{cost} {float(rec.get('wall_s') or 0):.1f}s | so far {total}, "
                  f"case time {self.seconds:.0f}s, elapsed {time.monotonic() - self.t0:.0f}s")


def _write_meta(out: Path, options: BenchOptions, pending: int, commit: str | None) -> None:
    spec = options.executor_spec()
    path = out / "bench.json"
    meta: dict[str, Any] = {"invocations": []}
    if path.is_file():
        with contextlib.suppress(ValueError):
            meta = json.loads(path.read_text())
    meta.setdefault("invocations", []).append({
        "started_at": _now(),
        "suite": options.suite,
        "configs": {bc.name: bc.source for bc in options.configs},
        "cases": [c.id for c in options.cases],
        "pending": pending,
        "repeat": options.repeat,
        "jobs": spec.jobs,
        "executor": spec.kind,
        "address": spec.address,
        "resume": options.resume,
        "sandbox": not options.no_sandbox,
        "relay_version": __version__,
        "relay_commit": commit,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    })
    atomic_write(path, json.dumps(meta, indent=2), mode=0o644)


def run_bench(options: BenchOptions) -> list[dict[str, Any]]:
    """Run every pending (case, config, repeat) pair; return all records of the output dir (old and new).

    Refuses to start on a non-empty output dir without resume/force, and on
    configs that could not run a single case (preflight). Records are appended
    to results.jsonl as each pair finishes; the reports are not written here
    (see `report.write_reports`).
    """
    out = options.out
    if options.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    spec = options.executor_spec()
    from relaycode.bench.executor import check_available

    check_available(spec)
    preflight_configs(options.configs, no_sandbox=options.no_sandbox,
                      fake_models=options.model_overrides is not None)
    preflight_test_tools(options.cases)
    prepare_out_dir(out, resume=options.resume, force=options.force)
    results = out / "results.jsonl"
    existing = read_records(results, repair=True)
    done = {pair_key(r) for r in existing}
    case_order = {c.id: i for i, c in enumerate(options.cases)}
    config_order = {b.name: i for i, b in enumerate(options.configs)}
    # Repeat by repeat, and within one case by case with every config, so a partial bench
    # compares configs on the same cases.
    pairs = [(k, c, bc) for k in range(options.repeat) for c in options.cases for bc in options.configs
             if (c.id, bc.name, k) not in done]
    pairs.sort(key=lambda p: (p[0], case_order[p[1].id], config_order[p[2].name]))
    commit = relay_commit()
    _write_meta(out, options, len(pairs), commit)
    total = len(options.cases) * len(options.configs) * options.repeat
    progress = Progress(options.progress, total, total - len(pairs))
    skipped = total - len(pairs)
    if skipped:
        progress.line(f"resume: {skipped} pairs already recorded in {results}")
    jobs = [
        CaseJob(case=c, config=bc, work=pair_work_dir(out, c.id, bc.name, k), repeat=k,
                seed=pair_seed(c.id, bc.name, k, bc.config.seed), no_sandbox=options.no_sandbox,
                history=options.history, overrides=options.model_overrides, relay_commit=commit)
        for k, c, bc in pairs
    ]
    local_models = frozenset().union(*(local_model_names(bc.config) for bc in options.configs))
    serve = options.start_servers and options.model_overrides is None
    new: list[dict[str, Any]] = []
    if not jobs:
        return existing
    from relaycode.bench.executor import open_executor

    recorded = set(done)
    with open_executor(spec, local_models, start_servers=serve) as executor:
        for rec in executor.run(jobs):
            key = pair_key(rec)
            if key in recorded:  # an executor must not hand a pair back twice; never record one twice
                continue
            recorded.add(key)
            append_record(results, rec)
            new.append(rec)
            progress.record(rec)
    return [*existing, *new]
