"""Scripted reviewer models for review tests (pydantic-ai FunctionModel)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
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

from relaycode.config import Config, config_from_dict
from relaycode.review.findings import Finding

Answer = dict[str, Any] | str
Script = Callable[[str, AgentInfo], Answer]


def prompt_of(messages: list[ModelMessage]) -> str:
    """The first user prompt text sent to the model (later ones are output-validation retries)."""
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def shown_lines(prompt: str) -> list[int]:
    """Line numbers printed in the prompt's listing."""
    return [int(m) for m in re.findall(r"^\s*(\d+) [+ ] ", prompt, flags=re.M)]


def added_lines(prompt: str) -> list[int]:
    return [int(m) for m in re.findall(r"^\s*(\d+) \+ ", prompt, flags=re.M)]


def reviewer(script: Script, *, delay_s: float = 0.0, calls: list[AgentInfo] | None = None,
             usage: tuple[int, int] = (200, 30)) -> FunctionModel:
    """A model answering `script(prompt, info)`: a dict becomes structured output, a str is sent as text."""

    async def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if calls is not None:
            calls.append(info)
        if delay_s:
            await asyncio.sleep(delay_s)
        answer = script(prompt_of(messages), info)
        tokens = RequestUsage(input_tokens=usage[0], output_tokens=usage[1])
        if isinstance(answer, dict) and info.output_tools:
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)], usage=tokens)
        text = answer if isinstance(answer, str) else json.dumps(answer)
        return ModelResponse(parts=[TextPart(text)], usage=tokens)

    return FunctionModel(fn)


def flag_added(severity: str = "major", message: str = "wrong operator", category: str = "bug") -> Script:
    """A reviewer that flags the first added line it is shown."""

    def script(prompt: str, _info: AgentInfo) -> Answer:
        lines = added_lines(prompt)
        if not lines:
            return {"findings": []}
        return {"findings": [{"line": lines[0], "severity": severity, "category": category,
                              "message": message, "suggestion": "fix it"}]}

    return script


def config(**extra: Any) -> Config:
    """Priced API-model reviewers (tool output) and local ones (native output); no keys needed with overrides."""
    base: dict[str, Any] = {
        "diversity": "off",
        "stages": {"implement": {"model": "local:qwen2.5-coder-1.5b"},
                   "review": {"models": ["local:qwen2.5-coder-0.5b", "openai:gpt-5-mini"]}},
        "retry": {"max_attempts": 2, "backoff_s": 0},
    }
    base.update(extra)
    return config_from_dict(base)


class ConfirmingChecker:
    """A `FindingChecker` double: confirms every finding that carries evidence, records what it saw,
    and raises `error` instead when one is given (as a missing bwrap or a failed git export would)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.seen: list[Finding] = []
        self.error = error

    def check(self, finding: Finding) -> Finding:
        self.seen.append(finding)
        if self.error is not None:
            raise self.error
        status = "confirmed" if finding.evidence is not None else "unchecked"
        return finding.model_copy(update={"status": status, "check": "recorded"})
