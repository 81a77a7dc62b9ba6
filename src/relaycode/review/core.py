"""`review_diff`: review a unified diff with several models at once and merge what they find."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from relaycode.errors import LimitReached, RelayError, UsageError
from relaycode.ledger import Totals
from relaycode.review.context import SourceReader, plan_chunks
from relaycode.review.diff import DiffParseError, FileDiff, parse_diff
from relaycode.review.findings import STATUSES, VERDICTS, Finding, merge_findings
from relaycode.review.judge import JudgeSetting, annotate_members, apply_verdicts, judge_findings
from relaycode.review.reviewer import ReviewerOutcome, budget_chars, run_reviewer
from relaycode.review.weights import Weights, scorer
from relaycode.session import ModelSession


class FindingChecker(Protocol):
    """Sets a finding's evidence status (`evidence.EvidenceChecker` runs it in the sandbox)."""

    def check(self, finding: Finding) -> Finding: ...


class ReviewResult(BaseModel):
    """The outcome of one review: merged findings, each reviewer's own, and what was not reviewed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)  # `limit` holds the exception itself

    findings: list[Finding] = Field(default_factory=list)
    """Merged across reviewers (see `findings.merge_findings`), filtered by `min_agree`."""
    per_reviewer: dict[str, list[Finding]] = Field(default_factory=dict)
    """Each reviewer's validated findings before merging."""
    not_reviewed: list[str] = Field(default_factory=list)
    """Files, hunks or chunks not reviewed, each with the reason (and the reviewer when it is one's)."""
    errors: dict[str, str] = Field(default_factory=dict)
    """Reviewer → error message, for reviewers that failed on some or all chunks."""
    limit: LimitReached | None = Field(default=None, exclude=True)
    """The first run limit (budget, steps) that refused a reviewer's request, if any: a run stops on it."""
    notes: list[str] = Field(default_factory=list)
    """Findings moved onto the nearest reviewed line or dropped because they cited lines not reviewed."""
    reviewers: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    """Paths in the diff."""
    usage: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Reviewer → ledger totals of this review (requests, tokens, usd) plus `wall_seconds` and
    `evidence_seconds` (time spent running its findings' evidence in the sandbox)."""
    min_agree: int = 1
    samples: int = 1
    """Answers asked of each reviewer per chunk; above 1, each reviewer's findings are those most answers raised."""
    first_answers: dict[str, list[Finding]] = Field(default_factory=dict)
    """With `samples` above 1: reviewer → the findings of its first answers alone (before the vote)."""
    evidence_checked: bool = False
    """Whether findings' evidence was run (False: every finding is unchecked)."""
    min_score: float | None = None
    """Merged findings scoring below this were dropped; None when findings were not weighted."""
    judge: str = "none"
    """Who judged the merged findings (`judge.JudgeSetting`): "reviewers", a model, or "none"."""
    judged_out: list[Finding] = Field(default_factory=list)
    """Merged findings the judge called not a bug (score 0), dropped below `min_score`: listed, not shown."""
    judge_usage: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Judge model → ledger totals of its judgements (requests, tokens, usd) and `wall_seconds`."""
    seconds: float = 0.0
    """Wall time of the whole review (judging included)."""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def status_counts(self) -> dict[str, int]:
        """Merged findings per evidence status (confirmed, refuted, unchecked)."""
        return {s: sum(1 for f in self.findings if f.status == s) for s in STATUSES}

    def verdict_counts(self) -> dict[str, int]:
        """Judge verdicts on the merged findings, those judged out included, and how many were not judged."""
        every = [*self.findings, *self.judged_out]
        counts: dict[str, int] = {v: sum(1 for f in every if f.judgement is not None and f.judgement.verdict == v) for v in VERDICTS}
        counts["not_judged"] = sum(1 for f in every if f.judgement is None)
        return counts

    @property
    def failed(self) -> bool:
        """True when no reviewer produced a complete review."""
        return bool(self.reviewers) and all(r in self.errors for r in self.reviewers)

    def total_usage(self) -> dict[str, Any]:
        """Sums over reviewers and judges: requests, input/output tokens, usd (None if any request was unpriced)."""
        keys = ("requests", "input_tokens", "output_tokens")
        every = [*self.usage.values(), *self.judge_usage.values()]
        total: dict[str, Any] = {k: sum(int(u.get(k) or 0) for u in every) for k in keys}
        usds = [u.get("usd") for u in every]
        total["usd"] = None if any(u is None for u in usds) else round(sum(float(u or 0) for u in usds), 6)
        return total


MAX_SOURCE_BYTES = 1 << 20
"""A changed file larger than this is reviewed from its diff alone (its whole text is not read)."""


def disk_reader(root: Path, *, visible: frozenset[str] | None = None) -> SourceReader:
    """Read new-side files from the working tree. `visible`: the only paths that may be read (what git
    tracks or would add); an ignored file (a `.env`) must not reach a prompt because a patch names it."""
    from relaycode.pathsafety import safe_path
    from relaycode.workspace import open_in_root

    real_root = root.resolve()

    def read(path: str) -> str | None:
        if visible is not None and path not in visible:
            return None
        try:
            # Not through a link, even one inside the tree: a PR's tracked `settings.py -> .env` would
            # otherwise put the ignored file's secrets in a reviewer's prompt.
            if safe_path(root, path) != real_root / path:
                return None
            with open_in_root(root, path, "rb") as fh:
                # A file far larger than any prompt (a PR can add gigabytes of zeros) is not read at all.
                if os.fstat(fh.fileno()).st_size > MAX_SOURCE_BYTES:
                    return None
                data: bytes = fh.read(MAX_SOURCE_BYTES + 1)
            return None if len(data) > MAX_SOURCE_BYTES else data.decode("utf-8")
        except (OSError, ValueError, RelayError):  # missing, not text, or a path leaving the repo
            return None

    return read


async def review_diff(
    session: ModelSession,
    diff: str,
    *,
    reviewers: list[str],
    repo_root: Path | None = None,
    plan: str | None = None,
    attempt: int = 0,
    min_agree: int = 1,
    read_source: SourceReader | None = None,
    checker: FindingChecker | None = None,
    weights: Weights | None = None,
    min_score: float = 0.0,
    followup: bool = False,
    judge: JudgeSetting | None = None,
    samples: int = 1,
) -> ReviewResult:
    """Review `diff` with every model in `reviewers` concurrently and merge their findings.

    `repo_root` (or `read_source`, which wins) supplies the new side of each file
    for enclosing-function context. Model calls use stage "review" and `attempt`.
    A reviewer that fails is listed in `errors`; the others' findings still count.

    With a `checker`, reviewers are asked for evidence and each reviewer's findings are checked
    in the sandbox as soon as that reviewer is done (while slower reviewers still review);
    `followup` also asks each reviewer, per finding it left without evidence, for a call and its
    expected value (one more request each, see `reviewer.run_reviewer`). With
    `weights`, merged findings get a `score` and those below `min_score` are dropped.
    With a `judge`, each merged finding left is judged by a model that did not raise it (see
    `judge.py`); one judged not a bug scores 0 and, with `min_score` above 0, moves to `judged_out`.
    With `samples` above 1, each reviewer answers each chunk that many times and keeps the findings
    most of its answers raise (self-consistency, `findings.consistent`) before the merge.
    Raises `UsageError` for an empty reviewer list or a malformed diff.
    """
    if not reviewers:
        raise UsageError("no reviewers: pass --reviewers or set stages.review.models in the config")
    if min_agree < 1:
        raise UsageError("min_agree must be at least 1")
    if samples < 1:
        raise UsageError("samples must be at least 1")
    if not 0.0 <= min_score <= 1.0:
        raise UsageError(f"min_score must be between 0 and 1, not {min_score}")
    try:
        files = parse_diff(diff)
    except DiffParseError as exc:
        raise UsageError(f"cannot parse the diff: {exc}") from None
    reader = read_source or (disk_reader(repo_root) if repo_root is not None else None)
    result = ReviewResult(reviewers=list(reviewers), files=[f.path for f in files], min_agree=min_agree,
                          samples=samples, evidence_checked=checker is not None,
                          min_score=min_score if weights is not None else None,
                          judge=str(judge) if judge is not None else "none")
    asks_evidence = checker is not None
    first_entry = len(session.ledger.entries)
    started = time.perf_counter()

    plans = {}
    skipped: dict[str, list[str]] = {}
    for spec in reviewers:
        budget = budget_chars(session.models.get(spec), plan, evidence=asks_evidence)
        plans[spec], skipped[spec] = plan_chunks(files, budget, reader)
    for spec in reviewers:
        for reason in skipped[spec]:
            # Binary or deleted files are skipped for everyone; a hunk too large only for some reviewers.
            everyone = all(reason in skipped[other] for other in reviewers)
            result.not_reviewed.append(reason if everyone else f"{reason} (for {spec})")
    weight = round(1 / len(reviewers), 4)
    checking: dict[str, float] = {}

    async def review_then_check(spec: str) -> ReviewerOutcome:
        outcome = await run_reviewer(session, spec, plans[spec], plan=plan, attempt=attempt, weight=weight,
                                     evidence=asks_evidence, followup=followup and asks_evidence, samples=samples)
        if checker is not None:
            t0 = time.perf_counter()
            outcome.findings = await asyncio.to_thread(check_all, checker, outcome.findings)
            if outcome.first_answers is not None:
                # What one answer would have reported is checked as it would have been (review-eval
                # scores it as `<model>@1`); a claim the vote kept as it was is not run twice.
                done = {_claim(f): f for f in outcome.findings}
                outcome.first_answers = [
                    f.model_copy(update={"status": done[_claim(f)].status, "check": done[_claim(f)].check})
                    if _claim(f) in done else (await asyncio.to_thread(check_all, checker, [f]))[0]
                    for f in outcome.first_answers]
            checking[spec] = time.perf_counter() - t0
        return outcome

    outcomes = await asyncio.gather(*(review_then_check(spec) for spec in reviewers))
    judging_from = len(session.ledger.entries)

    every: list[Finding] = []
    for outcome in outcomes:
        result.per_reviewer[outcome.spec] = outcome.findings
        if outcome.first_answers is not None:
            result.first_answers[outcome.spec] = outcome.first_answers
        every += outcome.findings
        result.notes += outcome.notes
        result.not_reviewed += outcome.not_reviewed
        if outcome.errors:
            result.errors[outcome.spec] = "; ".join(outcome.errors)
        result.limit = result.limit or outcome.limit
        totals = Totals()
        for entry in session.ledger.entries[first_entry:]:
            if entry.model == outcome.spec and entry.stage == "review":
                totals.add(entry)
        result.usage[outcome.spec] = {**totals.to_dict(), "wall_seconds": round(outcome.seconds, 3),
                                      "evidence_seconds": round(checking.get(outcome.spec, 0.0), 3)}
    result.not_reviewed = list(dict.fromkeys(result.not_reviewed))
    result.findings = merge_findings(every, reviewers=len(reviewers), min_agree=min_agree,
                                     scorer=None if weights is None else scorer(weights), min_score=min_score)
    candidates = judge.candidates(reviewers) if judge is not None else []
    if candidates and result.findings:
        await _judge(session, result, files, reader, plan, candidates, attempt, judging_from)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


async def _judge(session: ModelSession, result: ReviewResult, files: list[FileDiff], reader: SourceReader | None,
                 plan: str | None, candidates: list[str], attempt: int, first_entry: int) -> None:
    """Judge `result.findings` in place: verdicts, judged-out findings, each reviewer's findings marked,
    and the judges' usage (the ledger entries after `first_entry`: judging starts once reviews are done)."""
    chunks = {spec: plan_chunks(files, budget_chars(session.models.get(spec), plan), reader)[0] for spec in candidates}
    outcome = await judge_findings(session, result.findings, candidates=candidates, chunks=chunks, attempt=attempt)
    result.findings, result.judged_out = apply_verdicts(outcome.findings, result.min_score or 0.0)
    result.per_reviewer = annotate_members(result.per_reviewer, outcome.findings)
    result.notes += outcome.notes
    for spec in candidates:
        totals = Totals()
        for entry in session.ledger.entries[first_entry:]:
            if entry.model == spec and entry.stage == "review":
                totals.add(entry)
        if totals.to_dict().get("requests"):
            result.judge_usage[spec] = {**totals.to_dict(), "wall_seconds": round(outcome.seconds, 3)}


def _claim(finding: Finding) -> str:
    """A finding as its checker sees it: without what checking and voting add."""
    return finding.model_dump_json(exclude={"status", "check", "votes"})


def check_all(checker: FindingChecker, findings: list[Finding]) -> list[Finding]:
    """Each finding with its evidence checked; a check that cannot run leaves its finding unchecked."""
    out = []
    for finding in findings:
        try:
            out.append(checker.check(finding))
        except (RelayError, OSError, subprocess.SubprocessError) as exc:  # e.g. no bwrap, git export failed
            out.append(finding.model_copy(update={"status": "unchecked", "check": f"evidence not run: {exc}"}))
    return out
