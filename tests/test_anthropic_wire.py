"""The Anthropic wire format through relay's real client path (pydantic-ai's AnthropicModel + the SDK)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.providers.anthropic import AnthropicProvider

from relaycode.config import config_from_dict
from relaycode.errors import ProviderError
from relaycode.pricing import Tokens, price_request
from relaycode.session import ModelSession
from relaycode.testing.fake_openai import FakeOpenAI, Reply

SPEC = "anthropic:claude-sonnet-4-6"


def session_for(server: FakeOpenAI) -> tuple[ModelSession, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    cfg = config_from_dict({"stages": {"implement": {"model": SPEC}}, "retry": {"max_attempts": 3, "backoff_s": 0}})
    model = AnthropicModel("claude-sonnet-4-6", provider=AnthropicProvider(api_key="k", base_url=server.base_url))
    return ModelSession(cfg, model_overrides={SPEC: model}, sleep=fake_sleep), sleeps


def ask(session: ModelSession) -> str:
    return asyncio.run(session.ask("implement", SPEC, "go", instructions="x")).output


def test_usage_with_cache_reads_is_priced_per_request(allow_model_requests: None) -> None:
    with FakeOpenAI(wire="anthropic") as server:
        server.push(Reply.text("done", input_tokens=1000, output_tokens=50, cached_tokens=4000))
        session, _ = session_for(server)
        assert ask(session) == "done"
    [entry] = session.ledger.entries
    # Anthropic reports cached input apart; relay's Tokens.input counts all input, cache reads included.
    assert entry.tokens == Tokens(input=5000, output=50, cache_read=4000)
    assert entry.usd == price_request(SPEC, Tokens(input=5000, output=50, cache_read=4000))
    assert server.headers[0]["authorization"] == "Bearer k" and "anthropic-version" in server.headers[0]


def test_rate_limit_and_overload_are_retried(allow_model_requests: None) -> None:
    with FakeOpenAI(wire="anthropic") as server:
        server.push(Reply.error(429, "slow down", code="rate_limit_error", headers={"retry-after": "3"}),
                    Reply.error(529, "overloaded", code="overloaded_error"), Reply.text("finally"))
        session, sleeps = session_for(server)
        assert ask(session) == "finally"
    assert len(server.requests) == 3 and sleeps[0] == 3.0
    assert [e.outcome for e in session.ledger.entries] == ["error:rate_limit", "error:server", "ok"]


def test_auth_error_is_not_retried(allow_model_requests: None) -> None:
    with FakeOpenAI(default=lambda _r: Reply.error(401, "invalid x-api-key", code="authentication_error"),
                    wire="anthropic") as server:
        session, _ = session_for(server)
        with pytest.raises(ProviderError) as info:
            ask(session)
    assert info.value.kind == "auth" and len(server.requests) == 1
