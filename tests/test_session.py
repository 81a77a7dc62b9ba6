"""ModelSession: the one way to call a model. Logic with FunctionModel, the client path over real HTTP."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from pydantic import BaseModel
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from relaycode.config import config_from_dict
from relaycode.errors import BudgetExceeded, ProviderError
from relaycode.models import openai_compatible_model
from relaycode.pricing import Tokens, price_request
from relaycode.session import ModelSession
from relaycode.testing.fake_openai import FakeOpenAI, Reply


def cfg(**extra: object):
    base = {
        "endpoints": {"fake": {"base_url": "http://127.0.0.1:9/v1"}},
        "stages": {"implement": {"model": "openai:gpt-5-mini"}},
        "models": {"fake:m": {"price": {"input_per_mtok": 1, "output_per_mtok": 2}, "timeout_s": 2}},
        "retry": {"max_attempts": 3, "backoff_s": 0},
    }
    base.update(extra)
    return config_from_dict(base)


def scripted(*texts: str, usage: tuple[int, int] = (100, 20)) -> FunctionModel:
    replies = list(texts)

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(replies.pop(0))], usage=RequestUsage(input_tokens=usage[0], output_tokens=usage[1]))

    return FunctionModel(fn)


def test_ask_records_each_request_priced(allow_model_requests: None) -> None:
    session = ModelSession(cfg(), run_id="r1", model_overrides={"openai:gpt-5-mini": scripted("hello")})
    answer = asyncio.run(session.ask("implement", "openai:gpt-5-mini", "hi", instructions="be brief", attempt=1))
    assert answer.output == "hello"
    [entry] = session.ledger.entries
    assert (entry.run_id, entry.stage, entry.attempt, entry.model) == ("r1", "implement", 1, "openai:gpt-5-mini")
    assert entry.tokens == Tokens(100, 20)
    assert entry.usd == price_request("openai:gpt-5-mini", Tokens(100, 20))


def test_budget_stops_before_the_request_is_sent(allow_model_requests: None) -> None:
    calls: list[int] = []

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        return ModelResponse(parts=[TextPart("x")])

    config = cfg(budget={"run_usd": 0.001})  # gpt-5-mini worst case with 4096 max tokens ≈ $0.008
    session = ModelSession(config, model_overrides={"openai:gpt-5-mini": FunctionModel(fn)})
    with pytest.raises(BudgetExceeded):
        asyncio.run(session.ask("implement", "openai:gpt-5-mini", "hi", instructions="x"))
    assert calls == [] and session.ledger.entries == []


class Finding(BaseModel):
    line: int
    message: str


def test_structured_output_over_real_http(allow_model_requests: None) -> None:
    with FakeOpenAI() as server:
        server.push(Reply.json_output({"line": 3, "message": "off by one"}, input_tokens=50, output_tokens=9))
        config = cfg(endpoints={"fake": {"base_url": server.base_url}})
        config.models["fake:m"] = config.models["fake:m"].model_copy(update={"protocol": "auto"})
        session = ModelSession(config, model_overrides={"fake:m": openai_compatible_model("m", server.base_url, "k")})
        # endpoint models use prompted JSON output (no native tool calls assumed)
        answer = asyncio.run(session.ask("review", "fake:m", "review this", instructions="find bugs", output_type=Finding))
    assert answer.output == Finding(line=3, message="off by one")
    [entry] = session.ledger.entries
    assert entry.tokens == Tokens(50, 9) and entry.usd == Decimal(50 * 1 + 9 * 2) / 1_000_000
    assert server.headers[0]["authorization"] == "Bearer k"


def _session_for(server: FakeOpenAI, **extra: object) -> ModelSession:
    config = cfg(endpoints={"fake": {"base_url": server.base_url}}, **extra)
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    session = ModelSession(config, model_overrides={"fake:m": openai_compatible_model("m", server.base_url, "k")},
                           sleep=fake_sleep)
    session.sleeps = sleeps  # type: ignore[attr-defined]
    return session


def ask(session: ModelSession) -> str:
    return asyncio.run(session.ask("implement", "fake:m", "go", instructions="x")).output


def test_an_answer_stopped_at_the_token_limit_is_seen_as_cut_off(allow_model_requests: None) -> None:
    from relaycode.stages.implement import cut_off

    with FakeOpenAI() as server:
        server.push(Reply.text("def f():\n    return 1\n" * 50, finish_reason="length"), Reply.text("done"))
        session = _session_for(server)
        first = asyncio.run(session.ask("implement", "fake:m", "go", instructions="x"))
        second = asyncio.run(session.ask("implement", "fake:m", "go", instructions="x"))
    assert cut_off(first.messages) and not cut_off(second.messages)
    assert [e.finish_reason for e in session.ledger.entries] == ["length", "stop"]


def test_429_retry_after_is_honoured_and_attempts_do_not_multiply(allow_model_requests: None) -> None:
    with FakeOpenAI() as server:
        server.push(Reply.error(429, "slow down", headers={"Retry-After": "7"}), Reply.text("done"))
        session = _session_for(server)
        assert ask(session) == "done"
    assert len(server.requests) == 2  # no hidden SDK retries
    assert session.sleeps == [7.0]  # type: ignore[attr-defined]
    outcomes = [e.outcome for e in session.ledger.entries]
    assert outcomes == ["error:rate_limit", "ok"]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_retry_with_backoff_then_give_up(allow_model_requests: None, status: int) -> None:
    with FakeOpenAI(default=lambda _r: Reply.error(status, "boom")) as server:
        session = _session_for(server)
        with pytest.raises(ProviderError) as info:
            ask(session)
    assert info.value.kind == "server"
    assert len(server.requests) == 3  # retry.max_attempts, total
    assert len(session.sleeps) == 2  # type: ignore[attr-defined]


def test_auth_error_is_never_retried(allow_model_requests: None) -> None:
    with FakeOpenAI(default=lambda _r: Reply.error(401, "bad key")) as server:
        session = _session_for(server)
        with pytest.raises(ProviderError) as info:
            ask(session)
    assert info.value.kind == "auth" and not info.value.retryable
    assert len(server.requests) == 1


def test_context_overflow_is_typed(allow_model_requests: None) -> None:
    with FakeOpenAI(default=lambda _r: Reply.error(400, "maximum context length exceeded", code="context_length_exceeded")) as server:
        session = _session_for(server)
        with pytest.raises(ProviderError) as info:
            ask(session)
    assert info.value.kind == "context_overflow"
    assert len(server.requests) == 1


def test_truncated_body_and_dropped_connection_are_retried(allow_model_requests: None) -> None:
    with FakeOpenAI() as server:
        server.push(Reply.truncated(), Reply.drop(), Reply.text("finally"))
        session = _session_for(server)
        assert ask(session) == "finally"
    assert len(server.requests) == 3


def test_read_timeout_is_bounded(allow_model_requests: None) -> None:
    with FakeOpenAI() as server:
        server.push(Reply.hang(5), Reply.text("late"))
        session = _session_for(server)
        t0 = time.monotonic()
        assert ask(session) == "late"
        assert time.monotonic() - t0 < 4.5  # timeout_s = 2 for this model
    assert [e.outcome for e in session.ledger.entries] == ["error:timeout", "ok"]


def test_connection_refused(allow_model_requests: None) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    config = cfg(endpoints={"fake": {"base_url": f"http://127.0.0.1:{port}/v1"}})

    async def no_sleep(_s: float) -> None:
        return None

    session = ModelSession(config, model_overrides={"fake:m": openai_compatible_model("m", f"http://127.0.0.1:{port}/v1", "k")},
                           sleep=no_sleep)
    with pytest.raises(ProviderError) as info:
        ask(session)
    assert info.value.kind == "connection"
    assert len(session.ledger.entries) == 3


def test_model_requests_are_blocked_by_default() -> None:
    with FakeOpenAI() as server:
        session = _session_for(server)
        with pytest.raises(RuntimeError, match="ALLOW_MODEL_REQUESTS"):
            ask(session)
    assert server.requests == []


def test_non_loopback_hosts_are_unreachable_in_tests() -> None:
    import socket

    with pytest.raises(ConnectionRefusedError, match="blocked"), socket.create_connection(("192.0.2.1", 443), timeout=1):
        pass


def test_fallback_to_the_next_configured_model(allow_model_requests: None) -> None:
    with FakeOpenAI(default=lambda _r: Reply.error(503, "overloaded")) as down, FakeOpenAI() as up:
        up.push(Reply.text("from the fallback", input_tokens=20, output_tokens=4))
        config = cfg(endpoints={"fake": {"base_url": down.base_url}, "backup": {"base_url": up.base_url}},
                     models={"fake:m": {"price": {"input_per_mtok": 1, "output_per_mtok": 2}, "fallback": ["backup:m"]},
                             "backup:m": {"price": {"input_per_mtok": 3, "output_per_mtok": 4}}})

        async def no_sleep(_s: float) -> None:
            return None

        session = ModelSession(config, sleep=no_sleep, model_overrides={
            "fake:m": openai_compatible_model("m", down.base_url, "k"),
            "backup:m": openai_compatible_model("m", up.base_url, "k")})
        assert ask(session) == "from the fallback"
    assert len(down.requests) == 3 and len(up.requests) == 1  # primary's retries, then one fallback call
    assert [e.model for e in session.ledger.entries] == ["fake:m"] * 3 + ["backup:m"]
    assert session.ledger.entries[-1].usd == Decimal(20 * 3 + 4 * 4) / 1_000_000
    staged = cfg(stages={"implement": {"model": "fake:m"}}, endpoints=config.public_dict()["endpoints"],
                 models=config.public_dict()["models"])
    assert staged.all_models() == ["fake:m", "backup:m"]  # fallbacks are priced and key-checked too


def test_no_fallback_on_auth_errors(allow_model_requests: None) -> None:
    with FakeOpenAI(default=lambda _r: Reply.error(401, "bad key")) as down, FakeOpenAI() as up:
        config = cfg(endpoints={"fake": {"base_url": down.base_url}, "backup": {"base_url": up.base_url}},
                     models={"fake:m": {"price": {"input_per_mtok": 1, "output_per_mtok": 2}, "fallback": ["backup:m"]},
                             "backup:m": {"price": {"input_per_mtok": 3, "output_per_mtok": 4}}})
        session = ModelSession(config, model_overrides={
            "fake:m": openai_compatible_model("m", down.base_url, "k"),
            "backup:m": openai_compatible_model("m", up.base_url, "k")})
        with pytest.raises(ProviderError) as info:
            ask(session)
    assert info.value.kind == "auth" and up.requests == []


def test_finish_reason_length_with_cut_json_is_a_typed_malformed_output(allow_model_requests: None) -> None:
    with FakeOpenAI(default=lambda _r: Reply(content='{"line": 3, "mess', finish_reason="length")) as server:
        config = cfg(endpoints={"fake": {"base_url": server.base_url}})
        session = ModelSession(config, model_overrides={"fake:m": openai_compatible_model("m", server.base_url, "k")})
        with pytest.raises(ProviderError) as info:
            asyncio.run(session.ask("review", "fake:m", "review", instructions="x", output_type=Finding,
                                    output_retries=1))
    assert info.value.kind == "bad_response"
    assert len(server.requests) <= 2  # bounded: the agent's output retries, no transport retries
    assert all(e.outcome == "ok" for e in session.ledger.entries)  # the tokens were billed and recorded


def test_request_options_travel_with_the_request_and_the_config_seed_is_honoured(
        allow_model_requests: None) -> None:
    from relaycode.session import RequestOptions, derive_seed

    with FakeOpenAI() as server:
        session = _session_for(server, seed=7)
        asyncio.run(session.ask("implement", "fake:m", "go", instructions="x", attempt=2))
        asyncio.run(session.ask("implement", "fake:m", "go", instructions="x", options=RequestOptions(
            temperature=0.9, seed=123, extra_body={"grammar": 'root ::= "a"'})))
        plain = _session_for(server)
        asyncio.run(plain.ask("implement", "fake:m", "go", instructions="x"))
    derived, explicit, unseeded = server.requests
    assert derived["seed"] == derive_seed(7, "implement", 2) and "grammar" not in derived
    assert explicit["seed"] == 123 and explicit["temperature"] == 0.9 and explicit["grammar"] == 'root ::= "a"'
    assert "seed" not in unseeded
    assert derive_seed(7, "implement", 2) == derive_seed(7, "implement", 2) != derive_seed(7, "implement", 3)


def test_concurrent_requests_reserve_their_own_instructions(allow_model_requests: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Reviewers share a session and run at once: each request's worst case counts its own instructions."""
    session = ModelSession(cfg(), model_overrides={"openai:gpt-5-mini": scripted("a", "b")})
    reserved: dict[str, int] = {}
    reserve = session.budget.reserve

    def spy(stage: str, model: object, input_tokens: int, max_output_tokens: int) -> object:
        reserved[stage] = input_tokens
        return reserve(stage, model, input_tokens, max_output_tokens)  # type: ignore[arg-type]

    monkeypatch.setattr(session.budget, "reserve", spy)

    async def both() -> None:
        await asyncio.gather(
            session.ask("review", "openai:gpt-5-mini", "hi", instructions="x" * 30_000),
            session.ask("plan", "openai:gpt-5-mini", "hi", instructions="y"))

    asyncio.run(both())
    assert reserved["review"] > 10_000 > reserved["plan"]


def test_temperature_travels_with_the_request(allow_model_requests: None) -> None:
    from relaycode.session import RequestOptions

    seen: list[object] = []

    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append((info.model_settings or {}).get("temperature"))
        return ModelResponse(parts=[TextPart("ok")])

    config = cfg(models={"openai:gpt-5-mini": {"temperature": 0.2}})
    session = ModelSession(config, model_overrides={"openai:gpt-5-mini": FunctionModel(fn)})
    asyncio.run(session.ask("implement", "openai:gpt-5-mini", "hi", instructions="x"))
    asyncio.run(session.ask("implement", "openai:gpt-5-mini", "hi", instructions="x",
                            options=RequestOptions(temperature=0.7)))
    asyncio.run(session.run_tools("implement", "openai:gpt-5-mini", "hi", instructions="x", tools=[], output_type=str,
                                  options=RequestOptions(temperature=0.9)))
    assert seen == [0.2, 0.7, 0.9]
    assert not hasattr(session, "sampling")  # no temperature on the shared session


def test_each_model_is_resolved_once_per_session(allow_model_requests: None, resolved_specs: list[str]) -> None:
    session = ModelSession(cfg(), model_overrides={"openai:gpt-5-mini": scripted("a", "b", "c")})
    for _ in range(3):
        asyncio.run(session.ask("implement", "openai:gpt-5-mini", "hi", instructions="x"))
    assert resolved_specs == ["openai:gpt-5-mini"] and len(session.ledger.entries) == 3
