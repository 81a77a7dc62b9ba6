"""OpenTelemetry traces of a run, named and attributed per the GenAI semantic conventions.

One run is one trace::

    invoke_workflow                      (workflow_span: the whole run)
      invoke_agent plan                  (stage_span: one stage, or one attempt of it)
        chat openai:gpt-5                (model_span: one provider request, retries are siblings)
      invoke_agent verify
        execute_tool pytest              (tool_span: one command run in the sandbox)

`configure_tracing` builds a *private* `TracerProvider` (never the global one,
so library users and tests keep their own) and returns a `Tracing` handle.
Using the handle as a context manager makes it the current tracing for that
context (a contextvar, so asyncio tasks started inside inherit it) and shuts
it down on exit. The span helpers look the current tracing up themselves:
with none, or with the `off` exporter, they do nothing and cost nothing.

Privacy: prompt, completion and task text go into spans only when
`trace.include_content = true`. No environment value (API keys included) is
ever put into an attribute; the resource carries only service name/version.

Cost: each model span carries `relay.cost_usd` (when the price is known); the
stage and workflow spans around it get the sum when they end, through a chain
of accumulators held in a contextvar. Requests with an unknown price are
counted in `relay.cost_unpriced_requests` instead of being added as $0.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage, ModelResponse

    from relaycode.config import TraceSettings
    from relaycode.ledger import LedgerEntry
    from relaycode.providers import ModelRef

TRACE_FILE = "trace.jsonl"
_SCOPE = "relaycode"


# --------------------------------------------------------------------------- the handle


class Tracing:
    """A configured tracer (or a disabled one). Use as a context manager to make it current."""

    def __init__(self, provider: TracerProvider | None, *, include_content: bool = False) -> None:
        self._provider = provider
        self.include_content = include_content
        self.tracer: otel_trace.Tracer | None = None
        if provider is not None:
            from relaycode import __version__

            self.tracer = provider.get_tracer(_SCOPE, __version__)
        self._tokens: list[Any] = []

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span now; True when all were exported in time."""
        return self._provider.force_flush(timeout_millis) if self._provider is not None else True

    def shutdown(self) -> None:
        """Flush and stop the exporter. The handle does nothing afterwards."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self.tracer = None

    @contextmanager
    def activate(self) -> Iterator[Tracing]:
        """Make this the current tracing inside the block (without shutting it down after)."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def __enter__(self) -> Tracing:
        self._tokens.append(_CURRENT.set(self))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _CURRENT.reset(self._tokens.pop())
        self.shutdown()


_CURRENT: ContextVar[Tracing | None] = ContextVar("relay_tracing", default=None)


def current_tracing() -> Tracing | None:
    """The tracing made current with `with tracing:` / `tracing.activate()`, or None."""
    return _CURRENT.get()


def _tracer() -> tuple[otel_trace.Tracer, bool] | None:
    tracing = _CURRENT.get()
    if tracing is None or tracing.tracer is None:
        return None
    return tracing.tracer, tracing.include_content


# --------------------------------------------------------------------------- exporters


class JsonLinesExporter(SpanExporter):
    """Appends each finished span as one JSON line (the SDK's own span JSON, compacted)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(json.loads(span.to_json()), separators=(",", ":")) + "\n" for span in spans)
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(lines)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def configure_tracing(settings: TraceSettings, *, run_dir: Path | None) -> Tracing:
    """A `Tracing` for `settings.exporter`: `off` (disabled), `otlp` or `file` (`run_dir/trace.jsonl`).

    `otlp` uses the OTLP/HTTP protobuf exporter, which reads its endpoint,
    headers and timeout from the standard `OTEL_EXPORTER_OTLP_*` variables.
    """
    if settings.exporter == "off":
        return Tracing(None)
    from relaycode import __version__

    # Only these two attributes: Resource.create() would also merge
    # OTEL_RESOURCE_ATTRIBUTES, i.e. put environment values into every export.
    resource = Resource({"service.name": "relay", "service.version": __version__})
    provider = TracerProvider(resource=resource)
    if settings.exporter == "file":
        if run_dir is None:
            raise ValueError("trace.exporter = 'file' needs a run directory")
        # Synchronous: a local append is cheap, and the file is complete when a span ends.
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(run_dir / TRACE_FILE)))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Batched in a background thread: a slow collector must not slow model calls down.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Tracing(provider, include_content=settings.include_content)


# --------------------------------------------------------------------------- cost sums


@dataclass
class _CostSum:
    """Dollars of the model calls under one workflow or stage span (shared by its asyncio tasks)."""

    parent: _CostSum | None
    usd: Decimal = Decimal(0)
    requests: int = 0
    unpriced: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, usd: Decimal | None) -> None:
        node: _CostSum | None = self
        while node is not None:
            with node.lock:
                node.requests += 1
                if usd is None:
                    node.unpriced += 1
                else:
                    node.usd += usd
            node = node.parent

    def annotate(self, span: Span) -> None:
        span.set_attribute("relay.cost_usd", float(self.usd))
        span.set_attribute("relay.model_requests", self.requests)
        if self.unpriced:
            span.set_attribute("relay.cost_unpriced_requests", self.unpriced)


_COST: ContextVar[_CostSum | None] = ContextVar("relay_trace_cost", default=None)


@contextmanager
def _summing_span(name: str, attributes: dict[str, Any]) -> Iterator[Span | None]:
    found = _tracer()
    if found is None:
        yield None
        return
    tracer, _ = found
    costs = _CostSum(parent=_COST.get())
    token = _COST.set(costs)
    try:
        with tracer.start_as_current_span(name, kind=SpanKind.INTERNAL, attributes=attributes) as span:
            try:
                yield span
            finally:
                costs.annotate(span)
    finally:
        _COST.reset(token)


# --------------------------------------------------------------------------- span helpers


@contextmanager
def workflow_span(run_id: str, task: str | None = None) -> Iterator[Span | None]:
    """The root span of one run: `invoke_workflow`. `task` is recorded only with include_content."""
    found = _tracer()
    attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_workflow", "relay.run_id": run_id}
    if found is not None and found[1] and task:
        attributes["relay.task"] = task
    with _summing_span("invoke_workflow", attributes) as span:
        yield span


@contextmanager
def stage_span(stage: str, model: str | None = None) -> Iterator[Span | None]:
    """One stage (plan, implement, verify, review): `invoke_agent {stage}`."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": stage}
    if model:
        attributes["gen_ai.request.model"] = model
    with _summing_span(f"invoke_agent {stage}", attributes) as span:
        yield span


class CommandResult(Protocol):
    """What `tool_span` records from a command's result (`sandbox.CompletedCommand` fits)."""

    exit_code: int
    seconds: float


class ToolCall:
    """Handle of a `tool_span`: `record(result)` once the command has finished."""

    def __init__(self, span: Span | None) -> None:
        self.span = span

    def record(self, result: CommandResult) -> None:
        if self.span is None:
            return
        self.span.set_attribute("relay.exit_code", result.exit_code)
        self.span.set_attribute("relay.duration_s", round(result.seconds, 3))
        if getattr(result, "timed_out", False):
            self.span.set_attribute("error.type", "timeout")
        if result.exit_code != 0:
            self.span.set_status(Status(StatusCode.ERROR, f"exit code {result.exit_code}"))


@contextmanager
def tool_span(name: str) -> Iterator[ToolCall]:
    """One command (test runner, linter): `execute_tool {name}`. Call `.record(result)` inside."""
    found = _tracer()
    if found is None:
        yield ToolCall(None)
        return
    tracer, _ = found
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    with tracer.start_as_current_span(f"execute_tool {name}", kind=SpanKind.INTERNAL, attributes=attributes) as span:
        yield ToolCall(span)


class ModelCall:
    """Handle of a `model_span`: `record(entry, response)` once the attempt is in the ledger."""

    def __init__(self, span: Span | None, include_content: bool) -> None:
        self.span = span
        self.include_content = include_content
        self._recorded = False

    def record(self, entry: LedgerEntry, response: ModelResponse | None = None) -> None:
        """Usage, cost and outcome of this attempt; ends the span (backoff waits are not model time)."""
        if self.span is None or self._recorded:
            return
        self._recorded = True
        span = self.span
        costs = _COST.get()
        if costs is not None:
            costs.add(entry.usd)
        t = entry.tokens
        span.set_attribute("gen_ai.usage.input_tokens", t.input)
        span.set_attribute("gen_ai.usage.output_tokens", t.output)
        span.set_attribute("gen_ai.usage.cache_read.input_tokens", t.cache_read)
        span.set_attribute("gen_ai.usage.cache_creation.input_tokens", t.cache_write)
        if entry.usd is not None:
            span.set_attribute("relay.cost_usd", float(entry.usd))
        span.set_attribute("relay.stage", entry.stage)
        span.set_attribute("relay.attempt", entry.attempt)
        if entry.outcome != "ok":
            span.set_attribute("error.type", entry.outcome.removeprefix("error:"))
            span.set_status(Status(StatusCode.ERROR, entry.outcome))
        if entry.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [entry.finish_reason])
        if response is not None:
            if response.model_name:
                span.set_attribute("gen_ai.response.model", response.model_name)
            if response.provider_response_id:
                span.set_attribute("gen_ai.response.id", response.provider_response_id)
            if self.include_content:
                span.set_attribute("gen_ai.output.messages", json.dumps(_messages_json([response])))
        span.end()


@contextmanager
def model_span(ref: ModelRef, messages: Sequence[ModelMessage] | None = None) -> Iterator[ModelCall]:
    """One provider request: `chat {model}`. Call `.record(entry, response)` after it is metered.

    An exception escaping the block marks the span failed (`error.type`);
    `messages` are put on the span only with include_content.
    """
    found = _tracer()
    if found is None:
        yield ModelCall(None, False)
        return
    tracer, include_content = found
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": ref.provider,
        "gen_ai.request.model": ref.name,
        "relay.model": ref.spec,
    }
    if include_content and messages:
        attributes["gen_ai.input.messages"] = json.dumps(_messages_json(messages))
        instructions = getattr(messages[-1], "instructions", None)
        if instructions:
            attributes["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": instructions}])
    name = f"chat {attributes['gen_ai.request.model']}"
    # end_on_exit=False: `record` ends the span as soon as the attempt is metered.
    with tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes=attributes, end_on_exit=False,
        record_exception=False, set_status_on_exception=False,
    ) as span:
        call = ModelCall(span, include_content)
        try:
            yield call
        except BaseException as exc:
            if not call._recorded:
                kind = getattr(exc, "kind", None)
                span.set_attribute("error.type", str(kind) if kind else type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
            raise
        finally:
            if span.is_recording():
                span.end()


# --------------------------------------------------------------------------- message content


def _messages_json(messages: Sequence[ModelMessage]) -> list[dict[str, Any]]:
    """pydantic-ai messages in the GenAI conventions' shape: [{role, parts: [{type, ...}]}]."""
    from pydantic_ai import messages as m

    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, m.ModelResponse):
            parts: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, m.TextPart):
                    parts.append({"type": "text", "content": part.content})
                elif isinstance(part, m.ToolCallPart):
                    parts.append({"type": "tool_call", "id": part.tool_call_id, "name": part.tool_name,
                                  "arguments": part.args})
                elif isinstance(part, m.ThinkingPart):
                    parts.append({"type": "reasoning", "content": part.content})
            entry: dict[str, Any] = {"role": "assistant", "parts": parts}
            if message.finish_reason:
                entry["finish_reason"] = message.finish_reason
            out.append(entry)
            continue
        for req_part in message.parts:
            if isinstance(req_part, m.SystemPromptPart):
                out.append({"role": "system", "parts": [{"type": "text", "content": req_part.content}]})
            elif isinstance(req_part, m.UserPromptPart):
                content = req_part.content if isinstance(req_part.content, str) else str(req_part.content)
                out.append({"role": "user", "parts": [{"type": "text", "content": content}]})
            elif isinstance(req_part, m.ToolReturnPart):
                out.append({"role": "tool", "parts": [{"type": "tool_call_response", "id": req_part.tool_call_id,
                                                       "response": req_part.model_response_str()}]})
            elif isinstance(req_part, m.RetryPromptPart):
                out.append({"role": "user", "parts": [{"type": "text", "content": req_part.model_response()}]})
    return out
