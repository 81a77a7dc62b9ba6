"""Bench reports from records: summary.json, report.md, pareto.png, pareto.html.

Everything here is a pure function of the records (plus `--price-as`), so
`relay bench-report DIR` re-renders a finished or partial bench at any time.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relaycode.bench.stats import all_pairs, config_summary, oracle, reprice_records
from relaycode.dollars import usd_text

NOTES = [
    "Pass = the case's hidden tests exit 0 on the final worktree (hidden files added after the run), "
    "run in the sandbox with the case's timeout.",
    "95% CI: Wilson score interval over all records of a config. Paired: (case, repeat) pairs both configs "
    "ran; p = two-sided exact McNemar test (optimistic with repeats: the repeats of a case are not independent).",
    "First attempt: the run passed the hidden tests with its first implement attempt (one iteration), "
    "comparable with a one-shot pass@1; the loop's pass rate is the final tree's.",
    "Repeats: each (case, config, repeat) is its own run, its model requests seeded from (case, config, repeat). "
    "Mean pass rate = mean over repeats; its 95% interval is a percentile bootstrap over cases "
    "(2000 resamples, each case with all its repeats), covering case sampling and run-to-run noise.",
    "Oracle: per case the cheapest config that solved it (ties: less compute); an unsolved case is "
    "charged the cheapest config's attempt.",
    "CPU s = relay process + its reaped children (git, unsandboxed commands) + the servers of the config's "
    "local models over the case's window (/proc). Sandboxed commands (verify, hidden tests) are not "
    "visible to getrusage under bubblewrap and are not included. With --jobs > 1 a shared server's CPU "
    "is counted in every overlapping case, so compare compute from --jobs 1 benches.",
]

ESTIMATE_NOTE = (
    "ESTIMATE: dollars are not what was spent. Each request's measured token counts were priced at the "
    "list price of the model given per stage (--price-as), one request at a time, input as uncached. "
    "Tokens were counted by the models that ran (other tokenizers count differently) and a different "
    "model would have taken a different path; unmapped stages keep their measured price."
)


def _configs_in_order(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r["config"]) for r in records))


def summarise(records: Sequence[Mapping[str, Any]], price_as: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The summary.json content. With `price_as`, dollars are re-priced estimates (and say so)."""
    usd_key = "usd"
    recs: Sequence[Mapping[str, Any]] = records
    if price_as:
        recs = reprice_records(records, price_as)
        usd_key = "usd_estimate"
    names = _configs_in_order(recs)
    configs = {}
    for name in names:
        mine = [r for r in recs if r["config"] == name]
        summary = config_summary(mine, usd_key=usd_key)
        if price_as:
            measured = config_summary(mine)
            summary["usd_measured_total"] = measured["usd_total"]
            summary["estimate_per_request"] = all(r.get("estimate_per_request") for r in mine)
        configs[name] = summary
    zero = all(c["zero_cost"] for c in configs.values())
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "estimate": bool(price_as),
        "price_as": dict(price_as) if price_as else None,
        "suites": sorted({str(r.get("suite")) for r in recs}),
        "cases": len({r["case"] for r in recs}),
        "records": len(recs),
        "relay_versions": sorted({str(r.get("relay_version")) for r in recs}),
        "relay_commits": sorted({str(r.get("relay_commit")) for r in recs}),
        "x_axis": "compute" if zero else "usd",
        "configs": configs,
        "paired": [p.to_dict() for p in all_pairs(recs, names)],
        "oracle": oracle(recs, usd_key=usd_key),
        "by_checks": by_checks(recs, names),
        "notes": ([ESTIMATE_NOTE] if price_as else []) + NOTES,
    }


def by_checks(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, dict[str, list[int]]]:
    """Per config, [cases, passed] among cases whose run had verification that can fail a wrong
    change ("checked") and among those with none ("unchecked"). Records older than the
    `verify_checks` field are left out; no such record at all: {}."""
    from relaycode.stages.verify import can_fail_a_change

    out: dict[str, dict[str, list[int]]] = {}
    for name in names:
        for r in records:
            if r["config"] != name or "verify_checks" not in r:
                continue
            key = "checked" if can_fail_a_change(list(r["verify_checks"])) else "unchecked"
            cell = out.setdefault(name, {"checked": [0, 0], "unchecked": [0, 0]})[key]
            cell[0] += 1
            cell[1] += int(bool(r.get("passed")))
    return out


# ---------------------------------------------------------------- markdown


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def render_markdown(summary: Mapping[str, Any]) -> str:
    est = summary["estimate"]
    label = " (ESTIMATE)" if est else ""
    lines = [f"# relay bench report{label}", ""]
    if est:
        mapping = ", ".join(f"{k}={v}" for k, v in summary["price_as"].items())
        lines += [f"> **Estimate** priced as {mapping}. {ESTIMATE_NOTE}", ""]
    lines += [
        f"Suites: {', '.join(summary['suites'])}; {summary['cases']} cases, {summary['records']} records. "
        f"relay {', '.join(summary['relay_versions'])} at {', '.join(summary['relay_commits'])}. "
        f"Generated {summary['generated_at']}.",
        "",
        "## Per config",
        "",
        f"| config | n | passed | pass rate | 95% CI | first attempt | $/case{label} | $/solved{label} | tokens/case "
        "| CPU s/case | wall s/case | model s/case |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in summary["configs"].items():
        lo, hi = c["ci95"]
        lines.append(
            f"| {name} | {c['n']} | {c['passed']} | {_pct(c['pass_rate'])} | {100 * lo:.1f}–{100 * hi:.1f}% "
            f"| {_pct(c.get('first_attempt_pass_rate'))} "
            f"| {usd_text(c['usd_per_case'])} | {usd_text(c['usd_per_solved']) if c['passed'] else '-'} | {_num(c['tokens_per_case'], ',.0f')} "
            f"| {_num(c['compute_s_mean'])} | {_num(c['wall_s_mean'])} | {_num(c['model_s_mean'])} |"
        )
    if any(c["zero_cost"] for c in summary["configs"].values()):
        lines += ["", "$0 configs run on local models: their cost is compute, shown as tokens and CPU/wall "
                  "seconds per case beside the dollars."]
    if any(c.get("repeats", 1) > 1 for c in summary["configs"].values()):
        lines += ["", "## Repeats", "",
                  "| config | repeats | passed per repeat | mean pass rate | 95% CI (case bootstrap) "
                  "| mean first attempt | 95% CI |", "|---|---:|---|---:|---|---:|---|"]
        for name, c in summary["configs"].items():
            per = ", ".join(f"{p}/{n}" for p, n in c["passed_by_repeat"].values())
            (lo, hi), (flo, fhi) = c["mean_ci95"], c["mean_first_attempt_ci95"]
            lines.append(f"| {name} | {c['repeats']} | {per} | {_pct(c['mean_pass_rate'])} "
                         f"| {100 * lo:.1f}–{100 * hi:.1f}% | {_pct(c['mean_first_attempt_pass_rate'])} "
                         f"| {100 * flo:.1f}–{100 * fhi:.1f}% |")
    lines += ["", "## Tokens per stage (totals)", "", "| config | stage | requests | input | output |",
              "|---|---|---:|---:|---:|"]
    for name, c in summary["configs"].items():
        for stage, t in c["tokens_by_stage"].items():
            lines.append(f"| {name} | {stage} | {t['requests']} | {t['input_tokens']:,} | {t['output_tokens']:,} |")
    lines += ["", "## Paired comparison", "", "| A | B | case×repeat | both | A only | B only | neither | McNemar p |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for p in summary["paired"]:
        lines.append(f"| {p['a']} | {p['b']} | {p['n']} | {p['both']} | {p['a_only']} | {p['b_only']} "
                     f"| {p['neither']} | {p['p_value']:.3g} |")
    o = summary["oracle"]
    lo, hi = o["ci95"]
    wins = ", ".join(f"{k} {v}" for k, v in o["wins"].items()) or "none"
    lines += ["", "## Oracle", "",
              f"Cheapest solving config per case: {o['passed']}/{o['n']} = {_pct(o['pass_rate'])} "
              f"(95% CI {100 * lo:.1f}–{100 * hi:.1f}%), {usd_text(o['usd_per_case'])}/case{label}, "
              f"{_num(o['compute_s_mean'])} CPU s/case. Picks: {wins}.", ""]
    if summary.get("by_checks"):
        lines += ["## By verification signal", "",
                  "Cases whose run had a check that can fail a wrong change (tests, doc examples, a "
                  "configured command; a linter alone does not count) against cases with none, where "
                  "nothing gated the answer.", "",
                  "| config | checked: passed / cases | unchecked: passed / cases |", "|---|---:|---:|"]
        for name, cells in summary["by_checks"].items():
            (cn, cp), (un, up) = cells["checked"], cells["unchecked"]
            lines.append(f"| {name} | {cp}/{cn} | {up}/{un} |")
        lines.append("")
    problems = [(n, c) for n, c in summary["configs"].items() if c["errors"] or c["timed_out"]]
    if problems:
        lines += ["## Errors and timeouts", ""]
        for name, c in problems:
            kinds = ", ".join(f"{k} {v}" for k, v in c["errors"].items()) or "none"
            lines.append(f"- {name}: errors {kinds}; hidden tests timed out {c['timed_out']}")
        lines.append("")
    lines += ["## How this was measured", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- pareto


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats (x lower-or-equal and y higher-or-equal, one strictly)."""
    front = []
    for name, (x, y) in points.items():
        dominated = any(
            (ox <= x and oy >= y) and (ox < x or oy > y) for other, (ox, oy) in points.items() if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: (points[n][0], points[n][1]))


def _axis(summary: Mapping[str, Any]) -> tuple[str, str, str]:
    """(record key in config summary, axis label, unit formatting hint)."""
    if summary["x_axis"] == "compute":
        return ("compute_s_mean", "compute per case: CPU seconds (relay + tests + local model servers); "
                "every config costs $0", "s")
    label = "cost per case (US$, ESTIMATE from re-priced tokens)" if summary["estimate"] else "cost per case (US$)"
    return ("usd_per_case", label, "$")


def plot_points(summary: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    key, _, _ = _axis(summary)
    return {name: (float(c[key]), float(c["pass_rate"] or 0.0)) for name, c in summary["configs"].items()
            if c.get(key) is not None and c["n"]}


def render_png(summary: Mapping[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in threads and CI
    import matplotlib.pyplot as plt

    key, xlabel, _ = _axis(summary)
    points = plot_points(summary)
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    # The x axis starts at 0; a label is about 12% of its width.
    label_width = 0.15 * max((x for x, _ in points.values()), default=0.0)
    labelled: list[tuple[float, float]] = []
    try:
        for name, (x, y) in sorted(points.items(), key=lambda item: item[1][0]):
            lo, hi = summary["configs"][name]["ci95"]
            on_front = name in front
            ax.errorbar([x], [100 * y], yerr=[[100 * (y - lo)], [100 * (hi - y)]], fmt="o", capsize=4,
                        color="tab:blue" if on_front else "tab:gray", markersize=8, zorder=3)
            # A label next to an earlier one (same pass rate, close compute) goes below its point instead.
            crowded = any(abs(py - 100 * y) < 4 and abs(px - x) <= label_width for px, py in labelled)
            ax.annotate(name, (x, 100 * y), textcoords="offset points", xytext=(8, -14 if crowded else 6),
                        fontsize=9)
            labelled.append((x, 100 * y))
        if len(front) > 1:
            xs = [points[n][0] for n in front]
            ys = [100 * points[n][1] for n in front]
            ax.step(xs, ys, where="post", color="tab:blue", alpha=0.6, linestyle="--", label="Pareto front")
        elif front:
            ax.plot([], [], color="tab:blue", linestyle="--", label="Pareto front: " + front[0])
        o = summary["oracle"]
        ox = o.get("compute_s_mean") if key == "compute_s_mean" else o.get("usd_per_case")
        if ox is not None and o["pass_rate"] is not None:
            # Hollow and underneath: the oracle often lands on a config's point and must not hide it.
            ax.plot([ox], [100 * o["pass_rate"]], marker="*", markersize=16, markerfacecolor="none",
                    markeredgecolor="tab:orange", markeredgewidth=1.5, linestyle="none", zorder=1,
                    label="oracle (cheapest solver per case)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("pass rate (%) with 95% Wilson CI")
        ax.set_ylim(-2, 102)
        ax.set_xlim(left=0)
        if points:
            ax.set_xlim(right=max([x for x, _ in points.values()] + [ox or 0]) * 1.25 or 1)
        title = "relay bench: pass rate vs " + ("compute" if key == "compute_s_mean" else "cost")
        n_cases = summary["cases"]
        ax.set_title(f"{title} ({', '.join(summary['suites'])}, {n_cases} cases)"
                     + (" — ESTIMATE" if summary["estimate"] else ""), fontsize=10)
        ax.grid(True, alpha=0.3)
        # Below the axes: inside, it would cover points in whichever corner they land.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8, frameon=False)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)


def render_html(summary: Mapping[str, Any], png: bytes) -> str:
    key, xlabel, _ = _axis(summary)
    front = set(pareto_front(plot_points(summary)))
    rows = []
    for name, c in summary["configs"].items():
        lo, hi = c["ci95"]
        x = c.get(key)
        rows.append(
            f"<tr><td>{html.escape(name)}{' ★' if name in front else ''}</td><td>{c['n']}</td><td>{c['passed']}</td>"
            f"<td>{_pct(c['pass_rate'])}</td><td>{100 * lo:.1f}–{100 * hi:.1f}%</td>"
            f"<td>{'-' if x is None else f'{x:.4g}'}</td><td>{usd_text(c['usd_per_case'])}</td>"
            f"<td>{_num(c['compute_s_mean'])}</td></tr>"
        )
    title = "relay bench: Pareto" + (" (ESTIMATE)" if summary["estimate"] else "")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary["notes"])
    img = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child{{text-align:left}}</style>
</head><body><h1>{html.escape(title)}</h1>
<img alt="pass rate vs cost" src="data:image/png;base64,{img}">
<p>x axis: {html.escape(xlabel)}. ★ = on the Pareto front.</p>
<table><tr><th>config</th><th>n</th><th>passed</th><th>pass rate</th><th>95% CI</th><th>x</th>
<th>$/case</th><th>CPU s/case</th></tr>
{''.join(rows)}</table>
<ul>{notes}</ul></body></html>
"""


def write_reports(out: Path, records: Sequence[Mapping[str, Any]],
                  price_as: Mapping[str, str] | None = None) -> list[Path]:
    """Write summary/report/pareto files into `out` (`*-estimate.*` names with `price_as`)."""
    summary = summarise(records, price_as)
    suffix = "-estimate" if price_as else ""
    paths = {
        "summary": out / f"summary{suffix}.json",
        "report": out / f"report{suffix}.md",
        "png": out / f"pareto{suffix}.png",
        "html": out / f"pareto{suffix}.html",
    }
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    paths["report"].write_text(render_markdown(summary))
    png = render_png(summary)
    paths["png"].write_bytes(png)
    paths["html"].write_text(render_html(summary, png))
    return list(paths.values())
