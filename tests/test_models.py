"""models.py: each configured model resolved once into a `ResolvedModel`; profiles as data."""

from __future__ import annotations

import pytest

from relaycode import models
from relaycode.config import config_from_dict
from relaycode.errors import ConfigError, MissingApiKey
from relaycode.local.catalog import CATALOG
from relaycode.models import ModelRegistry, build_model, missing_keys, resolve
from relaycode.providers import parse_model

LOCAL = "local:qwen2.5-coder-0.5b"


def test_a_resolved_model_carries_what_the_stages_need() -> None:
    cfg = config_from_dict({
        "stages": {"implement": {"model": "google:gemini-2.5-flash"}, "review": {"models": ["openrouter:z-ai/glm-4.6"]}},
        "models": {"google:gemini-2.5-flash": {"max_tokens": 999, "context_tokens": 50_000, "protocol": "agent",
                                               "edit_format": "whole-file"}},
    })
    gemini = resolve("google:gemini-2.5-flash", cfg)
    assert (gemini.ref.provider, gemini.ref.name, gemini.spec) == ("google", "gemini-2.5-flash", "google:gemini-2.5-flash")
    assert gemini.settings.max_tokens == 999 and gemini.vendor == "google"
    assert gemini.key_envs == ("GEMINI_API_KEY", "GOOGLE_API_KEY") and gemini.prices_id == "google"
    assert (gemini.profile.context_tokens, gemini.profile.protocol, gemini.profile.edit_format) == (
        50_000, "agent", "whole-file")  # the config's settings over the built-in profile
    glm = resolve("openrouter:z-ai/glm-4.6", cfg)
    assert glm.vendor == "zhipu" and glm.settings.max_tokens == 4096 and glm.profile.context_tokens == 128_000
    local = resolve(LOCAL, cfg)
    assert local.key_envs == () and local.key_env is None and local.ref.is_local
    assert local.profile.context_tokens == CATALOG[local.ref.name].context and local.profile.answer_grammar


def test_endpoint_models_resolve_with_their_endpoint_and_key() -> None:
    cfg = config_from_dict({
        "endpoints": {"box": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "BOX_KEY"}},
        "stages": {"implement": {"model": "box:coder"}},
        "models": {"box:coder": {"price": {"input_per_mtok": 1, "output_per_mtok": 2}}},
    })
    box = resolve("box:coder", cfg)
    assert box.endpoint is not None and box.endpoint.base_url == "http://127.0.0.1:9/v1"
    assert box.key_envs == ("BOX_KEY",) and box.vendor == "box" and box.prices_id is None
    assert box.price is not None and box.price.output_per_mtok == 2
    assert box.profile.output_mode == "prompted"


def test_missing_keys_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = config_from_dict({"stages": {"implement": {"model": LOCAL}, "review": {"models": ["openai:gpt-5-mini"]}}})
    [missing] = missing_keys(cfg)
    assert isinstance(missing, MissingApiKey) and "OPENAI_API_KEY" in str(missing)
    with pytest.raises(MissingApiKey, match="OPENAI_API_KEY"):
        build_model(resolve("openai:gpt-5-mini", cfg))
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert missing_keys(cfg) == [] and resolve("openai:gpt-5-mini", cfg).api_key() == "k"


def test_unknown_names_are_config_errors_naming_the_model() -> None:
    with pytest.raises(ConfigError, match="'local:nope': unknown local model"):
        resolve("local:nope")
    with pytest.raises(ConfigError, match="unknown provider 'acme'"):
        resolve("acme:m")
    with pytest.raises(ConfigError, match="expected 'provider:model'"):
        parse_model("gpt")


def test_the_registry_resolves_each_configured_model_once(resolved_specs: list[str]) -> None:
    calls = resolved_specs
    cfg = config_from_dict({"stages": {"implement": {"model": LOCAL, "escalate_to": ["anthropic:claude-sonnet-4-6"]},
                                       "review": {"models": ["openai:gpt-5-mini"]}}})
    registry = ModelRegistry(cfg)
    assert calls == [LOCAL, "anthropic:claude-sonnet-4-6", "openai:gpt-5-mini"]  # at construction, stage order
    assert registry.get(LOCAL) is registry.get(LOCAL)
    assert [m.spec for m in registry.configured()] == calls and len(calls) == 3
    registry.get("google:gemini-2.5-flash")  # a model the config does not name: resolved on first use
    registry.get("google:gemini-2.5-flash")
    assert calls[3:] == ["google:gemini-2.5-flash"]


def test_context_chars_are_a_share_of_the_profile_context() -> None:
    local, opus = resolve(LOCAL), resolve("anthropic:claude-opus-4-5")
    assert local.context_chars(0.5) == CATALOG[local.ref.name].context * models.CHARS_PER_TOKEN // 2
    assert opus.context_chars(0.45) == int(200_000 * models.CHARS_PER_TOKEN * 0.45)
