"""`relay review-eval`: precision and recall of reviewers on labelled bug-fix cases.

For each case and each path with labelled bug lines, two reviews run through
`review_diff`, one after another (a local server has two cores):

- the buggy change, reference → files (the labelled lines are on its new side);
- the clean change, files → reference (a correct fix: any finding is a false alarm).

A finding is true when its line range touches a labelled bug line ±1. Per
reviewer and for the merged ensemble: recall = bugs found / bugs; precision =
true findings / findings on buggy changes; F1; false alarms per clean change;
dollars, tokens and seconds per review.

With evidence (`EvalSettings.evidence`) reviewers are asked for evidence, which
runs in the sandbox against the case's changed and base file (see `evidence.py`),
and every metric is also reported for three views of the same findings: all,
`kept` (refuted ones dropped) and `confirmed` only. The *strict* score counts a
finding as true only when it is on a bug line AND its evidence was confirmed or
its suggested fix, applied mechanically (`fix_candidates`), makes the case's
hidden tests pass in the sandbox: a comment on the right line for the wrong
reason is not a catch.

`review_case(case, reviewers, settings)` reviews one case on its own (no shared
state), so an executor can run cases anywhere; `EvalRun` folds its rows.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaycode.config import Config
from relaycode.dollars import usd_text
from relaycode.errors import UsageError
from relaycode.review.core import ReviewResult, review_diff
from relaycode.review.evidence import EVIDENCE_WALL_S, EvidenceChecker, FilesTree, sandbox_for
from relaycode.review.findings import STATUSES, Finding, Status, merge_findings
from relaycode.review.judge import JudgeSetting
from relaycode.review.weights import ReviewerWeight, Weights, scorer
from relaycode.sandbox import Limits, SandboxPolicy
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


def on_bug_line(finding: Mapping[str, Any], path: str, bug_lines: Iterable[int]) -> bool:
    """The line-overlap rule: the finding's range touches a labelled bug line ±1."""
    return finding["path"] == path and any(finding["start_line"] - 1 <= b <= finding["end_line"] + 1 for b in bug_lines)


def true_findings(findings: list[Finding], path: str, bug_lines: list[int]) -> int:
    return sum(1 for f in findings if on_bug_line(f.model_dump(), path, bug_lines))


#: The views of one system's findings that review-eval scores: all of them, refuted ones dropped, confirmed
#: only, and refuted ones and those the judge called not a bug (unless confirmed) dropped.
VIEWS: tuple[str, ...] = ("all", "kept", "confirmed", "judged")
#: A judge's verdicts, and findings it did not judge, as review-eval counts them.
JUDGE_COLUMNS: tuple[str, ...] = ("bug", "not_a_bug", "unsure", "not_judged")


def verdict_of(finding: Mapping[str, Any]) -> str:
    """The judge's verdict on a saved finding, or "not_judged"."""
    judgement = finding.get("judgement")
    return str(judgement["verdict"]) if judgement else "not_judged"


def in_view(finding: Mapping[str, Any], view: str) -> bool:
    status = finding.get("status", "unchecked")
    if view == "judged":
        return status != "refuted" and (verdict_of(finding) != "not_a_bug" or status == "confirmed")
    return view == "all" or (view == "kept" and status != "refuted") or (view == "confirmed" and status == "confirmed")


def strictly_true(finding: Mapping[str, Any], path: str, bug_lines: Iterable[int]) -> bool:
    """On a bug line AND (its evidence reproduced OR its suggested fix made the hidden tests pass)."""
    return on_bug_line(finding, path, bug_lines) and (finding.get("status") == "confirmed"
                                                      or bool(finding.get("fix_passes")))


@dataclass
class ViewTally:
    """Counts for one view of one system's findings."""

    found: int = 0
    buggy_findings: int = 0
    true_findings: int = 0
    clean_findings: int = 0
    clean_flagged: int = 0
    strict_found: int = 0
    strict_true: int = 0

    def add(self, row: Mapping[str, Any], findings: list[Mapping[str, Any]]) -> None:
        if row["kind"] == "buggy":
            hits = [f for f in findings if on_bug_line(f, row["path"], row["bug_lines"])]
            strict = [f for f in findings if strictly_true(f, row["path"], row["bug_lines"])]
            self.found += int(bool(hits))
            self.buggy_findings += len(findings)
            self.true_findings += len(hits)
            self.strict_found += int(bool(strict))
            self.strict_true += len(strict)
        else:
            self.clean_findings += len(findings)
            self.clean_flagged += int(bool(findings))

    def summary(self, bugs: int, clean_changes: int) -> dict[str, Any]:
        def f1(p: float | None, r: float | None) -> float:
            return 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else 0.0

        recall = self.found / bugs if bugs else None
        precision = self.true_findings / self.buggy_findings if self.buggy_findings else None
        strict_recall = self.strict_found / bugs if bugs else None
        strict_precision = self.strict_true / self.buggy_findings if self.buggy_findings else None
        every = self.buggy_findings + self.clean_findings
        return {
            "found": self.found, "recall": recall, "findings_on_buggy": self.buggy_findings,
            "true_findings": self.true_findings, "precision": precision, "f1": f1(precision, recall),
            "clean_findings": self.clean_findings,
            "false_alarms_per_clean": self.clean_findings / clean_changes if clean_changes else None,
            "clean_flagged_share": self.clean_flagged / clean_changes if clean_changes else None,
            "strict_found": self.strict_found, "strict_true": self.strict_true,
            "strict_recall": strict_recall, "strict_precision": strict_precision,
            "strict_f1": f1(strict_precision, strict_recall),
            # Share of real findings over buggy AND correct changes: what a finding on an unknown change is worth.
            "precision_all_changes": self.true_findings / every if every else None,
            "strict_precision_all_changes": self.strict_true / every if every else None,
        }


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
    evidence_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATUSES})
    clean_statuses: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATUSES})
    views: dict[str, ViewTally] = field(default_factory=lambda: {v: ViewTally() for v in VIEWS})
    verdicts: dict[str, dict[str, int]] = field(default_factory=lambda: {
        k: {v: 0 for v in JUDGE_COLUMNS} for k in ("true", "other_buggy", "clean")})
    """Judge verdicts on findings on a bug line ("true"), other findings on buggy changes, findings on correct ones."""

    def add_cost(self, usage: dict[str, Any], seconds: float) -> None:
        self.reviews += 1
        self.tokens += int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)
        usd = usage.get("usd")
        self.usd = None if usd is None or self.usd is None else self.usd + float(usd)
        self.seconds += seconds
        self.evidence_seconds += float(usage.get("evidence_seconds") or 0.0)

    def add(self, row: Mapping[str, Any], system: Mapping[str, Any]) -> None:
        self.add_cost(dict(system), float(system["seconds"]))
        self.errors += int(system["failed"])
        findings: list[Mapping[str, Any]] = system["findings"]
        hits = sum(1 for f in findings if on_bug_line(f, row["path"], row["bug_lines"])) if row["kind"] == "buggy" else 0
        counts = self.statuses if row["kind"] == "buggy" else self.clean_statuses
        for f in findings:
            counts[f.get("status", "unchecked")] += 1
            where = ("clean" if row["kind"] != "buggy"
                     else "true" if on_bug_line(f, row["path"], row["bug_lines"]) else "other_buggy")
            self.verdicts[where][verdict_of(f)] += 1
        if row["kind"] == "buggy":
            self.bugs += 1
            self.found += int(hits > 0)
            self.buggy_findings += len(findings)
            self.true_findings += hits
        else:
            self.clean_changes += 1
            self.clean_findings += len(findings)
            self.clean_flagged += int(bool(findings))
        for view, tally in self.views.items():
            tally.add(row, [f for f in findings if in_view(f, view)])

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
            "evidence_seconds_per_review": self.evidence_seconds / per,
            "statuses_on_buggy": dict(self.statuses), "statuses_on_clean": dict(self.clean_statuses),
            "views": {v: t.summary(self.bugs, self.clean_changes) for v, t in self.views.items()},
            "verdicts": {k: dict(v) for k, v in self.verdicts.items()},
        }


@dataclass(frozen=True)
class EvalSettings:
    """How review-eval reviews and merges; everything `review_case` needs besides the case and reviewers."""

    config: Config | None = None
    """Sessions (when `review_case` gets no factory) and the sandbox settings; None: defaults."""
    min_agree: int = 1
    evidence: bool = False
    """Ask reviewers for evidence and run it in the sandbox; also try suggested fixes for the strict score."""
    weights: Weights | None = None
    """Score merged findings with these (None: the ensemble is the plain union, as before evidence)."""
    min_score: float = 0.0
    followup: bool = False
    """With `evidence`: ask each reviewer for evidence per finding it left without (`review_diff(followup=)`)."""
    judge: JudgeSetting | None = None
    """Who judges the merged findings (`review_diff(judge=)`); None: nobody."""
    samples: int = 1
    """Answers per reviewer and chunk (`review_diff(samples=)`); above 1, each reviewer's first answers
    alone are also scored, as `<reviewer>@1`, so one run measures the vote against a single answer."""

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the saved one for its tallies to mean the same."""
        identity: dict[str, Any] = {"evidence": self.evidence, "weighted": self.weights is not None,
                                    "min_score": self.min_score}
        if self.followup:
            identity["followup"] = True
        if self.judge is not None and self.judge.mode != "none":
            identity["judge"] = str(self.judge)
        if self.samples > 1:
            identity["samples"] = self.samples
        return identity

    def sandbox(self, wall_s: float) -> tuple[SandboxPolicy, Limits, dict[str, str]]:
        """Evidence and hidden tests run as `evidence.sandbox_for` says (always sandboxed)."""
        from relaycode.config import SandboxSettings

        return sandbox_for(self.config.sandbox if self.config is not None else SandboxSettings(), wall_s)


def first_answer_name(spec: str) -> str:
    """The system name of a sampled reviewer's first answers alone."""
    return f"{spec}@1"


def make_row(case_id: str, path: str, kind: str, bug_lines: list[int], result: ReviewResult,
             reviewers: list[str], commit: str | None) -> dict[str, Any]:
    """One review's row: each reviewer's and the ensemble's findings, costs and failure, as saved data."""
    systems: dict[str, tuple[list[Finding], dict[str, Any], float, bool]] = {
        spec: (result.per_reviewer.get(spec, []), result.usage.get(spec, {}),
               float(result.usage.get(spec, {}).get("wall_seconds", 0.0)), spec in result.errors)
        for spec in reviewers
    }
    total = result.total_usage()
    total["evidence_seconds"] = sum(float(u.get("evidence_seconds") or 0.0) for u in result.usage.values())
    # The judged-out findings stay in the saved ensemble (marked), so one run scores it with and without the judge.
    systems[ENSEMBLE] = ([*result.findings, *result.judged_out], total, result.seconds, result.failed)
    for spec, first in result.first_answers.items():
        # The same requests' first answers alone: costs are the reviewer's (one prompt, several answers).
        systems[first_answer_name(spec)] = (first, *systems[spec][1:])
    row: dict[str, Any] = {"case": case_id, "path": path, "kind": kind, "bug_lines": bug_lines,
                           "not_reviewed": result.not_reviewed, "errors": result.errors,
                           "relay_commit": commit, "systems": {}}
    for name, (findings, usage, seconds, failed) in systems.items():
        usd = usage.get("usd")
        row["systems"][name] = {
            "findings": [f.model_dump(mode="json") for f in findings],
            "true": true_findings(findings, path, bug_lines) if kind == "buggy" else 0,
            # What the tallies need, so that a saved run can be re-tallied (resume).
            "input_tokens": int(usage.get("input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0),
            "usd": None if usd is None else str(usd), "seconds": round(seconds, 3), "failed": failed,
            "evidence_seconds": round(float(usage.get("evidence_seconds") or 0.0), 3),
        }
    return row


@dataclass
class EvalRun:
    """Every review row of a run; the tallies are a fold over the rows, so a saved run resumes exactly."""

    reviewers: list[str]
    min_agree: int
    suite: str = ""
    #: relay's commit, recorded in every row this process adds (a resumed run may mix commits).
    commit: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """`EvalSettings.identity()` of the run (empty for runs without evidence or weights)."""
    tallies: dict[str, Tally] = field(default_factory=dict)
    reviews: list[dict[str, Any]] = field(default_factory=list)

    def record(self, case_id: str, path: str, kind: str, bug_lines: list[int], result: ReviewResult) -> dict[str, Any]:
        row = make_row(case_id, path, kind, bug_lines, result, self.reviewers, self.commit)
        self.add_row(row)
        return row

    def add_row(self, row: dict[str, Any]) -> None:
        self.reviews.append(row)
        for name, system in row["systems"].items():
            self.tallies.setdefault(name, Tally()).add(row, system)

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Rows made by another process (`eval_ray`), folded in as if reviewed here."""
        for row in rows:
            self.add_row(row)

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
        names = [*self.reviewers, *(first_answer_name(r) for r in self.reviewers), ENSEMBLE]
        return {name: self.tallies[name].summary() for name in names if name in self.tallies}

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "reviewers": self.reviewers, "min_agree": self.min_agree,
                "settings": self.settings, "cases_done": self.cases_done, "summary": self.summary(),
                "reviews": self.reviews}

    @classmethod
    def resume(cls, path: Path, *, suite: str, reviewers: list[str], min_agree: int,
               commit: str | None = None, settings: dict[str, Any] | None = None) -> EvalRun:
        """The run saved at `path` (review_eval.json), to continue with the same suite, reviewers and settings."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path}: cannot resume from it: {exc}") from None
        saved = (data.get("suite"), data.get("reviewers"), data.get("min_agree"), data.get("settings") or {})
        wanted = (suite, reviewers, min_agree, settings or {})
        if saved != wanted:
            raise UsageError(f"{path}: saved by another evaluation (suite, reviewers, min_agree, settings = {saved}); "
                             f"this one is {wanted}: pick another --out")
        rows = data.get("reviews", [])
        if any("input_tokens" not in s for row in rows for s in row["systems"].values()):
            raise UsageError(f"{path}: written by an older relay that did not save per-review costs; "
                             "cannot resume it, start again with --force")
        run = cls(list(reviewers), min_agree, suite, commit, dict(settings or {}))
        for row in rows:
            run.add_row(row)
        return run


def saved_rows(path: Path, cases: int | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """A saved review-eval run (review_eval.json): its reviewers and its rows, those of its first `cases`
    cases only when given (for re-tallying or re-judging part of a run)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a saved review-eval run: {exc}") from None
    rows: list[dict[str, Any]] = data["reviews"]
    if cases is not None:
        keep = set(list(dict.fromkeys(r["case"] for r in rows))[:cases])
        rows = [r for r in rows if r["case"] in keep]
    return list(data["reviewers"]), rows


def remerge(rows: Iterable[Mapping[str, Any]], reviewers: list[str], *, min_agree: int = 1,
            weights: Weights | None = None, min_score: float = 0.0) -> EvalRun:
    """The saved rows with the ensemble merged again from each reviewer's saved findings under other
    merge settings (no model runs): how another --min-agree / --min-score / weighting would have done."""
    run = EvalRun(list(reviewers), min_agree)
    for row in rows:
        every = [Finding.model_validate(f) for spec in reviewers for f in row["systems"][spec]["findings"]]
        merged = merge_findings(every, reviewers=len(reviewers), min_agree=min_agree,
                                scorer=None if weights is None else scorer(weights), min_score=min_score)
        old = row["systems"][ENSEMBLE]
        members = [f for spec in reviewers for f in row["systems"][spec]["findings"]]
        # A merged finding's suggested fix passed when one of its members' did (members lie within its range).
        findings = [{**m.model_dump(mode="json"),
                     "fix_passes": any(f.get("fix_passes") for f in members if f["path"] == m.path
                                       and m.start_line <= f["start_line"] and f["end_line"] <= m.end_line)}
                    for m in merged]
        run.add_row({**row, "systems": {**row["systems"], ENSEMBLE: {**old, "findings": findings}}})
    return run


def weights_from_eval(rows: Iterable[Mapping[str, Any]], reviewers: Iterable[str], *, source: str,
                      prior: ReviewerWeight) -> dict[str, ReviewerWeight]:
    """Per reviewer: the share of real findings (strict score) by evidence status, over buggy and clean changes.

    A status with fewer than 5 findings keeps `prior`'s value: a ratio of a few findings is not a measurement.
    """
    rows = list(rows)
    out: dict[str, ReviewerWeight] = {}
    for spec in reviewers:
        real = {s: 0 for s in STATUSES}
        seen = {s: 0 for s in STATUSES}
        for row in rows:
            system = row["systems"].get(spec)
            if system is None:
                continue
            lines = row["bug_lines"] if row["kind"] == "buggy" else []
            for f in system["findings"]:
                status: Status = f.get("status", "unchecked")
                seen[status] += 1
                # A confirmed finding must be strictly true; an unchecked one cannot be, so it counts on its line.
                hit = strictly_true(f, row["path"], lines) if status == "confirmed" else on_bug_line(f, row["path"], lines)
                real[status] += int(hit)
        values = {s: round(real[s] / seen[s], 3) if seen[s] >= 5 else prior.of(s) for s in STATUSES}
        counts = ", ".join(f"{s} {real[s]}/{seen[s]}" for s in STATUSES)
        out[spec] = ReviewerWeight(**values, source=f"{source} ({counts})")
    return out


_SPAN = re.compile(r"`([^`\n]+)`")
_BLOCK = re.compile(r"```[a-zA-Z]*\n(.*?)```", re.S)


def fix_candidates(suggestion: str, lines: list[str], start: int, end: int, *, limit: int = 3) -> list[list[str]]:
    """New versions of `lines` that apply a suggestion mechanically (at most `limit`), for the strict score.

    A fenced block replaces the finding's lines; "change `A` to `B`" replaces A by B on them; a lone
    code span (or a one-line suggestion) replaces a one-line finding's line, keeping its indentation.
    Prose that names no code gives nothing: such a suggestion cannot make tests pass by itself.
    """
    if not 1 <= start <= end <= len(lines):
        return []
    indent = re.match(r"\s*", lines[start - 1]).group()  # type: ignore[union-attr]
    target = "".join(lines[start - 1:end])
    out: list[str] = []
    for block in _BLOCK.findall(suggestion):
        body = [ln for ln in block.splitlines() if ln.strip()]
        if body:
            least = min(len(ln) - len(ln.lstrip()) for ln in body)
            out.append("".join(indent + ln[least:] + "\n" for ln in body))
    spans = _SPAN.findall(suggestion)
    for old, new in itertools.pairwise(spans):
        if old in target and old != new:
            out.append(target.replace(old, new, 1))
    if start == end:
        singles = spans or ([suggestion.strip()] if suggestion.strip() and "\n" not in suggestion.strip() else [])
        out += [indent + span.strip() + "\n" for span in singles]
    versions = []
    for text in dict.fromkeys(out):
        if text != target:
            versions.append(lines[:start - 1] + text.splitlines(keepends=True) + lines[end:])
    return versions[:limit]


def fix_passes(case: Mapping[str, Any], path: str, new: str, finding: Mapping[str, Any],
               settings: EvalSettings) -> bool:
    """Whether one of the finding's mechanically applied suggestions makes the case's hidden tests pass (sandbox)."""
    import tempfile

    from relaycode.bench.hidden import verdict_for
    from relaycode.sandbox import run as sandbox_run

    hidden = case.get("hidden_files") or {}
    if not hidden or not case.get("test_command"):
        return False
    lines = new.splitlines(keepends=True)
    policy, limits, env = settings.sandbox(float(case.get("timeout_s", 60)))
    for version in fix_candidates(finding.get("suggestion", ""), lines, finding["start_line"], finding["end_line"]):
        files = {**case["files"], path: "".join(version), **hidden}
        with tempfile.TemporaryDirectory(prefix="relay-fix-") as scratch:
            FilesTree(files).write_to(Path(scratch))
            # A suggestion is model-written code: the bench's rule decides whether it passed, not the exit code.
            verdict = verdict_for(case["test_command"])
            done = sandbox_run(verdict.command, Path(scratch), policy=policy, limits=limits, extra_env=env,
                               stdin=verdict.stdin)
        if not done.timed_out and verdict.passed(done.exit_code, done.output_tail):
            return True
    return False


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def markdown_table(summary: dict[str, dict[str, Any]]) -> str:
    head = ("| reviewer | bugs found | recall | precision | F1 | false alarms / clean change | "
            "clean changes flagged | $ / review | tokens / review | s / review | failed reviews |")
    out = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        usd = usd_text(s["usd_per_review"])
        fa = "n/a" if s["false_alarms_per_clean"] is None else f"{s['false_alarms_per_clean']:.2f}"
        out.append(
            f"| `{name}` | {s['found']}/{s['bugs']} | {_pct(s['recall'])} | {_pct(s['precision'])} "
            f"({s['true_findings']}/{s['findings_on_buggy']}) | {s['f1']:.2f} | {fa} | {_pct(s['clean_flagged_share'])} | "
            f"{usd} | {s['tokens_per_review']:.0f} | {s['seconds_per_review']:.1f} | {s['errors']}/{s['reviews']} |"
        )
    return "\n".join(out) + "\n"


def evidence_table(summary: dict[str, dict[str, Any]]) -> str:
    """Per system and view (all, kept = refuted dropped, confirmed only): line-overlap and strict scores."""
    out = ["| reviewer | view | bugs found | precision | F1 | strict found | strict precision | strict F1 | "
           "real share (all changes, strict) | false alarms / clean change | confirmed / refuted / unchecked "
           "(buggy; clean) | evidence s / review |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        counts = (f"{'/'.join(str(s['statuses_on_buggy'][k]) for k in STATUSES)}; "
                  f"{'/'.join(str(s['statuses_on_clean'][k]) for k in STATUSES)}")
        for view, v in s["views"].items():
            fa = "n/a" if v["false_alarms_per_clean"] is None else f"{v['false_alarms_per_clean']:.2f}"
            out.append(
                f"| `{name}` | {view} | {v['found']}/{s['bugs']} | {_pct(v['precision'])} "
                f"({v['true_findings']}/{v['findings_on_buggy']}) | {v['f1']:.2f} | {v['strict_found']}/{s['bugs']} | "
                f"{_pct(v['strict_precision'])} | {v['strict_f1']:.2f} | {_pct(v['strict_precision_all_changes'])} "
                f"({v['strict_true']}/{v['findings_on_buggy'] + v['clean_findings']}) | {fa} | "
                + (f"{counts} | {s['evidence_seconds_per_review']:.1f} |" if view == "all" else " | |")
            )
    return "\n".join(out) + "\n"


def judge_table(summary: dict[str, dict[str, Any]]) -> str:
    """Per system: the judge's verdicts on true findings, other findings on buggy changes and false alarms
    (bug / not a bug / unsure / not judged), and what the judged view keeps."""
    out = ["| reviewer | on true findings | on other findings (buggy) | on false alarms (clean) | "
           "judged view: bugs found | precision | F1 | false alarms / clean change |",
           "|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        cells = ["/".join(str(s["verdicts"][k][v]) for v in JUDGE_COLUMNS) for k in ("true", "other_buggy", "clean")]
        v = s["views"]["judged"]
        fa = "n/a" if v["false_alarms_per_clean"] is None else f"{v['false_alarms_per_clean']:.2f}"
        out.append(f"| `{name}` | {' | '.join(cells)} | {v['found']}/{s['bugs']} | {_pct(v['precision'])} "
                   f"({v['true_findings']}/{v['findings_on_buggy']}) | {v['f1']:.2f} | {fa} |")
    return "\n".join(out) + "\n\nVerdict columns: bug / not a bug / unsure / not judged.\n"


def _constant(text: str) -> Callable[[str], str | None]:
    """A source reader for a one-file diff: the new side is `text`."""

    def read(_path: str) -> str | None:
        return text

    return read


async def review_case(
    case: Mapping[str, Any],
    reviewers: list[str],
    settings: EvalSettings,
    *,
    new_session: Callable[[], ModelSession] | None = None,
    commit: str | None = None,
) -> list[dict[str, Any]]:
    """Review one case's buggy and clean change of each labelled path; one saved row per review.

    Depends on nothing but its arguments (a fresh session per review, from `new_session` or
    `settings.config`), so an executor may run cases in any order or place and fold the rows
    with `EvalRun.add_row`.
    """
    rows = []
    for path, lines in case.get("bug_lines", {}).items():
        if not lines or path not in case.get("files", {}) or path not in case.get("reference", {}):
            continue
        buggy, fixed = case["files"][path], case["reference"][path]
        for kind, old, new in (("buggy", fixed, buggy), ("clean", buggy, fixed)):
            if new_session is not None:
                session = new_session()
            elif settings.config is not None:
                session = ModelSession(settings.config, run_id="review-eval")
            else:
                raise UsageError("review_case needs settings.config or a new_session factory")
            checker = None
            if settings.evidence:
                policy, limits, env = settings.sandbox(EVIDENCE_WALL_S)
                checker = EvidenceChecker(FilesTree({**case["files"], path: new}), FilesTree({**case["files"], path: old}),
                                          None, policy, limits, env)
            try:
                result = await review_diff(
                    session, unified_diff(path, old, new), reviewers=reviewers, min_agree=settings.min_agree,
                    read_source=_constant(new), checker=checker, weights=settings.weights, min_score=settings.min_score,
                    followup=settings.followup, judge=settings.judge, samples=settings.samples,
                )
            finally:
                if checker is not None:
                    checker.close()
            row = make_row(case["id"], path, kind, list(lines), result, reviewers, commit)
            if settings.evidence and kind == "buggy":
                await asyncio.to_thread(_try_fixes, row, case, path, new, settings)
            rows.append(row)
    return rows


def _try_fixes(row: dict[str, Any], case: Mapping[str, Any], path: str, new: str, settings: EvalSettings) -> None:
    """Mark `fix_passes` on every finding on a bug line (the only ones the strict score can count)."""
    tried: dict[tuple[int, int, str], bool] = {}
    for system in row["systems"].values():
        for f in system["findings"]:
            if not on_bug_line(f, path, row["bug_lines"]):
                continue
            key = (f["start_line"], f["end_line"], f.get("suggestion", ""))
            if key not in tried:
                tried[key] = fix_passes(case, path, new, f, settings)
            f["fix_passes"] = tried[key]


async def evaluate(
    new_session: Callable[[], ModelSession],
    cases: list[dict[str, Any]],
    *,
    reviewers: list[str],
    min_agree: int = 1,
    settings: EvalSettings | None = None,
    progress: Progress | None = None,
    checkpoint: Callable[[EvalRun], object] | None = None,
    resume: EvalRun | None = None,
) -> EvalRun:
    """Review every case's buggy and clean change in turn; the tallies are in the returned run.

    Each review gets a fresh session from `new_session`: budgets then apply per review, and a
    local server that was restarted meanwhile (on another port) is found again. `checkpoint` is
    called after every case, so a long run that is stopped keeps what it measured; pass that saved
    run as `resume` and the cases it holds are not reviewed again. Without `settings`, plain
    reviews (no evidence, unweighted union) with `min_agree`.
    """
    if settings is None:
        settings = EvalSettings(min_agree=min_agree)
    run = resume if resume is not None else EvalRun(list(reviewers), settings.min_agree)
    done = run.done_cases()
    say = progress or (lambda _m: None)
    for n, case in enumerate(cases, start=1):
        if case["id"] in done:
            continue
        t0 = time.perf_counter()
        for row in await review_case(case, reviewers, settings, new_session=new_session, commit=run.commit):
            run.add_row(row)
            ensemble = row["systems"][ENSEMBLE]["findings"]
            hits = row["systems"][ENSEMBLE]["true"]
            confirmed = sum(1 for f in ensemble if f.get("status") == "confirmed")
            checked = f", {confirmed} confirmed" if settings.evidence else ""
            vetoed = sum(1 for f in ensemble if f.get("judgement") and f["judgement"]["verdict"] == "not_a_bug")
            checked += f", {vetoed} judged not a bug" if settings.judge is not None and settings.judge.mode != "none" else ""
            verdict = (f"{hits} true of {len(ensemble)}" if row["kind"] == "buggy"
                       else f"{len(ensemble)} false alarm(s)") + checked
            failed = "".join(f"; {spec} failed: {error[:160]}" for spec, error in row["errors"].items())
            say(f"[{n}/{len(cases)}] {case['id']} {row['kind']}: {verdict} ({time.perf_counter() - t0:.1f}s{failed})")
        if checkpoint is not None:
            checkpoint(run)
    return run


def save(run: EvalRun, out_dir: Path, *, header: str = "") -> tuple[Path, Path]:
    """Write review_eval.json and review_eval.md into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "review_eval.json", out_dir / "review_eval.md"
    json_path.write_text(json.dumps(run.to_dict(), indent=2) + "\n", encoding="utf-8")
    tables = markdown_table(run.summary())
    if run.settings.get("evidence") or run.settings.get("judge"):
        tables += "\n" + evidence_table(run.summary())
    if run.settings.get("judge"):
        tables += "\n" + judge_table(run.summary())
    md_path.write_text((header + "\n\n" if header else "") + tables, encoding="utf-8")
    return json_path, md_path
