"""The implement contract: what one attempt is given (`Attempt`) and what implements it (`Implementer`).

The run loop builds one `Attempt` per iteration and hands it to the strategy the implementer's
model and the config choose (`stages/strategies.py`); every strategy returns an `ImplementOutcome`.
A new way of implementing is a new module with a function of this shape and a row in that table,
not a branch in the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from relaycode.sandbox import Limits, SandboxPolicy
    from relaycode.session import ModelSession
    from relaycode.stages.generated_checks import GeneratedChecks
    from relaycode.stages.implement import ImplementOutcome
    from relaycode.stages.plan import Plan
    from relaycode.workspace import FileTree

EventSink = Callable[..., None]
"""`emit(kind, **data)`: where a strategy reports what it does (the run's events.jsonl)."""


@dataclass(frozen=True)
class Attempt:
    """Everything one implement attempt is given. Built by the run loop, read by strategies."""

    task: str
    plan: Plan | None
    files: tuple[str, ...]
    """The files shown to the model (chosen within the model's context budget)."""
    feedback: str | None
    """What the previous attempt (or the baseline verification) said."""
    number: int
    """The run's iteration number (1-based); ledger rows and seeds carry it."""
    checks: tuple[str, ...]
    """The pinned verification commands (display names) the result will be judged by."""
    examples: dict[str, list[str]] | None
    """The pinned doc examples `relay:doc-examples` replays (see `stages/doc_examples.py`)."""
    venv: Path | None
    """The project's environment verify commands run in (None: relay's own interpreter)."""
    policy: SandboxPolicy
    limits: Limits
    max_steps: int
    """Model turns inside the attempt (edit retries, agent steps)."""
    max_tokens: int | None
    """Tokens (input + output) one agent-loop attempt may use; None: only the budget limits it."""
    max_wall_s: float
    """Wall time of one agent-loop attempt."""
    samples: int = 1
    """Candidates the sampling strategy draws (`stages.implement.samples`)."""
    seed: int | None = None
    """This attempt's base seed (`Config.seed` + the attempt's offset); None: the server's randomness."""
    temperature: float | None = None
    """Sampling temperature for this attempt's requests (None: the model's own setting)."""
    on_event: EventSink | None = None
    generated: GeneratedChecks | None = None
    """Checks a model wrote for a run with none that can fail a change (`stages/generated_checks.py`):
    the sampling strategy ranks candidates by them; they never decide whether the attempt passed."""


class Implementer(Protocol):
    """One implement strategy: change `worktree` for `attempt`, say what happened."""

    async def __call__(self, session: ModelSession, spec: str, worktree: FileTree,
                       attempt: Attempt) -> ImplementOutcome: ...
