"""Judge the findings of a saved review-eval run again, with the judge only (the reviewers do not run).

A review-eval row keeps each reviewer's own findings. This re-merges them (weighted, `--min-score`,
as `review_remerge.py` does), asks the judge about every merged finding exactly as `relay review
--judge` would (same prompt, same code listing, a model that did not raise the finding), and prints
the tables with the `judged` view beside the others. The reviews are the saved ones, so the
difference between the `all` and `judged` views is the judge's alone (no new review samples).

    python benchmarks/review_rejudge.py RUN/review_eval.json SUITE.jsonl [--cases N] [--judge reviewers]
        [--min-score 0.25] [--preset local] [--out FILE]

Needs the judge models (local ones are started as for any relay run). `--out` saves the judged rows
(review_eval.json shape) so the tables can be recomputed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from relaycode.config import load_config
from relaycode.review.context import plan_chunks
from relaycode.review.diff import parse_diff
from relaycode.review.evaluate import (
    ENSEMBLE,
    EvalRun,
    evidence_table,
    judge_table,
    markdown_table,
    remerge,
    saved_rows,
    unified_diff,
)
from relaycode.review.findings import Finding
from relaycode.review.judge import JudgeSetting, annotate_members, apply_verdicts, judge_findings
from relaycode.review.reviewer import budget_chars
from relaycode.review.weights import load_weights
from relaycode.session import ModelSession


async def rejudge(rows: list[dict[str, Any]], cases: dict[str, dict[str, Any]], reviewers: list[str],
                  setting: JudgeSetting, session: ModelSession, min_score: float, rows_at_once: int) -> list[dict[str, Any]]:
    candidates = setting.candidates(reviewers)
    gate = asyncio.Semaphore(rows_at_once)
    done = 0

    async def one(row: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        case, path = cases[row["case"]], row["path"]
        old, new = ((case["reference"][path], case["files"][path]) if row["kind"] == "buggy"
                    else (case["files"][path], case["reference"][path]))
        files = parse_diff(unified_diff(path, old, new))
        chunks = {spec: plan_chunks(files, budget_chars(session.models.get(spec)), lambda _p: new)[0] for spec in candidates}
        merged = [Finding.model_validate(f) for f in row["systems"][ENSEMBLE]["findings"]]
        fixes = {(f.path, f.start_line, f.end_line): f2.get("fix_passes")
                 for f, f2 in zip(merged, row["systems"][ENSEMBLE]["findings"], strict=True)}
        async with gate:
            outcome = await judge_findings(session, merged, candidates=candidates, chunks=chunks)
        kept, out = apply_verdicts(outcome.findings, min_score)
        ensemble = [{**f.model_dump(mode="json"), "fix_passes": fixes.get((f.path, f.start_line, f.end_line))}
                    for f in [*kept, *out]]
        per = annotate_members({s: [Finding.model_validate(f) for f in row["systems"][s]["findings"]] for s in reviewers},
                               outcome.findings)
        systems = dict(row["systems"])
        for spec in reviewers:
            saved = systems[spec]["findings"]
            systems[spec] = {**systems[spec], "findings": [
                {**f, "judgement": None if p.judgement is None else p.judgement.model_dump(mode="json")}
                for f, p in zip(saved, per[spec], strict=True)]}
        systems[ENSEMBLE] = {**systems[ENSEMBLE], "findings": ensemble}
        done += 1
        print(f"[{done}/{len(rows)}] {row['case']} {row['kind']}: "
              + ", ".join(f.judgement.verdict if f.judgement else "not judged" for f in outcome.findings)
              + "".join(f"; {n}" for n in outcome.notes), flush=True)
        return {**row, "systems": systems, "judge_notes": outcome.notes}

    return list(await asyncio.gather(*(one(r) for r in rows)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("suite", type=Path)
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--judge", default="reviewers")
    parser.add_argument("--min-score", type=float, default=0.25)
    parser.add_argument("--preset", default="local")
    parser.add_argument("--rows-at-once", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    reviewers, rows = saved_rows(args.run, args.cases)
    cases = {c["id"]: c for c in map(json.loads, args.suite.read_text(encoding="utf-8").splitlines()) if c}
    weighted = remerge(rows, reviewers, weights=load_weights(), min_score=args.min_score)
    config = load_config(preset=args.preset)
    session = ModelSession(config, run_id="review-rejudge")
    t0 = time.perf_counter()
    judged = asyncio.run(rejudge(weighted.reviews, cases, reviewers, JudgeSetting.parse(args.judge), session,
                                 args.min_score, args.rows_at_once))
    seconds = time.perf_counter() - t0
    run = EvalRun(reviewers, 1)
    for row in judged:
        run.add_row(row)
    requests = len(session.ledger.entries)
    tokens = sum(e.tokens.input + e.tokens.output for e in session.ledger.entries)
    print(f"\n{args.run}: {len({r['case'] for r in rows})} cases, reviewers {', '.join(reviewers)}, judge "
          f"{args.judge}, weighted min_score {args.min_score}; {requests} judge requests, {tokens} tokens, "
          f"{seconds:.0f} s wall ({seconds / max(len(rows), 1):.1f} s per review)\n")
    summary = run.summary()
    print(markdown_table(summary))
    print(evidence_table(summary))
    print(judge_table(summary))
    if args.out is not None:
        args.out.write_text(json.dumps({"reviewers": reviewers, "judge": args.judge, "min_score": args.min_score,
                                        "requests": requests, "tokens": tokens, "seconds": seconds,
                                        "summary": summary, "reviews": judged}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
