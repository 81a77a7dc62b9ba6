"""`relay review-eval`: precision and recall of reviewers on labelled bug-fix cases.

For each case and each path with labelled bug lines, two reviews run through
`review_diff`, one after another (a local server has two cores):

- the buggy change, reference → files (the labelled lines are on its new side);
- the clean change, files → reference (a correct fix: any finding is a false alarm).

A finding is true when its line range touches a labelled bug line ±1. Per
reviewer and for the merged ensemble: recall = bugs found / bugs; precision =
true findings / findings on buggy changes; F1; false alarms per clean change;
dollars, tokens and seconds per review.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaycode.errors import UsageError
from relaycode.review.core import ReviewResult, review_diff
from relaycode.review.findings import Finding
from relaycode.session import ModelSession

ENSEMBLE = "ensemble"
Progress = Callable[[str], None]


def load_suite(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Bug-fix cases with `bug_lines` from a JSONL suite, in file order, at most `limit`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the suite: {exc.strerror or exc}") from None
    cases = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{n}: not JSON: {exc.msg}") from None
        if any(case.get("bug_lines", {}).values()):
            cases.append(case)
    return cases[:limit] if limit is not None else cases


def unified_diff(path: str, old: str, new: str) -> str:
    """A git-style diff of one file from `old` to `new` text."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out = [f"diff --git a/{path} b/{path}\n"]
    for line in difflib.unified_diff(a, b, f"a/{path}", f"b/{path}", n=3):
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def true_findings(findings: list[Finding], path: str, bug_lines: list[int]) -> int:
    return sum(1 for f in findings if f.path == path and any(f.touches(b, slack=1) for b in bug_lines))


@dataclass
class Tally:
    """Counts for one system (a reviewer or the ensemble)."""

    bugs: int = 0
    found: int = 0
    buggy_findings: int = 0
    true_findings: int = 0
    clean_changes: int = 0
    clean_findings: int = 0
    clean_flagged: int = 0
    reviews: int = 0
    errors: int = 0
    usd: float | None = 0.0
    tokens: int = 0
    seconds: float = 0.0

    def add_cost(self, usage: dict[str, Any], seconds: float) -> None:
        self.reviews += 1
        self.tokens += int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)
        usd = usage.get("usd")
        self.usd = None if usd is None or self.usd is None else self.usd + float(usd)
        self.seconds += seconds

    def summary(self) -> dict[str, Any]:
        recall = self.found / self.bugs if self.bugs else None
        precision = self.true_findings / self.buggy_findings if self.buggy_findings else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall > 0 else 0.0)
        per = max(self.reviews, 1)
        return {
            "bugs": self.bugs, "found": self.found, "recall": recall,
            "findings_on_buggy": self.buggy_findings, "true_findings": self.true_findings,
            "precision": precision, "f1": f1,
            "clean_changes": self.clean_changes, "clean_findings": self.clean_findings,
            "false_alarms_per_clean": self.clean_findings / self.clean_changes if self.clean_changes else None,
            "clean_flagged_share": self.clean_flagged / self.clean_changes if self.clean_changes else None,
            "reviews": self.reviews, "errors": self.errors,
            "usd_per_review": None if self.usd is None else self.usd / per,
            "tokens_per_review": self.tokens / per, "seconds_per_review": self.seconds / per,
        }


@dataclass
class EvalRun:
    """Every review row of a run; the tallies are a fold over the rows, so a saved run resumes exactly."""

    reviewers: list[str]
    min_agree: int
    suite: str = ""
    #: relay's commit, recorded in every row this process adds (a resumed run may mix commits).
    commit: str | None = None
    tallies: dict[str, Tally] = field(default_factory=dict)
    reviews: list[dict[str, Any]] = field(default_factory=list)

    def record(self, case_id: str, path: str, kind: str, bug_lines: list[int], result: ReviewResult) -> dict[str, Any]:
        systems: dict[str, tuple[list[Finding], dict[str, Any], float, bool]] = {
            spec: (result.per_reviewer.get(spec, []), result.usage.get(spec, {}),
                   float(result.usage.get(spec, {}).get("wall_seconds", 0.0)), spec in result.errors)
            for spec in self.reviewers
        }
        total = result.total_usage()
        systems[ENSEMBLE] = (result.findings, total, result.seconds, result.failed)
        row: dict[str, Any] = {"case": case_id, "path": path, "kind": kind, "bug_lines": bug_lines,
                               "not_reviewed": result.not_reviewed, "errors": result.errors,
                               "relay_commit": self.commit, "systems": {}}
        for name, (findings, usage, seconds, failed) in systems.items():
            usd = usage.get("usd")
            row["systems"][name] = {
                "findings": [f.model_dump(mode="json") for f in findings],
                "true": true_findings(findings, path, bug_lines) if kind == "buggy" else 0,
                # What the tallies need, so that a saved run can be re-tallied (resume).
                "input_tokens": int(usage.get("input_tokens") or 0),
                "output_tokens": int(usage.get("output_tokens") or 0),
                "usd": None if usd is None else str(usd), "seconds": round(seconds, 3), "failed": failed,
            }
        self._add(row)
        return row

    def _add(self, row: dict[str, Any]) -> None:
        self.reviews.append(row)
        for name, system in row["systems"].items():
            tally = self.tallies.setdefault(name, Tally())
            tally.add_cost(system, float(system["seconds"]))
            tally.errors += int(system["failed"])
            hits, found = int(system["true"]), len(system["findings"])
            if row["kind"] == "buggy":
                tally.bugs += 1
                tally.found += int(hits > 0)
                tally.buggy_findings += found
                tally.true_findings += hits
            else:
                tally.clean_changes += 1
                tally.clean_findings += found
                tally.clean_flagged += int(found > 0)

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Rows made by another process (`eval_ray`), folded in as if reviewed here."""
        for row in rows:
            self._add(row)

    def done_cases(self) -> set[str]:
        return {row["case"] for row in self.reviews}

    @property
    def cases_done(self) -> int:
        return len(self.done_cases())

    def commits(self) -> dict[str, int]:
        """Cases reviewed per relay commit, in the order first seen ("unrecorded" for rows of older relays)."""
        cases: dict[str, set[str]] = {}
        for row in self.reviews:
            cases.setdefault(row.get("relay_commit") or "unrecorded", set()).add(row["case"])
        return {commit: len(ids) for commit, ids in cases.items()}

    def summary(self) -> dict[str, dict[str, Any]]:
        return {name: self.tallies[name].summary() for name in [*self.reviewers, ENSEMBLE] if name in self.tallies}

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "reviewers": self.reviewers, "min_agree": self.min_agree,
                "cases_done": self.cases_done, "summary": self.summary(), "reviews": self.reviews}

    @classmethod
    def resume(cls, path: Path, *, suite: str, reviewers: list[str], min_agree: int,
               commit: str | None = None) -> EvalRun:
        """The run saved at `path` (review_eval.json), to continue with the same suite and reviewers."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: cannot resume from it: {exc}") from None
        saved = (data.get("suite"), data.get("reviewers"), data.get("min_agree"))
        if saved != (suite, reviewers, min_agree):
            raise UsageError(f"{path}: saved by another evaluation (suite, reviewers, min_agree = {saved}); "
                             f"this one is {(suite, reviewers, min_agree)}: pick another --out")
        rows = data.get("reviews", [])
        if any("input_tokens" not in s for row in rows for s in row["systems"].values()):
            raise UsageError(f"{path}: written by an older relay that did not save per-review costs; "
                             "cannot resume it, start again with --force")
        run = cls(list(reviewers), min_agree, suite, commit)
        for row in rows:
            run._add(row)
        return run


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def markdown_table(summary: dict[str, dict[str, Any]]) -> str:
    head = ("| reviewer | bugs found | recall | precision | F1 | false alarms / clean change | "
            "clean changes flagged | $ / review | tokens / review | s / review | failed reviews |")
    out = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        usd = "unknown" if s["usd_per_review"] is None else f"{s['usd_per_review']:.4f}"
        fa = "n/a" if s["false_alarms_per_clean"] is None else f"{s['false_alarms_per_clean']:.2f}"
        out.append(
            f"| `{name}` | {s['found']}/{s['bugs']} | {_pct(s['recall'])} | {_pct(s['precision'])} "
            f"({s['true_findings']}/{s['findings_on_buggy']}) | {s['f1']:.2f} | {fa} | {_pct(s['clean_flagged_share'])} | "
            f"{usd} | {s['tokens_per_review']:.0f} | {s['seconds_per_review']:.1f} | {s['errors']}/{s['reviews']} |"
        )
    return "\n".join(out) + "\n"


def _constant(text: str) -> Callable[[str], str | None]:
    """A source reader for a one-file diff: the new side is `text`."""

    def read(_path: str) -> str | None:
        return text

    return read


async def evaluate(
    new_session: Callable[[], ModelSession],
    cases: list[dict[str, Any]],
    *,
    reviewers: list[str],
    min_agree: int = 1,
    progress: Progress | None = None,
    checkpoint: Callable[[EvalRun], object] | None = None,
    resume: EvalRun | None = None,
) -> EvalRun:
    """Review every case's buggy and clean change in turn; the tallies are in the returned run.

    Each review gets a fresh session from `new_session`: budgets then apply per review, and a
    local server that was restarted meanwhile (on another port) is found again. `checkpoint` is
    called after every case, so a long run that is stopped keeps what it measured; pass that saved
    run as `resume` and the cases it holds are not reviewed again.
    """
    run = resume if resume is not None else EvalRun(list(reviewers), min_agree)
    done = run.done_cases()
    say = progress or (lambda _m: None)
    for n, case in enumerate(cases, start=1):
        if case["id"] in done:
            continue
        for path, lines in case.get("bug_lines", {}).items():
            if not lines or path not in case.get("files", {}) or path not in case.get("reference", {}):
                continue
            buggy, fixed = case["files"][path], case["reference"][path]
            for kind, old, new in (("buggy", fixed, buggy), ("clean", buggy, fixed)):
                t0 = time.perf_counter()
                result = await review_diff(
                    new_session(), unified_diff(path, old, new), reviewers=reviewers, min_agree=min_agree,
                    read_source=_constant(new),
                )
                row = run.record(case["id"], path, kind, list(lines), result)
                hits = row["systems"][ENSEMBLE]["true"]
                found = len(row["systems"][ENSEMBLE]["findings"])
                verdict = f"{hits} true of {found}" if kind == "buggy" else f"{found} false alarm(s)"
                failed = "".join(f"; {spec} failed: {error[:160]}" for spec, error in result.errors.items())
                say(f"[{n}/{len(cases)}] {case['id']} {kind}: {verdict} ({time.perf_counter() - t0:.1f}s{failed})")
        if checkpoint is not None:
            checkpoint(run)
    return run


def save(run: EvalRun, out_dir: Path, *, header: str = "") -> tuple[Path, Path]:
    """Write review_eval.json and review_eval.md into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "review_eval.json", out_dir / "review_eval.md"
    json_path.write_text(json.dumps(run.to_dict(), indent=2) + "\n", encoding="utf-8")
    md_path.write_text((header + "\n\n" if header else "") + markdown_table(run.summary()), encoding="utf-8")
    return json_path, md_path
