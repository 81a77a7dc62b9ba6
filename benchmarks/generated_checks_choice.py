"""What generated checks changed, from one bench run of a design that generates them.

A run with generated checks verifies every distinct candidate and records, in its `candidates`
event, both the candidate the checks chose (`winner`) and the one the preference order alone would
have chosen (`preferred`: most answers agreeing, then the smallest change). That choice ends the
run (nothing pinned can fail it), so the run without generated checks, given the same drawn
candidates, would have ended with `preferred` written instead. This script rebuilds that tree (the
final commit's parent plus the preferred candidate's answer) and runs the case's hidden tests on it:
a paired comparison of the two choices over the same candidates, at the model cost of one run.

    PYTHONPATH=src .venv/bin/python benchmarks/generated_checks_choice.py BENCH_OUT SUITE.jsonl [--json FILE]

It does not measure what the check request costs a run without it (see the record's ledger), nor
the candidates a differently seeded run would draw.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relaycode.bench.runner import _run_hidden_tests, pair_work_dir, resolve_configs
from relaycode.bench.suite import Case, load_suite
from relaycode.config import Config
from relaycode.edits import apply_edits, parse_edits
from relaycode.errors import RelayError

_ANSWER = re.compile(r"^## answer (\d+) \(([^)\n]*)\)\n\n", re.MULTILINE)


def answers(text: str) -> dict[int, str]:
    """The raw answers of an attempts/N-implement.md file, by candidate number (1-based)."""
    heads = list(_ANSWER.finditer(text))
    out: dict[int, str] = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out[int(head.group(1))] = text[head.end():end].removesuffix("\n\n---\n\n")
    return out


def events(run_dir: Path) -> list[dict[str, Any]]:
    found = []
    for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def git(worktree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(worktree), *args], capture_output=True, text=True, check=True).stdout


def preferred_tree(worktree: Path, answer: str, into: Path) -> Path:
    """The final tree with the last commit's change replaced by `answer`'s (applied to the commit's parent)."""
    tree = into / "tree"
    shutil.copytree(worktree, tree, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    changed = [p for p in git(worktree, "diff", "--name-only", "HEAD^", "HEAD").splitlines() if p]
    before: dict[str, str] = {}
    for path in changed:
        shown = subprocess.run(["git", "-C", str(worktree), "show", f"HEAD^:{path}"], capture_output=True, text=True)
        if shown.returncode == 0:
            before[path] = shown.stdout
            (tree / path).write_text(shown.stdout, encoding="utf-8")
        else:
            (tree / path).unlink(missing_ok=True)
    edits = parse_edits(answer)
    current = {e.path: before.get(e.path, (tree / e.path).read_text(encoding="utf-8")
                                  if (tree / e.path).is_file() else "") for e in edits}
    for path, text in apply_edits(current, edits).items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text, encoding="utf-8")
    return tree


def bench_runs(out: Path, cases: dict[str, Case]) -> Iterator[tuple[dict[str, Any], Case, Path]]:
    """Each record of the bench at `out`, with its case and its run's directory (which may be gone)."""
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        case = cases[record["case"]]
        work = pair_work_dir(out, case.id, record["config"], int(record.get("repeat") or 0))
        yield record, case, work / "runs" / str(record.get("run_id"))


def record_config(record: dict[str, Any]) -> Config:
    """The config a record ran with: its config file when it came from one, else the named preset."""
    source = str(record.get("config_source") or "")
    return resolve_configs([source if source.endswith(".toml") else record["config"]])[0].config


def analyse(out: Path, cases: dict[str, Case]) -> list[dict[str, Any]]:
    rows = []
    for record, case, run_dir in bench_runs(out, cases):
        row: dict[str, Any] = {"case": case.id, "config": record["config"], "status": record.get("status"),
                               "with_checks": bool(record.get("passed")), "cpu_s": record.get("cpu_s"),
                               "checks": None, "weighted": None, "choice_changed": False}
        if not run_dir.is_dir():
            row["without_checks"] = None
            rows.append(row)
            continue
        evs = events(run_dir)
        pinned = [e for e in evs if e.get("kind") == "generated_checks"]
        if pinned:
            row["checks"] = len(pinned[-1].get("checks") or [])
            row["weighted"] = sum(1 for c in pinned[-1].get("checks") or [] if c.get("weighted"))
        ranked = [e for e in evs if e.get("kind") == "candidates" and e.get("generated_checks")]
        last = ranked[-1] if ranked else None
        if last is None or last.get("winner") is None or last.get("preferred") in (None, last.get("winner")):
            row["without_checks"] = row["with_checks"]
            rows.append(row)
            continue
        row["choice_changed"] = True
        state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
        worktree = Path(state["worktree"])
        text = (run_dir / "attempts" / f"{last['attempt']}-implement.md").read_text(encoding="utf-8")
        answer = answers(text)[last["preferred"][0]]
        config = record_config(record)
        with tempfile.TemporaryDirectory(prefix="relay-choice-") as tmp:
            try:
                tree = preferred_tree(worktree, answer, Path(tmp))
                row["without_checks"] = bool(_run_hidden_tests(case, tree, config, False)["passed"])
            except (RelayError, OSError, subprocess.CalledProcessError) as exc:
                row["without_checks"] = None
                row["error"] = str(exc)
        rows.append(row)
    return rows


def bench_args(description: str, argv: list[str]) -> tuple[argparse.Namespace, dict[str, Case]]:
    """The command line of a script that re-reads one bench (`OUT SUITE [--json FILE]`), and the suite's cases."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", type=Path, help="the bench's --out directory")
    parser.add_argument("suite", type=Path, help="the suite the bench ran")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    return args, {c.id: c for c in load_suite(args.suite)}


def main(argv: list[str]) -> int:
    args, cases = bench_args(__doc__.splitlines()[0], argv)
    rows = analyse(args.out, cases)
    print("| case | checks (weighted) | choice changed | passed with checks | passed without |")
    print("|---|---:|---|---|---|")
    for r in rows:
        checks = "—" if r["checks"] is None else f"{r['checks']} ({r['weighted']})"
        print(f"| {r['case']} | {checks} | {'yes' if r['choice_changed'] else 'no'} | "
              f"{r['with_checks']} | {r['without_checks']} |")
    with_n = sum(1 for r in rows if r["with_checks"])
    without_n = sum(1 for r in rows if r["without_checks"])
    print(f"\npassed with generated checks {with_n}/{len(rows)}, without {without_n}/{len(rows)}; "
          f"choice changed in {sum(1 for r in rows if r['choice_changed'])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
