"""The model layer: each configured model resolved once, per-model profiles, and pydantic-ai models.

Names and providers are `providers.py`'s (which the config loader uses too). Here a name becomes a
`ResolvedModel` once per config (`ModelRegistry`, held by the run's `ModelSession`): its reference,
profile, relay's settings for it, vendor, key variables, endpoint and price data. Stages, the budget,
pricing and the session read that object instead of re-parsing the name with the whole config.

Wire format and connection come from pydantic-ai; what differs per model (which protocol
implements, how structured output is asked for, the context window) is data in `PROFILES`, not
substring checks scattered through the stages.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from relaycode.config import Config, Endpoint, ModelOptions, Price
from relaycode.errors import ConfigError, MissingApiKey
from relaycode.local.catalog import CATALOG
from relaycode.providers import PROVIDERS, ModelRef, builtin_vendor, check_model

if TYPE_CHECKING:
    from pydantic_ai.models import Model

CHARS_PER_TOKEN = 3
"""A deliberately low estimate of characters per token (code and prose run 3.5 to 4): budgets sized
with it err on the side of fitting."""

# ---------------------------------------------------------------- profiles

ImplementProtocol = Literal["edit-blocks", "agent"]
OutputMode = Literal["tool", "native", "prompted"]
EditFormat = Literal["search-replace", "whole-file"]


@dataclass(frozen=True)
class ModelProfile:
    """What relay needs to know about a model beyond its wire format."""

    protocol: ImplementProtocol = "edit-blocks"
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


def _profile(ref: ModelRef, settings: ModelOptions | None, endpoint: Endpoint | None) -> ModelProfile:
    """The built-in profile of `ref`, with what config says about the model over it."""
    profile = next(p for prov, name, p in PROFILES if fnmatch.fnmatch(ref.provider, prov) and fnmatch.fnmatch(ref.name, name))
    if ref.is_local and ref.name in CATALOG:  # the context the local server is started with
        profile = replace(profile, context_tokens=CATALOG[ref.name].context)
    if endpoint is not None:
        # Unknown self-hosted models: assume no native tool calling.
        profile = ModelProfile(output_mode="prompted", context_tokens=32_768)
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


# ---------------------------------------------------------------- resolving


@dataclass(frozen=True)
class ResolvedModel:
    """Everything relay knows about one model of a config, worked out once (`resolve`)."""

    ref: ModelRef
    profile: ModelProfile
    settings: ModelOptions
    """relay's settings for the model (`[models."provider:model"]`, defaults when it has none)."""
    vendor: str
    """Vendor family, for the diversity rule (`Config.vendor_of`)."""
    key_envs: tuple[str, ...]
    """Environment variables that can hold its API key (first set wins); empty: it needs none."""
    endpoint: Endpoint | None = None
    """The OpenAI-compatible endpoint serving it (`ENDPOINT:model`), if any."""
    prices_id: str | None = None
    """Its provider's id in genai-prices' data; None: priced by `settings.price`, $0 locally, or unknown."""

    @property
    def spec(self) -> str:
        return self.ref.spec

    @property
    def price(self) -> Price | None:
        """The config's price override, if any."""
        return self.settings.price

    @property
    def key_env(self) -> str | None:
        """The variable a missing key is reported under."""
        return self.key_envs[0] if self.key_envs else None

    def api_key(self) -> str | None:
        """The first of `key_envs` set in the environment (None if none is)."""
        return next((os.environ[e] for e in self.key_envs if os.environ.get(e)), None)

    def missing_key(self) -> MissingApiKey | None:
        """The error to raise when the model needs a key and none is set."""
        if self.key_envs and self.api_key() is None:
            return MissingApiKey(self.spec, self.key_envs[0])
        return None

    def context_chars(self, share: float) -> int:
        """Characters that fit `share` of the model's context window (see `CHARS_PER_TOKEN`)."""
        return int(self.profile.context_tokens * CHARS_PER_TOKEN * share)


def resolve(spec: str, config: Config | None = None) -> ResolvedModel:
    """Resolve one model name against `config` (None: built-in knowledge only). Raises ConfigError."""
    endpoints = config.endpoints if config is not None else {}
    ref = check_model(spec, endpoints)
    settings = config.models.get(spec) if config is not None else None
    endpoint = endpoints.get(ref.provider)
    if endpoint is not None:
        key_envs: tuple[str, ...] = (endpoint.api_key_env,) if endpoint.api_key_env else ()
        prices_id = None
    else:
        key_envs, prices_id = PROVIDERS[ref.provider].key_envs, PROVIDERS[ref.provider].prices_id
    vendor = config.vendor_of(spec) if config is not None else builtin_vendor(ref)
    return ResolvedModel(ref=ref, profile=_profile(ref, settings, endpoint), settings=settings or ModelOptions(),
                         vendor=vendor, key_envs=key_envs, endpoint=endpoint, prices_id=prices_id)


@dataclass
class ModelRegistry:
    """The resolved models of one config: every configured model at construction, others on first use."""

    config: Config
    _resolved: dict[str, ResolvedModel] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for spec in self.config.all_models():
            self.get(spec)

    def get(self, spec: str) -> ResolvedModel:
        model = self._resolved.get(spec)
        if model is None:
            model = self._resolved[spec] = resolve(spec, self.config)
        return model

    def configured(self) -> list[ResolvedModel]:
        """The config's models (`Config.all_models`), in stage order."""
        return [self.get(spec) for spec in self.config.all_models()]


def missing_keys(config: Config) -> list[MissingApiKey]:
    """Models whose API key is not set in the environment."""
    return [m for m in (model.missing_key() for model in ModelRegistry(config).configured()) if m is not None]


# ---------------------------------------------------------------- building


def build_model(model: ResolvedModel) -> Model:
    """The pydantic-ai model, connected as its config says. Raises MissingApiKey early."""
    ref, spec = model.ref, model.spec
    key = model.api_key()
    if model.key_envs and key is None:
        raise MissingApiKey(spec, model.key_envs[0])
    if model.endpoint is not None:
        return openai_compatible_model(ref.name, model.endpoint.base_url, key or "none")
    if ref.is_local:
        from relaycode.local.server import ensure_server

        handle = ensure_server(ref.name)
        return openai_compatible_model(ref.name, handle.base_url, "local", coalesce_candidates=True)
    if key is None:  # pragma: no cover - every built-in API provider names its key variables
        raise ConfigError(f"model {spec!r}: provider {ref.provider!r} names no API key variable")
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
    processes the shared prompt once; and relay's servers take turns (`local/turns.py`), so two of
    them never fight over the same cores."""
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    if not coalesce_candidates:
        return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url, api_key=api_key))
    from pydantic_ai.models import create_async_httpx2_client

    from relaycode.local.coalesce import CoalescingTransport
    from relaycode.local.server import slot_count
    from relaycode.local.turns import TurnTakingTransport

    # pydantic-ai's own client (its timeouts), sending through the coalescing transport, which sends
    # each (merged) request in its server's turn.
    client = create_async_httpx2_client(transport=CoalescingTransport(TurnTakingTransport(), max_n=slot_count()))
    return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url, api_key=api_key, http_client=client))
