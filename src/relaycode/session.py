"""One way to call a model: `ModelSession.ask` (and `run_tools`, the same with native tool calls).

A stage asks the session for an answer from a model; the session builds the
pydantic-ai model once per name, wraps it in `MeteredModel`, and runs an
agent. `MeteredModel` is the one place where each request is budget-checked
(worst case reserved before it is sent), retried (bounded, with backoff and
Retry-After; SDK retries are off so attempts never multiply), timed, priced on
its own and written to the ledger. Nothing else sums usage by hand.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic_ai import Agent, AgentRetries, Tool
from pydantic_ai import exceptions as pai_exc
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.output import NativeOutput, PromptedOutput
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RunUsage, UsageLimits

from relaycode.budget import BudgetGuard
from relaycode.errors import ProviderError, ProviderErrorKind
from relaycode.ledger import Ledger, LedgerEntry
from relaycode.models import CHARS_PER_TOKEN, ModelRegistry, ResolvedModel, build_model
from relaycode.pricing import Tokens, price_of
from relaycode.trace import model_span

if TYPE_CHECKING:
    from pydantic_ai.run import AgentRunResult  # noqa: F401

    from relaycode.config import Config

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


def classify(exc: BaseException, model: str) -> ProviderError:
    """Map a pydantic-ai / SDK error to relay's typed ProviderError."""
    if isinstance(exc, ProviderError):
        return exc
    kind: ProviderErrorKind = "other"
    status = getattr(exc, "status_code", None)
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(exc, pai_exc.ModelAuthenticationError):
        kind = "auth"
    elif isinstance(exc, pai_exc.ModelContextWindowExceededError):
        kind = "context_overflow"
    elif isinstance(exc, pai_exc.ModelQuotaExceededError):
        kind = "other"  # billing: retrying cannot help
    elif isinstance(exc, pai_exc.ModelRateLimitError):
        kind = "rate_limit"
    elif isinstance(exc, (pai_exc.ModelTimeoutError, pai_exc.ModelRequestTimeout, TimeoutError)):
        kind = "timeout"
    elif isinstance(exc, pai_exc.ModelConnectionError):
        kind = "connection"
    elif isinstance(exc, (pai_exc.ModelServerError, pai_exc.ModelUnavailableError)):
        kind = "server"
    elif isinstance(exc, pai_exc.ModelHTTPError):
        if exc.status_code in (401, 403):
            kind = "auth"
        elif exc.status_code == 429:
            kind = "rate_limit"
        elif exc.status_code >= 500:
            kind = "server"
    elif isinstance(exc, pai_exc.ModelAPIError):
        kind = "bad_response"
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return ProviderError(f"{model}: {kind.replace('_', ' ')} error: {text}", kind=kind, model=model,
                         status_code=status, retry_after_s=retry_after)


def estimate_tokens(messages: Sequence[ModelMessage], instructions_chars: int = 0) -> int:
    """A deliberately high estimate of input tokens (`CHARS_PER_TOKEN`) for budget reservations."""
    chars = instructions_chars
    for message in messages:
        for part in message.parts:
            content = getattr(part, "content", None)
            chars += len(content) if isinstance(content, str) else len(repr(part))
    return chars // CHARS_PER_TOKEN + 16


@dataclass(frozen=True)
class RequestOptions:
    """Per-request sampling, carried with the request (several may be in flight on one session)."""

    temperature: float | None = None
    """None: the model's configured temperature (its `temperature` setting, else the provider's default)."""
    seed: int | None = None
    """None: derived from `Config.seed` (when set) for the stage and attempt."""
    extra_body: Mapping[str, object] | None = None
    """Extra fields of the request body the server understands, e.g. llama-server's `grammar`."""


def derive_seed(base: int, *parts: str | int) -> int:
    """A stable seed for one kind of request: `base` plus a checksum of what the request is."""
    return (base + zlib.crc32("|".join(map(str, parts)).encode())) % (1 << 31)


@dataclass(frozen=True)
class CallContext:
    """Where a request belongs (stage and attempt of the run) and what it sends besides its messages.

    One per `ask` / `run_tools` call, never shared: reviewers run concurrently on one session."""

    stage: str
    attempt: int
    instructions_chars: int = 0
    """Characters of instructions and tool schemas sent with every request (the budget's worst case)."""


class MeteredModel(WrapperModel):
    """Wraps a pydantic-ai model: budget reservation, bounded retries, pricing, ledger."""

    def __init__(self, wrapped: Model, *, model: ResolvedModel, session: ModelSession, context: CallContext) -> None:
        super().__init__(wrapped)
        self.resolved = model
        self.spec = model.spec
        self.session = session
        self.context = context

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        session = self.session
        model = self.resolved
        ref = model.ref
        retry = session.config.retry
        reservation = session.budget.reserve(
            self.context.stage, model, estimate_tokens(messages, self.context.instructions_chars),
            model.settings.max_tokens,
        )
        try:
            for attempt in range(1, retry.max_attempts + 1):
                # A span per provider attempt; `call.record` ends it once the attempt is metered.
                with model_span(ref, messages) as call:
                    started = time.time()
                    t0 = time.perf_counter()
                    try:
                        response = await self.wrapped.request(messages, model_settings, model_request_parameters)
                    except (pai_exc.ModelAPIError, TimeoutError, ConnectionError) as exc:
                        error = classify(exc, self.spec)
                        session.record(entry := LedgerEntry(
                            run_id=session.run_id, stage=self.context.stage, attempt=self.context.attempt,
                            model=self.spec, provider=ref.provider, tokens=Tokens(), usd=Decimal(0),
                            seconds=time.perf_counter() - t0, started_at=started, outcome=f"error:{error.kind}",
                        ))
                        call.record(entry)
                        if not error.retryable or attempt == retry.max_attempts:
                            raise error from exc
                        await session.sleep(self._backoff(attempt, error.retry_after_s))
                        continue
                    seconds = time.perf_counter() - t0
                    usage = response.usage
                    tokens = Tokens(
                        input=usage.input_tokens,
                        output=usage.output_tokens,
                        cache_read=usage.cache_read_tokens,
                        cache_write=usage.cache_write_tokens,
                    )
                    session.record(entry := LedgerEntry(
                        run_id=session.run_id, stage=self.context.stage, attempt=self.context.attempt,
                        model=self.spec, provider=ref.provider, tokens=tokens,
                        usd=price_of(model, tokens, when=response.timestamp),
                        seconds=seconds, started_at=started, finish_reason=response.finish_reason,
                    ))
                    call.record(entry, response)
                    return response
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            session.budget.release(reservation)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        retry = self.session.config.retry
        if retry_after is not None:
            return min(retry.max_backoff_s, retry_after)
        base = retry.backoff_s * (2 ** (attempt - 1))
        return min(retry.max_backoff_s, base * random.uniform(0.5, 1.5))

    @asynccontextmanager
    async def request_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[StreamedResponse]:
        # relay never streams model output: per-request pricing and retries need whole responses.
        raise NotImplementedError("relay does not stream model responses")
        yield  # pragma: no cover


@dataclass
class Answer(Generic[T]):
    output: T
    messages: list[ModelMessage]
    model: str


def _should_fall_back(exc: Exception) -> bool:
    return isinstance(exc, ProviderError) and exc.kind != "auth"


async def _real_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class ModelSession:
    """Model calls of one run (or one review, one bench case): ledger, budget, retries."""

    def __init__(
        self,
        config: Config,
        *,
        run_id: str = "adhoc",
        ledger: Ledger | None = None,
        model_overrides: Mapping[str, Model] | None = None,
        sleep: Sleep | None = None,
        spent_before: Decimal = Decimal(0),
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.ledger = ledger if ledger is not None else Ledger()
        self.budget = BudgetGuard(config, self.ledger, spent_before=spent_before)
        self.sleep: Sleep = sleep or _real_sleep
        self.models = ModelRegistry(config)
        """Every model of the config, resolved once (others on first use)."""
        self._built: dict[str, Model] = dict(model_overrides or {})

    def record(self, entry: LedgerEntry) -> None:
        self.ledger.add(entry)

    def model(self, spec: str) -> Model:
        """The (cached) pydantic-ai model for a spec; overrides (test doubles) win."""
        if spec not in self._built:
            self._built[spec] = build_model(self.models.get(spec))
        return self._built[spec]

    def _agent(self, stage: str, spec: str, *, attempt: int, instructions: str, output_type: Any,
               retries: AgentRetries, tools: Sequence[Tool[None]] = (),
               options: RequestOptions | None = None) -> Agent[None, Any]:
        """An agent on the metered model (and its metered fallbacks) with the model's settings."""
        resolved = self.models.get(spec)
        settings = resolved.settings
        # Tool schemas are sent with every request: count them in the worst case the budget reserves.
        context = CallContext(stage, attempt, len(instructions) + sum(
            len(json.dumps(tool.tool_def.parameters_json_schema)) for tool in tools))
        metered: Model = MeteredModel(self.model(spec), model=resolved, session=self, context=context)
        if settings.fallback:
            # Each fallback is metered on its own (its own price, budget check and ledger rows);
            # a failure that survived the primary's retries moves to the next, except auth errors.
            from pydantic_ai.models.fallback import FallbackModel

            chain = [MeteredModel(self.model(f), model=self.models.get(f), session=self, context=context)
                     for f in settings.fallback]
            metered = FallbackModel(metered, *chain, fallback_on=_should_fall_back)
        model_settings: ModelSettings = {"max_tokens": settings.max_tokens, "timeout": settings.timeout_s,
                                         "max_retries": 0}
        options = options or RequestOptions()
        temperature = options.temperature if options.temperature is not None else settings.temperature
        if temperature is not None:
            model_settings["temperature"] = temperature
        # A seeded request is reproducible on servers that honour `seed` (llama-server, OpenAI's best effort).
        seed = options.seed if options.seed is not None else (
            derive_seed(self.config.seed, stage, attempt) if self.config.seed is not None else None)
        if seed is not None:
            model_settings["seed"] = seed
        if options.extra_body:
            model_settings["extra_body"] = dict(options.extra_body)
        return Agent(metered, output_type=output_type, instructions=instructions, model_settings=model_settings,
                     retries=retries, tools=tools)

    async def _run(self, spec: str, agent: Agent[None, Any], prompt: str, **kwargs: Any) -> Any:
        """`agent.run`, with pydantic-ai's failures mapped to relay's typed errors."""
        try:
            return await agent.run(prompt, **kwargs)
        except pai_exc.UnexpectedModelBehavior as exc:
            raise ProviderError(f"{spec}: malformed output: {str(exc).splitlines()[0][:300]}",
                                kind="bad_response", model=spec) from exc
        except pai_exc.FallbackExceptionGroup as group:
            # Every model of the chain failed: report the last one's typed error.
            raise group.exceptions[-1] from group

    async def ask(
        self,
        stage: str,
        spec: str,
        prompt: str,
        *,
        instructions: str,
        output_type: type[T] | Any = str,
        attempt: int = 0,
        history: list[ModelMessage] | None = None,
        output_retries: int = 2,
        options: RequestOptions | None = None,
    ) -> Answer[Any]:
        """Run one agent turn (plus output-validation retries) on `spec` and return its output.

        `options` (temperature, seed, extra request fields) apply to this call's requests only."""
        profile = self.models.get(spec).profile
        spec_output: Any = output_type
        if output_type is not str:
            if profile.output_mode == "native":
                spec_output = NativeOutput(output_type)
            elif profile.output_mode == "prompted":
                spec_output = PromptedOutput(output_type)
        agent = self._agent(stage, spec, attempt=attempt, instructions=instructions, output_type=spec_output,
                            retries={"output": output_retries}, options=options)
        result = await self._run(spec, agent, prompt, message_history=history)
        return Answer(result.output, result.all_messages(), spec)

    async def run_tools(
        self,
        stage: str,
        spec: str,
        prompt: str,
        *,
        instructions: str,
        tools: Sequence[Tool[None]],
        output_type: Any,
        attempt: int = 0,
        usage_limits: UsageLimits | None = None,
        usage: RunUsage | None = None,
        retries: int = 2,
        options: RequestOptions | None = None,
    ) -> Answer[Any]:
        """Run an agent that calls `tools` (native tool calls) until it produces `output_type`.

        Every request still goes through `MeteredModel`. `usage_limits` bound the run (pydantic-ai raises
        `UsageLimitExceeded`, which is passed on for the caller to name); `usage`, when given, is updated
        in place, so the caller knows what was spent even when the run ends by an exception. `options` as
        for `ask`.
        """
        agent = self._agent(stage, spec, attempt=attempt, instructions=instructions, output_type=output_type,
                            retries={"tools": retries, "output": retries}, tools=tools, options=options)
        result = await self._run(spec, agent, prompt, usage_limits=usage_limits, usage=usage)
        return Answer(result.output, result.all_messages(), spec)
