"""Model names and the providers relay knows: what a `provider:model` spec is, before any config.

A model is named `provider:model` as pydantic-ai names them (`anthropic:claude-opus-4-5`,
`google:gemini-2.5-flash`, `openai:gpt-5-mini`, `openrouter:z-ai/glm-4.6`), `local:NAME` for the
embedded models, or `ENDPOINT:model` for an OpenAI-compatible endpoint declared in config.

This module imports neither `config` nor `models`: the config loader checks names and vendors with
it, and `models.py` (which resolves each configured model once) builds on it. The per-config part
of each rule (endpoints, a model's own `vendor`) is `Config`'s; the built-in part is here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from relaycode.errors import ConfigError
from relaycode.local.catalog import CATALOG
from relaycode.local.catalog import get as local_model


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

    @property
    def is_local(self) -> bool:
        return self.provider == "local"

    def __str__(self) -> str:
        return self.spec


def parse_model(spec: str, endpoints: Collection[str] = ()) -> ModelRef:
    """Split `provider:model`; the provider must be a built-in one or one of `endpoints` (declared in config)."""
    provider, sep, name = spec.partition(":")
    if not sep or not provider or not name:
        raise ConfigError(
            f"model {spec!r}: expected 'provider:model', e.g. 'anthropic:claude-opus-4-5' or 'local:qwen2.5-coder-1.5b'"
        )
    known = set(PROVIDERS) | set(endpoints)
    if provider not in known:
        raise ConfigError(
            f"model {spec!r}: unknown provider {provider!r}; known: {', '.join(sorted(known))} "
            "(declare an OpenAI-compatible server under [endpoints.NAME])"
        )
    return ModelRef(provider, name)


def check_model(spec: str, endpoints: Collection[str] = ()) -> ModelRef:
    """`parse_model`, and a local model must be in the catalogue: the check every configured name passes."""
    ref = parse_model(spec, endpoints)
    if ref.is_local and ref.name not in CATALOG:
        raise ConfigError(f"model {spec!r}: unknown local model; known: " + ", ".join(f"local:{n}" for n in CATALOG))
    return ref


def builtin_vendor(ref: ModelRef) -> str:
    """The vendor family of a built-in provider's model (config may say otherwise: `Config.vendor_of`)."""
    if ref.is_local:
        return local_model(ref.name).vendor
    provider = PROVIDERS.get(ref.provider)
    if provider is None:  # an endpoint: its name is its vendor unless config says one
        return ref.provider
    if provider.vendor:
        return provider.vendor
    org = ref.name.split("/", 1)[0]
    return _VENDOR_ALIASES.get(org, org)
