"""Hard budgets, checked before every request against that request's worst case.

Before a request is sent, its worst-case cost (estimated input tokens plus the
full `max_tokens` of output, priced per request) is reserved. If spent plus
reserved plus this worst case would pass a limit, `BudgetExceeded` is raised
and nothing is sent. So a run never spends more than its budget, even with
reviewers running in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from relaycode.dollars import usd_text
from relaycode.errors import BudgetExceeded, StepLimit
from relaycode.pricing import Tokens, price_of

if TYPE_CHECKING:
    from relaycode.config import Config
    from relaycode.ledger import Ledger
    from relaycode.models import ResolvedModel


@dataclass
class Reservation:
    stage: str
    usd: Decimal
    tokens: int
    released: bool = False


class BudgetGuard:
    """Tracks reservations against the config's budget and the ledger's spend."""

    def __init__(self, config: Config, ledger: Ledger, *, spent_before: Decimal = Decimal(0)) -> None:
        self.config = config
        self.ledger = ledger
        self.spent_before = spent_before
        """Spend of earlier processes of the same run (resume)."""
        self._open: list[Reservation] = []

    def _reserved(self, stage: str | None = None) -> tuple[Decimal, int]:
        usd = sum((r.usd for r in self._open if stage is None or r.stage == stage), Decimal(0))
        tokens = sum(r.tokens for r in self._open if stage is None or r.stage == stage)
        return usd, tokens

    def reserve(self, stage: str, model: ResolvedModel, input_tokens: int, max_output_tokens: int) -> Reservation:
        """Reserve the worst case of one request or raise BudgetExceeded / StepLimit."""
        budget = self.config.budget
        worst = price_of(model, Tokens(input=input_tokens, output=max_output_tokens))
        worst_usd = worst if worst is not None else Decimal(0)
        run_total = self.ledger.total()
        stage_total = self.ledger.total(lambda e: e.stage == stage)
        reserved_all, _ = self._reserved()
        reserved_stage, reserved_stage_tokens = self._reserved(stage)

        if budget.run_usd is not None:
            limit = Decimal(str(budget.run_usd))
            committed = self.spent_before + run_total.usd + reserved_all
            if committed + worst_usd > limit:
                raise BudgetExceeded(
                    f"run budget {usd_text(limit)} would be exceeded: spent {usd_text(committed)}, "
                    f"next {stage} request to {model.spec} may cost up to {usd_text(worst_usd)}"
                )
        stage_limit = budget.stage_usd.get(stage)  # type: ignore[call-overload]
        if stage_limit is not None:
            limit = Decimal(str(stage_limit))
            committed = stage_total.usd + reserved_stage
            if committed + worst_usd > limit:
                raise BudgetExceeded(
                    f"{stage} budget {usd_text(limit)} would be exceeded: spent {usd_text(committed)}, "
                    f"next request to {model.spec} may cost up to {usd_text(worst_usd)}"
                )
        max_requests = budget.stage_requests.get(stage)  # type: ignore[call-overload]
        open_in_stage = sum(1 for r in self._open if r.stage == stage)
        if max_requests is not None and stage_total.requests + open_in_stage >= max_requests:
            raise StepLimit(f"{stage} request limit reached ({max_requests} requests; budget.stage_requests.{stage})")
        max_tokens = budget.stage_tokens.get(stage)  # type: ignore[call-overload]
        worst_tokens = input_tokens + max_output_tokens
        if max_tokens is not None and stage_total.tokens.total + reserved_stage_tokens + worst_tokens > max_tokens:
            raise StepLimit(
                f"{stage} token limit {max_tokens} would be exceeded: used {stage_total.tokens.total}, "
                f"next request may use up to {worst_tokens} (budget.stage_tokens.{stage})"
            )
        reservation = Reservation(stage, worst_usd, worst_tokens)
        self._open.append(reservation)
        return reservation

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation once the request's actual cost is in the ledger (or it failed)."""
        if not reservation.released:
            reservation.released = True
            self._open.remove(reservation)

