"""The run loop's decisions, driven through its seams in milliseconds: no git, no sandbox.

The checkout is a `DirTree` (files in a directory, commits in memory), verification a
`ScriptedVerifier`, and the implementer either a `ScriptedImplementer` (files per attempt) or the
real edit-block strategy answering from a scripted model. `tests/test_pipeline.py` keeps the
end-to-end layer (git worktrees, pytest in bubblewrap).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from relaycode.config import Config, config_from_dict
from relaycode.errors import Stuck, UsageError
from relaycode.pipeline import RunOptions, RunResult, _Run
from relaycode.pricing import Tokens, price_request
from relaycode.runstate import RunState, baseline_feedback
from relaycode.runstore import RunStore
from relaycode.stages.attempt import Attempt
from relaycode.stages.implement import ImplementOutcome
from relaycode.stages.strategies import STRATEGIES
from relaycode.stages.verifier import PinnedChecks
from relaycode.stages.verify import RUFF_COMMAND
from relaycode.testing.loop import DirTree, ScriptedImplementer, ScriptedVerifier
from relaycode.testing.sample_repos import PAGINATION_FIX as GOOD_FIX
from relaycode.testing.sample_repos import PAGINATION_TASK, pagination_bug_files
from relaycode.testing.sample_repos import PAGINATION_WRONG_FIX as WRONG_FIX
from relaycode.testing.scripted import scripted_output, scripted_text

CHEAP = "google:gemini-2.5-flash"
STRONG = "anthropic:claude-sonnet-4-5"

BUGGY = {"calc.py": "def add(a, b):\n    return a - b\n"}
WRONG = {"calc.py": "def add(a, b):\n    return a * b\n"}
ALSO_WRONG = {"calc.py": "def add(a, b):\n    return b - a\n"}
RIGHT = {"calc.py": "def add(a, b):\n    return a + b\n"}


def config(*, implement: Mapping[str, Any] | None = None, stages_review: Mapping[str, Any] | None = None,
           **extra: Any) -> Config:
    stages: dict[str, Any] = {"plan": {"model": None}, "implement": {"model": CHEAP, **(implement or {})}}
    if stages_review is not None:
        stages["review"] = dict(stages_review)
    return config_from_dict({"stages": stages, **extra})


@dataclass
class Harness:
    """One run's fakes, kept across a pause and a resume (the tree's commits live in memory)."""

    tmp: Path
    cfg: Config
    tree: DirTree
    verifier: ScriptedVerifier
    strategy: Any
    overrides: Mapping[str, Model] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    task: str = "make add add"

    @property
    def store(self) -> RunStore:
        return RunStore(self.tmp / "runs" / "r1")

    def run(self, state: RunState | None = None) -> _Run:
        self.store.dir.mkdir(parents=True, exist_ok=True)
        options = RunOptions(repo=self.tmp, task=self.task, config=self.cfg, history=False,
                             model_overrides=self.overrides, on_event=self.events.append)
        strategies = None if self.strategy is None else dict.fromkeys(STRATEGIES, self.strategy)
        return _Run(options, self.store, self.tree, state if state is not None else RunState(),
                    verifier=self.verifier, strategies=strategies)

    def loop(self, state: RunState | None = None) -> _Run:
        """Drive only the loop (checks pinned on first use, no baseline, no plan)."""
        run = self.run(state)
        asyncio.run(run.loop(None))
        return run

    def execute(self, state: RunState | None = None) -> RunResult:
        """The whole run, as `run_task` drives it: baseline, plan, loop, the run files."""
        return self.run(state).execute(started=time.time(), t0=time.perf_counter())

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


@pytest.fixture
def memory_tmp(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory when the machine has one: run files are written with fsync, which on a
    disk costs more than the loop's logic."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="relay-loop-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def harness(memory_tmp: Path) -> Iterator[Any]:
    tmp_path = memory_tmp

    def make(cfg: Config, script: Any, verify: list[Any], *, files: Mapping[str, str] = BUGGY,
             checks: PinnedChecks | None = None, overrides: Mapping[str, Model] | None = None,
             task: str = "make add add") -> Harness:
        verifier = ScriptedVerifier(verify, **({"checks": checks} if checks is not None else {}))
        strategy = ScriptedImplementer(script) if script is not None else None
        return Harness(tmp_path, cfg, DirTree(tmp_path / "tree", files), verifier, strategy,
                       overrides=overrides or {}, task=task)

    yield make


# --------------------------------------------------------------------------- escalation


def test_escalates_after_escalate_after_failures_and_the_stronger_model_starts_from_the_base(harness: Any) -> None:
    h = harness(config(implement={"escalate_to": [STRONG], "escalate_after": 2}),
                {CHEAP: [WRONG, ALSO_WRONG], STRONG: [RIGHT]}, [False, False, True])
    run = h.loop()
    assert run.result.status == "succeeded" and run.result.iterations == 3
    assert run.result.escalations == [STRONG]
    assert [spec for spec, _ in h.strategy.attempts] == [CHEAP, CHEAP, STRONG]
    [escalate] = h.kinds("escalate")
    assert escalate["to"] == STRONG and escalate["after_iteration"] == 2
    # Attempt 2 builds on attempt 1's commit; the escalated attempt is judged against the base tree.
    first, second = h.tree.log[0], h.tree.log[1]
    assert first.startswith(f"relay: attempt 1 by {CHEAP}") and second.startswith(f"relay: attempt 2 by {CHEAP}")
    assert h.verifier.calls[0] == "base" and h.verifier.calls[1] not in (None, "base") and h.verifier.calls[2] == "base"
    assert h.tree.read_text("calc.py") == RIGHT["calc.py"]
    assert run.state.implementer == 1 and run.state.fails_with_current == 0 and run.state.succeeded


def test_the_failing_verification_is_the_next_attempts_feedback(harness: Any) -> None:
    h = harness(config(), {CHEAP: [WRONG, RIGHT]}, [False, True])
    run = h.loop()
    assert run.result.status == "succeeded" and run.result.iterations == 2 and len(run.result.commits) == 2
    first, second = h.strategy.given(CHEAP)
    assert first.feedback is None
    assert second.feedback is not None and second.feedback.startswith("Verification failed:")
    assert "tests/test_x.py::test_x" in second.feedback
    assert [a.number for a in (first, second)] == [1, 2]


def test_the_last_implementer_keeps_going_until_max_iterations(harness: Any) -> None:
    h = harness(config(max_iterations=3, implement={"escalate_to": [STRONG]}),
                {CHEAP: [WRONG], STRONG: [ALSO_WRONG, RIGHT, {"calc.py": "def add(a, b):\n    return 0\n"}]},
                [False])
    result = h.execute()
    assert result.status == "failed" and result.iterations == 3
    assert result.error == "not done after 3 iterations"
    assert [spec for spec, _ in h.strategy.attempts] == [CHEAP, STRONG, STRONG]


# --------------------------------------------------------------------------- repeats and unchanged trees


def test_a_repeated_failed_tree_is_forgiven_once_with_that_said(harness: Any) -> None:
    """The escalated model starts from the base tree and first repeats the cheap model's failed edit."""
    h = harness(config(implement={"escalate_to": [STRONG]}), {CHEAP: [WRONG], STRONG: [WRONG, RIGHT]},
                [False, False, True])
    run = h.loop()
    assert run.result.status == "succeeded" and run.result.iterations == 3
    repeat, fixed = h.strategy.given(STRONG)
    assert repeat.feedback is not None and "Verification failed" in repeat.feedback
    assert fixed.feedback is not None
    assert "exactly the one of attempt 1, which already failed" in fixed.feedback
    assert "Verification failed" in fixed.feedback and "left every file exactly" not in fixed.feedback
    assert run.state.repeat_forgiven and len(run.state.diffs) == 3


def test_the_same_tree_a_third_time_is_stuck(harness: Any) -> None:
    h = harness(config(max_iterations=10), {CHEAP: [WRONG]}, [False])
    run = h.run()
    with pytest.raises(Stuck, match="attempt 3 repeated an earlier result"):
        asyncio.run(run.loop(None))
    second, third = h.strategy.given(CHEAP)[1:]
    # Attempt 2 wrote what attempt 1 had committed: nothing changed, and the tree repeats attempt 1's.
    assert second.feedback is not None and "Verification failed" in second.feedback
    assert third.feedback is not None and "left every file exactly as it was" in third.feedback
    assert "exactly the one of attempt 1" in third.feedback
    assert len(h.verifier.calls) == 1  # unchanged trees are not verified again
    assert run.state.iteration == 3 and run.state.repeat_forgiven


def test_an_unchanged_tree_gets_one_more_chance_with_feedback(harness: Any) -> None:
    h = harness(config(), {CHEAP: [BUGGY, RIGHT]}, [True])
    run = h.loop()
    assert run.result.status == "succeeded" and run.result.iterations == 2
    _echo, fixed = h.strategy.given(CHEAP)
    assert fixed.feedback is not None and "left every file exactly as it was" in fixed.feedback
    assert h.verifier.calls == ["base"]  # only the changed tree was verified
    assert len(h.tree.log) == 1


def test_changing_nothing_twice_is_stuck(harness: Any) -> None:
    h = harness(config(max_iterations=5), {CHEAP: [BUGGY]}, [True])
    run = h.run()
    with pytest.raises(Stuck, match="attempt 2 repeated an earlier result"):
        asyncio.run(run.loop(None))
    assert h.verifier.calls == [] and h.tree.log == []


def test_stuck_ends_the_run_as_failed_with_its_files(harness: Any) -> None:
    h = harness(config(max_iterations=5), {CHEAP: [BUGGY]}, [True])
    result = h.execute()
    assert result.status == "failed" and result.error_kind == "stuck" and result.iterations == 2
    saved = json.loads((result.run_dir / "result.json").read_text())
    assert saved["status"] == "failed" and "repeated an earlier result" in saved["error"]
    assert (result.run_dir / "report.md").is_file() and (result.run_dir / "patch.diff").read_text() == ""


# --------------------------------------------------------------------------- checks: unverified, start strong


def test_without_checks_the_cascade_starts_with_the_strongest_and_the_work_is_unverified(harness: Any) -> None:
    h = harness(config(implement={"escalate_to": [STRONG]}), {CHEAP: [WRONG], STRONG: [RIGHT]}, [True],
                checks=PinnedChecks(commands=[RUFF_COMMAND]))
    run = h.loop()
    assert run.result.status == "unverified" and run.result.escalations == [STRONG]
    assert [spec for spec, _ in h.strategy.attempts] == [STRONG]
    [escalate] = h.kinds("escalate")
    assert escalate["after_iteration"] == 0 and "no verification" in escalate["reason"]


def test_without_checks_and_without_start_strong_the_cheap_attempt_is_accepted_unverified(harness: Any) -> None:
    h = harness(config(implement={"escalate_to": [STRONG], "start_strong_without_checks": False}),
                {CHEAP: [WRONG], STRONG: [RIGHT]}, [True], checks=PinnedChecks(commands=[]))
    result = h.execute()
    assert result.status == "unverified" and result.escalations == [] and result.checks == []
    assert [spec for spec, _ in h.strategy.attempts] == [CHEAP]
    data = json.loads((result.run_dir / "result.json").read_text())
    assert data["status"] == "unverified" and data["verify"]["checks"] == []
    assert "unverified" in (result.run_dir / "report.md").read_text()


def test_checks_that_can_fail_a_change_make_it_succeeded(harness: Any) -> None:
    h = harness(config(), {CHEAP: [RIGHT]}, [True], checks=PinnedChecks(commands=[RUFF_COMMAND, "npm test"]))
    result = h.execute()
    assert result.status == "succeeded" and result.checks == [RUFF_COMMAND, "npm test"]


# --------------------------------------------------------------------------- retry temperature


def test_retries_of_an_implementer_sample_at_retry_temperature_and_a_new_implementer_uses_its_own(
        harness: Any) -> None:
    temperatures: dict[str, list[object]] = {CHEAP: [], STRONG: []}

    def answering(spec: str, answer: str) -> FunctionModel:
        def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            temperatures[spec].append((info.model_settings or {}).get("temperature"))
            return ModelResponse(parts=[TextPart(answer)])
        return FunctionModel(fn)

    cfg = config(implement={"escalate_to": [STRONG], "escalate_after": 2, "retry_temperature": 0.7},
                 models={CHEAP: {"temperature": 0}, STRONG: {"temperature": 0.2}})
    h = harness(cfg, None, [False, True], files=pagination_bug_files(), task=PAGINATION_TASK,
                overrides={CHEAP: answering(CHEAP, WRONG_FIX), STRONG: answering(STRONG, GOOD_FIX)})
    run = h.loop()
    assert run.result.status == "succeeded", run.result.error
    # Attempt 1 greedy; attempt 2 (its edit no longer applies, asked again) sampled; the escalated model's own.
    first, *retries = temperatures[CHEAP]
    assert first == 0 and retries and set(retries) == {0.7} and temperatures[STRONG] == [0.2]


def test_the_attempt_says_its_temperature(harness: Any) -> None:
    h = harness(config(implement={"retry_temperature": 0.9}), {CHEAP: [WRONG, ALSO_WRONG, RIGHT]},
                [False, False, True])
    h.loop()
    assert [a.temperature for a in h.strategy.given(CHEAP)] == [None, 0.9, 0.9]


# --------------------------------------------------------------------------- budget


def test_the_budget_stops_the_run_and_keeps_the_work(harness: Any) -> None:
    implementer = scripted_text([WRONG_FIX], usage=(800, 2000))  # $0.00524 per request
    # Flash worst case per request ≈ $0.0105: after one request the next no longer fits in $0.015.
    cfg = config(budget={"run_usd": 0.015}, max_iterations=5)
    h = harness(cfg, None, [False], files=pagination_bug_files(), task=PAGINATION_TASK,
                overrides={CHEAP: implementer})
    result = h.execute()
    assert result.status == "budget_exceeded" and result.error_kind == "budget"
    assert len(implementer.calls) == 1  # the second request was never sent
    assert result.ledger.total().usd <= Decimal("0.015")
    assert len(result.commits) == 1 and "page * per_page - 1" in h.tree.read_text("shop/pagination.py")
    assert json.loads((result.run_dir / "result.json").read_text())["status"] == "budget_exceeded"


# --------------------------------------------------------------------------- resume


def test_resuming_a_run_that_recorded_success_only_finishes_its_files(harness: Any) -> None:
    h = harness(config(), {CHEAP: [WRONG]}, [False])
    state = RunState(checks=PinnedChecks(commands=["python -m pytest -q"]), baseline_checked=True, planned=True,
                     loop_started=True, iteration=2, succeeded=True)
    result = h.execute(state)
    assert result.status == "succeeded" and result.iterations == 2
    assert h.strategy.attempts == [] and h.verifier.calls == []


class _KilledAt:
    """Wraps a strategy: its `n`-th call is interrupted (what SIGTERM does to a run)."""

    def __init__(self, inner: ScriptedImplementer, n: int) -> None:
        self.inner, self.n, self.calls = inner, n, 0

    async def __call__(self, session: Any, spec: str, worktree: Any, attempt: Attempt) -> ImplementOutcome:
        self.calls += 1
        if self.calls == self.n:
            worktree.write_text("calc.py", "half an edit")
            raise KeyboardInterrupt
        return await self.inner(session, spec, worktree, attempt)


def test_a_run_paused_mid_loop_resumes_with_the_implementer_feedback_and_tree_it_had(harness: Any) -> None:
    implementer = ScriptedImplementer({CHEAP: [WRONG], STRONG: [RIGHT]})
    h = harness(config(implement={"escalate_to": [STRONG], "escalate_after": 1}), None, [False, False, True])
    h.strategy = _KilledAt(implementer, 2)  # the escalated model's first attempt is interrupted
    paused = h.execute()
    assert paused.status == "interrupted" and paused.iterations == 1
    assert len(h.verifier.calls) == 2  # the baseline and attempt 1

    h.strategy = implementer
    state = h.store.load_state()
    assert state.status == "interrupted" and state.implementer == 1 and state.fresh_start
    resumed = h.execute(state)
    assert resumed.status == "succeeded" and resumed.iterations == 2
    [(_, attempt)] = [a for a in implementer.attempts if a[0] == STRONG]
    assert attempt.number == 2 and attempt.feedback is not None and "Verification failed" in attempt.feedback
    # No second baseline; the half edit was reset; the escalated attempt was judged against the base.
    assert h.verifier.calls == [None, "base", "base"]
    assert h.tree.read_text("calc.py") == RIGHT["calc.py"]
    assert h.store.load_state().wall_before >= paused.wall_s


# --------------------------------------------------------------------------- saved state


def old_shape_state(tree: DirTree) -> dict[str, Any]:
    """A state.json as relay wrote it before `RunState`: one flat dict, steps done by key presence."""
    tree.write_text("calc.py", WRONG["calc.py"])
    digest = hashlib.sha256(tree.diff().encode()).hexdigest()
    head = tree.commit("relay: attempt 1 by cheap")
    return {
        "run_id": "r1", "task": "make add add", "repo": "/somewhere", "base": "base", "branch": "relay/r1",
        "worktree": "/somewhere/else", "started_at": 1.0, "config": {"preset": None}, "relay_version": "0.1.0",
        "verify_commands": ["python -m pytest -q"], "verify_venv": None, "baseline": "FAILED: tests",
        "plan": None, "iteration": 1, "implementer": 0, "fails_with_current": 1, "diffs": [digest],
        "feedback": "Verification failed:\nFAILED tests/test_x.py::test_x", "fresh_start": False,
        "head": head, "succeeded": False, "malformed": 2, "status": "interrupted", "wall_before": 4.5,
        "timeline": [{"stage": "implement", "model": CHEAP, "start": 1.0, "end": 2.0}],
        "written_by_a_newer_relay": {"anything": 1},
    }


def test_a_state_saved_in_the_old_flat_shape_loads_and_resumes(harness: Any) -> None:
    h = harness(config(implement={"retry_temperature": 0.5}), {CHEAP: [RIGHT]}, [True])
    (h.store.dir).mkdir(parents=True)
    (h.store.dir / "state.json").write_text(json.dumps(old_shape_state(h.tree)))
    state = h.store.load_state()
    assert state.checks == PinnedChecks(commands=["python -m pytest -q"])
    assert state.baseline_checked and state.planned and state.plan is None and state.loop_started
    assert state.iteration == 1 and state.fails_with_current == 1 and state.malformed == 2
    assert state.timeline[0].model == CHEAP and state.config == {"preset": None}

    head = state.head
    result = h.execute(state)
    assert result.status == "succeeded" and result.iterations == 2 and result.malformed_outputs == 2
    [attempt] = h.strategy.given(CHEAP)
    assert attempt.number == 2 and attempt.temperature == 0.5  # the implementer's second attempt
    assert attempt.feedback == "Verification failed:\nFAILED tests/test_x.py::test_x"
    assert h.verifier.calls == [head]  # no new pin, no baseline: attempt 2 judged against attempt 1
    saved = json.loads((h.store.dir / "state.json").read_text())
    assert "written_by_a_newer_relay" not in saved and "verify_commands" not in saved
    assert saved["checks"]["commands"] == ["python -m pytest -q"] and saved["status"] == "succeeded"


def test_an_old_state_killed_before_its_first_attempt_still_hears_the_baseline() -> None:
    state = RunState.model_validate({"verify_commands": [], "baseline": "FAILED: x", "plan": None,
                                     "implementer": 0, "iteration": 0})
    assert state.loop_started and state.feedback == baseline_feedback("FAILED: x")
    fresh = RunState.model_validate({"verify_commands": [], "baseline": "FAILED: x"})
    assert not fresh.loop_started and fresh.feedback is None and fresh.checks == PinnedChecks(commands=[])


def test_a_new_state_round_trips_and_says_what_is_not_done_yet(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save_state(RunState(run_id="r1"))
    state = store.load_state()
    assert state == RunState(run_id="r1")
    assert state.checks is None and not state.baseline_checked and not state.planned and not state.loop_started


def test_a_misspelt_field_is_an_error_not_a_silent_default() -> None:
    state = RunState()
    with pytest.raises(ValueError, match="iteraton"):
        state.iteraton = 1  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="iteration"):
        state.iteration = "two"  # type: ignore[assignment]


def test_a_state_with_a_wrong_value_is_a_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"iteration": "many"}))
    with pytest.raises(UsageError, match=r"state\.json: iteration: .*cannot be resumed") as caught:
        RunStore(tmp_path).load_state()
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- with the real edit-block strategy


def test_an_edit_that_changes_nothing_gets_one_more_chance(harness: Any) -> None:
    echo = GOOD_FIX.replace("    start = (page - 1) * per_page\n>", "    start = page * per_page\n>")  # a no-op edit
    implementer = scripted_text([echo, GOOD_FIX], usage=(500, 20))
    h = harness(config(), None, [True], files=pagination_bug_files(), task=PAGINATION_TASK,
                overrides={CHEAP: implementer})
    run = h.loop()
    assert run.result.status == "succeeded" and run.result.iterations == 2
    assert "left every file exactly as it was" in implementer.calls[1]


def test_answers_without_edits_twice_are_stuck(harness: Any) -> None:
    implementer = scripted_text(["no edits here"], usage=(100, 10))
    h = harness(config(max_iterations=5, implement={"max_steps": 1}), None, [True], files=pagination_bug_files(),
                task=PAGINATION_TASK, overrides={CHEAP: implementer})
    result = h.execute()
    assert result.status == "failed" and result.iterations == 2 and result.malformed_outputs == 2
    assert "repeated an earlier result" in (result.error or "") and "no edit blocks" in (result.error or "")
    assert "changed no file" in implementer.calls[1]


def test_the_same_edit_over_and_over_is_stuck_within_budget(harness: Any) -> None:
    implementer = scripted_text([WRONG_FIX])
    h = harness(config(max_iterations=10, implement={"max_steps": 2}, budget={"run_usd": 0.05}), None, [False],
                files=pagination_bug_files(), task=PAGINATION_TASK, overrides={CHEAP: implementer})
    result = h.execute()
    assert result.status == "failed" and "repeated an earlier result" in (result.error or "")
    assert result.iterations < 10 and result.ledger.total().usd <= Decimal("0.05")


REVIEWER = "openai:gpt-5-mini"


def usd(calls: list[tuple[str, tuple[int, int]]]) -> Decimal:
    return sum((price_request(spec, Tokens(*u)) or Decimal(0) for spec, u in calls), Decimal(0))

BLOCKER = {"findings": [{"line": 15, "severity": "blocker", "category": "bug",
                         "message": "explain the 1-based page arithmetic", "suggestion": "add a comment"}]}


def test_a_reviewer_blocker_goes_back_to_the_implementer(harness: Any) -> None:
    polish = ("shop/pagination.py\n<<<<<<< SEARCH\n    start = (page - 1) * per_page\n=======\n"
              "    start = (page - 1) * per_page  # pages are 1-based\n>>>>>>> REPLACE\n")
    implementer = scripted_text([GOOD_FIX, polish], usage=(700, 40))
    reviewer = scripted_output([BLOCKER, {"findings": []}], usage=(600, 50))
    h = harness(config(stages_review={"models": [REVIEWER]}), None, [True], files=pagination_bug_files(),
                task=PAGINATION_TASK, overrides={CHEAP: implementer, REVIEWER: reviewer})
    run = h.loop()
    assert run.result.status == "succeeded" and run.result.iterations == 2, run.result.error
    assert "explain the 1-based page arithmetic" in implementer.calls[1]
    assert "# pages are 1-based" in h.tree.read_text("shop/pagination.py")
    assert json.loads((h.store.dir / "review.json").read_text())["findings"] == []
    assert run.ledger.by_stage()["review"].usd == usd([(REVIEWER, (600, 50))] * 2)
    assert run.ledger.total().usd == usd([(CHEAP, (700, 40))] * 2 + [(REVIEWER, (600, 50))] * 2)


def test_a_reviewer_repeating_the_same_blocker_is_bounded_by_iterations(harness: Any) -> None:
    revision = [0]

    def implementer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        revision[0] += 1
        if revision[0] == 1:
            return ModelResponse(parts=[TextPart(GOOD_FIX)])
        line = "    return items[start:start + per_page]"  # a new comment each round: never the same diff
        edit = f"shop/pagination.py\n<<<<<<< SEARCH\n{line}\n=======\n{line}  # rev {revision[0]}\n>>>>>>> REPLACE\n"
        if revision[0] > 2:
            edit = edit.replace(f"SEARCH\n{line}\n", f"SEARCH\n{line}  # rev {revision[0] - 1}\n")
        return ModelResponse(parts=[TextPart(edit)])

    reviewer = scripted_output([{"findings": [{"line": 15, "severity": "blocker", "category": "bug",
                                               "message": "I still do not like it"}]}])
    h = harness(config(max_iterations=3, stages_review={"models": [REVIEWER]}, budget={"run_usd": 0.05}), None,
                [True], files=pagination_bug_files(), task=PAGINATION_TASK,
                overrides={CHEAP: FunctionModel(implementer), REVIEWER: reviewer})
    result = h.execute()
    assert result.status == "failed" and result.iterations == 3 and revision[0] == 3
    assert len(reviewer.calls) == 3 and "not done after 3 iterations" in (result.error or "")
    assert result.ledger.total().usd <= Decimal("0.05")
