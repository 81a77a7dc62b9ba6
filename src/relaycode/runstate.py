"""A run's saved state (`state.json`): who the run is, what is done, and where its loop stands.

The run loop reads and writes one `RunState` and saves it (`RunStore.save_state`) after each step
that must not be repeated, so `--resume` continues where a run stopped: a saved plan is not asked
for again, pinned checks are not re-detected, the loop goes on with the same implementer, feedback
and repeat history. Every field has a default, so a run saved before a field existed still loads; a
misspelt field is an attribute error (and a mypy error), not a key that silently reads as missing.

Runs saved by earlier versions of relay (one flat dict of string keys) load through
`_from_flat_dict`; unknown keys are ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from relaycode.stages.plan import Plan
from relaycode.stages.verifier import PinnedChecks


def baseline_feedback(baseline: str) -> str:
    """What the first attempt hears when verification already failed before any change."""
    return "Current verification results, before any change:\n" + baseline


class StageSpan(BaseModel):
    """One stage's time on the run's timeline (result.json `timeline`)."""

    stage: str
    model: str | None = None
    start: float
    end: float


class RunState(BaseModel):
    """Everything `--resume` needs, saved as `state.json` in the run directory."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    # Who the run is: set when it starts, never changed.
    run_id: str = ""
    task: str = ""
    repo: str = ""
    base: str = ""
    """The commit the run started from."""
    branch: str = ""
    worktree: str = ""
    started_at: float | None = None
    config: dict[str, JsonValue] | None = None
    """The config the run started with (`Config.public_dict`): a resumed run continues with it."""
    relay_version: str | None = None

    # What is done before the loop.
    checks: PinnedChecks | None = None
    """The verification pinned on the untouched tree; None: not pinned yet."""
    baseline_checked: bool = False
    """Whether the baseline verification ran (or was skipped for good, with `stop_after_plan`)."""
    baseline: str | None = None
    """The baseline verification's failures, as the model reads them; None when it passed."""
    generated_checked: bool = False
    """Whether the generated-checks step is done (it runs once, on the untouched tree)."""
    generated_checks: dict[str, object] | None = None
    """Checks a model wrote to rank candidates by when nothing pinned can fail a change
    (`stages/generated_checks.py`, its `to_dict`); None: none were made."""
    planned: bool = False
    """Whether the plan step is done (`plan` None then: no planner, or its answer never validated)."""
    plan: Plan | None = None

    # Where the loop stands.
    loop_started: bool = False
    """Whether the loop chose its first implementer (and, with no checks, may have skipped the cheap one)."""
    iteration: int = 0
    """Attempts judged so far."""
    implementer: int = 0
    """Index into `[implement.model, *implement.escalate_to]`."""
    fails_with_current: int = 0
    """Failed attempts of the current implementer (escalation after `implement.escalate_after`)."""
    fresh_start: bool = False
    """The next attempt starts from the base tree (set on escalation)."""
    head: str | None = None
    """The branch's last attempt commit (None: no attempt changed anything yet)."""
    diffs: list[str] = Field(default_factory=list)
    """sha256 of the whole change since the base after each attempt: repeat detection."""
    repeat_forgiven: bool = False
    """Whether the one repeat of an earlier tree the run forgives has been used."""
    feedback: str | None = None
    """What the next attempt is told (the baseline's failures, or what judged the last attempt)."""
    succeeded: bool = False
    """The last attempt was accepted: a resumed run only finishes its files."""
    malformed: int = 0
    """Malformed model outputs over the whole run (the planner's and the implementers')."""

    # How it ended (or paused).
    status: str | None = None
    wall_before: float = 0.0
    """Wall seconds of the run's earlier invocations (a resumed run adds its own)."""
    ended_at: float | None = None
    timeline: list[StageSpan] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_flat_dict(cls, data: Any) -> Any:
        """Read a state saved by earlier versions, where a key's presence said that a step was done."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "verify_commands" in data and "checks" not in data:
            data["checks"] = {"commands": data["verify_commands"] or [], "venv": data.get("verify_venv"),
                              "doc_examples": data.get("doc_examples")}
        if "baseline" in data:
            data.setdefault("baseline_checked", True)
        if "plan" in data:
            data.setdefault("planned", True)
        if "implementer" in data and "loop_started" not in data:
            data["loop_started"] = True
            # A run killed between choosing its implementer and its first attempt had not saved
            # its first feedback yet.
            if "feedback" not in data and data.get("baseline"):
                data["feedback"] = baseline_feedback(str(data["baseline"]))
        return data
