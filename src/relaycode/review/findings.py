"""Findings: what reviewers answer (`ModelReview`), what relay reports (`Finding`), and merging.

The model-facing schema is small and forgiving because 0.5B–1.5B models fill
it: one file per request (so no path), one line number, and severity/category
words mapped from common synonyms (`high` → major, `logic` → bug) before
validation. The enums stay in the JSON schema so servers that constrain output
by schema (llama.cpp) only ever produce valid words.

Merge rule (documented in docs/review.md):

- Two findings are the same issue when they are on the same file, their line
  ranges overlap once each is widened by `ADJACENT` (2) lines, and they have the
  same category or similar messages (word overlap ≥ `SIMILAR`). Grouping is
  transitive (union-find), within and across reviewers.
- A group becomes one finding: the union of its line ranges and of its models;
  `confidence` = distinct reviewers in the group / reviewers that ran; the
  severity is the highest one that at least `min_agree` of the group's
  reviewers gave (with min_agree=1: the highest); category, message and
  suggestion come from the group's most severe member (earliest on ties).
- Groups raised by fewer than `min_agree` distinct reviewers are dropped.
- Evidence: a group is confirmed when any member's evidence reproduced, refuted
  when every member's was refuted, unchecked otherwise. With a scorer
  (`weights.score`), each group gets a `score` from its reviewers' measured
  weights and strongest statuses, and groups below `min_score` are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from relaycode.config import SEVERITIES, Severity

Category = Literal["bug", "security", "performance", "maintainability", "style"]
CATEGORIES: tuple[Category, ...] = ("bug", "security", "performance", "maintainability", "style")

ADJACENT = 2
SIMILAR = 0.5
MAX_FINDINGS_PER_CHUNK = 12

_SEVERITY_SYNONYMS = {
    "critical": "blocker", "crash": "blocker", "fatal": "blocker", "blocking": "blocker",
    "high": "major", "error": "major", "serious": "major", "important": "major",
    "medium": "minor", "moderate": "minor", "warning": "minor", "warn": "minor",
    "low": "nit", "info": "nit", "trivial": "nit", "note": "nit", "suggestion": "nit", "nitpick": "nit",
}  # fmt: skip
_CATEGORY_SYNONYMS = {
    "correctness": "bug", "logic": "bug", "error": "bug", "bugs": "bug", "functional": "bug",
    "vulnerability": "security", "injection": "security", "secure": "security",
    "perf": "performance", "efficiency": "performance", "speed": "performance",
    "readability": "maintainability", "design": "maintainability", "complexity": "maintainability",
    "documentation": "style", "naming": "style", "formatting": "style", "docs": "style",
}  # fmt: skip


def severity_rank(severity: str) -> int:
    """0 for blocker … 3 for nit: lower is more severe."""
    return SEVERITIES.index(severity)  # type: ignore[arg-type]


def at_or_above(severity: str, threshold: str) -> bool:
    return severity_rank(severity) <= severity_rank(threshold)


def gate_findings(findings: Sequence[Finding], threshold: str, *, confirmed_only: bool = False) -> list[Finding]:
    """The findings a `--fail-on threshold` gate fails on: at or above it, and confirmed if `confirmed_only`
    (so a CI gate fails on checked problems, not on opinions)."""
    return [f for f in findings
            if at_or_above(f.severity, threshold) and (not confirmed_only or f.status == "confirmed")]


def _normalise(value: Any, known: Sequence[str], synonyms: dict[str, str], default: str) -> Any:
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word in known:
        return word
    return synonyms.get(word, default)


class Evidence(BaseModel):
    """A check a machine can run that should FAIL on the changed code if the finding is right.

    Either a concrete `call` of the changed code with the value a correct version returns
    (`expected`), or a small Python `test` (statements with `assert`). Model-written: it runs only
    in the sandbox (see `evidence.py`), never outside it.
    """

    call: str = Field(default="", description="A Python call of the changed code with literal arguments, e.g. f(3, [1, 2])")
    expected: str = Field(default="", description="What a correct version returns for that call, as a Python literal")
    test: str = Field(default="", description="Or: Python statements with assert that fail if the problem is real")

    @field_validator("call", "expected", "test", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        # Small models write numbers and lists where a literal's text is meant.
        return value if isinstance(value, str) or value is None else repr(value)

    @property
    def checkable(self) -> bool:
        return bool(self.test.strip()) or bool(self.call.strip() and self.expected.strip())

    def describe(self) -> str:
        """One line for reports: the call and its expected value, or the test's first line."""
        if self.call.strip() and self.expected.strip():
            return f"{self.call.strip()} should be {self.expected.strip()}"
        lines = [ln for ln in self.test.strip().splitlines() if ln.strip()]
        return lines[0] + (" ..." if len(lines) > 1 else "") if lines else ""


Status = Literal["confirmed", "refuted", "unchecked"]
STATUSES: tuple[Status, ...] = ("confirmed", "refuted", "unchecked")

Verdict = Literal["bug", "not_a_bug", "unsure"]
VERDICTS: tuple[Verdict, ...] = ("bug", "not_a_bug", "unsure")
VERDICT_WORDS: dict[Verdict, str] = {"bug": "a real bug", "not_a_bug": "not a bug", "unsure": "unsure"}


class Judgement(BaseModel):
    """A second opinion on a merged finding (see `judge.py`): another model's verdict and its reason."""

    verdict: Verdict
    why: str = ""
    judge: str
    """The model that judged (never one that raised the finding)."""

    def describe(self) -> str:
        """e.g. "not a bug (local:qwen2.5-coder-0.5b): the loop ends when n is 0"."""
        return f"{VERDICT_WORDS[self.verdict]} ({self.judge})" + (f": {self.why}" if self.why else "")


class ModelFinding(BaseModel):
    """One problem as a reviewer model reports it, for the file chunk it was shown."""

    line: int = Field(description="Line number as shown at the left of the code")
    end_line: int | None = Field(default=None, description="Last line, if the problem spans several")
    severity: Severity = "minor"
    category: Category = "bug"
    message: str = Field(default="", description="What is wrong and why")
    suggestion: str = Field(default="", description="How to fix it")
    evidence: Evidence | None = Field(default=None, description="A check that fails if the problem is real")

    @field_validator("evidence", mode="before")
    @classmethod
    def _evidence(cls, value: Any) -> Any:
        # A model that cannot fill the object writes a string or null: no evidence, not a failed answer.
        return value if isinstance(value, dict) else None

    @field_validator("line", "end_line", mode="before")
    @classmethod
    def _first_number(cls, value: Any) -> Any:
        # Small models write "12", "12-14" or "line 12".
        if isinstance(value, str):
            found = re.search(r"\d+", value)
            return int(found.group()) if found else value
        return value

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        return _normalise(value, SEVERITIES, _SEVERITY_SYNONYMS, "minor")

    @field_validator("category", mode="before")
    @classmethod
    def _category(cls, value: Any) -> Any:
        return _normalise(value, CATEGORIES, _CATEGORY_SYNONYMS, "bug")


class ModelReview(BaseModel):
    """A reviewer's whole answer for one chunk. An empty list means: no problems."""

    findings: list[ModelFinding] = Field(default_factory=list, max_length=MAX_FINDINGS_PER_CHUNK)


class Finding(BaseModel):
    """A review finding on the new side of a diff."""

    path: str
    start_line: int = Field(ge=1)
    end_line: int = Field(ge=1)
    severity: Severity
    category: Category
    message: str
    suggestion: str = ""
    models: list[str] = Field(default_factory=list)
    """Reviewers that raised it."""
    confidence: float = Field(default=1.0, ge=0, le=1)
    """Share of the reviewers that ran which raised it."""
    evidence: Evidence | None = None
    """The reviewer's checkable claim, if it gave one (for a merged finding: the one that decided `status`)."""
    status: Status = "unchecked"
    """confirmed: the evidence fails on the change (and passes on the base, where there is one);
    refuted: it passes on the change; unchecked: no evidence, or it could not decide."""
    check: str = ""
    """How `status` was reached, in words (what ran where and what happened)."""
    score: float | None = Field(default=None, ge=0, le=1)
    """Estimated probability that the finding is real (see `weights.py`); None when not weighted."""
    judgement: Judgement | None = None
    """The judge's verdict on the merged finding (see `judge.py`); None when it was not judged."""
    votes: int | None = None
    """How many of its reviewer's sampled answers raised it (`stages.review.samples`); None: one answer."""

    def touches(self, line: int, slack: int = 0) -> bool:
        return self.start_line - slack <= line <= self.end_line + slack


_WORD_RE = re.compile(r"[a-z0-9_]+")


def similar(a: str, b: str) -> float:
    """Word-set overlap (Jaccard) of two messages, 0–1."""
    wa, wb = set(_WORD_RE.findall(a.lower())), set(_WORD_RE.findall(b.lower()))
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def same_issue(a: Finding, b: Finding) -> bool:
    """The duplicate test of the merge rule."""
    if a.path != b.path:
        return False
    if a.start_line - ADJACENT > b.end_line + ADJACENT or b.start_line - ADJACENT > a.end_line + ADJACENT:
        return False
    return a.category == b.category or similar(a.message, b.message) >= SIMILAR


def same_issue_groups(findings: Sequence[Finding]) -> list[list[int]]:
    """Indices of `findings` grouped by `same_issue`, transitively (union-find); each group and the
    groups in order of first appearance."""
    parent = list(range(len(findings)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(findings)):
        for j in range(i + 1, len(findings)):
            if same_issue(findings[i], findings[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(findings)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def majority(answers: int) -> int:
    """Answers that must raise a finding for it to count: more than half."""
    return answers // 2 + 1


def consistent(answers: Sequence[Sequence[Finding]], min_votes: int) -> list[Finding]:
    """One reviewer's findings that recur across its sampled answers to the same prompt (self-consistency).

    The answers' findings are grouped by `same_issue` (transitively); a group raised by at least
    `min_votes` distinct answers is kept as its member from the earliest answer, with `votes` set
    (and, when that member has no evidence, the evidence of the earliest member that has some).
    A real problem tends to be seen again when the reviewer is asked again; a hallucinated one
    rarely lands on the same lines twice."""
    answer_of = [i for i, found in enumerate(answers) for _ in found]
    flat = [f for found in answers for f in found]
    kept = []
    for group in same_issue_groups(flat):
        votes = len({answer_of[k] for k in group})
        if votes >= min_votes:
            lead = flat[min(group)]
            evidence = lead.evidence or next((flat[k].evidence for k in sorted(group) if flat[k].evidence), None)
            kept.append(lead.model_copy(update={"votes": votes, "evidence": evidence}))
    return sorted(kept, key=lambda f: (f.path, f.start_line, severity_rank(f.severity)))


#: Scores a merged group from each distinct reviewer's strongest evidence status (see `weights.score`).
Scorer = Callable[[Mapping[str, Status]], float]

_STRENGTH: dict[Status, int] = {"confirmed": 0, "unchecked": 1, "refuted": 2}


def strongest(statuses: Iterable[Status]) -> Status:
    """confirmed > unchecked > refuted: a reviewer's best claim in a group is what it stands by."""
    return min(statuses, key=lambda s: _STRENGTH[s])


def merge_findings(findings: Sequence[Finding], *, reviewers: int, min_agree: int = 1,
                   scorer: Scorer | None = None, min_score: float = 0.0) -> list[Finding]:
    """Merge duplicates (see module docstring); keep groups raised by at least `min_agree` reviewers
    and, with a `scorer`, scoring at least `min_score`."""
    merged = [_merge_group([findings[k] for k in group], reviewers=reviewers, min_agree=min_agree, scorer=scorer)
              for group in same_issue_groups(findings)]
    kept = [m for m in merged if m is not None and (m.score is None or m.score >= min_score)]
    return sorted(kept, key=lambda f: (f.path, f.start_line, severity_rank(f.severity)))


def group_status(group: Sequence[Finding]) -> tuple[Status, Finding | None, str]:
    """A group's status, the member whose evidence decided it, and how.

    Confirmed when any member's evidence reproduced; refuted only when every member's evidence was
    refuted; otherwise unchecked (a refuted claim does not cancel another reviewer's unchecked one).
    """
    confirmed = [f for f in group if f.status == "confirmed"]
    if confirmed:
        return "confirmed", confirmed[0], confirmed[0].check
    refuted = [f for f in group if f.status == "refuted"]
    if len(refuted) == len(group):
        return "refuted", refuted[0], refuted[0].check
    if refuted:
        return "unchecked", None, f"{len(refuted)} of {len(group)} claims refuted: {refuted[0].check}"
    checked = [f for f in group if f.check]
    return "unchecked", None, checked[0].check if checked else ""


def _merge_group(group: list[Finding], *, reviewers: int, min_agree: int, scorer: Scorer | None) -> Finding | None:
    models = sorted({m for f in group for m in f.models})
    if len(models) < min_agree:
        return None
    # Each reviewer's strongest word on this issue, strongest first; the k-th is what k reviewers agree on.
    per_model = sorted(min(severity_rank(f.severity) for f in group if m in f.models) for m in models)
    agreed = SEVERITIES[per_model[min(max(min_agree, 1), len(per_model)) - 1]]
    lead = min(group, key=lambda f: severity_rank(f.severity))  # min() keeps the earliest on ties
    status, decider, how = group_status(group)
    claims = {m: strongest(f.status for f in group if m in f.models) for m in models}
    return Finding(
        path=lead.path,
        start_line=min(f.start_line for f in group),
        end_line=max(f.end_line for f in group),
        severity=agreed,
        category=lead.category,
        message=lead.message,
        suggestion=lead.suggestion,
        models=models,
        confidence=round(min(1.0, len(models) / max(reviewers, 1)), 4),
        evidence=(decider or lead).evidence,
        status=status,
        check=how,
        score=None if scorer is None else scorer(claims),
        votes=max((f.votes for f in group if f.votes is not None), default=None),
    )
