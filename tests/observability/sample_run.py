"""A realistic run's data for report tests (and for looking at the HTML report)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from relaycode.ledger import Ledger, LedgerEntry
from relaycode.pricing import Tokens

T0 = 1_750_000_000.0


def _e(stage: str, model: str, at: float, seconds: float, tokens: Tokens, usd: str | None,
       attempt: int = 1, outcome: str = "ok") -> LedgerEntry:
    return LedgerEntry(run_id="20250615-101500-a1b2c3", stage=stage, attempt=attempt, model=model,
                       provider=model.split(":")[0], tokens=tokens, usd=None if usd is None else Decimal(usd),
                       seconds=seconds, started_at=T0 + at, outcome=outcome)


def sample_ledger() -> Ledger:
    return Ledger([
        _e("plan", "anthropic:claude-sonnet-4-5", 1, 9.5, Tokens(12_400, 1_850, 8_000, 0), "0.0412"),
        _e("implement", "openai:gpt-5-mini", 12, 21.0, Tokens(18_200, 6_400, 0, 0), "0.0174"),
        _e("implement", "openai:gpt-5-mini", 58, 0.4, Tokens(), "0", attempt=2, outcome="error:rate_limit"),
        _e("implement", "openai:gpt-5-mini", 60, 17.2, Tokens(21_000, 4_100, 12_000, 0), "0.0121", attempt=2),
        _e("review", "google:gemini-2.5-pro", 95, 14.0, Tokens(25_000, 2_200, 0, 0), "0.0533"),
        _e("review", "local:qwen3-coder", 95, 31.0, Tokens(25_000, 1_900, 0, 0), "0"),
    ])


def sample_run(**overrides: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "run_id": "20250615-101500-a1b2c3",
        "status": "done",
        "task": "Fix the off-by-one in pagination | and add a <b>regression</b> test",
        "repo": "/home/dev/shop",
        "config": "api",
        "started_at": T0,
        "ledger": sample_ledger().to_dict(),
        "timeline": [
            {"stage": "plan", "start": T0 + 0.5, "end": T0 + 11, "model": "anthropic:claude-sonnet-4-5"},
            {"stage": "implement", "start": T0 + 11.5, "end": T0 + 34, "model": "openai:gpt-5-mini"},
            {"stage": "verify", "start": T0 + 34, "end": T0 + 57, "model": None},
            {"stage": "implement", "start": T0 + 57.5, "end": T0 + 78, "model": "openai:gpt-5-mini"},
            {"stage": "verify", "start": T0 + 78, "end": T0 + 94, "model": None},
            {"stage": "review", "start": T0 + 94.5, "end": T0 + 127, "model": "google:gemini-2.5-pro"},
        ],
        "wall_s": 128.0,
        "verify": {"passed": True, "summary": "pytest: 212 passed; ruff: ok"},
        "findings": 1,
    }
    run.update(overrides)
    return run
