"""How much a reviewer's finding is worth: measured per model and per evidence status.

A reviewer's weight is the share of its findings that were real in review-eval, counted over
buggy *and* correct changes (a finding on a correct change is a false alarm), separately for
its findings whose evidence was confirmed, refuted, or that stayed unchecked. The numbers are
data (`reviewer_weights.json`, written from review-eval results by `weights_from_eval`), with a
documented `default` for models never measured. A user file (`--weights`) overrides per model.

A merged finding's score combines its reviewers as independent witnesses (noisy-OR):
``score = 1 - prod(1 - w[reviewer][status])`` over the distinct reviewers that raised it, each
with its own best status (confirmed > unchecked > refuted). Findings scoring below `min_score`
are dropped. Independence is an assumption (two copies of one model are not two witnesses);
it is the simplest rule that lets one confirmed finding beat two unchecked ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from relaycode.errors import UsageError
from relaycode.review.findings import Status

#: Keep a merged finding only when its score reaches this (the default of `relay review --min-score`).
DEFAULT_MIN_SCORE = 0.25

class ReviewerWeight(BaseModel):
    """P(a finding is real | this reviewer raised it, its evidence status)."""

    unchecked: float = Field(ge=0, le=1)
    confirmed: float = Field(ge=0, le=1)
    refuted: float = Field(ge=0, le=1)
    source: str = ""
    """Where the numbers come from (suite, cases, date), for the reader."""

    def of(self, status: Status) -> float:
        value: float = getattr(self, status)
        return value


class Weights(BaseModel):
    """Weights of measured models and the default for the others."""

    default: ReviewerWeight
    models: dict[str, ReviewerWeight] = Field(default_factory=dict)

    def for_model(self, spec: str) -> ReviewerWeight:
        return self.models.get(spec, self.default)

    def merged(self, other: Weights) -> Weights:
        """`other`'s models (and default) over these."""
        return Weights(default=other.default, models={**self.models, **other.models})


def builtin_weights() -> Weights:
    """The weights shipped with relay (`reviewer_weights.json`)."""
    text = resources.files("relaycode.review").joinpath("reviewer_weights.json").read_text(encoding="utf-8")
    return Weights.model_validate_json(text)


def load_weights(path: Path | None = None) -> Weights:
    """The built-in weights, overridden by the user's file at `path` (same shape) if given."""
    weights = builtin_weights()
    if path is None:
        return weights
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if "default" not in data:
            data["default"] = weights.default.model_dump()
        return weights.merged(Weights.model_validate(data))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise UsageError(f"--weights {path}: not a reviewer weights file: {reason}") from None


def score(claims: Mapping[str, Status], weights: Weights) -> float:
    """Noisy-OR of each distinct reviewer's weight for its status (reviewer -> its strongest status)."""
    doubt = 1.0
    for spec, status in claims.items():
        doubt *= 1.0 - weights.for_model(spec).of(status)
    return round(1.0 - doubt, 4)


def scorer(weights: Weights) -> Callable[[Mapping[str, Status]], float]:
    """`score` with these weights, in the shape `merge_findings` takes."""
    return lambda claims: score(claims, weights)
