"""Whole benches with scripted models: records, hidden tests, parallel jobs, resume after a kill, refusals."""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from relaycode.bench.results import append_record, prepare_out_dir, read_records
from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
from relaycode.bench.suite import load_suite
from relaycode.errors import UsageError
from relaycode.pricing import Tokens, price_request

from . import fakes

pytestmark = pytest.mark.sandbox


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # Scripted models; keys only satisfy the pipeline's pre-flight (the network is blocked anyway).
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(var, "test-key")


def options(tmp_path: Path, **kw: Any) -> BenchOptions:
    cases = load_suite(fakes.write_suite(tmp_path / "tiny.jsonl"))
    configs = resolve_configs(fakes.write_configs(tmp_path))
    kw.setdefault("out", tmp_path / "out")
    kw.setdefault("model_overrides", fakes.overrides)
    return BenchOptions(cases=cases, configs=configs, **kw)


EXPECTED = {("tiny/add", "good"): True, ("tiny/mul", "good"): True, ("tiny/spin", "good"): True,
            ("tiny/add", "bad"): False, ("tiny/mul", "bad"): False, ("tiny/spin", "bad"): False}


def check_records(records: list[dict[str, Any]], out: Path) -> None:
    assert {(r["case"], r["config"]): r["passed"] for r in records} == EXPECTED, [
        (r["case"], r["config"], r["error"], r["test_output_tail"]) for r in records]
    assert len({r["run_id"] for r in records}) == 6
    for r in records:
        assert r["error_kind"] is None, r["error"]
        model = fakes.GOOD if r["config"] == "good" else fakes.BAD
        tin, tout = fakes.USAGE[model]
        assert r["stages"] == {"implement": {"requests": 1, "input_tokens": tin, "output_tokens": tout,
                                             "usd": str(price_request(model, Tokens(tin, tout))),
                                             "model_s": r["stages"]["implement"]["model_s"]}}
        assert Decimal(r["usd"]) == price_request(model, Tokens(tin, tout))
        assert r["models_used"] == [model] and r["iterations"] == 1
        assert r["timed_out"] == (r["case"] == "tiny/spin" and r["config"] == "bad")
        assert r["test_exit_code"] == (0 if r["passed"] else r["test_exit_code"]) and r["test_exit_code"] is not None
        assert r["cpu_s"]["total"] >= r["cpu_s"]["children"] > 0  # git (materialise, worktree) ran as children
        assert r["started_at"] < r["ended_at"] and r["relay_version"]
        # The final worktree has the case's own files plus its hidden test, nothing of another case.
        work = out / "work" / r["config"] / r["case"].replace("/", "__")
        [worktree] = [p for p in (work / "repo" / ".git" / "relay" / "worktrees").iterdir()]
        module = r["case"].split("/")[1]
        names = sorted(p.name for p in worktree.iterdir() if p.name not in (".git", "__pycache__"))
        assert names == ["README.md", f"{module}.py", f"test_{module}.py"]
        assert not (work / "repo" / f"test_{module}.py").exists()  # hidden tests never reach the run's repo


def test_bench_of_three_cases_by_two_configs(tmp_path: Path) -> None:
    from relaycode.bench.report import write_reports

    progress = io.StringIO()
    records = run_bench(options(tmp_path, progress=progress))
    out = tmp_path / "out"
    check_records(records, out)
    lines = progress.getvalue().splitlines()
    assert len(lines) == 6 and lines[0].startswith("[1/6] good tiny/add PASS $0.0004 ")
    assert lines[5].startswith("[6/6] bad tiny/spin FAIL (test timeout) $0.0003 ") and "so far $0.0022" in lines[5]
    assert read_records(out / "results.jsonl") == records
    write_reports(out, records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configs"]["good"]["passed"] == 3 and summary["configs"]["bad"]["passed"] == 0
    assert summary["paired"][0] | {"p_value": 0} == {"a": "good", "b": "bad", "n": 3, "both": 0, "a_only": 3,
                                                      "b_only": 0, "neither": 0, "p_value": 0}
    assert summary["oracle"]["chosen"] == {"tiny/add": "good", "tiny/mul": "good", "tiny/spin": "good"}


def test_two_jobs_run_concurrently_without_interfering(tmp_path: Path) -> None:
    records = run_bench(options(tmp_path, jobs=2))
    check_records(records, tmp_path / "out")
    spans = sorted((r["started_at"], r["ended_at"]) for r in records)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans)), spans
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line) for line in lines)


KILL_SCRIPT = """
import sys
sys.path[:0] = {paths!r}
from pathlib import Path
from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
from relaycode.bench.suite import load_suite
from bench import fakes
cases = load_suite(Path({suite!r}))
configs = resolve_configs([{good!r}])
run_bench(BenchOptions(cases=cases, configs=configs, out=Path({out!r}), model_overrides=fakes.slow_overrides))
"""


def test_resume_after_a_kill_keeps_records_and_adds_no_duplicates(tmp_path: Path) -> None:
    opts = options(tmp_path)
    out = opts.out
    results = out / "results.jsonl"
    good = str(tmp_path / "good.toml")
    script = KILL_SCRIPT.format(paths=[str(Path(__file__).parents[1])], suite=str(tmp_path / "tiny.jsonl"),
                                good=good, out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (results.is_file() and results.read_text().count("\n") >= 1):
            assert proc.poll() is None, "bench exited early"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)  # now inside the second case (its model hangs)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = results.read_text()
    assert first.count("\n") == 1 and json.loads(first)["case"] == "tiny/add"
    assert (out / "work" / "good" / "tiny__mul").is_dir()  # the killed case left its dirs behind
    with results.open("a") as fh:
        fh.write('{"case": "tiny/mul", "conf')  # and a torn line, as a kill mid-write would

    with pytest.raises(UsageError, match="not empty"):
        run_bench(options(tmp_path))
    records = run_bench(options(tmp_path, resume=True))
    check_records(records, out)
    text = results.read_text()
    assert text.startswith(first) and text.count("\n") == 6 and "conf\n" not in text and '"conf{' not in text
    pairs = [(r["case"], r["config"]) for r in map(json.loads, text.splitlines())]
    assert len(pairs) == len(set(pairs)) == 6
    # Nothing left to do: a second resume runs nothing and changes nothing.
    assert len(run_bench(options(tmp_path, resume=True))) == 6
    assert results.read_text() == text


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty; pass --resume"):
        prepare_out_dir(out, resume=False, force=False)
    with pytest.raises(UsageError, match=r"removes only bench files, but it also holds notes\.txt"):
        prepare_out_dir(out, resume=False, force=True)
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="contradict"):
        prepare_out_dir(out, resume=True, force=True)
    (out / "notes.txt").unlink()
    append_record(out / "results.jsonl", {"case": "c", "config": "x"})
    (out / "work").mkdir()
    prepare_out_dir(out, resume=False, force=True)
    assert list(out.iterdir()) == []


def test_refuses_to_start_when_the_hidden_tests_need_a_missing_pytest(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from relaycode.bench import runner

    monkeypatch.setattr(runner, "_importable", lambda module: module != "pytest")
    with pytest.raises(UsageError, match=r"run pytest, which is not installed for .*pip install pytest"):
        run_bench(options(tmp_path))
    assert not (tmp_path / "out").exists()  # refused before the output dir was touched


def test_read_records_drops_only_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_record(path, {"case": "a", "config": "x", "passed": True})
    append_record(path, {"case": "b", "config": "x", "passed": False})
    good = path.read_bytes()
    path.write_bytes(good + b'{"case": "c", "con')
    assert [r["case"] for r in read_records(path, repair=True)] == ["a", "b"]
    assert path.read_bytes() == good
    path.write_bytes(b'garbage\n' + good)
    with pytest.raises(UsageError, match=r"results\.jsonl:1: not a bench record"):
        read_records(path)


def test_unknown_config_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="neither a preset"):
        resolve_configs(["no-such-preset"])
    with pytest.raises(UsageError, match="more than one config is named local"):
        resolve_configs(["local", "local"])
    assert [c.name for c in resolve_configs(["solo-local", "local-cascade"])] == ["solo-local", "local-cascade"]


SHIPPED_CONFIGS = Path(__file__).resolve().parents[2] / "benchmarks" / "configs"


def test_every_shipped_bench_config_resolves_to_local_models_only() -> None:
    files = sorted(SHIPPED_CONFIGS.glob("*.toml"))
    assert len(files) >= 3
    for bench_config in resolve_configs([str(f) for f in files]):
        stages = bench_config.config.stages
        specs = [stages.plan.model, stages.implement.model, *stages.implement.escalate_to, *stages.review.models]
        assert all(s.startswith("local:") for s in specs if s), (bench_config.name, specs)


def test_shipped_greedy_configs_set_temperature_zero_on_their_implementers() -> None:
    for bench_config in resolve_configs([str(SHIPPED_CONFIGS / f) for f in ("local-fix-t0.toml", "local-cascade-t0.toml")]):
        impl = bench_config.config.stages.implement
        assert all(bench_config.config.settings_for(s).temperature == 0 for s in [impl.model, *impl.escalate_to])
    fix, retry = (c.config.stages for c in resolve_configs([str(SHIPPED_CONFIGS / f"local-fix-t0{s}.toml")
                                                              for s in ("", "-retry")]))
    assert fix.review.models == [] and fix.plan.model is None and fix.implement.escalate_to == []
    assert retry.model_copy(update={"implement": fix.implement}) == fix and retry.implement.retry_temperature == 0.8


def test_shipped_agent_config_differs_from_local_noplan_only_in_the_implement_protocol() -> None:
    from relaycode.models import resolve
    from relaycode.stages.agent_loop import uses_agent

    agent, noplan = resolve_configs([str(SHIPPED_CONFIGS / "local-agent.toml"), "local-noplan"])
    assert agent.name == "local-agent"
    spec = agent.config.stages.implement.model
    assert uses_agent(resolve(spec, agent.config)) and not uses_agent(resolve(spec, noplan.config))
    assert agent.config.stages == noplan.config.stages


def test_ctrl_c_stops_the_bench_without_recording_the_interrupted_pair(tmp_path: Path) -> None:
    opts = options(tmp_path, model_overrides=fakes.interrupting_overrides)
    opts.configs = opts.configs[:1]
    with pytest.raises(KeyboardInterrupt):
        run_bench(opts)
    assert [(r["case"], r["passed"]) for r in read_records(opts.out / "results.jsonl")] == [("tiny/add", True)]


def test_repeats_are_seeded_pairs_and_resume_runs_only_the_missing_repeats(tmp_path: Path) -> None:
    from relaycode.bench.runner import pair_seed

    opts = options(tmp_path)
    opts.cases = opts.cases[:2]  # add, mul
    first = run_bench(opts)
    assert len(first) == 4 and all(r["repeat"] == 0 for r in first)
    more = options(tmp_path, resume=True, repeat=2)
    more.cases = more.cases[:2]
    progress = io.StringIO()
    more.progress = progress
    records = run_bench(more)
    assert progress.getvalue().startswith("resume: 4 pairs already recorded")
    assert "[5/8] good tiny/add #1 PASS" in progress.getvalue()
    assert sorted((r["case"], r["config"], r["repeat"]) for r in records) == sorted(
        (c, k, n) for c in ("tiny/add", "tiny/mul") for k in ("good", "bad") for n in (0, 1))
    for r in records:
        assert r["seed"] == pair_seed(r["case"], r["config"], r["repeat"])
        assert r["first_attempt_passed"] == (r["config"] == "good") == r["passed"]
    assert len({r["seed"] for r in records}) == 8
    assert (tmp_path / "out" / "work" / "good" / "tiny__add@r1" / "repo").is_dir()
    assert pair_seed("tiny/add", "good", 1) == pair_seed("tiny/add", "good", 1) != pair_seed("tiny/add", "good", 1, 7)


def test_each_pair_runs_with_its_own_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from relaycode import pipeline
    from relaycode.bench.runner import pair_seed
    from relaycode.errors import ConfigError

    seen: list[tuple[str, int | None]] = []

    def fake_run_task(opts: Any) -> Any:
        seen.append((opts.task, opts.config.seed))
        raise ConfigError("stop here")

    monkeypatch.setattr(pipeline, "run_task", fake_run_task)
    opts = options(tmp_path, repeat=2)
    opts.cases, opts.configs = opts.cases[:1], opts.configs[:1]
    records = run_bench(opts)
    assert seen == [(opts.cases[0].instruction, pair_seed("tiny/add", "good", k)) for k in (0, 1)]
    assert [r["error_kind"] for r in records] == ["bench_ConfigError"] * 2
