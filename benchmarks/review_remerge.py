"""Re-merge a saved review-eval run under other merge settings (no model runs) and print the tables.

Every review-eval row keeps each reviewer's own findings (with their evidence status), so how the
merged review would have scored with another rule is a pure computation:

    python benchmarks/review_remerge.py RUN/review_eval.json [RUN2/review_eval.json ...] [--cases N]
        [--weights FILE] [--min-agree K ...] [--min-score S ...]

prints, for the union (`--min-agree 1`), each `--min-agree` and each `--min-score` (weighted by
relay's reviewer weights, or FILE over them), the ensemble's line-overlap and strict scores. With
`--cases N` only the first N cases of the run count (to compare runs on the same slice). Several
runs (the same reviewers, disjoint cases: parts of one evaluation run side by side) are scored as
one. Every saved system is listed, a sampled reviewer's first answers (`<model>@1`) included.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from relaycode.review.evaluate import ENSEMBLE, evidence_table, markdown_table, remerge, saved_rows
from relaycode.review.weights import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--min-agree", type=int, nargs="*", default=[2])
    parser.add_argument("--min-score", type=float, nargs="*", default=[0.25, 0.5])
    args = parser.parse_args()
    reviewers: list[str] = []
    rows: list[dict[str, Any]] = []
    for path in args.runs:
        these, part = saved_rows(path, args.cases)
        if reviewers and these != reviewers:
            raise SystemExit(f"{path}: reviewers {these}, not {reviewers}: not parts of one evaluation")
        reviewers, rows = these, rows + part
    weights = load_weights(args.weights)
    runs = {"union (min_agree 1)": remerge(rows, reviewers)}
    for k in args.min_agree:
        runs[f"min_agree {k}"] = remerge(rows, reviewers, min_agree=k)
    for s in args.min_score:
        runs[f"weighted, min_score {s}"] = remerge(rows, reviewers, weights=weights, min_score=s)
    cases = len({r["case"] for r in rows})
    print(f"{', '.join(map(str, args.runs))}: {cases} cases, reviewers {', '.join(reviewers)}\n")
    first = next(iter(runs.values())).summary()
    summary = {name: s for name, s in first.items() if name != ENSEMBLE}
    summary.update({f"ensemble, {label}": run.summary()[ENSEMBLE] for label, run in runs.items()})
    print(markdown_table(summary))
    print(evidence_table(summary))


if __name__ == "__main__":
    main()
