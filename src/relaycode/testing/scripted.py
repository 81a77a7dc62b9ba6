"""Scripted models for tests: pydantic-ai `FunctionModel`s that answer from a list.

    implementer = scripted_text(["<edit blocks>", "<better edit blocks>"], usage=(500, 80))
    planner = scripted_output([{"goal": "...", "files": [...], "steps": [...], "acceptance": [...]}])

Each answer reports the given token usage, so ledger totals in tests are exact.
`calls` records every prompt the model saw.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage


class Scripted(FunctionModel):
    """A FunctionModel that also keeps what it was asked."""

    calls: list[str]


def _last_prompt(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
            return "\n".join(str(getattr(p, "content", "")) for p in message.parts)
    return ""


def _make(answer: Callable[[list[ModelMessage], AgentInfo], ModelResponse], name: str) -> Scripted:
    calls: list[str] = []

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(_last_prompt(messages))
        return answer(messages, info)

    model = Scripted(fn, model_name=name)
    model.calls = calls
    return model


def scripted_text(answers: Sequence[str], *, usage: tuple[int, int] = (100, 20), name: str = "scripted",
                  repeat_last: bool = True, cut_off: Collection[int] = ()) -> Scripted:
    """Answers plain text, one item per request (the last one repeats when `repeat_last`).

    Requests whose 0-based number is in `cut_off` report stopping at the token limit (finish reason "length").
    """
    queue = list(answers)
    served = 0

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal served
        text = queue.pop(0) if len(queue) > 1 or not repeat_last else queue[0]
        served += 1
        return ModelResponse(parts=[TextPart(text)], usage=RequestUsage(input_tokens=usage[0], output_tokens=usage[1]),
                             model_name=name, finish_reason="length" if served - 1 in cut_off else None)

    return _make(answer, name)


def scripted_output(outputs: Sequence[dict[str, Any]], *, usage: tuple[int, int] = (100, 20),
                    name: str = "scripted") -> Scripted:
    """Answers structured output through the agent's output tool (or as JSON text when it has none)."""
    import json

    queue = list(outputs)

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        data = queue.pop(0) if len(queue) > 1 else queue[0]
        ru = RequestUsage(input_tokens=usage[0], output_tokens=usage[1])
        if info.output_tools:
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, data)], usage=ru, model_name=name)
        return ModelResponse(parts=[TextPart(json.dumps(data))], usage=ru, model_name=name)

    return _make(answer, name)
