"""Which implement strategy a model uses: a table from name to `Implementer`, and the rule that picks one.

* `edit-blocks` (`stages/implement.py`): one answer of edit blocks or whole files, retried in the
  same conversation while it does not apply.
* `agent` (`stages/agent_loop.py`): an action loop (read, search, edit, run in the sandbox, finish).
* `sampled` (`stages/candidates.py`): N edit-block answers at once, each verified in a scratch
  copy of the tree; verification chooses.

The model's `protocol` (setting or profile) picks the agent; otherwise more than one sample
(`samples` of the model, else `stages.implement.samples`) picks sampling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaycode.stages.agent_loop import agent, uses_agent
from relaycode.stages.candidates import sampled_implement
from relaycode.stages.implement import edit_blocks

if TYPE_CHECKING:
    from relaycode.config import Config
    from relaycode.models import ResolvedModel
    from relaycode.stages.attempt import Implementer

STRATEGIES: dict[str, Implementer] = {
    "edit-blocks": edit_blocks,
    "agent": agent,
    "sampled": sampled_implement,
}


def samples_for(model: ResolvedModel, config: Config) -> int:
    """Candidates per attempt for `model`: its own `samples`, else the implement stage's."""
    own = model.settings.samples
    return own if own is not None else config.stages.implement.samples


def strategy_for(model: ResolvedModel, config: Config) -> str:
    """The name (a key of `STRATEGIES`) of the strategy `model` implements with."""
    if uses_agent(model):
        return "agent"
    return "sampled" if samples_for(model, config) > 1 else "edit-blocks"
