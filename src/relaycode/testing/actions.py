"""A scripted model for the agentic implement loop: it answers each request with the next action(s).

    model = scripted_actions([
        {"action": "read_file", "path": "shop/pagination.py"},
        {"action": "edit", "path": "shop/pagination.py", "search": "...", "replace": "..."},
        {"action": "run", "command": "python -m pytest -q"},
        {"action": "finish", "summary": "pages start at 1"},
    ], usage=(500, 50))

The same script serves both ways the loop talks to a model. When the agent offers tools (native tool
calls), each action becomes a tool call (a list of actions: several calls in one response; `finish` is
the output tool). Otherwise the answer is one JSON step, `{"thought": "", "action": {...}}`, as a
JSON-schema-constrained local model would send it. A string is answered as plain text, unchanged (a
malformed answer). Every answer reports `usage`, so ledger totals are exact; `observations` keeps what
the model was told before each request; `delay` makes each answer take that long (wall-time limits).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

ScriptStep = dict[str, Any] | list[dict[str, Any]] | str


class ScriptedActions(FunctionModel):
    """A FunctionModel that also keeps what it was told."""

    observations: list[str]


def _last_request(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            return "\n".join(str(getattr(part, "content", "")) for part in message.parts)
    return ""


def scripted_actions(steps: Sequence[ScriptStep], *, usage: tuple[int, int] = (100, 20),
                     name: str = "scripted-actions", delay: float = 0.0, repeat_last: bool = True) -> ScriptedActions:
    """Answers one script step per request (the last one repeats when `repeat_last`)."""
    queue = list(steps)
    observations: list[str] = []

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        observations.append(_last_request(messages))
        if delay:
            await asyncio.sleep(delay)
        step = queue.pop(0) if len(queue) > 1 or not repeat_last else queue[0]
        if isinstance(step, str):
            parts: list[TextPart | ToolCallPart] = [TextPart(step)]
        elif info.function_tools:
            calls = step if isinstance(step, list) else [step]
            parts = [ToolCallPart(call["action"], {k: v for k, v in call.items() if k != "action"})
                     for call in calls]
        else:
            parts = [TextPart(json.dumps({"thought": "", "action": step}))]
        return ModelResponse(parts=list(parts), usage=RequestUsage(input_tokens=usage[0], output_tokens=usage[1]),
                             model_name=name)

    model = ScriptedActions(answer, model_name=name)
    model.observations = observations
    return model
