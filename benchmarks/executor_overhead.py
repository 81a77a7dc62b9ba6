"""Overhead of the Ray executor against the local one: the same bench, scripted models, on this machine.

Each case is a one-line bug fix whose scripted implementer answers with the fix
at once, so a pair costs what the harness costs (materialise the repo, run the
pipeline, verify, run the hidden tests in the sandbox) and no model time. The
bench runs in turns — local --jobs 1, local --jobs J, ray (a local instance
started for the run) --jobs J — `--runs` times, and prints, per executor, the
median wall time of the whole bench (start-up and shut-down included), per pair,
and the mean wall time a pair measured inside its worker. The difference of
per-pair times at equal parallelism is the executor's overhead per pair.

    .venv/bin/python benchmarks/executor_overhead.py [--cases 12] [--jobs 2] [--runs 3] [--json]

Needs bubblewrap (hidden tests run in the sandbox) and the `ray` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "openai:gpt-5-mini"


def write_suite(path: Path, n: int) -> Path:
    lines = []
    for i in range(n):
        buggy, fixed = f"def f{i}(a, b):\n    return a - b\n", f"def f{i}(a, b):\n    return a + b\n"
        lines.append(json.dumps({
            "id": f"tiny/f{i}", "suite": "tiny", "kind": "bugfix", "instruction": f"`m{i}.py` is wrong; fix it.",
            "files": {f"m{i}.py": buggy}, "hidden_files": {f"test_m{i}.py": f"from m{i} import *\n\n\ndef test_it():\n"
                                                            f"    assert f{i}(2, 3) == 5\n"},
            "test_command": f"python -m pytest -q -p no:cacheprovider test_m{i}.py", "timeout_s": 60,
            "reference": {f"m{i}.py": fixed},
        }) + "\n")
    path.write_text("".join(lines))
    return path


def overrides(case: Any, config: str) -> dict[str, Any]:
    """The implementer answers with the reference fix (module-level: pickled into workers)."""
    from relaycode.testing.scripted import scripted_text

    answer = "".join(f"{p}\n```python\n{t}```\n\n" for p, t in case.reference.items())
    return {MODEL: scripted_text([answer], usage=(1000, 100), name="fix")}


def one_bench(suite: Path, config: Path, out: Path, kind: str, jobs: int) -> dict[str, float]:
    from relaycode.bench.executor import ExecutorSpec
    from relaycode.bench.runner import BenchOptions, resolve_configs, run_bench
    from relaycode.bench.suite import load_suite

    opts = BenchOptions(cases=load_suite(suite), configs=resolve_configs([str(config)]), out=out, jobs=jobs,
                        executor=ExecutorSpec(kind=kind, jobs=jobs), model_overrides=overrides)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    records = run_bench(opts)
    wall = time.perf_counter() - t0
    assert all(r["passed"] for r in records), [r["error"] for r in records if not r["passed"]]
    return {"wall_s": wall, "per_pair_s": wall / len(records),
            "pair_wall_s": statistics.mean(float(r["wall_s"]) for r in records)}


def ray_startup_s(jobs: int) -> float:
    """Wall time to start a local Ray instance for a bench and stop it again, with no pair."""
    from relaycode.bench.executor import ExecutorSpec, open_executor

    t0 = time.perf_counter()
    with open_executor(ExecutorSpec(kind="ray", jobs=jobs), frozenset(), start_servers=False):
        pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "scripted")  # pre-flight only: the model is scripted
    variants = [("local", 1), ("local", args.jobs), ("ray", args.jobs)]
    results: dict[str, list[dict[str, float]]] = {f"{k} --jobs {j}": [] for k, j in variants}
    startups: list[float] = []
    with tempfile.TemporaryDirectory(prefix="relay-overhead-") as tmp:
        root = Path(tmp)
        suite = write_suite(root / "tiny.jsonl", args.cases)
        config = root / "fix.toml"
        config.write_text(f'diversity = "off"\nmax_iterations = 1\n[stages.implement]\nmodel = "{MODEL}"\n'
                          '[stages.verify]\ncommands = ["python -c pass"]\n')
        for run in range(args.runs):
            startups.append(ray_startup_s(args.jobs))
            for kind, jobs in variants:  # in turns, so a change of load hits every variant alike
                results[f"{kind} --jobs {jobs}"].append(one_bench(suite, config, root / f"out-{kind}-{jobs}-{run}",
                                                                  kind, jobs))
    summary: dict[str, dict[str, Any]] = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {
        "per_pair_s_range": [min(r["per_pair_s"] for r in runs), max(r["per_pair_s"] for r in runs)]}
        for name, runs in results.items()}
    startup = statistics.median(startups)
    local_j, on_ray = summary[f"local --jobs {args.jobs}"], summary[f"ray --jobs {args.jobs}"]
    per_pair = (on_ray["wall_s"] - startup - local_j["wall_s"]) / args.cases
    if args.json:
        print(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(), "load": os.getloadavg(),
                          "cases": args.cases, "runs": args.runs, "summary": summary,
                          "ray_startup_s": startup, "ray_overhead_per_pair_s": per_pair}, indent=2))
        return
    print(f"{args.cases} pairs, {args.runs} runs each, load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print(f"Ray local instance start + stop with no pair: median {startup:.1f} s "
          f"({min(startups):.1f}–{max(startups):.1f}); Ray's overhead per pair beyond that, against "
          f"local --jobs {args.jobs}: {per_pair:+.2f} s")
    print("| executor | bench wall s (median) | s per pair (median, min–max) | pair's own wall s (mean) |")
    print("|---|---:|---:|---:|")
    for name, s in summary.items():
        lo, hi = s["per_pair_s_range"]
        print(f"| {name} | {s['wall_s']:.1f} | {s['per_pair_s']:.2f} ({lo:.2f}–{hi:.2f}) | {s['pair_wall_s']:.2f} |")


if __name__ == "__main__":
    main()
