"""The model layer: names, vendors, per-model profiles, and pydantic-ai models.

A model is named `provider:model` as pydantic-ai names them
(`anthropic:claude-opus-4-5`, `google:gemini-2.5-flash`, `openai:gpt-5-mini`,
`openrouter:z-ai/glm-4.6`), `local:NAME` for the embedded models, or
`ENDPOINT:model` for an OpenAI-compatible endpoint declared in config.

Wire format and connection come from pydantic-ai; what differs per model
(which protocol implements, how structured output is asked for) is data in
`PROFILES`, not substring checks scattered through the stages.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from relaycode.errors import ConfigError, MissingApiKey

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from relaycode.config import Config


@dataclass(frozen=True)
class Provider:
    """A provider relay knows by name: where its key lives and which vendor it is."""

    name: str
    key_envs: tuple[str, ...]
    """Environment variables that can hold the key (first set wins)."""
    vendor: str | None
    """Vendor family; None when the vendor is part of the model name (OpenRouter: `z-ai/glm-4.6`)."""
    prices_id: str | None
    """Provider id in genai-prices."""


PROVIDERS: dict[str, Provider] = {
    "anthropic": Provider("anthropic", ("ANTHROPIC_API_KEY",), "anthropic", "anthropic"),
    "openai": Provider("openai", ("OPENAI_API_KEY",), "openai", "openai"),
    "google": Provider("google", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "google", "google"),
    "openrouter": Provider("openrouter", ("OPENROUTER_API_KEY",), None, "openrouter"),
    "local": Provider("local", (), None, None),
}

# OpenRouter names models `org/model`; the org is the vendor, with a few aliases
# so that `openrouter:anthropic/...` counts as the same family as `anthropic:...`.
_VENDOR_ALIASES = {"google": "google", "anthropic": "anthropic", "openai": "openai", "z-ai": "zhipu", "zhipu": "zhipu"}


@dataclass(frozen=True)
class ModelRef:
    provider: str
    name: str

    @property
    def spec(self) -> str:
        return f"{self.provider}:{self.name}"

    def __str__(self) -> str:
        return self.spec


def parse_model(spec: str, config: Config | None = None) -> ModelRef:
    """Split `provider:model`; the provider must be known or an endpoint declared in config."""
    provider, sep, name = spec.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(
            f"model {spec!r}: expected 'provider:model', e.g. 'anthropic:claude-opus-4-5' or 'local:qwen2.5-coder-1.5b'"
        )
    known = set(PROVIDERS) | set(config.endpoints if config else ())
    if provider not in known:
        raise ConfigError(
            f"model {spec!r}: unknown provider {provider!r}; known: {', '.join(sorted(known))} "
            "(declare an OpenAI-compatible server under [endpoints.NAME])"
        )
    return ModelRef(provider, name)


def vendor_of(spec: str, config: Config | None = None) -> str:
    """The vendor family of a model, for the diversity rule."""
    ref = parse_model(spec, config)
    if config is not None:
        settings = config.models.get(spec)
        if settings is not None and settings.vendor:
            return settings.vendor
        endpoint = config.endpoints.get(ref.provider)
        if endpoint is not None:
            return endpoint.vendor or ref.provider
    if ref.provider == "local":
        from relaycode.local.catalog import get as get_local

        return get_local(ref.name).vendor
    provider = PROVIDERS[ref.provider]
    if provider.vendor:
        return provider.vendor
    org = ref.name.split("/", 1)[0]
    return _VENDOR_ALIASES.get(org, org)


def check_model_names(config: Config) -> None:
    """Every model named in the config parses and (for local models) exists in the catalogue."""
    for spec in config.all_models():
        ref = parse_model(spec, config)
        if ref.provider == "local":
            from relaycode.local.catalog import CATALOG

            if ref.name not in CATALOG:
                raise ConfigError(
                    f"model {spec!r}: unknown local model; known: "
                    + ", ".join(f"local:{n}" for n in CATALOG)
                )


def key_env_for(spec: str, config: Config) -> str | None:
    """The environment variable that must hold this model's API key, if it needs one."""
    ref = parse_model(spec, config)
    endpoint = config.endpoints.get(ref.provider)
    if endpoint is not None:
        return endpoint.api_key_env
    keys = PROVIDERS[ref.provider].key_envs
    return keys[0] if keys else None


def missing_keys(config: Config) -> list[MissingApiKey]:
    """Models whose API key is not set in the environment."""
    missing: list[MissingApiKey] = []
    for spec in config.all_models():
        ref = parse_model(spec, config)
        endpoint = config.endpoints.get(ref.provider)
        if endpoint is not None:
            envs: tuple[str, ...] = (endpoint.api_key_env,) if endpoint.api_key_env else ()
        else:
            envs = PROVIDERS[ref.provider].key_envs
        if envs and not any(os.environ.get(e) for e in envs):
            missing.append(MissingApiKey(spec, envs[0]))
    return missing


# ---------------------------------------------------------------- profiles

Protocol = Literal["edit-blocks", "agent"]
OutputMode = Literal["tool", "native", "prompted"]
EditFormat = Literal["search-replace", "whole-file"]


@dataclass(frozen=True)
class ModelProfile:
    """What relay needs to know about a model beyond its wire format."""

    protocol: Protocol = "edit-blocks"
    """How it implements (what `protocol = "auto"` picks): text edit blocks, or the agentic action loop
    (`stages/agent_loop.py`). Edit blocks everywhere until the loop is measured against them; the local
    models stay on edit blocks (measured: the 1.5B model does best with whole-file answers)."""
    output_mode: OutputMode = "tool"
    """How structured output is requested: a tool call, JSON-schema response format, or a prompt. Also how the
    agent loop acts: native tool calls with "tool", otherwise one JSON action per step in this mode."""
    context_tokens: int = 128_000
    """Context window used for sizing review chunks and the repo map."""
    edit_format: EditFormat = "search-replace"
    """How the edit-blocks protocol asks for changes: SEARCH/REPLACE blocks, or whole files (small models
    copy a whole small file far more reliably than they quote exact lines)."""
    answer_grammar: bool = False
    """Whether the server takes a GBNF `grammar` per request (llama-server does): whole-file answers are
    then constrained to shown paths and closed fences (`relaycode.grammar`)."""


# First matching (provider glob, model glob) wins. Local models make no reliable
# native tool calls (measured): they get JSON-schema constrained output instead.
PROFILES: tuple[tuple[str, str, ModelProfile], ...] = (
    ("local", "*", ModelProfile(protocol="edit-blocks", output_mode="native", context_tokens=8192,
                                edit_format="whole-file", answer_grammar=True)),
    ("google", "gemini-*", ModelProfile(context_tokens=1_000_000)),
    ("anthropic", "claude-*", ModelProfile(context_tokens=200_000)),
    ("openai", "gpt-5*", ModelProfile(context_tokens=400_000)),
    ("*", "*", ModelProfile()),
)


def profile_for(spec: str, config: Config | None = None) -> ModelProfile:
    ref = parse_model(spec, config)
    profile = next(p for prov, name, p in PROFILES if fnmatch.fnmatch(ref.provider, prov) and fnmatch.fnmatch(ref.name, name))
    if ref.provider == "local":
        from relaycode.local.catalog import CATALOG

        if ref.name in CATALOG:  # the context the local server is started with
            profile = replace(profile, context_tokens=CATALOG[ref.name].context)
    if config is not None:
        if ref.provider in config.endpoints:
            # Unknown self-hosted models: assume no native tool calling.
            profile = ModelProfile(output_mode="prompted", context_tokens=32_768)
        settings = config.models.get(spec)
        if settings is not None:
            if settings.context_tokens:
                profile = replace(profile, context_tokens=settings.context_tokens)
            if settings.protocol != "auto":
                profile = replace(profile, protocol=settings.protocol)
            if settings.edit_format != "auto":
                profile = replace(profile, edit_format=settings.edit_format)
            if settings.answer_grammar is not None:
                profile = replace(profile, answer_grammar=settings.answer_grammar)
    return profile


# ---------------------------------------------------------------- building


def build_model(spec: str, config: Config) -> Model:
    """The pydantic-ai model for `spec`, connected as config says. Raises MissingApiKey early."""
    ref = parse_model(spec, config)
    endpoint = config.endpoints.get(ref.provider)
    if endpoint is not None:
        key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
        if endpoint.api_key_env and not key:
            raise MissingApiKey(spec, endpoint.api_key_env)
        return openai_compatible_model(ref.name, endpoint.base_url, key or "none")
    if ref.provider == "local":
        from relaycode.local.server import ensure_server

        handle = ensure_server(ref.name)
        return openai_compatible_model(ref.name, handle.base_url, "local", coalesce_candidates=True)
    provider = PROVIDERS[ref.provider]
    key = next((os.environ[e] for e in provider.key_envs if os.environ.get(e)), None)
    if key is None:
        raise MissingApiKey(spec, provider.key_envs[0])
    if ref.provider == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(ref.name, provider=AnthropicProvider(api_key=key))
    if ref.provider == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        return OpenAIChatModel(ref.name, provider=OpenAIProvider(api_key=key))
    if ref.provider == "google":
        from pydantic_ai.models.google import GoogleModel
        from pydantic_ai.providers.google import GoogleProvider

        return GoogleModel(ref.name, provider=GoogleProvider(api_key=key))
    if ref.provider == "openrouter":
        from pydantic_ai.models.openrouter import OpenRouterModel
        from pydantic_ai.providers.openrouter import OpenRouterProvider

        return OpenRouterModel(ref.name, provider=OpenRouterProvider(api_key=key))
    raise ConfigError(f"model {spec!r}: provider {ref.provider!r} cannot be built")  # pragma: no cover


def openai_compatible_model(name: str, base_url: str, api_key: str, *, coalesce_candidates: bool = False) -> Model:
    """A model behind any OpenAI-compatible chat-completions server.

    `coalesce_candidates` (relay's own llama-servers): concurrent requests that differ only in their
    consecutive seeds go out as one request with `n` answers (`local/coalesce.py`), so the server
    processes the shared prompt once."""
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    if not coalesce_candidates:
        return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url, api_key=api_key))
    from pydantic_ai.models import create_async_httpx2_client

    from relaycode.local.coalesce import CoalescingTransport
    from relaycode.local.server import slot_count

    # pydantic-ai's own client (its timeouts), sending through the coalescing transport.
    client = create_async_httpx2_client(transport=CoalescingTransport(max_n=slot_count()))
    return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url, api_key=api_key, http_client=client))
