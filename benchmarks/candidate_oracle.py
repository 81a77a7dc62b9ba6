"""Which of a run's candidates would have passed, and which one relay chose: one bench's answers, re-tested.

A sampled run draws several candidates per attempt and keeps one. This script takes every candidate
of every attempt of every record in a bench's --out directory, applies it to the case's files as
shipped (the tree the attempt started from, for the first attempt), runs the case's hidden tests on
it in the sandbox, and reports per record:

- `any`: some candidate of the first attempt passes (pass@k of the drawn candidates: what a perfect
  chooser would reach in one attempt);
- `chosen`: the candidate relay kept (the `winner` of the `candidates` event) passes;
- `smallest` / `largest`: the distinct candidate with the fewest / most changed lines passes.

It answers "is the loss in drawing or in choosing?" at no model cost. Later attempts start from
another tree (feedback, escalation) and are not re-tested.

    PYTHONPATH=src .venv/bin/python benchmarks/candidate_oracle.py BENCH_OUT SUITE.jsonl [--json FILE]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from relaycode.bench.runner import _run_hidden_tests
from relaycode.bench.suite import Case
from relaycode.edits import apply_edits, parse_edits
from relaycode.errors import EditError, RelayError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generated_checks_choice import (  # a sibling script, not a package
    answers,
    bench_args,
    bench_runs,
    events,
    record_config,
)


def candidate_passes(case: Case, answer: str, config: Any, into: Path) -> bool | None:
    """Whether `answer` applied to the case's shipped files passes its hidden tests (None: not applicable)."""
    tree = into / "tree"
    try:
        edits = parse_edits(answer)
        if not edits:
            return False
        current = {e.path: case.files.get(e.path, "") for e in edits}
        changed = apply_edits(current, edits)
    except (EditError, ValueError):
        return False
    for path, text in {**case.files, **changed}.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text, encoding="utf-8")
    try:
        return bool(_run_hidden_tests(case, tree, config, False)["passed"])
    except (RelayError, OSError):
        return None


def analyse(out: Path, cases: dict[str, Case]) -> list[dict[str, Any]]:
    rows = []
    for record, case, run_dir in bench_runs(out, cases):
        row: dict[str, Any] = {"case": case.id, "config": record["config"], "repeat": record.get("repeat"),
                               "status": record.get("status"), "passed": bool(record.get("passed"))}
        drawn = [e for e in events(run_dir) if e.get("kind") == "candidates" and e.get("attempt") == 1] \
            if run_dir.is_dir() else []
        implement = run_dir / "attempts" / "1-implement.md"
        if not drawn or not implement.is_file():
            rows.append(row)
            continue
        event = drawn[-1]
        texts = answers(implement.read_text(encoding="utf-8"))
        config = record_config(record)
        verdicts: dict[int, bool | None] = {}
        for number, text in texts.items():
            with tempfile.TemporaryDirectory(prefix="relay-oracle-") as tmp:
                verdicts[number] = candidate_passes(case, text, config, Path(tmp))
        distinct = [d for d in event.get("distinct") or [] if d.get("candidates")]

        by_size = sorted(distinct, key=lambda d: int(d.get("changed_lines") or 0))
        winner = event.get("winner")
        row.update({
            "candidates": {str(k): v for k, v in sorted(verdicts.items())},
            "any": any(v for v in verdicts.values()),
            "chosen": None if not winner else verdicts.get(winner[0]),
            "smallest": verdicts.get(by_size[0]["candidates"][0]) if by_size else None,
            "largest": verdicts.get(by_size[-1]["candidates"][0]) if by_size else None,
        })
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    args, cases = bench_args(__doc__.splitlines()[0], argv)
    rows = analyse(args.out, cases)
    print("| case | config | status | passed | candidates passing | any | chosen | smallest | largest |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cands = r.get("candidates")
        shown = "—" if cands is None else " ".join(f"{k}:{'✓' if v else '✗' if v is False else '?'}"
                                                   for k, v in cands.items())
        print(f"| {r['case']} | {r['config']} | {r['status']} | {r['passed']} | {shown} | {r.get('any')} | "
              f"{r.get('chosen')} | {r.get('smallest')} | {r.get('largest')} |")
    tested = [r for r in rows if "any" in r]
    for key in ("passed", "any", "chosen", "smallest", "largest"):
        print(f"{key}: {sum(1 for r in tested if r.get(key))}/{len(tested)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
