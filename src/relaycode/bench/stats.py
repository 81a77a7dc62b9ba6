"""Statistics over bench records: intervals, repeats, paired comparison, the oracle, re-pricing.

A record is one line of `results.jsonl` (see `runner.base_record`), one per
(case, config, repeat); records from before repeats count as repeat 0. Dollars
are kept as `Decimal` strings in records and summed exactly; `None` means
unknown (an unpriced request) and is never counted as $0.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from itertools import combinations
from typing import Any

from relaycode.errors import UsageError

#: z for a two-sided 95% interval.
Z95 = 1.959963984540054

#: Stages `--price-as` may name (the stages that call models).
PRICED_STAGES = ("plan", "implement", "review")

#: Resamples of the bootstrap interval of a mean pass rate over repeats.
BOOTSTRAP_RESAMPLES = 2000

#: Seed of that bootstrap: the same records give the same interval.
BOOTSTRAP_SEED = 0


def wilson(passed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for `passed` successes out of `n` (0..1). n = 0 gives (0, 1)."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= passed <= n:
        raise ValueError(f"passed={passed} out of n={n}")
    p = passed / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp float noise at the ends (e.g. 0 successes must give exactly 0).
    return (max(0.0, centre - half) if passed else 0.0, min(1.0, centre + half) if passed < n else 1.0)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value (binomial test on the discordant pairs)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def case_bootstrap(by_case: Sequence[Sequence[bool]], resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean pass rate, resampling cases with all their repeats.

    Repeats of one case are not independent (an easy case passes in every repeat), so a case is the
    unit resampled: the interval covers both the case sample and the run-to-run noise. No cases: (0, 1).
    """
    means = [sum(r) / len(r) for r in by_case if r]
    if not means:
        return (0.0, 1.0)
    rng = random.Random(seed)
    n = len(means)
    stats = sorted(sum(rng.choice(means) for _ in range(n)) / n for _ in range(resamples))
    lo = stats[int(0.025 * (resamples - 1))]
    hi = stats[math.ceil(0.975 * (resamples - 1))]
    return (lo, hi)


# ---------------------------------------------------------------- record accessors


def record_repeat(record: Mapping[str, Any]) -> int:
    return int(record.get("repeat") or 0)


def first_attempt_passed(passed: bool, iterations: int) -> bool:
    """Whether the first implement attempt's tree passed the hidden tests, from what a run records.

    The loop stops at the first attempt verification (and review) accepts, so with one iteration the
    final tree is the first attempt's. With more, the first attempt was rejected and its tree never
    reached the hidden tests: it counts as failed, as a one-shot answer the user would not be given.
    """
    return passed and iterations == 1


def record_first_attempt_passed(record: Mapping[str, Any]) -> bool:
    """The record's field, or derived the same way for records from before it."""
    if "first_attempt_passed" in record:
        return bool(record["first_attempt_passed"])
    return first_attempt_passed(bool(record.get("passed")), int(record.get("iterations") or 0))


def record_usd(record: Mapping[str, Any], key: str = "usd") -> Decimal | None:
    value = record.get(key)
    return None if value is None else Decimal(str(value))


def record_compute_s(record: Mapping[str, Any]) -> float:
    """Compute of one record: CPU seconds (relay + children + local model servers) when measured, else wall."""
    cpu = record.get("cpu_s")
    if isinstance(cpu, Mapping) and cpu.get("total") is not None:
        return float(cpu["total"])
    return float(record.get("wall_s") or 0.0)


def _sum_usd(values: Iterable[Decimal | None]) -> tuple[Decimal, int]:
    total, unknown = Decimal(0), 0
    for v in values:
        if v is None:
            unknown += 1
        else:
            total += v
    return total, unknown


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------- per config


def config_summary(records: Sequence[Mapping[str, Any]], usd_key: str = "usd") -> dict[str, Any]:
    """Pass rate with Wilson CI, dollars, tokens per stage, and time of one config's records."""
    n = len(records)
    passed = sum(1 for r in records if r.get("passed"))
    lo, hi = wilson(passed, n)
    usd_total, usd_unknown = _sum_usd(record_usd(r, usd_key) for r in records)
    stages: dict[str, dict[str, int]] = {}
    for r in records:
        for stage, t in (r.get("stages") or {}).items():
            s = stages.setdefault(stage, {"requests": 0, "input_tokens": 0, "output_tokens": 0})
            s["requests"] += int(t.get("requests", 0))
            s["input_tokens"] += int(t.get("input_tokens", 0))
            s["output_tokens"] += int(t.get("output_tokens", 0))
    tokens_in = sum(s["input_tokens"] for s in stages.values())
    tokens_out = sum(s["output_tokens"] for s in stages.values())
    compute = [record_compute_s(r) for r in records]
    cpu_measured = all(isinstance(r.get("cpu_s"), Mapping) for r in records) and n > 0
    known = usd_unknown == 0
    first = sum(1 for r in records if record_first_attempt_passed(r))
    return {
        "n": n,
        "passed": passed,
        "pass_rate": passed / n if n else None,
        "ci95": [lo, hi],
        "first_attempt_passed": first,
        "first_attempt_pass_rate": first / n if n else None,
        **repeat_summary(records),
        "usd_total": float(usd_total) if known else None,
        "usd_priced_part": float(usd_total),
        "usd_unknown_records": usd_unknown,
        "usd_per_case": float(usd_total / n) if known and n else None,
        "usd_per_solved": float(usd_total / passed) if known and passed else None,
        "zero_cost": known and usd_total == 0,
        "tokens_by_stage": stages,
        "tokens_total": {"input": tokens_in, "output": tokens_out},
        "tokens_per_case": (tokens_in + tokens_out) / n if n else None,
        "wall_s_mean": _mean([float(r.get("wall_s") or 0) for r in records]),
        "model_s_mean": _mean([float(r.get("model_s") or 0) for r in records]),
        "test_s_mean": _mean([float(r.get("test_s") or 0) for r in records]),
        "compute_s_mean": _mean(compute),
        "compute_s_per_solved": sum(compute) / passed if passed else None,
        "compute_measure": "cpu" if cpu_measured else "wall",
        "timed_out": sum(1 for r in records if r.get("timed_out")),
        "errors": _count(r.get("error_kind") for r in records if r.get("error_kind")),
        "statuses": _count(r.get("status") for r in records),
    }


def repeat_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Repeats of one config: passes per repeat, the mean pass rate and its interval (`case_bootstrap`)."""
    repeats = sorted({record_repeat(r) for r in records})
    by_repeat = {k: [r for r in records if record_repeat(r) == k] for k in repeats}
    by_case: dict[str, list[bool]] = {}
    first_by_case: dict[str, list[bool]] = {}
    for r in records:
        by_case.setdefault(str(r["case"]), []).append(bool(r.get("passed")))
        first_by_case.setdefault(str(r["case"]), []).append(record_first_attempt_passed(r))
    rates = [sum(bool(r.get("passed")) for r in rs) / len(rs) for rs in by_repeat.values()]
    first_rates = [sum(record_first_attempt_passed(r) for r in rs) / len(rs) for rs in by_repeat.values()]
    lo, hi = case_bootstrap(list(by_case.values()))
    flo, fhi = case_bootstrap(list(first_by_case.values()))
    return {
        "repeats": len(repeats),
        "passed_by_repeat": {str(k): [sum(bool(r.get("passed")) for r in rs), len(rs)] for k, rs in by_repeat.items()},
        "mean_pass_rate": _mean(rates),
        "mean_ci95": [lo, hi],
        "mean_first_attempt_pass_rate": _mean(first_rates),
        "mean_first_attempt_ci95": [flo, fhi],
    }


def _count(values: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class Paired:
    """Outcomes of configs `a` and `b` on the (case, repeat) pairs both ran."""

    a: str
    b: str
    n: int
    both: int
    a_only: int
    b_only: int
    neither: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def outcomes(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[tuple[str, int], bool]]:
    """config → (case, repeat) → passed."""
    table: dict[str, dict[tuple[str, int], bool]] = {}
    for r in records:
        table.setdefault(r["config"], {})[(str(r["case"]), record_repeat(r))] = bool(r.get("passed"))
    return table


def paired(records: Iterable[Mapping[str, Any]], a: str, b: str) -> Paired:
    """The 2×2 table of configs a and b over their common (case, repeat) pairs, with the exact McNemar p.

    With repeats, the pairs of one case are not independent, so p is optimistic; it is exact with one repeat.
    """
    table = outcomes(records)
    ra, rb = table.get(a, {}), table.get(b, {})
    common = [c for c in ra if c in rb]
    both = sum(1 for c in common if ra[c] and rb[c])
    a_only = sum(1 for c in common if ra[c] and not rb[c])
    b_only = sum(1 for c in common if rb[c] and not ra[c])
    neither = len(common) - both - a_only - b_only
    return Paired(a, b, len(common), both, a_only, b_only, neither, mcnemar_exact(a_only, b_only))


def all_pairs(records: Sequence[Mapping[str, Any]], configs: Sequence[str]) -> list[Paired]:
    return [paired(records, a, b) for a, b in combinations(configs, 2)]


# ---------------------------------------------------------------- oracle


def _cost_key(record: Mapping[str, Any], usd_key: str) -> tuple[float, float, str]:
    usd = record_usd(record, usd_key)
    # Unknown dollars sort last; ties in dollars go to less compute, then the config name (stable).
    return (math.inf if usd is None else float(usd), record_compute_s(record), str(record["config"]))


def oracle(records: Sequence[Mapping[str, Any]], usd_key: str = "usd") -> dict[str, Any]:
    """Per case (per (case, repeat) with repeats: `case#rK`), the cheapest config that solved it
    (cost ties → less compute).

    A case no config solved is charged the cheapest config's attempt: a router
    must pick something, and picking the cheapest is the best it can do.
    """
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        k = record_repeat(r)
        by_case.setdefault(str(r["case"]) + (f"#r{k}" if k else ""), []).append(r)
    chosen: dict[str, str | None] = {}
    costs: list[Decimal | None] = []
    compute: list[float] = []
    for case, rs in by_case.items():
        solved = [r for r in rs if r.get("passed")]
        pick = min(solved or rs, key=lambda r: _cost_key(r, usd_key))
        chosen[case] = str(pick["config"]) if solved else None
        costs.append(record_usd(pick, usd_key))
        compute.append(record_compute_s(pick))
    n = len(by_case)
    passed = sum(1 for v in chosen.values() if v is not None)
    total, unknown = _sum_usd(costs)
    lo, hi = wilson(passed, n)
    return {
        "n": n,
        "passed": passed,
        "pass_rate": passed / n if n else None,
        "ci95": [lo, hi],
        "usd_total": float(total) if not unknown else None,
        "usd_per_case": float(total / n) if n and not unknown else None,
        "usd_per_solved": float(total / passed) if passed and not unknown else None,
        "compute_s_mean": _mean(compute),
        "chosen": chosen,
        "wins": _count(v for v in chosen.values() if v is not None),
    }


# ---------------------------------------------------------------- re-pricing


def parse_price_as(text: str) -> dict[str, str]:
    """`plan=anthropic:claude-opus-4-5,implement=...` → {stage: model}; every model must have a list price."""
    from relaycode.pricing import quote

    mapping: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        stage, sep, spec = item.partition("=")
        stage, spec = stage.strip(), spec.strip()
        if not sep or not spec:
            raise UsageError(f"--price-as: expected STAGE=provider:model, got {item!r}")
        if stage not in PRICED_STAGES:
            raise UsageError(f"--price-as: unknown stage {stage!r}; stages: {', '.join(PRICED_STAGES)}")
        try:
            known = quote(spec) is not None
        except UsageError as exc:
            raise UsageError(f"--price-as: {exc}") from None
        if not known:
            raise UsageError(f"--price-as: no list price known for {spec!r}")
        mapping[stage] = spec
    if not mapping:
        raise UsageError("--price-as: no STAGE=model given")
    return mapping


def reprice(record: Mapping[str, Any], price_as: Mapping[str, str]) -> tuple[Decimal | None, bool]:
    """Dollars of a record had each mapped stage run on the given model; (usd, per_request).

    Each request is priced on its own with its measured input/output tokens
    (tiers apply per request). Input is priced as uncached (an upper bound:
    provider caching would lower it). Stages not in `price_as` keep their
    measured price. Records without a request list fall back to per-stage
    token sums, priced as one request per stage (`per_request` is then False).
    """
    from relaycode.pricing import Tokens, price_request

    requests = record.get("requests")
    per_request = isinstance(requests, list)
    items: list[Mapping[str, Any]]
    if per_request:
        items = list(requests or [])
    else:
        items = [{"stage": s, **t} for s, t in (record.get("stages") or {}).items()]
    total = Decimal(0)
    for item in items:
        spec = price_as.get(str(item.get("stage")))
        if spec is None:
            usd = record_usd(item)
        else:
            tokens = Tokens(input=int(item.get("input_tokens", 0)), output=int(item.get("output_tokens", 0)))
            usd = price_request(spec, tokens)
        if usd is None:
            return None, per_request
        total += usd
    return total, per_request


def reprice_records(records: Sequence[Mapping[str, Any]], price_as: Mapping[str, str]) -> list[dict[str, Any]]:
    """Copies of `records` with `usd_estimate` (a Decimal string or None) and `estimate_per_request`."""
    out = []
    for r in records:
        usd, per_request = reprice(r, price_as)
        out.append({**r, "usd_estimate": None if usd is None else str(usd), "estimate_per_request": per_request})
    return out
