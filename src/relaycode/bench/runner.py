"""Run a suite × configs: one fresh repo per (case, config), the pipeline, then the hidden tests.

Layout of an output dir:

    DIR/results.jsonl            one record per finished (case, config), appended atomically
    DIR/bench.json               the invocations (suite, configs, cases, relay version/commit)
    DIR/work/<config>/<case>/    repo/ (the case's starting files, one commit; the run's
                                 worktree lives in its git dir) and runs/ (the run's files)
    DIR/summary.json, report.md, pareto.png, pareto.html

Parallelism (`jobs > 1`) uses worker *processes* (spawn): each case has its own
dirs and the only shared file, results.jsonl, is written by the parent alone.
Processes also make CPU accounting exact: a worker runs one case at a time, so
the rusage deltas of the worker and its reaped children (git, unsandboxed
commands) belong to that case. Commands inside bubblewrap never reach our
RUSAGE_CHILDREN (bwrap does not hand its PID namespace's rusage up), so
sandboxed verify and hidden-test CPU is not counted; docs/benchmarks.md says so. With `jobs == 1` cases run in
this process, with the same accounting. Local model servers are separate,
long-lived processes: the CPU of the servers of the config's own models is
read from /proc over the case's window, which is exact with one job (as long
as nothing else uses those servers) and over-counts with several (a shared
server's CPU lands in every overlapping case).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from relaycode import __version__
from relaycode.bench.suite import Case, materialise, write_files
from relaycode.errors import ConfigError, RelayError, UsageError

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from relaycode.config import Config

#: Version of the record layout in results.jsonl.
RECORD_SCHEMA = 1

#: Files and dirs a bench creates in its output dir (the only ones `--force` removes).
BENCH_ARTEFACTS = (
    "results.jsonl", "bench.json", "work", "summary.json", "report.md", "pareto.png", "pareto.html",
    "summary-estimate.json", "report-estimate.md", "pareto-estimate.png", "pareto-estimate.html",
)  # fmt: skip

#: Characters of the hidden-test output kept in a record.
TEST_OUTPUT_CHARS = 2000

#: Test doubles: called in the process that runs the case, with the case and the config name.
#: Must be a module-level function when jobs > 1 (it is pickled into worker processes).
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


# ---------------------------------------------------------------- CPU accounting


def _rusage_s() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def local_model_names(config: Config) -> frozenset[str]:
    """Names of the local models a config uses (their servers' CPU is the config's compute)."""
    from relaycode.models import parse_model

    refs = (parse_model(spec, config) for spec in config.all_models())
    return frozenset(ref.name for ref in refs if ref.provider == "local")


def _server_cpu(models: frozenset[str]) -> dict[int, float]:
    """CPU seconds so far of the running servers of `models` (pid → s); empty if none or unreadable.

    Only the config's own models count: servers of other models may be busy with other work.
    """
    if not models:
        return {}
    try:
        from relaycode.local.server import running_servers

        handles = [h for h in running_servers() if h.model in models]
    except Exception:  # the local package is optional for API-only benches
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for h in handles:
        try:
            fields = Path(f"/proc/{h.pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[h.pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return out


class CpuMeter:
    """CPU seconds between start and stop: this process, its reaped (unsandboxed) children, local servers."""

    def __init__(self, local_models: frozenset[str] = frozenset()) -> None:
        self.models = local_models
        self.self0, self.children0 = _rusage_s()
        self.servers0 = _server_cpu(local_models)

    def stop(self, *, shared_servers: bool) -> dict[str, Any]:
        self_s, children_s = _rusage_s()
        servers = _server_cpu(self.models)
        server_s = sum(max(0.0, s - self.servers0.get(pid, 0.0)) for pid, s in servers.items())
        own = self_s - self.self0
        kids = children_s - self.children0
        return {
            "relay": round(own, 3),
            "children": round(kids, 3),
            "servers": round(server_s, 3),
            "servers_shared": shared_servers and bool(servers),
            "total": round(own + kids + server_s, 3),
        }


# ---------------------------------------------------------------- one case


@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs to run one (case, config); picklable."""

    case: Case
    config: BenchConfig
    work: Path
    no_sandbox: bool = False
    history: bool = False
    overrides: OverridesFactory | None = None
    relay_commit: str | None = None
    shared_servers: bool = False


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
    from relaycode.sandbox import Limits, SandboxPolicy
    from relaycode.sandbox import run as sandbox_run
    from relaycode.stages.verify import tool_env

    write_files(worktree, case.hidden_files)
    policy = SandboxPolicy(enabled=config.sandbox.enabled and not no_sandbox,
                           env_allow=tuple(config.sandbox.env_allow))
    limits = Limits(wall_s=case.timeout_s, memory_mb=config.sandbox.memory_mb, max_procs=config.sandbox.max_procs)
    # `python` in a test command must be relay's interpreter (pytest is a dependency of relay, and
    # preflight_test_tools checks it), not whatever is first on PATH: the same tool env as verify.
    env, policy = tool_env(None, policy)
    done = sandbox_run(case.test_command, worktree, policy=policy, limits=limits, extra_env=env)
    return {
        "passed": done.exit_code == 0 and not done.timed_out,
        "test_exit_code": done.exit_code,
        "timed_out": done.timed_out,
        "test_s": done.seconds,
        "test_output_tail": done.output_tail[-TEST_OUTPUT_CHARS:],
        "test_sandboxed": done.sandboxed,
    }


def run_case(job: CaseJob) -> dict[str, Any]:
    """Run one (case, config) end to end and return its record. Never raises for a case's own failure."""
    from relaycode.pipeline import RunOptions, run_task

    case, bc = job.case, job.config
    started = _now()
    t0 = time.perf_counter()
    meter = CpuMeter(local_model_names(bc.config))
    record: dict[str, Any] = {
        "schema": RECORD_SCHEMA,
        "case": case.id,
        "suite": case.suite,
        "kind": case.kind,
        "config": bc.name,
        "config_source": bc.source,
        "passed": False,
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
    if job.work.exists():
        shutil.rmtree(job.work)  # left by a killed run: start the pair from scratch
    repo = job.work / "repo"
    try:
        materialise(case, repo)
        overrides = job.overrides(case, bc.name) if job.overrides is not None else None
        result = run_task(RunOptions(repo=repo, task=case.instruction, config=bc.config, yes=True,
                                     no_sandbox=job.no_sandbox, model_overrides=overrides,
                                     runs_dir=job.work / "runs", history=job.history))
        if result.error_kind == "interrupted":
            # The pipeline turns Ctrl-C into an "aborted" run; for the bench it means stop, and the
            # pair must not be recorded as a failure (resume will redo it).
            raise KeyboardInterrupt
        record.update(
            status=result.status, run_id=result.run_id, iterations=result.iterations,
            verify_passed=result.verify_passed, verify_checks=list(result.checks), findings=result.findings, models_used=list(result.models_used),
            escalations=list(result.escalations), malformed_outputs=result.malformed_outputs,
            error=result.error, error_kind=result.error_kind, model_s=round(result.model_s, 3),
            run_wall_s=round(result.wall_s, 3), **_ledger_fields(result.ledger),
        )
        # Whatever the run's status, the final code is what counts: a "failed" run may still pass.
        if Path(result.worktree).is_dir():
            record.update(_run_hidden_tests(case, Path(result.worktree), bc.config, job.no_sandbox))
        else:
            record["error"] = record["error"] or "the run left no worktree"
    except RelayError as exc:
        record.update(error=str(exc), error_kind=f"bench_{type(exc).__name__}")
    except Exception as exc:  # a bug must cost one record, not the whole bench
        record.update(error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}",
                      error_kind="bench_exception")
    record["wall_s"] = round(time.perf_counter() - t0, 3)
    record["cpu_s"] = meter.stop(shared_servers=job.shared_servers)
    record["started_at"] = started
    record["ended_at"] = _now()
    return record


# ---------------------------------------------------------------- results file


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line, then flush and fsync: a kill leaves whole lines only."""
    line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = line.encode()
        while data:  # one write(2) for any sane record; loop in case of a short write
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a results.jsonl. A torn last line (a kill mid-write) is dropped (and cut off with `repair`)."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[dict[str, Any]] = []
    good_bytes = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "case" not in rec or "config" not in rec:
                raise ValueError("not a record")
        except ValueError:
            if i >= len(lines) - 2 and not raw.endswith(line + b"\n"):
                break  # torn tail
            raise UsageError(f"{path}:{i + 1}: not a bench record; fix or remove the line") from None
        records.append(rec)
        good_bytes += len(line) + 1
    if repair and good_bytes < len(raw):
        with path.open("r+b") as fh:
            fh.truncate(good_bytes)
    # A pair recorded twice (e.g. two concurrent benches on one dir): keep the latest.
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records:
        latest[(rec["case"], rec["config"])] = rec
    return list(latest.values())


# ---------------------------------------------------------------- the bench


@dataclass
class BenchOptions:
    cases: Sequence[Case]
    configs: Sequence[BenchConfig]
    out: Path
    jobs: int = 1
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


def prepare_out_dir(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse a non-empty dir without --resume/--force; --force removes only bench artefacts."""
    if resume and force:
        raise UsageError("--resume and --force contradict each other: pick one")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not resume:
        if not force:
            raise UsageError(f"--out {out}: not empty; pass --resume to continue that bench or --force to replace it")
        foreign = [e for e in entries if e not in BENCH_ARTEFACTS]
        if foreign:
            raise UsageError(f"--out {out}: --force removes only bench files, but it also holds "
                             f"{', '.join(foreign[:5])}; pick another dir")
        for name in entries:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


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


def _start_local_servers(configs: Sequence[BenchConfig]) -> None:
    from relaycode.local.server import ensure_server

    names = sorted(set().union(*(local_model_names(bc.config) for bc in configs)))
    for name in names:
        try:
            ensure_server(name)
        except RelayError as exc:
            raise UsageError(f"local model {name}: {exc} (try `relay local setup`)") from None


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
        extra = f" ({rec['error_kind']})" if rec.get("error_kind") else ""
        if rec.get("timed_out"):
            extra += " (test timeout)"
        cost = "$?" if usd is None else f"${Decimal(str(usd)):.4f}"
        total = f"${self.usd:.4f}" + ("+?" if self.usd_unknown else "")
        self.line(f"[{self.done}/{self.total}] {rec['config']} {rec['case']} {verdict}{extra} "
                  f"{cost} {float(rec.get('wall_s') or 0):.1f}s | so far {total}, "
                  f"case time {self.seconds:.0f}s, elapsed {time.monotonic() - self.t0:.0f}s")


@contextlib.contextmanager
def _executor(jobs: int) -> Iterator[cf.Executor | None]:
    if jobs <= 1:
        yield None
        return
    # spawn, not fork: the parent may hold threads (model clients, the server manager's state).
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _write_meta(out: Path, options: BenchOptions, pending: int, commit: str | None) -> None:
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
        "jobs": options.jobs,
        "resume": options.resume,
        "sandbox": not options.no_sandbox,
        "relay_version": __version__,
        "relay_commit": commit,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    })
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path)


def run_bench(options: BenchOptions) -> list[dict[str, Any]]:
    """Run every pending (case, config) pair; return all records of the output dir (old and new).

    Refuses to start on a non-empty output dir without resume/force, and on
    configs that could not run a single case (preflight). Records are appended
    to results.jsonl as each pair finishes; the reports are not written here
    (see `report.write_reports`).
    """
    out = options.out
    if options.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    preflight_configs(options.configs, no_sandbox=options.no_sandbox,
                      fake_models=options.model_overrides is not None)
    preflight_test_tools(options.cases)
    prepare_out_dir(out, resume=options.resume, force=options.force)
    results = out / "results.jsonl"
    existing = read_records(results, repair=True)
    done = {(r["case"], r["config"]) for r in existing}
    pairs = [(c, bc) for bc in options.configs for c in options.cases if (c.id, bc.name) not in done]
    # Interleave configs case by case so a partial bench compares configs on the same cases.
    pairs.sort(key=lambda p: ([c.id for c in options.cases].index(p[0].id),
                              [b.name for b in options.configs].index(p[1].name)))
    commit = relay_commit()
    _write_meta(out, options, len(pairs), commit)
    progress = Progress(options.progress, len(pairs) + len(done), len(done))
    skipped = len(options.cases) * len(options.configs) - len(pairs)
    if skipped:
        progress.line(f"resume: {skipped} (case, config) pairs already recorded in {results}")
    if pairs and options.start_servers and options.model_overrides is None:
        _start_local_servers(options.configs)
    jobs = [
        CaseJob(case=c, config=bc, work=out / "work" / slug(bc.name) / slug(c.id), no_sandbox=options.no_sandbox,
                history=options.history, overrides=options.model_overrides, relay_commit=commit,
                shared_servers=options.jobs > 1)
        for c, bc in pairs
    ]
    new: list[dict[str, Any]] = []
    with _executor(options.jobs) as pool:
        if pool is None:
            for job in jobs:
                rec = run_case(job)
                append_record(results, rec)
                new.append(rec)
                progress.record(rec)
        else:
            futures = [pool.submit(run_case, job) for job in jobs]
            try:
                for fut in cf.as_completed(futures):
                    rec = fut.result()
                    append_record(results, rec)
                    new.append(rec)
                    progress.record(rec)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    return [*existing, *new]
