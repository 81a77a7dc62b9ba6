"""The run loop: plan → implement → verify → review → (fix | escalate | stop).

`run_task` owns the ledger, the limits and the run files. Stages are plain
async functions; limits and early exits are exceptions (`BudgetExceeded`,
`StepLimit`, `Stuck`, `Aborted`, `ProviderError`) caught once, here, where
they become the run's status. Whatever happens, the run directory ends with
its files written and the branch keeps every accepted attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from relaycode import __version__
from relaycode.config import SEVERITIES, Config
from relaycode.errors import (
    Aborted,
    BudgetExceeded,
    LimitReached,
    ProviderError,
    RelayError,
    Stuck,
    UsageError,
)
from relaycode.ledger import Ledger, LedgerEntry
from relaycode.runstate import RunState, StageSpan, baseline_feedback
from relaycode.runstore import TERMINAL_STATUSES, RunStore, new_run_id, runs_dir_of

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from relaycode.history import History
    from relaycode.review.findings import Finding
    from relaycode.sandbox import Limits, SandboxPolicy
    from relaycode.stages.attempt import Implementer
    from relaycode.stages.implement import ImplementOutcome
    from relaycode.stages.plan import Plan
    from relaycode.stages.verifier import PinnedChecks, Verifier
    from relaycode.stages.verify import VerifyResult
    from relaycode.workspace import RunTree

Event = dict[str, Any]


@dataclass
class RunOptions:
    repo: Path
    """A git repository with at least one commit."""
    task: str
    config: Config
    yes: bool = True
    """Skip interactive plan approval."""
    plan_file: Path | None = None
    """Start from this plan.md instead of asking the planner."""
    run_id: str | None = None
    resume: bool = False
    """Continue run `run_id` from its last completed stage."""
    no_sandbox: bool = False
    model_overrides: Mapping[str, Model] | None = None
    """Test doubles by model spec."""
    on_event: Callable[[Event], None] | None = None
    runs_dir: Path | None = None
    """Default: `<git common dir>/relay/runs`."""
    history: bool = True
    """Record the run in the history database."""
    base: str = "HEAD"
    approve: Callable[[Plan, Path], Plan | None] | None = None
    """Interactive approval: returns the (possibly edited) plan, or None to abort."""
    stop_after_plan: bool = False


@dataclass
class RunResult:
    run_id: str
    status: str
    """succeeded | unverified | failed | budget_exceeded | aborted | error, or interrupted (resumable).
    `unverified`: the work was done, but nothing pinned could fail a wrong change (`RunResult.checks`
    says what ran)."""
    branch: str
    run_dir: Path
    worktree: Path
    iterations: int = 0
    ledger: Ledger = field(default_factory=Ledger)
    verify_passed: bool | None = None
    findings: int = 0
    escalations: list[str] = field(default_factory=list)
    models_used: list[str] = field(default_factory=list)
    malformed_outputs: int = 0
    wall_s: float = 0.0
    model_s: float = 0.0
    error: str | None = None
    error_kind: str | None = None
    sandboxed: bool = True
    commits: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    """The verification pinned at baseline (command display names); empty: nothing was checked."""
    generated_checks: list[str] = field(default_factory=list)
    """Checks a model wrote to rank candidates when nothing pinned could fail a change (`call == expected`);
    evidence for choosing, never verification (`generated-checks.json` and the `candidates` events say more)."""

    def cost_dict(self) -> dict[str, Any]:
        data = self.ledger.to_dict()
        return {"total": data["total"], "by_stage": data["by_stage"], "by_model": data["by_model"]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "branch": self.branch,
            "run_dir": str(self.run_dir),
            "worktree": str(self.worktree),
            "iterations": self.iterations,
            "cost": self.cost_dict(),
            "verify": {"passed": self.verify_passed, "checks": self.checks,
                       "generated_checks": self.generated_checks},
            "review": {"findings": self.findings},
            "escalations": self.escalations,
            "models_used": self.models_used,
            "malformed_outputs": self.malformed_outputs,
            "wall_s": round(self.wall_s, 3),
            "model_s": round(self.model_s, 3),
            "overhead_s": round(max(0.0, self.wall_s - self.model_s), 3),
            "sandboxed": self.sandboxed,
            "commits": self.commits,
            "error": self.error,
            "error_kind": self.error_kind,
            "relay_version": __version__,
        }


def severity_at_least(severity: str, threshold: str) -> bool:
    if threshold == "none":
        return False
    return SEVERITIES.index(severity) <= SEVERITIES.index(threshold)  # type: ignore[arg-type]


def preflight(config: Config, *, doubles: Collection[str] = ()) -> None:
    """Refuse before any work: unpriced models (unless allowed), missing API keys, local models or runtime
    not installed. `doubles`: model specs replaced by test doubles, which need no installation."""
    from relaycode.local.readiness import require_installed
    from relaycode.models import missing_keys
    from relaycode.pricing import require_prices

    require_prices(config)
    missing = missing_keys(config)
    if missing:
        raise missing[0]
    require_installed(config, skip=doubles)


class _Run:
    """One run while it executes. Only `run_task` creates it (tests: with fakes of its seams).

    Its seams: the checkout (`RunTree`: a git worktree, or a directory with commits in memory), the
    verifier (`Verifier`: the sandbox, or a script), and the implement strategies (`STRATEGIES`).
    Everything it decides is in `state`, saved after every step `--resume` must not repeat.
    """

    def __init__(self, options: RunOptions, store: RunStore, worktree: RunTree, state: RunState, *,
                 verifier: Verifier, strategies: Mapping[str, Implementer] | None = None) -> None:
        from relaycode.session import ModelSession

        if strategies is None:
            from relaycode.stages.strategies import STRATEGIES

            strategies = STRATEGIES
        self.options = options
        self.config = options.config
        self.store = store
        self.worktree = worktree
        self.state = state
        self.verifier = verifier
        self.strategies = strategies
        ledger = Ledger(LedgerEntry.from_dict(e) for e in (store.read_json("ledger.json") or {}).get("entries", []))
        self.ledger = ledger
        ledger.subscribe(self._on_call)
        self.session = ModelSession(self.config, run_id=store.run_id, ledger=ledger,
                                    model_overrides=options.model_overrides)
        self.result = RunResult(run_id=store.run_id, status="error", branch=worktree.branch, run_dir=store.dir,
                                worktree=worktree.root, ledger=ledger, sandboxed=not options.no_sandbox and options.config.sandbox.enabled)

    # ---------------------------------------------------------------- events

    def emit(self, kind: str, **data: object) -> None:
        self.store.event(kind, **data)
        if self.options.on_event is not None:
            self.options.on_event({"kind": kind, **data})

    def _on_call(self, entry: LedgerEntry) -> None:
        data = entry.to_dict()
        self.emit("model_call", **data)
        self.store.write_json("ledger.json", self.ledger.to_dict())
        if entry.model not in self.result.models_used:
            self.result.models_used.append(entry.model)

    def stage(self, name: str, model: str | None = None) -> _StageScope:
        return _StageScope(self, name, model)

    def save(self) -> None:
        self.store.save_state(self.state)

    # ---------------------------------------------------------------- the whole run

    def execute(self, *, started: float, t0: float, history: History | None = None) -> RunResult:
        """Run to its end (or a pause): the exception that ends it becomes its status, and its files
        are written whatever happens. `started`/`t0`: when the invocation began (wall, perf counter)."""
        from relaycode.trace import configure_tracing, workflow_span

        try:
            with configure_tracing(self.config.trace, run_dir=self.store.dir), \
                    workflow_span(self.store.run_id, self.options.task):
                asyncio.run(self.main())
        except RelayError as exc:
            status, kind = _status_of(exc)
            self.result.status, self.result.error_kind, self.result.error = status, kind, str(exc)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: not an end, a pause. The run's files are saved below and `--resume` continues it.
            self.result.status, self.result.error_kind, self.result.error = "interrupted", "interrupted", "interrupted"
        finally:
            _finish(self, started, t0, history)
        return self.result

    # ---------------------------------------------------------------- stages

    async def main(self) -> None:
        # One event loop for the whole run: model clients keep connections bound to it.
        st = self.state
        self.pinned_checks()
        if not st.baseline_checked:
            # Verify before anything changes: failing tests and examples are the best grounding the
            # planner and implementer can get, and they cost no model call.
            baseline = self.verify(name="verify-baseline.json") if not self.options.stop_after_plan else None
            st.baseline = None if baseline is None or baseline.passed else baseline.summary()
            st.baseline_checked = True
            self.save()
        if not st.generated_checked and not self.options.stop_after_plan:
            await self.pin_generated_checks()
        plan = await self.plan()
        if self.options.stop_after_plan:
            self.result.status = "succeeded"
            return
        await self.loop(plan)

    async def plan(self) -> Plan | None:
        from relaycode.stages.plan import Plan, make_plan

        st = self.state
        if st.planned:
            return st.plan
        plan: Plan | None = None
        if self.options.plan_file is not None:
            plan = Plan.from_markdown(self.options.plan_file.read_text(encoding="utf-8"),
                                      source=str(self.options.plan_file))
        elif self.config.stages.plan.model:
            from relaycode.repomap import repo_map

            spec = self.config.stages.plan.model
            files = self.worktree.list_files()
            with self.stage("plan", spec):
                rmap = repo_map(self.worktree.root, files, self.options.task,
                                max_chars=self.session.models.get(spec).context_chars(0.35))
                try:
                    plan = await make_plan(self.session, spec, self.options.task, rmap, known_files=files,
                                           checks=st.baseline)
                except ProviderError as exc:
                    if exc.kind != "bad_response":
                        raise
                    # A plan is an aid: when the planner cannot produce a valid one (small models run
                    # out of tokens mid-JSON), the implementer works from the task alone.
                    st.malformed += 1
                    self.emit("plan_skipped", reason=str(exc))
        if plan is not None:
            self.store.write_text("plan.md", plan.to_markdown())
            self.store.write_json("plan.json", plan.model_dump())
            if self.options.approve is not None and not self.options.yes:
                approved = self.options.approve(plan, self.store.path("plan.md"))
                if approved is None:
                    raise Aborted("plan not approved")
                plan = approved
                self.store.write_text("plan.md", plan.to_markdown())
                self.store.write_json("plan.json", plan.model_dump())
        st.plan, st.planned = plan, True
        self.save()
        return plan

    def implementers(self) -> list[str]:
        impl = self.config.stages.implement
        return [impl.model, *impl.escalate_to]

    async def loop(self, plan: Plan | None) -> None:
        cfg = self.config
        impl_cfg = cfg.stages.implement
        implementers = self.implementers()
        st = self.state
        self.start_loop(implementers)
        if st.succeeded:  # killed after success was recorded, before the run files were finished
            self.result.status = self.done_status()
            self.result.iterations = st.iteration
            return
        while st.iteration < cfg.max_iterations:
            iteration = st.iteration + 1
            spec = implementers[st.implementer]
            start_ref = self.start_attempt()
            outcome = await self.implement(spec, plan, iteration)
            diff = self.worktree.diff(start_ref)
            # The whole change since the base (for repeat detection); the same diff when the attempt started there.
            tree_diff = diff if start_ref == self.worktree.base else self.worktree.diff()
            digest = hashlib.sha256(tree_diff.encode()).hexdigest()
            judged = await self.judge(outcome, diff, plan, iteration, start_ref)
            st.fresh_start = False
            if diff.strip():
                sha = self.worktree.commit(f"relay: attempt {iteration} by {spec}\n\nrun {self.store.run_id}")
                if sha:
                    st.head = sha
                    self.result.commits.append(sha)
            st.iteration = iteration
            self.result.iterations = iteration
            self.result.findings = len(judged.findings)
            repeated = digest in st.diffs
            if repeated and tree_diff.strip() and not st.repeat_forgiven:
                # A changed tree equal to an earlier failed one gets one more try, told so: small models
                # often answer the same verification failure with the same edit (seen on QuixBugs).
                st.repeat_forgiven = True
                repeated = False
                earlier = st.diffs.index(digest) + 1
                judged.feedback.append(f"This change is exactly the one of attempt {earlier}, which already failed. "
                                       "Do not repeat it: look again at where the code goes wrong and change that.")
            st.diffs.append(digest)
            st.feedback = None if judged.succeeded else "\n\n".join(judged.feedback)
            st.succeeded = judged.succeeded
            self.save()
            if judged.succeeded:
                self.result.status = self.done_status()
                return
            # Escalate: cheap implementer first, a stronger one only for what keeps failing.
            st.fails_with_current += 1
            if st.fails_with_current >= impl_cfg.escalate_after and st.implementer + 1 < len(implementers):
                self.escalate(implementers, after_iteration=iteration)
                continue
            # An unchanged tree once gets a second chance with feedback (small models often echo the
            # file back as it was); the same diff twice, empty or not, ends the run.
            if repeated:
                why = f" (last problem: {outcome.last_error.splitlines()[0]})" if outcome.last_error else ""
                raise Stuck(f"attempt {iteration} repeated an earlier result; more attempts would not help{why}")
        self.result.status = "failed"
        if self.result.error is None:
            self.result.error = f"not done after {cfg.max_iterations} iterations"

    def start_loop(self, implementers: list[str]) -> None:
        """Set up the loop's state on a new run (a resumed run keeps what it had)."""
        st = self.state
        if st.loop_started:
            return
        st.loop_started = True
        st.feedback = baseline_feedback(st.baseline) if st.baseline else None
        impl_cfg = self.config.stages.implement
        if impl_cfg.start_strong_without_checks and len(implementers) > 1 and not self.has_checks():
            self.escalate(implementers, after_iteration=0, to_last=True,
                          reason="no verification can fail a wrong change, so the cheap first attempt is skipped")

    def escalate(self, implementers: list[str], *, after_iteration: int, to_last: bool = False,
                 reason: str | None = None) -> None:
        """Move to the next (or, with `to_last`, the strongest) implementer, starting from the base tree."""
        st = self.state
        st.implementer = len(implementers) - 1 if to_last else st.implementer + 1
        st.fails_with_current = 0
        st.fresh_start = True
        nxt = implementers[st.implementer]
        self.result.escalations.append(nxt)
        self.emit("escalate", to=nxt, after_iteration=after_iteration, **({"reason": reason} if reason else {}))
        self.save()

    def start_attempt(self) -> str:
        """Put the worktree where the next attempt starts; return the ref its change is judged against."""
        st = self.state
        # A killed attempt may have left half-applied edits: start each attempt from the last commit.
        self.worktree.reset_hard(st.head or self.worktree.base)
        if st.fresh_start:
            # An escalated implementer starts from the base tree, not from the weaker model's attempt
            # (which stays in the branch history).
            self.worktree.read_tree(self.worktree.base)
            return self.worktree.base
        return st.head or self.worktree.base

    async def implement(self, spec: str, plan: Plan | None, iteration: int) -> ImplementOutcome:
        """One implementer attempt, by the strategy the model and the config choose (`stages/strategies.py`)."""
        from relaycode.repomap import relevant_files
        from relaycode.session import derive_seed
        from relaycode.stages import generated_checks
        from relaycode.stages.attempt import Attempt
        from relaycode.stages.implement import choose_files, max_files_shown
        from relaycode.stages.strategies import samples_for, strategy_for

        cfg = self.config
        impl_cfg = cfg.stages.implement
        checks = self.pinned_checks()
        model = self.session.models.get(spec)
        # After this implementer's own failure, sample (if configured): a greedy model repeats itself.
        retry_t = impl_cfg.retry_temperature if self.state.fails_with_current > 0 else None
        with self.stage("implement", spec):
            files = self.worktree.list_files()
            sizes = {f: _size(self.worktree.root / f) for f in files}
            ranked = self.files_to_consider(files, relevant_files(self.worktree.root, files, self.options.task))
            shown = choose_files(files, plan, ranked, sizes=sizes, task=self.options.task,
                                 max_chars=model.context_chars(0.45), max_files=max_files_shown(model.profile))
            policy, limits = self.sandbox_settings()
            attempt = Attempt(
                task=self.options.task, plan=plan, files=tuple(shown), feedback=self.state.feedback,
                number=iteration, checks=tuple(checks.commands),
                examples=checks.doc_examples, venv=checks.venv_path(), policy=policy, limits=limits,
                max_steps=impl_cfg.max_steps, max_tokens=impl_cfg.max_tokens_per_attempt,
                max_wall_s=impl_cfg.max_wall_s, samples=samples_for(model, cfg),
                seed=None if cfg.seed is None else derive_seed(cfg.seed, "implement", spec, iteration),
                temperature=retry_t, on_event=self.emit,
                generated=generated_checks.from_state(self.state.generated_checks))
            outcome = await self.strategies[strategy_for(model, cfg)](self.session, spec, self.worktree, attempt)
        self.store.write_text(f"attempts/{iteration}-implement.md", "\n\n---\n\n".join(
            f"## answer {i + 1} ({spec})\n\n{text}" for i, text in enumerate(outcome.answers)))
        self.result.malformed_outputs += outcome.malformed
        self.state.malformed += outcome.malformed
        return outcome

    def files_to_consider(self, files: list[str], ranked: list[str]) -> list[str]:
        """The implementer's candidate files, best first: when the task or the failing output names test
        files, only what those tests import (and files the task names outright); else word ranking."""
        from relaycode.localize import sources_under_test

        task = self.options.task
        texts = [task, self.state.baseline or "", self.state.feedback or ""]
        localized = sources_under_test(self.worktree.root, files, texts)
        if not localized:
            return ranked
        named = [f for f in ranked if f in task and f not in localized]
        return [*named, *localized]

    def done_status(self) -> str:
        """The status of finished work: `succeeded` only when the pinned verification could have failed it."""
        return "succeeded" if self.has_checks() else "unverified"

    async def judge(self, outcome: ImplementOutcome, diff: str, plan: Plan | None, iteration: int,
                    start_ref: str) -> _Judgement:
        """Verify a changed tree, review it when it passes, and say what the next attempt must hear."""
        judged = _Judgement()
        if outcome.last_error is not None and not outcome.changed:
            judged.feedback.append("Your previous attempt changed no file:\n" + outcome.last_error)
            return judged
        if not diff.strip():
            judged.feedback.append("Your previous answer left every file exactly as it was, so the task is "
                                   "still not done. Find the lines that must change and change them.")
            return judged
        judged.verify = self.verify(sanity_since=start_ref)
        self.result.verify_passed = judged.verify.passed
        if not judged.verify.passed:
            judged.feedback.append("Verification failed:\n" + judged.verify.summary())
        elif self.config.stages.review.models:
            judged.findings = await self.review(plan, iteration)
            block_on = self.config.stages.review.block_on
            judged.blocking = [f for f in judged.findings if severity_at_least(f.severity, block_on)]
            if judged.blocking:
                judged.feedback.append("Reviewers raised these problems; fix them:\n" + "\n".join(
                    f"- {f.path}:{f.start_line} [{f.severity}] {f.message}" for f in judged.blocking))
        return judged

    def pinned_checks(self) -> PinnedChecks:
        """The run's verification, pinned by the verifier on first use (before any change) and kept
        in the state, so an attempt that deletes the tests or the docstrings holding the examples
        deletes no checks with them."""
        if self.state.checks is None:
            self.state.checks = self.verifier.pin()
        return self.state.checks

    async def pin_generated_checks(self) -> None:
        """With nothing pinned that can fail a change, have the implementer's model write checks to rank
        candidates by (`stages/generated_checks.py`); once per run, kept in state.json."""
        from relaycode.session import derive_seed
        from relaycode.stages import generated_checks

        pinned = None
        # Only on the untouched tree: a resumed run may already hold an attempt's change (it goes without).
        if not self.options.resume and generated_checks.wanted(self.config, has_checks=self.has_checks()):
            spec = generated_checks.checks_model(self.config)
            policy, limits = self.sandbox_settings()
            seed = None if self.config.seed is None else derive_seed(self.config.seed, "generated-checks", spec)
            with self.stage("generate-checks", spec):
                pinned = await generated_checks.pin(self.session, spec, self.worktree, self.options.task,
                                                    policy=policy, limits=limits,
                                                    venv=self.pinned_checks().venv_path(),
                                                    seed=seed, on_event=self.emit)
            if pinned is not None:
                self.store.write_json("generated-checks.json", pinned.to_dict())
        self.state.generated_checks = None if pinned is None else pinned.to_dict()
        self.state.generated_checked = True
        self.save()

    def has_checks(self) -> bool:
        """Whether the pinned verification can fail a wrong change (a linter alone cannot)."""
        return self.pinned_checks().can_fail_a_change()

    def sandbox_settings(self) -> tuple[SandboxPolicy, Limits]:
        """The policy and limits every command of this run gets (verify, and the agent loop's `run`)."""
        from relaycode.sandbox import settings_from_config

        return settings_from_config(self.config, no_sandbox=self.options.no_sandbox)

    def verify(self, name: str = "verify.json", *, sanity_since: str | None = None) -> VerifyResult:
        """The pinned verification, plus (with `sanity_since`) the basic checks of the Python files
        changed since that ref (`stages/sanity.py`), which apply whatever the project's tests are."""
        checks = self.pinned_checks()
        with self.stage("verify"):
            result = self.verifier.verify(checks, sanity_since=sanity_since)
        self.store.write_json(name, result.to_dict())
        for cmd in result.results:
            self.emit("command", command=cmd.command, exit_code=cmd.exit_code, seconds=round(cmd.seconds, 3),
                      timed_out=cmd.timed_out)
        return result

    async def review(self, plan: Plan | None, iteration: int) -> list[Finding]:
        from relaycode.review import review_diff

        cfg = self.config
        with self.stage("review", ",".join(cfg.stages.review.models)):
            result = await review_diff(
                self.session, self.worktree.diff(), reviewers=cfg.stages.review.models,
                repo_root=self.worktree.root, plan=plan.to_markdown() if plan else None, attempt=iteration,
                min_agree=cfg.stages.review.min_agree, samples=cfg.stages.review.samples,
            )
        self.store.write_json("review.json", result.to_dict())
        if result.limit is not None:
            # A reviewer hit a limit: the review is incomplete, and the run must stop as the limit says.
            raise result.limit
        return list(result.findings)


@dataclass
class _Judgement:
    """What verification and review said of one attempt."""

    verify: VerifyResult | None = None
    """None: not verified (the attempt changed nothing)."""
    findings: list[Finding] = field(default_factory=list)
    blocking: list[Finding] = field(default_factory=list)
    #: What the next attempt is told, in order.
    feedback: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.verify is not None and self.verify.passed and not self.blocking


class _StageScope:
    """Times a stage, records it on the timeline and emits its boundaries (and its trace span)."""

    def __init__(self, run: _Run, name: str, model: str | None) -> None:
        self.run, self.name, self.model = run, name, model
        self._span: AbstractContextManager[object] | None = None

    def __enter__(self) -> _StageScope:
        from relaycode.trace import stage_span

        self.start = time.time()
        self._span = stage_span(self.name, model=self.model)
        self._span.__enter__()
        self.run.emit("stage_start", stage=self.name, model=self.model)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        end = time.time()
        self.run.state.timeline.append(StageSpan(stage=self.name, model=self.model, start=self.start, end=end))
        self.run.emit("stage_end", stage=self.name, model=self.model, seconds=round(end - self.start, 3),
                      error=None if exc is None else str(exc))
        if self._span is not None:
            self._span.__exit__(exc_type, exc, tb)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _status_of(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, BudgetExceeded):
        return "budget_exceeded", "budget"
    if isinstance(exc, Aborted):
        return "aborted", "aborted"
    if isinstance(exc, LimitReached):
        return exc.status, type(exc).__name__.lower()
    if isinstance(exc, ProviderError):
        return "error", f"provider_{exc.kind}"
    return "error", type(exc).__name__


def run_task(options: RunOptions) -> RunResult:
    """Run the pipeline. Bad input raises UsageError/ConfigError before any work; everything else
    (model failures, limits) ends the run with a status and its files saved."""
    from relaycode.sandbox import SandboxPolicy, require_sandbox, settings_from_config
    from relaycode.stages.verifier import SandboxVerifier
    from relaycode.workspace import open_repo

    started = time.time()
    t0 = time.perf_counter()
    if not options.task.strip() and options.plan_file is None and not options.resume:
        raise UsageError("the task is empty: say what to do, e.g. relay run \"fix the failing test in tests/test_x.py\"")
    repo = open_repo(options.repo)
    preflight(options.config, doubles=set(options.model_overrides or ()))
    if options.config.sandbox.enabled and not options.no_sandbox:
        require_sandbox(SandboxPolicy(enabled=True))
    runs_dir = options.runs_dir or runs_dir_of(repo.git_dir)
    # Opened before anything is created: an unusable history is a one-line error, not a half-made run.
    history = _open_history() if options.history else None
    if options.resume:
        if not options.run_id:
            raise UsageError("--resume needs a run id")
        store = RunStore.open(runs_dir, options.run_id)
        state = store.load_state()
        if state.status in TERMINAL_STATUSES:
            raise UsageError(f"run {options.run_id} already ended with status {state.status}")
        worktree = repo.open_worktree(options.run_id)
        options.task = options.task or state.task
    else:
        if options.plan_file is not None and not options.plan_file.is_file():
            raise UsageError(f"plan file {options.plan_file} does not exist")
        if options.plan_file is not None:
            from relaycode.stages.plan import Plan

            Plan.from_markdown(options.plan_file.read_text(encoding="utf-8"), source=str(options.plan_file))
        repo.resolve(options.base)
        run_id = options.run_id or new_run_id()
        store = RunStore.create(runs_dir, run_id)
        worktree = repo.create_worktree(run_id, options.base)
        state = RunState(run_id=run_id, task=options.task, repo=str(repo.root), base=worktree.base,
                         branch=worktree.branch, worktree=str(worktree.root), started_at=started,
                         config=options.config.public_dict(), relay_version=__version__)
        store.save_state(state)
    policy, limits = settings_from_config(options.config, no_sandbox=options.no_sandbox)
    verify_cfg = options.config.stages.verify
    verifier = SandboxVerifier(worktree=worktree, task=options.task, policy=policy, limits=limits,
                               configured=verify_cfg.commands, python=verify_cfg.python)
    run = _Run(options, store, worktree, state, verifier=verifier)
    if history is not None:
        _start_in_history(history, options, run)
    run.emit("run_start", run_id=store.run_id, task=options.task, resume=options.resume)
    return run.execute(started=started, t0=t0, history=history)


def _open_history() -> History:
    from relaycode.history import History

    return History.open()


def _start_in_history(history: History, options: RunOptions, run: _Run) -> None:
    from relaycode.history import attach

    history.start_run(run.store.run_id, kind="run", repo=str(Path(options.repo).resolve()), task=options.task,
                      config_name=options.config.preset or options.config.source, run_dir=str(run.store.dir))
    attach(run.ledger, history)


def _finish(run: _Run, started: float, t0: float, history: History | None) -> None:
    result = run.result
    st = run.state
    result.wall_s = time.perf_counter() - t0 + st.wall_before
    result.model_s = run.ledger.total().seconds
    result.malformed_outputs = st.malformed
    result.checks = list(st.checks.commands) if st.checks is not None else []
    from relaycode.stages.generated_checks import from_state

    pinned = from_state(st.generated_checks)
    result.generated_checks = [] if pinned is None else [c.display() for c in pinned.checks]
    st.status = result.status
    st.wall_before = result.wall_s
    st.ended_at = time.time()
    run.save()
    try:
        patch = run.worktree.diff()
    except RelayError:
        patch = ""
    run.store.write_text("patch.diff", patch)
    run.store.write_json("ledger.json", run.ledger.to_dict())
    data = result.to_dict()
    data.update(task=run.options.task, repo=st.repo or None, timeline=[span.model_dump() for span in st.timeline],
                config=run.config.preset or run.config.source, started_at=started)
    run.store.write_json("result.json", data)
    verify = run.store.read_json("verify.json")
    report_data = {**data, "ledger": run.ledger.to_dict(), "findings": result.findings,
                   "verify": None if verify is None else {"passed": result.verify_passed,
                                                          "summary": _verify_line(verify)}}
    run.store.write_json("run.json", {k: v for k, v in report_data.items() if k != "ledger"})
    from relaycode.report import render_markdown, run_details

    run.store.write_text("report.md", render_markdown({**report_data, **run_details(run.store.dir)}))
    run.emit("run_end", status=result.status, error=result.error)
    if history is not None:
        history.finish_run(result.run_id, status=result.status, wall_s=result.wall_s, model_s=result.model_s,
                           ledger=run.ledger)


def _verify_line(verify: dict[str, Any]) -> str:
    results = verify.get("results", [])
    failed = [r["command"] for r in results if r.get("exit_code") != 0]
    if not results:
        return "no verify commands"
    return "all commands passed" if not failed else "failed: " + ", ".join(failed)

