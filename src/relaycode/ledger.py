"""The cost ledger: one entry per model request, sums by run, stage, model and attempt.

Dollars are `Decimal` (exact sums of per-request prices) or None when a
price is unknown; an unknown price is never counted as $0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from relaycode.pricing import Tokens


@dataclass
class LedgerEntry:
    """One model request: who asked, which model, what it used and cost."""

    run_id: str
    stage: str
    attempt: int
    model: str
    provider: str
    tokens: Tokens
    usd: Decimal | None
    seconds: float
    started_at: float = field(default_factory=time.time)
    outcome: str = "ok"
    """`ok`, or `error:<kind>` for a failed request (its tokens are 0 unless the provider billed some)."""
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens"] = asdict(self.tokens)
        data["usd"] = None if self.usd is None else str(self.usd)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        data = dict(data)
        data["tokens"] = Tokens(**data["tokens"])
        data["usd"] = None if data["usd"] is None else Decimal(data["usd"])
        return cls(**data)


@dataclass
class Totals:
    """Sums over entries. `usd` covers priced entries; `unpriced` counts the others."""

    requests: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    usd: Decimal = Decimal(0)
    unpriced: int = 0
    seconds: float = 0.0

    def add(self, entry: LedgerEntry) -> None:
        self.requests += 1
        self.tokens = self.tokens + entry.tokens
        self.seconds += entry.seconds
        if entry.usd is None:
            self.unpriced += 1
        else:
            self.usd += entry.usd

    @property
    def usd_known(self) -> Decimal | None:
        """Total dollars, or None when any request was unpriced (then the total is not known)."""
        return None if self.unpriced else self.usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "input_tokens": self.tokens.input,
            "output_tokens": self.tokens.output,
            "cache_read_tokens": self.tokens.cache_read,
            "cache_write_tokens": self.tokens.cache_write,
            "usd": None if self.unpriced else float(self.usd),
            "usd_priced_part": float(self.usd),
            "unpriced_requests": self.unpriced,
            "model_seconds": round(self.seconds, 3),
        }


class Ledger:
    """Entries of one run (or any set of runs), with grouped totals."""

    def __init__(self, entries: Iterable[LedgerEntry] = ()) -> None:
        self.entries: list[LedgerEntry] = list(entries)
        self._listeners: list[Callable[[LedgerEntry], None]] = []

    def subscribe(self, listener: Callable[[LedgerEntry], None]) -> None:
        """Call `listener` with each entry as it is added (events file, history DB, progress)."""
        self._listeners.append(listener)

    def add(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)
        for listener in self._listeners:
            listener(entry)

    def total(self, where: Callable[[LedgerEntry], bool] | None = None) -> Totals:
        totals = Totals()
        for entry in self.entries:
            if where is None or where(entry):
                totals.add(entry)
        return totals

    def by(self, key: Callable[[LedgerEntry], str]) -> dict[str, Totals]:
        groups: dict[str, Totals] = {}
        for entry in self.entries:
            groups.setdefault(key(entry), Totals()).add(entry)
        return groups

    def by_stage(self) -> dict[str, Totals]:
        return self.by(lambda e: e.stage)

    def by_model(self) -> dict[str, Totals]:
        return self.by(lambda e: e.model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total().to_dict(),
            "by_stage": {k: v.to_dict() for k, v in self.by_stage().items()},
            "by_model": {k: v.to_dict() for k, v in self.by_model().items()},
            "by_attempt": {k: v.to_dict() for k, v in self.by(lambda e: f"{e.stage}#{e.attempt}").items()},
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        return cls(LedgerEntry.from_dict(e) for e in data.get("entries", []))
