"""Render a ReviewResult as text (rich, coloured on a terminal), Markdown, JSON or SARIF 2.1.0.

Every format carries the cost per reviewer (dollars and tokens), what was not
reviewed and reviewer errors, so a clean-looking report never hides a review
that did not happen.
"""

from __future__ import annotations

import io
import json
from typing import Any, Literal

from relaycode import __version__
from relaycode.dollars import usd_text
from relaycode.review.core import ReviewResult
from relaycode.review.findings import CATEGORIES, VERDICT_WORDS, VERDICTS, Finding

Format = Literal["text", "md", "json", "sarif"]
FORMATS: tuple[str, ...] = ("text", "md", "json", "sarif")

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"blocker": "error", "major": "error", "minor": "warning", "nit": "note"}
_STYLE = {"blocker": "bold red", "major": "red", "minor": "yellow", "nit": "dim"}
_RULE_TEXT = {
    "bug": "Incorrect behaviour: wrong results, crashes, unhandled cases.",
    "security": "A weakness an attacker could use.",
    "performance": "Needless slowness or resource use.",
    "maintainability": "Code that is hard to change safely.",
    "style": "Naming, formatting and documentation.",
}


def cost_rows(result: ReviewResult) -> list[dict[str, Any]]:
    """One row per reviewer: requests, tokens, dollars, seconds, status."""
    rows = []
    for spec in result.reviewers:
        u = result.usage.get(spec, {})
        rows.append({
            "reviewer": spec,
            "findings": len(result.per_reviewer.get(spec, [])),
            "requests": u.get("requests", 0),
            "input_tokens": u.get("input_tokens", 0),
            "output_tokens": u.get("output_tokens", 0),
            "usd": u.get("usd"),
            "seconds": u.get("wall_seconds", 0.0),
            "evidence_seconds": u.get("evidence_seconds", 0.0),
            "status": "error" if spec in result.errors else "ok",
        })
    for spec, u in result.judge_usage.items():
        rows.append({
            "reviewer": f"judge {spec}",
            "findings": sum(1 for f in [*result.findings, *result.judged_out]
                            if f.judgement is not None and f.judgement.judge == spec),
            "requests": u.get("requests", 0),
            "input_tokens": u.get("input_tokens", 0),
            "output_tokens": u.get("output_tokens", 0),
            "usd": u.get("usd"),
            "seconds": u.get("wall_seconds", 0.0),
            "evidence_seconds": 0.0,
            "status": "judge",
        })
    return rows


def render(result: ReviewResult, fmt: str, *, color: bool = False, width: int = 100) -> str:
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2) + "\n"
    if fmt == "sarif":
        return json.dumps(to_sarif(result), indent=2) + "\n"
    if fmt == "md":
        from relaycode.termsafe import clean

        # Findings, evidence, file names and errors are a model's or a PR's words, and Markdown is read on
        # terminals too: the whole document is cleaned at once.
        return clean(to_markdown(result))
    if fmt == "text":
        return to_text(result, color=color, width=width)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def evidence_detail(f: Finding) -> str:
    """The claim and what happened when it ran, e.g. "`f(3) should be 4`; fail on the change, ..."."""
    parts = ([f"`{f.evidence.describe()}`"] if f.evidence is not None else []) + ([f.check] if f.check else [])
    return "; ".join(parts)


def evidence_text(f: Finding) -> str:
    """Whether the finding was confirmed and how, in one line."""
    detail = evidence_detail(f)
    return f"{f.status}: {detail}" if detail else f.status


def status_summary(result: ReviewResult) -> str:
    """e.g. "2 confirmed, 0 refuted, 1 unchecked (evidence run in the sandbox)"."""
    counts = result.status_counts()
    text = ", ".join(f"{n} {s}" for s, n in counts.items())
    how = "evidence run in the sandbox" if result.evidence_checked else "evidence not checked"
    if result.min_score is not None:
        how += f"; findings scoring below {result.min_score:.2f} dropped"
    return f"{text} ({how})"


def judge_summary(result: ReviewResult) -> str:
    """e.g. "judge reviewers: 1 a real bug, 2 not a bug, 0 unsure, 1 not judged; 2 judged not a bug dropped
    (below 0.25)"; empty when no judge was asked."""
    if result.judge == "none":
        return ""
    counts = result.verdict_counts()
    text = ", ".join(f"{counts[v]} {VERDICT_WORDS[v]}" for v in VERDICTS)
    text = f"judge {result.judge}: {text}, {counts['not_judged']} not judged"
    if result.judged_out:
        text += f"; {len(result.judged_out)} judged not a bug dropped (below {result.min_score or 0:.2f})"
    return text


def judged_out_lines(result: ReviewResult) -> list[str]:
    """One line per finding the judge removed: where, what, and the judge's reason."""
    return [f"{_where(f)} [{f.severity}] {f.message} -- judge: {f.judgement.describe() if f.judgement else ''}"
            for f in result.judged_out]


def _score(f: Finding) -> str:
    return (f"confidence {f.confidence:.2f}" + (f", score {f.score:.2f}" if f.score is not None else "")
            + (f", raised in {f.votes} answer{'s' if f.votes != 1 else ''}" if f.votes is not None else ""))


def _where(f: Finding) -> str:
    return f"{f.path}:{f.start_line}" + (f"-{f.end_line}" if f.end_line != f.start_line else "")


def to_text(result: ReviewResult, *, color: bool = False, width: int = 100) -> str:
    """Human-readable report; colours only when `color` (a terminal).

    Printed on a TerminalConsole: every text in it a model or a PR wrote (findings, evidence claims, file
    names, errors) reaches the output with its terminal controls shown as text, colours on or off.
    """
    from rich.markup import escape
    from rich.table import Table

    from relaycode.termconsole import TerminalConsole

    buf = io.StringIO()
    # An explicit colour system: with TERM=dumb "auto" would drop the colours a terminal asked for. A
    # height too: with TERM=dumb rich ignores a width given without one and lays out 80 columns.
    console = TerminalConsole(file=buf, force_terminal=color, no_color=not color, width=width, height=25,
                              highlight=False, color_system="standard" if color else None)
    if not result.findings:
        empty = empty_headline(result)
        console.print(f"[green]{empty}[/green]" if empty == NO_FINDINGS else f"[red]{escape(empty)}[/red]")
    for f in result.findings:
        style = _STYLE[f.severity]
        console.print(f"[{style}]{f.severity.upper():7}[/{style}] [bold]{escape(_where(f))}[/bold] "
                      f"[cyan]{f.category}[/cyan]  ({', '.join(f.models)}; {_score(f)})")
        console.print(f"        {escape(f.message)}")
        if f.suggestion:
            console.print(f"        [dim]suggestion:[/dim] {escape(f.suggestion)}")
        if result.evidence_checked or f.status != "unchecked":
            mark = {"confirmed": "green", "refuted": "red", "unchecked": "dim"}[f.status]
            console.print(f"        [{mark}]evidence:[/{mark}] {escape(evidence_text(f))}")
        if f.judgement is not None:
            style = {"bug": "red", "not_a_bug": "green", "unsure": "dim"}[f.judgement.verdict]
            console.print(f"        [{style}]judge:[/{style}] {escape(f.judgement.describe())}")
    if result.findings:
        console.print(f"evidence: {escape(status_summary(result))}")
    if judge_summary(result):
        console.print(escape(judge_summary(result)))
    for line in judged_out_lines(result):
        console.print(f"[dim]judged out:[/dim] {escape(line)}")
    for item in result.not_reviewed:
        console.print(f"[yellow]not reviewed:[/yellow] {escape(item)}")
    for spec, error in result.errors.items():
        console.print(f"[red]reviewer failed:[/red] {escape(spec)}: {escape(error)}")
    table = Table("reviewer", "findings", "requests", "tokens in/out", "cost", "seconds", "status",
                  title="cost", title_justify="left")
    for row in cost_rows(result):
        table.add_row(row["reviewer"], str(row["findings"]), str(row["requests"]),
                      f"{row['input_tokens']}/{row['output_tokens']}", usd_text(row["usd"]),
                      f"{row['seconds']:.1f}", row["status"])
    total = result.total_usage()
    table.add_row("total", str(len(result.findings)), str(total["requests"]),
                  f"{total['input_tokens']}/{total['output_tokens']}", usd_text(total["usd"]),
                  f"{result.seconds:.1f}", "merged")
    console.print(table)
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


NO_FINDINGS = "No findings."


def empty_headline(result: ReviewResult) -> str:
    """What a review without findings says first: "No findings." only when every reviewer reviewed something."""
    if result.failed:
        return "Not reviewed: every reviewer failed (below)."
    if result.files and result.total_usage()["requests"] == 0:
        return "Not reviewed: no part of the change could be reviewed (below)."
    if result.errors:
        failed = ", ".join(result.errors)
        return f"No findings from the reviewers that finished; {failed} failed (below)."
    return NO_FINDINGS


def to_markdown(result: ReviewResult, *, title: str = "relay review", empty: str = NO_FINDINGS) -> str:
    out = [f"## {title}", ""]
    if result.findings:
        out += ["| severity | where | category | finding | evidence | reviewers |", "|---|---|---|---|---|---|"]
        for f in result.findings:
            text = _md_cell(f.message) + (f"<br>**suggestion:** {_md_cell(f.suggestion)}" if f.suggestion else "")
            text += f"<br>**judge:** {_md_cell(f.judgement.describe())}" if f.judgement is not None else ""
            out.append(f"| {f.severity} | `{_where(f)}` | {f.category} | {text} | "
                       f"**{f.status}**" + (f": {_md_cell(evidence_detail(f))}" if evidence_detail(f) else "") + " | "
                       f"{', '.join(f.models)} ({_score(f)}) |")
        out += ["", f"Evidence: {status_summary(result)}."]
    else:
        out.append(empty if empty_headline(result) == NO_FINDINGS else empty_headline(result))
    if judge_summary(result):
        out += ["", f"Judge: {_md_cell(judge_summary(result))}."]
    if result.judged_out:
        out += ["", "**Judged not a bug (dropped):**", *[f"- {_md_cell(x)}" for x in judged_out_lines(result)]]
    out.append("")
    if result.not_reviewed:
        out += ["**Not reviewed:**", *[f"- {_md_cell(x)}" for x in result.not_reviewed], ""]
    if result.errors:
        out += ["**Reviewer errors:**", *[f"- `{k}`: {_md_cell(v)}" for k, v in result.errors.items()], ""]
    out += ["| reviewer | findings | requests | tokens in/out | cost | seconds | status |",
            "|---|---|---|---|---|---|---|"]
    for row in cost_rows(result):
        out.append(f"| `{row['reviewer']}` | {row['findings']} | {row['requests']} | "
                   f"{row['input_tokens']}/{row['output_tokens']} | {usd_text(row['usd'])} | "
                   f"{row['seconds']:.1f} | {row['status']} |")
    total = result.total_usage()
    out.append(f"| **total** | {len(result.findings)} | {total['requests']} | "
               f"{total['input_tokens']}/{total['output_tokens']} | {usd_text(total['usd'])} | "
               f"{result.seconds:.1f} | merged |")
    return "\n".join(out) + "\n"


def to_sarif(result: ReviewResult) -> dict[str, Any]:
    """One SARIF 2.1.0 run: a rule per category, a result per merged finding, cost in run properties."""
    rules = [
        {
            "id": f"relay/{category}",
            "name": category.capitalize(),
            "shortDescription": {"text": f"{category} finding"},
            "fullDescription": {"text": _RULE_TEXT[category]},
            "properties": {"category": category},
        }
        for category in CATEGORIES
    ]
    results = []
    for f in result.findings:
        text = f.message + (f"\nSuggestion: {f.suggestion}" if f.suggestion else "")
        results.append({
            "ruleId": f"relay/{f.category}",
            "ruleIndex": CATEGORIES.index(f.category),
            "level": _LEVEL[f.severity],
            "message": {"text": text},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": f.start_line, "endLine": f.end_line},
                }
            }],
            "properties": {
                "models": f.models, "severity": f.severity, "confidence": f.confidence, "score": f.score,
                "votes": f.votes,
                "evidenceStatus": f.status, "evidenceCheck": f.check,
                "evidence": None if f.evidence is None else f.evidence.model_dump(),
                "judgeVerdict": None if f.judgement is None else f.judgement.verdict,
                "judgeReason": None if f.judgement is None else f.judgement.why,
                "judge": None if f.judgement is None else f.judgement.judge,
            },
        })
    notifications = [{"level": "warning", "message": {"text": f"not reviewed: {x}"}} for x in result.not_reviewed]
    notifications += [{"level": "error", "message": {"text": f"reviewer {k} failed: {v}"}}
                      for k, v in result.errors.items()]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "relay",
                "semanticVersion": __version__,
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": not result.failed,
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
            "properties": {"reviewers": cost_rows(result), "total": result.total_usage(),
                           "evidenceChecked": result.evidence_checked, "evidenceCounts": result.status_counts(),
                           "minScore": result.min_score, "judge": result.judge, "samples": result.samples,
                           "judgeCounts": result.verdict_counts() if result.judge != "none" else None,
                           "judgedOut": [f.model_dump(mode="json") for f in result.judged_out]},
        }],
    }
