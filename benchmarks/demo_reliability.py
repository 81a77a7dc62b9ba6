"""How often does `relay demo` succeed? Run the demo's job N times, each on a fresh sample repo.

    PYTHONPATH=src .venv/bin/python benchmarks/demo_reliability.py --runs 10 --seed 1000 --out bench-out/demo.jsonl

Each run is the demo's job in-process (`make_demo_repo` + `run_task` with `presets.demo_config` of the
preset, as `relay demo` does), with `seed = --seed + run number`: different runs draw different
answers, a rerun of the script the same ones. One JSON line per run
(status, iterations, wall and model seconds, malformed answers, escalations; `model_s` sums
requests, `model_wall_s` counts the time any request was running once); the summary line
gives successes, and the median and range of wall and model time. Success is status
`succeeded`: the demo repository has tests, so its verification can fail a wrong change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def one_run(preset: str, seed: int | None, samples: int | None, workdir: Path) -> dict[str, Any]:
    from relaycode.config import load_config
    from relaycode.pipeline import RunOptions, run_task
    from relaycode.presets import demo_config
    from relaycode.testing.sample_repos import DEMO_TASK, make_demo_repo

    repo = make_demo_repo(workdir / "shop")
    config = demo_config(load_config(preset=preset))  # what `relay demo` runs
    update: dict[str, Any] = {"seed": seed}
    if samples is not None:
        implement = config.stages.implement.model_copy(update={"samples": samples})
        update["stages"] = config.stages.model_copy(update={"implement": implement})
    config = config.model_copy(update=update)
    t0 = time.perf_counter()
    result = run_task(RunOptions(repo=repo, task=DEMO_TASK, config=config, yes=True, history=False))
    return {"preset": preset, "seed": seed, "samples": config.stages.implement.samples, "status": result.status,
            "iterations": result.iterations, "wall_s": round(time.perf_counter() - t0, 1),
            "model_s": round(result.model_s, 1), "model_wall_s": round(model_wall_s(result.ledger.entries), 1),
            "malformed": result.malformed_outputs,
            "escalations": result.escalations, "error": result.error, "run_dir": str(result.run_dir)}


def model_wall_s(entries: Any) -> float:
    """Seconds during which at least one model request was running: requests answered at the same time
    (candidates in parallel slots) count once, which `model_s` (their sum) does not."""
    spans = sorted((e.started_at, e.started_at + e.seconds) for e in entries if e.started_at is not None)
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def spread(key: str) -> dict[str, float]:
        values = [float(r[key]) for r in rows]
        return {"median": round(statistics.median(values), 1), "min": min(values), "max": max(values)}

    return {"runs": len(rows), "succeeded": sum(r["status"] == "succeeded" for r in rows),
            "statuses": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
            "wall_s": spread("wall_s"), "model_s": spread("model_s"), "model_wall_s": spread("model_wall_s"),
            "malformed": sum(int(r["malformed"]) for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--preset", default="local", help="the preset `relay demo --preset` would get")
    parser.add_argument("--seed", type=int, default=1000, help="base seed; run i uses seed + i (-1: unseeded)")
    parser.add_argument("--samples", type=int, default=None, help="override stages.implement.samples")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per run here")
    args = parser.parse_args(argv)
    rows = []
    # Kept (not deleted): each run's directory holds its sample repo and, in .git/relay/runs, its run files.
    base = Path(tempfile.mkdtemp(prefix="relay-demo-rel-"))
    for i in range(args.runs):
        row = one_run(args.preset, None if args.seed < 0 else args.seed + i, args.samples, base / str(i))
        rows.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
    print(json.dumps({"summary": summary(rows)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
