"""Implement by sampling: N candidate answers per attempt, verification chooses.

A cheap model's single answer is often wrong where one of several is right (CodeT, AlphaCode's
filtering, Agentless): this strategy asks for `samples` answers to the same prompt at once
(llama-server batches them when it has parallel slots), turns each into the files it would write,
and verifies each distinct result in its own scratch copy of the tree, in the sandbox, with the
run's pinned checks plus the basic checks of `stages/sanity.py`.

Choosing: identical results count as agreement. Distinct results are verified in order of
preference (most candidates agreeing, then the smallest change, then the earlier candidate), and
the first one that passes wins; so several passing ones are settled by that same preference, and
no candidate is verified after the winner is found. None passing: the most promising one (fewest
failing commands and tests, then preference) is written, so the run loop's own verification
fails it and its failing output becomes the next attempt's feedback (or escalation follows).

When nothing pinned can fail a wrong change, every candidate that compiles passes and that order is
blind. If the run has generated checks (`stages/generated_checks.py`) that did not already pass on
the unchanged tree, every distinct candidate is verified, each passing one also runs the generated
checks in its scratch copy, and the winner is the passing one with the highest CodeT dual-agreement
score (answers agreeing on which checks pass x checks passed), then the same preference. The checks
only choose among candidates that passed: they never make one pass or fail.

Candidate 1 uses the attempt's temperature (the model's own setting on a first attempt: a greedy
model's first candidate is exactly its single answer; with no setting, the sample temperature);
the others sample at `stages.implement.sample_temperature`. Each request's seed is the attempt's seed plus the
candidate's number, so a seeded rerun draws the same candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from relaycode.errors import EditError, PathEscape, ProviderError
from relaycode.scratch import scratch_copy
from relaycode.session import RequestOptions
from relaycode.stages.implement import (
    CUT_OFF_FEEDBACK,
    ImplementOutcome,
    answer_format,
    answer_options,
    answer_to_files,
    cut_off,
    implement_prompt,
)
from relaycode.workspace import open_in_root

if TYPE_CHECKING:
    from relaycode.session import Answer, ModelSession
    from relaycode.stages.attempt import Attempt
    from relaycode.stages.generated_checks import GeneratedChecks
    from relaycode.stages.verify import VerifyResult
    from relaycode.workspace import FileTree


@dataclass
class Candidate:
    """One distinct result: the files it writes and the candidates (0-based) that produced it."""

    files: dict[str, str]
    numbers: list[int] = field(default_factory=list)
    changed_lines: int = 0
    verify: VerifyResult | None = None
    generated: list[str] | None = None
    """Its generated checks' statuses (None: not run, because it failed verification or there are none)."""
    score: int | None = None
    """Its dual-agreement score among the passing candidates (None: not ranked by generated checks)."""

    def failures(self) -> tuple[int, int]:
        """Failing commands, then failing tests: fewer is more promising."""
        if self.verify is None:
            return (1 << 30, 0)
        failed = [r for r in self.verify.results if not r.passed]
        return (len(failed), sum(len(r.failing_tests) for r in failed))


def _changed_lines(before: dict[str, str], after: dict[str, str]) -> int:
    total = 0
    for path, text in after.items():
        old = before.get(path, "").splitlines()
        total += sum(1 for line in difflib.unified_diff(old, text.splitlines(), lineterm="", n=0)
                     if line[:1] in "+-" and not line.startswith(("+++", "---")))
    return total


def seed_for(base: int | None, candidate: int) -> int | None:
    """The request seed of a candidate: the attempt's seed plus its number (None stays None)."""
    return None if base is None else (base + candidate) % (1 << 31)


async def _answers(session: ModelSession, spec: str, prompt: str, instructions: str, attempt: Attempt,
                   base: RequestOptions) -> list[Answer[str]]:
    """All candidates' answers, requested concurrently; the first failure cancels the rest and is raised."""
    from relaycode.config import DEFAULT_SAMPLE_TEMPERATURE

    sample_t = session.config.stages.implement.sample_temperature
    sample_t = DEFAULT_SAMPLE_TEMPERATURE if sample_t is None else sample_t
    first_t = attempt.temperature if attempt.temperature is not None else session.models.get(spec).settings.temperature
    # A model with no temperature of its own samples its first candidate like the others: the
    # requests then differ only in their seeds, which lets a local server answer them as one
    # prompt (`local/coalesce.py`); llama-server's own default is this same 0.8.
    first_t = sample_t if first_t is None else first_t

    def options(i: int) -> RequestOptions:
        return RequestOptions(temperature=first_t if i == 0 else sample_t, seed=seed_for(attempt.seed, i),
                              extra_body=base.extra_body)

    results = await asyncio.gather(*(session.ask("implement", spec, prompt, instructions=instructions,
                                                 attempt=attempt.number, options=options(i))
                                     for i in range(attempt.samples)), return_exceptions=True)
    answers = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        # Limits and exits (budget, abort) end the run as they would for one request; so does a
        # failure of every candidate. A candidate that failed after its retries (a timeout on a
        # loaded machine) is only one candidate fewer.
        if not isinstance(failure, ProviderError) or not answers or failure.kind == "auth":
            raise failure
    if failures and attempt.on_event is not None:
        attempt.on_event("candidates_failed", attempt=attempt.number, failed=len(failures),
                         errors=[str(f) for f in failures])
    return answers


def _scratch_copy(worktree: FileTree, into: Path) -> Path:
    """A copy of the worktree's files (not its git metadata) to verify one candidate in."""
    return scratch_copy(worktree.root, into / "tree")


def _write(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        with open_in_root(root, path, "w", make_parents=True) as fh:  # path-safe: escapes raise PathEscape
            fh.write(text)


def _verify(worktree: FileTree, candidate: Candidate, current: dict[str, str], attempt: Attempt,
            evidence: GeneratedChecks | None) -> tuple[VerifyResult, list[str] | None]:
    """The pinned checks and the basic checks, on a scratch copy of the tree with the candidate written;
    then, if it passed and there are `evidence` checks, their statuses on the same copy."""
    from relaycode.stages.generated_checks import run_checks
    from relaycode.stages.sanity import plan_checks, run_sanity
    from relaycode.stages.verify import run_verify

    with tempfile.TemporaryDirectory(prefix="relay-candidate-") as tmp:
        root = _scratch_copy(worktree, Path(tmp))
        _write(root, candidate.files)
        result = run_verify(root, list(attempt.checks), policy=attempt.policy, limits=attempt.limits,
                            examples=attempt.examples, venv=attempt.venv)
        before: dict[str, str | None] = {p: current.get(p) for p in candidate.files}
        checks = plan_checks(dict(candidate.files), before, attempt.task, lambda rel: (root / rel).is_file())
        basic = run_sanity(root, checks, policy=attempt.policy, limits=attempt.limits, venv=attempt.venv)
        if basic is not None:
            result.results.append(basic)
        statuses = None
        if evidence is not None and result.passed:
            statuses = run_checks(root, evidence, policy=attempt.policy, limits=attempt.limits, venv=attempt.venv)
    return result, statuses


async def sampled_implement(session: ModelSession, spec: str, worktree: FileTree,
                            attempt: Attempt) -> ImplementOutcome:
    """Draw `attempt.samples` candidates, verify the distinct ones in preference order, write the chosen one."""
    contents = {path: worktree.read_text(path) for path in attempt.files}
    all_files = worktree.list_files()
    profile = session.models.get(spec).profile
    whole, instructions = answer_format(profile, contents)
    prompt = implement_prompt(attempt.task, attempt.plan, contents, attempt.feedback, whole_file=whole)
    base = answer_options(profile, whole, list(contents))
    outcome = ImplementOutcome(model=spec)
    answers = await _answers(session, spec, prompt, instructions, attempt, base)
    outcome.turns = len(answers)
    distinct: dict[tuple[tuple[str, str], ...], Candidate] = {}
    errors: list[str] = []
    current: dict[str, str] = dict(contents)
    for number, answer in enumerate(answers):
        outcome.answers.append(answer.output)
        try:
            files = answer_to_files(answer.output, contents, all_files, whole, worktree)
        except (EditError, PathEscape) as exc:
            outcome.malformed += 1
            errors.append(CUT_OFF_FEEDBACK if cut_off(answer.messages) else exc.message)
            continue
        if not files:
            errors.append("Your previous answer left every file exactly as it was.")
            continue
        for path in files:
            if path not in current:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    current[path] = worktree.read_text(path)
        key = tuple(sorted(files.items()))
        if key not in distinct:
            distinct[key] = Candidate(files=files, changed_lines=_changed_lines(current, files))
        distinct[key].numbers.append(number)
    ranked = sorted(distinct.values(), key=lambda c: (-len(c.numbers), c.changed_lines, c.numbers[0]))
    # Generated checks choose only when some of them did not already pass on the unchanged tree.
    evidence = attempt.generated if attempt.generated is not None and attempt.generated.weighted else None
    winner: Candidate | None = None
    for candidate in ranked:
        verified, candidate.generated = await asyncio.to_thread(
            _verify, worktree, candidate, current, attempt, evidence)
        candidate.verify = verified
        if verified.passed and evidence is None:
            winner = candidate
            break
    if evidence is not None:
        winner = _by_agreement(ranked, evidence)
    _report(attempt, ranked, errors, winner, len(answers), evidence)
    chosen = winner or min(ranked, key=lambda c: c.failures(), default=None)
    if chosen is None:
        outcome.last_error = errors[0] if errors else "No candidate changed anything."
        return outcome
    for path, text in chosen.files.items():
        worktree.write_text(path, text)  # path-safe: escapes raise PathEscape
    outcome.changed = sorted(chosen.files)
    return outcome


def _by_agreement(ranked: list[Candidate], evidence: GeneratedChecks) -> Candidate | None:
    """The passing candidate with the highest dual-agreement score; ties keep the preference order."""
    from relaycode.stages.generated_checks import Scored, dual_agreement

    passing = [c for c in ranked if c.verify is not None and c.verify.passed]
    scores = dual_agreement([Scored(len(c.numbers), c.generated or []) for c in passing], evidence.weighted)
    for candidate, score in zip(passing, scores, strict=True):
        candidate.score = score
    return max(passing, key=lambda c: c.score or 0, default=None)  # max keeps the first of equals


def _report(attempt: Attempt, ranked: list[Candidate], errors: list[str], winner: Candidate | None,
            drawn: int, evidence: GeneratedChecks | None) -> None:
    if attempt.on_event is None:
        return
    extra: dict[str, object] = {}
    if evidence is not None:
        extra["generated_checks"] = {"checks": len(evidence.checks), "weighted": list(evidence.weighted)}
        # What the preference order alone would have chosen: measures what the generated checks changed.
        preferred = next((c for c in ranked if c.verify is not None and c.verify.passed), None)
        extra["preferred"] = None if preferred is None else [n + 1 for n in preferred.numbers]
    attempt.on_event("candidates", attempt=attempt.number, drawn=drawn, unusable=len(errors),
                     distinct=[{"candidates": [n + 1 for n in c.numbers], "changed_lines": c.changed_lines,
                                "verified": None if c.verify is None else c.verify.passed,
                                **({"generated": c.generated, "score": c.score} if evidence is not None else {})}
                               for c in ranked],
                     winner=None if winner is None else [n + 1 for n in winner.numbers], **extra)
