"""`relay review-eval --executor ray`: each case reviewed by a Ray task, the rows folded in by the driver.

A case's reviews (its buggy and clean changes) run in one task with a fresh
`evaluate` over that case alone, so a row is made exactly as in a local run; the
driver adds the rows to its `EvalRun` and checkpoints after every case, as the
local loop does. Placement and failures are the bench's Ray executor's
(`bench.ray_executor`): a case whose reviewers include local models runs on a
node serving them; a case whose worker kept dying is reported and left out, so
`--resume` reviews it again.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaycode.bench.executor import ExecutorSpec
    from relaycode.config import Config
    from relaycode.review.evaluate import EvalRun

#: One case's rows, or why there are none.
CaseRows = tuple[list[dict[str, Any]], str | None]


def review_one_case(case: dict[str, Any], attempt: int, *, config: Config, reviewers: list[str], min_agree: int,
                    commit: str | None) -> CaseRows:
    """The Ray task: review one case here and return its rows."""
    from relaycode.review.evaluate import EvalRun, evaluate
    from relaycode.session import ModelSession

    run = asyncio.run(evaluate(lambda: ModelSession(config, run_id="review-eval"), [case], reviewers=reviewers,
                               min_agree=min_agree, resume=EvalRun(list(reviewers), min_agree, "", commit)))
    return run.reviews, None


def local_models(config: Config, reviewers: list[str]) -> frozenset[str]:
    from relaycode.providers import parse_model

    return frozenset(ref.name for ref in (parse_model(s, config.endpoints) for s in reviewers) if ref.is_local)


def evaluate_on_ray(spec: ExecutorSpec, config: Config, cases: list[dict[str, Any]], *, start: EvalRun,
                    progress: Callable[[str], None], checkpoint: Callable[[EvalRun], object]) -> EvalRun:
    """Review the cases `start` does not hold yet on Ray; return `start` with their rows added."""
    from relaycode.bench.executor import check_available
    from relaycode.bench.ray_executor import RayExecutor, pair_resources

    check_available(spec)
    done = start.done_cases()
    pending = [c for c in cases if c["id"] not in done]
    models = local_models(config, start.reviewers)
    fn = functools.partial(review_one_case, config=config, reviewers=list(start.reviewers),
                           min_agree=start.min_agree, commit=start.commit)

    def lost(case: dict[str, Any], attempts: int, why: str) -> CaseRows:
        return [], f"its worker died {attempts} times (last: {why}); not reviewed, --resume retries it"

    def failed(case: dict[str, Any], why: str) -> CaseRows:
        return [], f"failed: {why.splitlines()[0] if why else why}; not reviewed, --resume retries it"

    with RayExecutor(spec, models) as executor:
        for n, (case, (rows, problem)) in enumerate(
                executor.map(fn, pending, resources=lambda _c: pair_resources(models), lost=lost, failed=failed),
                start=1):
            start.add_rows(rows)
            progress(f"[{n}/{len(pending)}] {case['id']}: " + (problem or f"{len(rows)} reviews"))
            checkpoint(start)
    return start
