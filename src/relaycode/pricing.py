"""Prices: genai-prices' bundled data (offline), a config override table, $0 for local models.

Each response is priced on its own: providers charge tiers per request (e.g.
Gemini 2.5 Pro above 200k input tokens), so pricing a run's summed tokens
would be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from relaycode.models import ModelRegistry, ResolvedModel, resolve

if TYPE_CHECKING:
    from relaycode.config import Config

PriceSource = Literal["genai-prices", "config", "local"]
_MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class Tokens:
    """Token counts of one request (or a sum of them)."""

    input: int = 0
    """All input tokens, cached ones included (as providers and genai-prices count them)."""
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
        )

    @property
    def total(self) -> int:
        return self.input + self.output


@dataclass(frozen=True)
class Quote:
    """A model's list price per million tokens at the base tier, and where it comes from."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    source: PriceSource


def _override(model: ResolvedModel) -> Quote | None:
    p = model.price
    if p is not None:
        return Quote(Decimal(str(p.input_per_mtok)), Decimal(str(p.output_per_mtok)), "config")
    if model.ref.is_local:
        return Quote(Decimal(0), Decimal(0), "local")
    return None


def price_of(model: ResolvedModel, tokens: Tokens, *, when: datetime | None = None) -> Decimal | None:
    """Dollars for one request to `model`, or None when the price is unknown."""
    if (p := model.price) is not None:
        cache_read = Decimal(str(p.cache_read_per_mtok if p.cache_read_per_mtok is not None else p.input_per_mtok))
        cache_write = Decimal(str(p.cache_write_per_mtok if p.cache_write_per_mtok is not None else p.input_per_mtok))
        uncached = tokens.input - tokens.cache_read - tokens.cache_write
        return (
            Decimal(uncached) * Decimal(str(p.input_per_mtok))
            + Decimal(tokens.cache_read) * cache_read
            + Decimal(tokens.cache_write) * cache_write
            + Decimal(tokens.output) * Decimal(str(p.output_per_mtok))
        ) / _MTOK
    if model.ref.is_local:
        return Decimal(0)
    if model.prices_id is None:
        return None
    import genai_prices

    usage = genai_prices.Usage(
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cache_read_tokens=tokens.cache_read or None,
        cache_write_tokens=tokens.cache_write or None,
    )
    try:
        calc = genai_prices.calc_price(usage, model.ref.name, provider_id=model.prices_id,
                                       genai_request_timestamp=when)
    except LookupError:
        return None
    return Decimal(calc.total_price)


def quote_of(model: ResolvedModel) -> Quote | None:
    """The base-tier list price, for `relay models` and re-pricing; None when unknown."""
    override = _override(model)
    if override is not None:
        return override
    # Priced at 1k tokens and scaled: a 1M-token request would land in a higher tier.
    k_in = price_of(model, Tokens(input=1000))
    k_out = price_of(model, Tokens(output=1000))
    if k_in is None or k_out is None:
        return None
    return Quote(k_in * 1000, k_out * 1000, "genai-prices")


def price_request(spec: str, tokens: Tokens, config: Config | None = None, *, when: datetime | None = None) -> Decimal | None:
    """`price_of` for a model known only by name (re-pricing a ledger, tests)."""
    return price_of(resolve(spec, config), tokens, when=when)


def quote(spec: str, config: Config | None = None) -> Quote | None:
    """`quote_of` for a model known only by name."""
    return quote_of(resolve(spec, config))


def unpriced_models(config: Config) -> list[str]:
    return [model.spec for model in ModelRegistry(config).configured() if quote_of(model) is None]


def known_model_names(provider_id: str) -> list[str]:
    """Model names genai-prices' bundled data knows for a provider (empty when it knows none)."""
    from genai_prices import data_snapshot

    for provider in data_snapshot.get_snapshot().providers:
        if provider.id == provider_id:
            return [model.id for model in provider.models]
    return []


def unknown_model_hint(spec: str) -> str | None:
    """For a built-in provider's model that genai-prices has never heard of (most often a typo):
    a message naming the closest known names, instead of an invitation to price the typo."""
    import difflib

    from relaycode.errors import ConfigError
    from relaycode.providers import PROVIDERS, parse_model

    try:
        ref = parse_model(spec)
    except ConfigError:  # reported by the config loader, not here
        return None
    provider = PROVIDERS.get(ref.provider)
    if provider is None or not provider.prices_id:
        return None
    known = known_model_names(provider.prices_id)
    if not known or ref.name in known:
        return None
    close = difflib.get_close_matches(ref.name, known, n=3, cutoff=0.6)
    suggestion = f"; did you mean {', '.join(f'{ref.provider}:{c}' for c in close)}?" if close else ""
    return f"unknown model {spec!r}: {ref.provider} has no model {ref.name!r} in relay's price data{suggestion}"


def require_prices(config: Config) -> None:
    """Raise ConfigError when a model has no known price and the config does not allow that."""
    from relaycode.errors import ConfigError

    unpriced = unpriced_models(config)
    if unpriced and config.unpriced == "refuse":
        hints = [h for h in (unknown_model_hint(spec) for spec in unpriced) if h]
        if hints:
            raise ConfigError(f"{config.source}: {hints[0]}")
        raise ConfigError(
            f"{config.source}: no known price for {', '.join(unpriced)}: add [models.\"NAME\".price] "
            'or set unpriced = "allow" (cost is then reported as unknown)'
        )
