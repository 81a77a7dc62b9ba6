"""Traces: a real ModelSession run exported over OTLP/HTTP to a loopback receiver, and to a file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic_ai import exceptions as pai_exc
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from relaycode.config import TraceSettings, config_from_dict
from relaycode.providers import ModelRef
from relaycode.sandbox import CompletedCommand
from relaycode.session import ModelSession
from relaycode.trace import (
    TRACE_FILE,
    configure_tracing,
    current_tracing,
    model_span,
    stage_span,
    tool_span,
    workflow_span,
)

from .otlp_receiver import ReceivedSpan, Receiver, start_receiver

PROMPT_CANARY = "CANARY-PROMPT-123"
TASK_CANARY = "CANARY-TASK-456"
KEY_CANARY = "sk-canary-xyz"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    recv, server = start_receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.endpoint)
    yield recv
    server.shutdown()
    server.server_close()


def _config(include_content: bool = False, exporter: str = "otlp"):
    return config_from_dict({
        "endpoints": {"fake": {"base_url": "http://127.0.0.1:9/v1"}},
        "stages": {"implement": {"model": "fake:m"}},
        "models": {"fake:m": {"price": {"input_per_mtok": 3, "output_per_mtok": 15}}},
        "unpriced": "allow",
        "retry": {"max_attempts": 3, "backoff_s": 0},
        "trace": {"exporter": exporter, "include_content": include_content},
    })


def _model(*replies: str | BaseException, usage: tuple[int, int, int] = (1000, 200, 300)) -> FunctionModel:
    queue = list(replies)

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        reply = queue.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return ModelResponse(
            parts=[TextPart(reply)], model_name="served-model-1", finish_reason="stop",
            usage=RequestUsage(input_tokens=usage[0], output_tokens=usage[1], cache_read_tokens=usage[2]),
        )

    return FunctionModel(fn)


async def _no_sleep(seconds: float) -> None:
    pass


def _run_pipeline(include_content: bool = False, exporter: str = "otlp", run_dir: Path | None = None) -> ModelSession:
    """What the pipeline does: workflow → stages → model calls (through ModelSession.ask) and a tool."""
    config = _config(include_content, exporter)
    rate_limited = pai_exc.ModelHTTPError(status_code=429, model_name="m", body="slow down")
    session = ModelSession(config, run_id="run-1", sleep=_no_sleep, model_overrides={
        "fake:m": _model(rate_limited, "the plan", "the patch"),
        "fake:unpriced": _model("looks fine", usage=(500, 50, 0)),
    })
    tracing = configure_tracing(config.trace, run_dir=run_dir)

    async def pipeline() -> None:
        with workflow_span("run-1", task=f"fix it {TASK_CANARY}"):
            with stage_span("plan", model="fake:m"):
                await session.ask("plan", "fake:m", f"plan {PROMPT_CANARY}", instructions="You plan.")
            with stage_span("implement", model="fake:m"):
                await session.ask("implement", "fake:m", f"do {PROMPT_CANARY}", instructions="You code.", attempt=1)
            with stage_span("verify"), tool_span("pytest") as tool:
                tool.record(CompletedCommand("pytest -q", 1, 2.5, "1 failed", False, True))
            with stage_span("review"):
                await session.ask("review", "fake:unpriced", f"review {PROMPT_CANARY}", instructions="You review.")

    with tracing:
        assert current_tracing() is tracing
        asyncio.run(pipeline())
    assert current_tracing() is None
    return session


def _by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def test_otlp_export_of_a_real_session_has_the_genai_span_tree(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, allow_model_requests: None
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY_CANARY)
    session = _run_pipeline()

    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    spans = receiver.spans()
    named = _by_name(spans)
    assert sorted(named) == sorted([
        "invoke_workflow", "invoke_agent plan", "invoke_agent implement", "invoke_agent verify",
        "invoke_agent review", "chat m", "chat unpriced", "execute_tool pytest",
    ])
    assert len({s.trace_id for s in spans}) == 1
    [workflow] = named["invoke_workflow"]
    assert workflow.parent_id == ""
    stages = {s.attributes["gen_ai.agent.name"]: s for s in spans if s.name.startswith("invoke_agent ")}
    assert all(s.parent_id == workflow.span_id for s in stages.values())
    # plan: a 429 attempt then a good one, both children of the plan stage
    chats = named["chat m"]
    assert [s.parent_id for s in chats] == [stages["plan"].span_id] * 2 + [stages["implement"].span_id]
    [tool] = named["execute_tool pytest"]
    assert tool.parent_id == stages["verify"].span_id
    assert named["chat unpriced"][0].parent_id == stages["review"].span_id

    # attributes of the conventions
    assert workflow.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow.attributes["relay.run_id"] == "run-1"
    assert stages["plan"].attributes["gen_ai.operation.name"] == "invoke_agent"
    assert stages["plan"].attributes["gen_ai.request.model"] == "fake:m"
    failed, ok, _ = chats
    assert failed.attributes["error.type"] == "rate_limit" and failed.status_code == 2  # STATUS_CODE_ERROR
    assert ok.kind == 3  # SPAN_KIND_CLIENT
    assert ok.attributes["gen_ai.operation.name"] == "chat"
    assert ok.attributes["gen_ai.provider.name"] == "fake"
    assert ok.attributes["gen_ai.request.model"] == "m"
    assert ok.attributes["gen_ai.response.model"] == "function:fn:"  # FunctionModel names its responses
    assert ok.attributes["gen_ai.usage.input_tokens"] == 1000
    assert ok.attributes["gen_ai.usage.output_tokens"] == 200
    assert ok.attributes["gen_ai.usage.cache_read.input_tokens"] == 300
    assert ok.attributes["gen_ai.usage.cache_creation.input_tokens"] == 0
    assert ok.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert "error.type" not in ok.attributes
    assert tool.attributes["gen_ai.tool.name"] == "pytest"
    assert tool.attributes["relay.exit_code"] == 1 and tool.attributes["relay.duration_s"] == 2.5
    assert workflow.resource["service.name"] == "relay"

    # cost: per request as in the ledger, summed onto stages and the workflow
    entries = session.ledger.entries
    one_request = Decimal(1000 * 3 + 200 * 15) / 1_000_000
    assert [e.usd for e in entries] == [Decimal(0), one_request, one_request, None]
    assert ok.attributes["relay.cost_usd"] == pytest.approx(float(one_request))
    assert failed.attributes["relay.cost_usd"] == 0.0
    assert "relay.cost_usd" not in named["chat unpriced"][0].attributes  # unknown, not $0
    assert stages["plan"].attributes["relay.cost_usd"] == pytest.approx(float(one_request))
    assert stages["plan"].attributes["relay.model_requests"] == 2
    assert stages["implement"].attributes["relay.cost_usd"] == pytest.approx(float(one_request))
    assert stages["review"].attributes["relay.cost_unpriced_requests"] == 1
    assert stages["verify"].attributes["relay.cost_usd"] == 0.0
    assert workflow.attributes["relay.cost_usd"] == pytest.approx(float(2 * one_request))
    assert workflow.attributes["relay.model_requests"] == 4
    assert workflow.attributes["relay.cost_unpriced_requests"] == 1

    # privacy: neither prompt, task nor key anywhere in what was sent (names, attributes, resource)
    raw = b"".join(receiver.bodies)
    for canary in (PROMPT_CANARY, TASK_CANARY, KEY_CANARY):
        assert canary.encode() not in raw
    assert not any("gen_ai.input.messages" in s.attributes or "relay.task" in s.attributes for s in spans)


def test_include_content_puts_prompts_and_completions_in_spans_but_never_keys(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, allow_model_requests: None
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY_CANARY)
    _run_pipeline(include_content=True)
    spans = receiver.spans()
    ok = next(s for s in spans if s.name == "chat m" and "error.type" not in s.attributes)
    inputs = json.loads(ok.attributes["gen_ai.input.messages"])
    assert {"role": "user", "parts": [{"type": "text", "content": f"plan {PROMPT_CANARY}"}]} in inputs
    outputs = json.loads(ok.attributes["gen_ai.output.messages"])
    assert outputs == [{"role": "assistant", "parts": [{"type": "text", "content": "the plan"}],
                        "finish_reason": "stop"}]
    assert json.loads(ok.attributes["gen_ai.system_instructions"])[0]["content"] == "You plan."
    [workflow] = [s for s in spans if s.name == "invoke_workflow"]
    assert TASK_CANARY in workflow.attributes["relay.task"]
    raw = b"".join(receiver.bodies)
    assert PROMPT_CANARY.encode() in raw  # the byte scan of the privacy test does see content when it is sent
    assert KEY_CANARY.encode() not in raw


def test_file_exporter_writes_json_lines_in_the_run_dir(tmp_path: Path, allow_model_requests: None) -> None:
    _run_pipeline(exporter="file", run_dir=tmp_path)
    lines = (tmp_path / TRACE_FILE).read_text().splitlines()
    spans = [json.loads(line) for line in lines]
    assert len(spans) == 10  # workflow, 4 stages, 4 model attempts, 1 tool
    names = [s["name"] for s in spans]
    assert names[-1] == "invoke_workflow"  # parents end after their children
    workflow = spans[-1]
    children = [s for s in spans if s["parent_id"] == workflow["context"]["span_id"]]
    assert len(children) == 4
    assert PROMPT_CANARY not in "\n".join(lines)


def test_off_exporter_and_no_current_tracing_are_no_ops(tmp_path: Path, allow_model_requests: None) -> None:
    tracing = configure_tracing(TraceSettings(exporter="off"), run_dir=tmp_path)
    assert not tracing.enabled
    with tracing, workflow_span("r") as w, stage_span("plan") as s, model_span(ModelRef("a", "b")) as call, \
            tool_span("x") as tool:
        assert w is None and s is None and call.span is None and tool.span is None
    session = _run_pipeline(exporter="off", run_dir=tmp_path)
    assert len(session.ledger.entries) == 4
    assert not (tmp_path / TRACE_FILE).exists()


def test_a_failure_escaping_a_model_span_is_marked(tmp_path: Path) -> None:
    tracing = configure_tracing(TraceSettings(exporter="file"), run_dir=tmp_path)
    with tracing, pytest.raises(KeyError), workflow_span("r"), model_span(ModelRef("fake", "m")):
        raise KeyError("x")
    spans = [json.loads(line) for line in (tmp_path / TRACE_FILE).read_text().splitlines()]
    chat = next(s for s in spans if s["name"] == "chat m")
    assert chat["attributes"]["error.type"] == "KeyError"
    assert chat["status"]["status_code"] == "ERROR"


def test_tracers_are_private_not_global(tmp_path: Path) -> None:
    from opentelemetry import trace as otel_trace

    before = otel_trace.get_tracer_provider()
    with configure_tracing(TraceSettings(exporter="file"), run_dir=tmp_path):
        pass
    assert otel_trace.get_tracer_provider() is before
