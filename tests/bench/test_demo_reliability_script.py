"""benchmarks/demo_reliability.py's model time: requests answered at the same time count once."""

from __future__ import annotations

import importlib.util
import sys
from decimal import Decimal
from pathlib import Path

from relaycode.ledger import LedgerEntry
from relaycode.pricing import Tokens

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "demo_reliability.py"


def load():
    spec = importlib.util.spec_from_file_location("demo_reliability", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_reliability"] = module
    spec.loader.exec_module(module)
    return module


def entry(start: float, seconds: float) -> LedgerEntry:
    return LedgerEntry(run_id="r", stage="implement", attempt=1, model="m", provider="p", tokens=Tokens(1, 1),
                       usd=Decimal(0), started_at=start, seconds=seconds)


def test_overlapping_requests_count_once_and_gaps_not_at_all() -> None:
    script = load()
    # A plan (0-10), three candidates in parallel slots (20-50, 21-55, 22-40), a review (60-65).
    entries = [entry(0, 10), entry(20, 30), entry(21, 34), entry(22, 18), entry(60, 5)]
    assert script.model_wall_s(entries) == 10 + 35 + 5
    assert script.model_wall_s([]) == 0.0
