"""The run report: Markdown (`report.md`) and one self-contained HTML file, from a run's data.

A run's data is a plain dict (what the pipeline writes as `run.json`, with
`ledger.json` under "ledger")::

    {
      "run_id": "20250101-120000-abc123", "status": "done", "task": "...",
      "repo": "/src/app", "config": "api",                # optional
      "ledger": Ledger.to_dict(),                         # total / by_stage / by_model / entries
      "timeline": [{"stage": "plan", "start": 1.7e9, "end": 1.7e9 + 4, "model": "openai:gpt-5"}, ...],
      "wall_s": 120.5, "model_s": 80.2,                    # model_s defaults to the ledger's
      "verify": {"passed": true, "summary": "12 passed"},  # or a plain string
      "findings": 2,
    }

Missing keys render as "—". Dollars that are unknown (a request without a
price) are shown as unknown, never as $0. The HTML has inline CSS and inline
SVG charts only: no scripts, no external assets, so it can be mailed or
attached to a CI run as it is. Every value from the run is escaped.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaycode.dollars import usd_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from relaycode.history import RunRecord
    from relaycode.ledger import LedgerEntry

DASH = "—"


# --------------------------------------------------------------------------- formatting


def fmt_usd(usd: Any, unpriced: int = 0, priced_part: Any = None) -> str:
    """Dollars for people: `$0.0123`; unknown when any request had no price (with the known part)."""
    if usd is None or unpriced:
        part = float(priced_part or 0)
        if part > 0:
            return f"≥ {fmt_usd(part)} ({unpriced} unpriced)" if unpriced else f"≥ {fmt_usd(part)}"
        return "unknown"
    return usd_text(usd)


def fmt_int(value: Any) -> str:
    return f"{int(value or 0):,}"


def fmt_seconds(seconds: Any) -> str:
    if seconds is None:
        return DASH
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else DASH


def _one_line(text: Any, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --------------------------------------------------------------------------- the numbers


def _groups(run: Mapping[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    groups = (run.get("ledger") or {}).get(key) or {}
    return list(groups.items())


def _total(run: Mapping[str, Any]) -> dict[str, Any]:
    return dict((run.get("ledger") or {}).get("total") or {})


def _tokens(group: Mapping[str, Any]) -> int:
    return int(group.get("input_tokens") or 0) + int(group.get("output_tokens") or 0)


def _priced(group: Mapping[str, Any]) -> float:
    value = group.get("usd_priced_part", group.get("usd"))
    return float(value or 0)


def _group_usd(group: Mapping[str, Any]) -> str:
    return fmt_usd(group.get("usd"), int(group.get("unpriced_requests") or 0), group.get("usd_priced_part"))


def model_busy_seconds(entries: list[Mapping[str, Any]]) -> float:
    """Seconds during which at least one model request was in flight (overlaps counted once).

    Parallel reviewers overlap: summing their request times would count the
    same wall seconds twice and hide the orchestration overhead.
    """
    spans = sorted((float(e["started_at"]), float(e["started_at"]) + float(e["seconds"])) for e in entries)
    busy, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                busy += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        busy += cur_end - cur_start
    return busy


def _model_s(run: Mapping[str, Any]) -> float | None:
    """Model time: from the ledger's entries when there are any, else the run's `model_s`."""
    entries = (run.get("ledger") or {}).get("entries") or []
    if entries:
        return model_busy_seconds(entries)
    if run.get("model_s") is not None:
        return float(run["model_s"])
    total = _total(run)
    return float(total["model_seconds"]) if "model_seconds" in total else None


def overhead(run: Mapping[str, Any]) -> tuple[float, float] | None:
    """Orchestration overhead: (wall − model seconds, its share of wall time), or None if unknown.

    Parallel model requests (reviewers) can add up to more than the wall time;
    the overhead is then 0, not negative.
    """
    wall, model = run.get("wall_s"), _model_s(run)
    if wall is None or model is None or float(wall) <= 0:
        return None
    over = max(0.0, float(wall) - model)
    return over, over / float(wall)


def _verify_text(verify: Any) -> str:
    if verify is None:
        return DASH
    if isinstance(verify, str):
        return _one_line(verify)
    if isinstance(verify, Mapping):
        passed = verify.get("passed")
        head = {True: "passed", False: "failed", None: ""}.get(passed, str(passed))
        summary = verify.get("summary")
        if head and summary:
            return _one_line(f"{head} ({summary})")
        return _one_line(head or summary or DASH)
    return _one_line(verify)


def _cost_rows(run: Mapping[str, Any], key: str) -> tuple[list[list[str]], list[float], list[int]]:
    groups = _groups(run, key)
    usd_all = sum(_priced(g) for _, g in groups)
    tok_all = sum(_tokens(g) for _, g in groups)
    rows: list[list[str]] = []
    for name, g in groups:
        rows.append([
            name, fmt_int(g.get("requests")), fmt_int(g.get("input_tokens")), fmt_int(g.get("output_tokens")),
            fmt_int(g.get("cache_read_tokens")), fmt_int(g.get("cache_write_tokens")), _group_usd(g),
            "unknown" if g.get("unpriced_requests") and not _priced(g) else fmt_pct(_priced(g), usd_all),
            fmt_pct(_tokens(g), tok_all), fmt_seconds(g.get("model_seconds")),
        ])
    return rows, [_priced(g) for _, g in groups], [_tokens(g) for _, g in groups]


_COST_HEADERS = ["", "requests", "input", "output", "cache read", "cache write", "cost", "% cost", "% tokens",
                 "model time"]


def _timeline(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = [dict(t) for t in run.get("timeline") or [] if t.get("start") is not None]
    return sorted(items, key=lambda t: float(t["start"]))


def _status_text(run: Mapping[str, Any]) -> str:
    status = str(run.get("status") or DASH)
    if status == "unverified":
        return status + " (done, but no pinned check could fail a wrong change: review it yourself)"
    return status


def _summary(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    total = _total(run)
    over = overhead(run)
    rows = [
        ("Status", _status_text(run)),
        ("Task", _one_line(run["task"]) if run.get("task") else DASH),
        ("Repository", str(run.get("repo") or DASH)),
        ("Config", str(run.get("config") or DASH)),
        ("Cost", _group_usd(total) if total else DASH),
        ("Model requests", fmt_int(total.get("requests"))),
        ("Tokens (in / out / cache read)", " / ".join(fmt_int(total.get(k)) for k in
                                                      ("input_tokens", "output_tokens", "cache_read_tokens"))),
        ("Wall time", fmt_seconds(run.get("wall_s"))),
        ("Model time (requests in flight)", fmt_seconds(_model_s(run))),
        ("Orchestration overhead", f"{fmt_seconds(over[0])} ({over[1]:.0%} of wall time)" if over else DASH),
        ("Verify", _verify_text(run.get("verify")) if run.get("verify") is not None or not run.get("iterations")
         else "not run: no attempt changed a file"),
        ("Review findings", str(run["findings"]) if run.get("findings") is not None else DASH),
    ]
    if run.get("started_at"):
        started = datetime.fromtimestamp(float(run["started_at"])).strftime("%Y-%m-%d %H:%M:%S")
        rows.insert(1, ("Started", started))
    return rows


# --------------------------------------------------------------------------- what happened, in words


def run_details(run_dir: Path) -> dict[str, Any]:
    """What a run's other files add to its report: each verify command, the review, the change, base and branch.

    Read from `verify.json`, `review.json`, `patch.diff` and `state.json`; a missing file adds nothing.
    """
    out: dict[str, Any] = {}

    def read(name: str) -> Any:
        try:
            return json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    verify = read("verify.json")
    if isinstance(verify, dict):
        out["verify_results"] = list(verify.get("results") or [])
    review = read("review.json")
    if isinstance(review, dict):
        out["review"] = {k: review.get(k) for k in ("findings", "errors", "not_reviewed")}
    state = read("state.json")
    if isinstance(state, dict):
        out.update({k: state[k] for k in ("base", "branch", "repo") if state.get(k)})
    with contextlib.suppress(OSError):
        out["diffstat"] = diffstat((run_dir / "patch.diff").read_text(encoding="utf-8", errors="replace"))
    generated = read("generated-checks.json")
    if isinstance(generated, dict):
        out["generated_checks"] = {"pinned": generated, "attempts": _ranked_attempts(run_dir)}
    return out


def _ranked_attempts(run_dir: Path) -> list[dict[str, Any]]:
    """The `candidates` events of attempts ranked by generated checks (events.jsonl)."""
    found: list[dict[str, Any]] = []
    with contextlib.suppress(OSError):
        for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
            if '"candidates"' not in line:
                continue
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("kind") == "candidates" and event.get("generated_checks"):
                    found.append(event)
    return found


def _generated_md(generated: Mapping[str, Any]) -> list[str]:
    """Which checks a model wrote, how they did on the unchanged tree, and how each attempt's candidates did."""
    pinned = generated.get("pinned") or {}
    checks = [c for c in pinned.get("checks") or [] if isinstance(c, Mapping)]
    parts = ["", "## Generated checks", "",
             f"Written by {_md_text(str(pinned.get('model') or DASH))} because nothing pinned could fail a wrong "
             "change; run in the sandbox to choose among candidates, never as verification."]
    for check in checks:
        baseline = str(check.get("baseline"))
        note = "passed on the unchanged tree, so no weight" if baseline == "pass" else f"{baseline} on the unchanged tree"
        parts.append(f"- `{_md_text(_one_line(str(check.get('call')), 120))} == "
                     f"{_md_text(_one_line(str(check.get('expected')), 120))}`: {note}")
    for event in generated.get("attempts") or []:
        weighted = len((event.get("generated_checks") or {}).get("weighted") or [])
        winner = event.get("winner")
        for c in event.get("distinct") or []:
            numbers = ", ".join(str(n) for n in c.get("candidates") or [])
            statuses = c.get("generated")
            if statuses is None:
                how = "failed verification" if c.get("verified") is False else "not run"
            else:
                passed = sum(1 for i in (event.get("generated_checks") or {}).get("weighted") or []
                             if isinstance(i, int) and i < len(statuses) and statuses[i] == "pass")
                how = f"passed {passed} of {weighted} weighted checks, score {c.get('score')}"
            chosen = " (chosen)" if winner == c.get("candidates") else ""
            parts.append(f"- attempt {event.get('attempt')}, candidates {numbers}: {how}{chosen}")
    return parts


def _header_path(rest: str) -> str:
    """The path of `diff --git a/P b/P` (same path on both sides, as relay's diffs use no renames)."""
    if len(rest) % 2 == 1 and rest.startswith("a/"):
        half = (len(rest) - 5) // 2
        left, right = rest[2:2 + half], rest[2 + half:]
        if right == f" b/{left}":
            return left
    return rest.rsplit(" b/", 1)[-1]  # unusual header: the +++/--- lines below correct it


def _side_path(line: str) -> str | None:
    """`+++ b/P` / `--- a/P` → P (git quotes unusual names: "b/P"); None for /dev/null."""
    name = line[4:].rstrip("\t")
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode(
            "utf-8", "replace")
    if name == "/dev/null":
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def diffstat(patch: str) -> list[tuple[str, int, int]]:
    """(path, lines added, lines removed) per file of a unified git diff. The path comes from the
    `---`/`+++` lines when present: splitting `diff --git a/X b/Y` at " b/" is ambiguous (a file
    named `ci b/README.md` would read as README.md)."""
    files: list[tuple[str, int, int]] = []
    path, added, removed = None, 0, 0
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            if path is not None:
                files.append((path, added, removed))
            path, added, removed = _header_path(line[len("diff --git "):]), 0, 0
        elif line.startswith("+++ ") or line.startswith("--- "):
            side = _side_path(line)
            if side is not None and (line.startswith("+++ ") or path is None or added == removed == 0):
                path = side
        elif line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
    if path is not None:
        files.append((path, added, removed))
    return files


def _finding_line(f: Mapping[str, Any]) -> str:
    where = f"{f.get('path')}:{f.get('start_line')}"
    return _one_line(f"{where} [{f.get('severity')}] {f.get('message')}", 300)


def _failing_commands(run: Mapping[str, Any]) -> list[str]:
    lines = []
    for r in run.get("verify_results") or []:
        if r.get("exit_code") == 0 and not r.get("timed_out"):
            continue
        why = "timed out" if r.get("timed_out") else f"exit {r.get('exit_code')}"
        tests = list(r.get("failing_tests") or [])
        named = f"; failing: {', '.join(tests[:8])}" + (f" and {len(tests) - 8} more" if len(tests) > 8 else "")
        lines.append(f"`{r.get('command')}` ({why}){named if tests else ''}")
    return lines


def why_failed(run: Mapping[str, Any]) -> list[str]:
    """Why a run did not succeed, most telling first: one plain sentence each (empty for a success)."""
    status = run.get("status")
    if status == "succeeded":
        return []
    reasons: list[str] = []
    run_id, repo = run.get("run_id") or "RUN_ID", run.get("repo") or "."
    if status == "interrupted":
        return [f"Interrupted (Ctrl-C or SIGTERM); the run is saved: `relay run --resume {run_id} --repo {repo}`."]
    if run.get("error_kind") == "budget":
        reasons.append(f"Stopped by the budget: {run.get('error')}.")
    entries = (run.get("ledger") or {}).get("entries") or []
    cut = sum(1 for e in entries if e.get("finish_reason") == "length")
    if cut:
        reasons.append(f"{cut} model answer(s) were cut off at the token limit before they were complete "
                       "(raise `max_tokens` of the model under [models.\"NAME\"], or use a larger model).")
    malformed = int(run.get("malformed_outputs") or 0)
    if malformed:
        reasons.append(f"{malformed} model answer(s) could not be used (malformed or incomplete edits or plan); "
                       "the answers are in the run's attempts/ directory.")
    failing = _failing_commands(run)
    if failing:
        reasons.append("Verification still fails: " + "; ".join(failing) + ".")
    findings = ((run.get("review") or {}).get("findings")) or []
    if findings and not failing:
        reasons.append(f"Reviewers raised {len(findings)} finding(s) the implementer did not resolve (below).")
    error = run.get("error")
    if error and run.get("error_kind") != "budget":
        reasons.append(f"{str(error)[:1].upper()}{str(error)[1:]}.")
    return reasons or [f"The run ended with status {status}."]


def take_commands(run: Mapping[str, Any]) -> list[str]:
    """The git commands to look at the run's branch and to take it (empty without base and branch)."""
    base, branch, repo = run.get("base"), run.get("branch"), run.get("repo")
    if not base or not branch:
        return []
    git = f"git -C {repo}" if repo else "git"
    short = str(base)[:12]
    return [f"{git} diff {short}...{branch}", f"{git} merge {branch}", f"{git} cherry-pick {short}..{branch}"]


def _outcome_md(run: Mapping[str, Any]) -> list[str]:
    parts: list[str] = []
    reasons = why_failed(run)
    if reasons:
        parts += ["", "## Why it did not succeed", ""] + [f"- {_md_text(r)}" for r in reasons]
    results = run.get("verify_results")
    if results is not None:
        parts += ["", "## Verify", ""]
        if not results:
            parts.append("No verification commands (nothing could fail a wrong change).")
        for r in results:
            ok = r.get("exit_code") == 0 and not r.get("timed_out")
            mark = "passed" if ok else "timed out" if r.get("timed_out") else f"failed (exit {r.get('exit_code')})"
            parts.append(f"- `{_md_text(str(r.get('command')))}`: {mark}")
            parts += [f"  - FAILED `{_md_text(t)}`" for t in r.get("failing_tests") or []]
    review = run.get("review") or {}
    if review:
        parts += ["", "## Review findings", ""]
        findings = review.get("findings") or []
        parts += [f"- {_md_text(_finding_line(f))}" for f in findings] or ["No findings."]
        parts += [f"- reviewer {_md_text(m)} failed: {_md_text(_one_line(e))}" for m, e in
                  (review.get("errors") or {}).items()]
    generated = run.get("generated_checks")
    if isinstance(generated, Mapping):
        parts += _generated_md(generated)
    stat = run.get("diffstat")
    commands = take_commands(run)
    if stat or (commands and run.get("status") == "succeeded"):
        parts += ["", "## The change", ""]
        parts += [f"- `{_md_text(path)}` +{added} −{removed}" for path, added, removed in stat or []]
        if commands and run.get("status") == "succeeded":
            parts += ["", "Look at it and take it:", "", "```", *commands, "```"]
    return parts


def _md_text(text: str) -> str:
    return html.escape(text, quote=False)


# --------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    # Escaped so a task or model name cannot break the table or inject HTML into a rendered report.
    text = html.escape(text, quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[str]], *, numeric: bool = True) -> str:
    align = "---:" if numeric else "---"
    out = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
           "|" + "|".join("---" if i == 0 else align for i in range(len(headers))) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


SANDBOX_OFF_MD = ("> **The sandbox was OFF for this run**: the repository's and the model's commands ran with "
                  "the user's full access (--no-sandbox or `sandbox.enabled = false` in the user's config).")


def render_markdown(run: Mapping[str, Any]) -> str:
    """The report as Markdown: summary, why it failed, verify, findings, the change (and how to take it), cost
    by stage and by model, timeline, overhead."""
    parts = [f"# relay run {run.get('run_id') or ''}".rstrip(), ""]
    if run.get("sandboxed") is False:
        parts += [SANDBOX_OFF_MD, ""]
    parts += ["## Summary", "", _md_table(["", ""], [[k, v] for k, v in _summary(run)], numeric=False)]
    parts += _outcome_md(run)
    for title, key, first in (("Cost by stage", "by_stage", "stage"), ("Cost by model", "by_model", "model")):
        rows, _, _ = _cost_rows(run, key)
        parts += ["", f"## {title}", ""]
        parts.append(_md_table([first, *_COST_HEADERS[1:]], rows) if rows else "No model requests.")
    parts += ["", "## Stage timeline", ""]
    timeline = _timeline(run)
    if timeline:
        t0 = float(timeline[0]["start"])
        rows = [[str(t.get("stage")), str(t.get("model") or DASH), f"+{float(t['start']) - t0:.1f} s",
                 fmt_seconds(float(t["end"]) - float(t["start"])) if t.get("end") is not None else "running"]
                for t in timeline]
        parts.append(_md_table(["stage", "model", "start", "duration"], rows, numeric=False))
    else:
        parts.append("No stage timeline recorded.")
    parts += ["", "## Orchestration overhead", ""]
    over = overhead(run)
    if over:
        parts.append(
            f"Wall time {fmt_seconds(run.get('wall_s'))}, of which model requests {fmt_seconds(_model_s(run))}: "
            f"**{fmt_seconds(over[0])} ({over[1]:.1%})** went to relay itself, tools and verification."
        )
    else:
        parts.append("Unknown (wall or model time missing).")
    from relaycode.termsafe import clean

    return clean("\n".join(parts) + "\n")  # failing test names and findings come from the sandbox and models


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { --fg:#1f2328; --muted:#656d76; --line:#d0d7de; --bg:#ffffff; --soft:#f6f8fa; --bar:#3b6fd6; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h1 small { font-weight: 400; color: var(--muted); font-size: 14px; margin-left: 8px; }
h2 { font-size: 16px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.badge { display: inline-block; padding: 1px 10px; border-radius: 12px; font-size: 12px; font-weight: 600;
         background: #ddf4ff; color: #0969da; vertical-align: middle; }
.badge.ok { background: #dafbe1; color: #1a7f37; } .badge.bad { background: #ffebe9; color: #cf222e; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 18px 0 6px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--soft); }
.card b { display: block; font-size: 20px; } .card span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: var(--soft); font-weight: 600; font-size: 12px; color: var(--muted); }
table.kv td:first-child { color: var(--muted); width: 220px; }
table.kv td { text-align: left; white-space: normal; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; margin-top: 12px; }
.chart h3 { font-size: 13px; margin: 0 0 6px; color: var(--muted); font-weight: 600; }
.note { color: var(--muted); font-size: 12px; }
svg text { font: 12px -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--fg); }
"""

_PALETTE = ("#3b6fd6", "#e07b39", "#2e9e6b", "#b04fc2", "#c9a227", "#d1495b", "#4fb3c2", "#7a7a7a")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart(items: list[tuple[str, float]], fmt: Callable[[float], str], *, width: int = 500) -> str:
    """A horizontal bar chart as inline SVG: one labelled bar per item, value at its end."""
    if not items:
        return '<p class="note">Nothing to chart.</p>'
    label_w, value_w, bar_h, gap = 150, 90, 18, 8
    plot_w = width - label_w - value_w
    top = max((v for _, v in items), default=0) or 1
    height = len(items) * (bar_h + gap) + gap
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = max(1.0, plot_w * value / top) if value > 0 else 0
        short = label if len(label) <= 22 else label[:21] + "…"
        out.append(f'<text x="{label_w - 8}" y="{y + bar_h - 4}" text-anchor="end"><title>{_e(label)}</title>'
                   f"{_e(short)}</text>")
        out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" '
                   f'fill="{_PALETTE[i % len(_PALETTE)]}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h - 4}">{_e(fmt(value))}</text>')
    out.append("</svg>")
    return "".join(out)


def timeline_chart(timeline: list[dict[str, Any]], *, width: int = 1010) -> str:
    """The stages on a time axis (a Gantt strip) as inline SVG."""
    if not timeline:
        return '<p class="note">No stage timeline recorded.</p>'
    t0 = float(timeline[0]["start"])
    t1 = max(float(t.get("end") or t["start"]) for t in timeline)
    span = max(t1 - t0, 1e-6)
    label_w, bar_h, gap, axis_h = 150, 18, 6, 22
    plot_w = width - label_w - 20
    height = len(timeline) * (bar_h + gap) + gap + axis_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">']
    colors: dict[str, str] = {}
    for i, t in enumerate(timeline):
        stage = str(t.get("stage"))
        color = colors.setdefault(stage, _PALETTE[len(colors) % len(_PALETTE)])
        y = gap + i * (bar_h + gap)
        x = label_w + plot_w * (float(t["start"]) - t0) / span
        end = float(t["end"]) if t.get("end") is not None else t1
        w = max(2.0, plot_w * (end - float(t["start"])) / span)
        title = f"{stage} {t.get('model') or ''} {fmt_seconds(end - float(t['start']))}".strip()
        out.append(f'<text x="{label_w - 8}" y="{y + bar_h - 4}" text-anchor="end">{_e(stage)}</text>')
        out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" fill="{color}">'
                   f"<title>{_e(title)}</title></rect>")
        label = fmt_seconds(end - float(t["start"])) + (f" · {t['model']}" if t.get("model") else "")
        if x + w + 8 + 7 * len(label) <= width:  # after the bar when it fits, else before it
            out.append(f'<text x="{x + w + 6:.1f}" y="{y + bar_h - 4}" fill="#656d76">{_e(label)}</text>')
        else:
            out.append(f'<text x="{x - 6:.1f}" y="{y + bar_h - 4}" text-anchor="end" fill="#656d76">'
                       f"{_e(label)}</text>")
    axis_y = height - axis_h + 4
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#d0d7de"/>')
    for k in range(5):
        x = label_w + plot_w * k / 4
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        out.append(f'<text x="{x:.1f}" y="{axis_y + 15}" text-anchor="{anchor}" fill="#656d76">'
                   f"{_e(fmt_seconds(span * k / 4))}</text>")
    out.append("</svg>")
    return "".join(out)


def _charts(run: Mapping[str, Any]) -> str:
    stage_groups, model_groups = _groups(run, "by_stage"), _groups(run, "by_model")
    by_cost = sum(_priced(g) for _, g in stage_groups) > 0
    # With every request at $0 or unpriced, a cost chart would be empty bars: chart tokens instead.
    value: Callable[[Mapping[str, Any]], float] = _priced if by_cost else (lambda g: float(_tokens(g)))
    fmt: Callable[[float], str] = fmt_usd if by_cost else (lambda v: fmt_int(v) + " tok")
    what = "Cost" if by_cost else "Tokens (no priced cost)"
    blocks = []
    for title, groups in ((f"{what} by stage", stage_groups), (f"{what} by model", model_groups)):
        items = [(name, value(g)) for name, g in groups]
        blocks.append(f'<div class="chart"><h3>{_e(title)}</h3>{bar_chart(items, fmt)}</div>')
    return f'<div class="charts">{"".join(blocks)}</div>'


def render_html(run: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    total = _total(run)
    status = str(run.get("status") or "unknown")
    badge = "ok" if status in ("done", "passed", "success", "ok") else "bad" if status in (
        "failed", "error", "budget_exceeded", "interrupted") else ""
    over = overhead(run)
    cards = [
        ("Cost", _group_usd(total) if total else DASH),
        ("Wall time", fmt_seconds(run.get("wall_s"))),
        ("Model requests", fmt_int(total.get("requests"))),
        ("Overhead", f"{over[1]:.0%}" if over else DASH),
    ]
    sections = [
        f'<h1>relay run<small>{_e(run.get("run_id") or "")}</small> <span class="badge {badge}">{_e(status)}'
        "</span></h1>",
        '<div class="cards">' + "".join(f"<div class=\"card\"><b>{_e(v)}</b><span>{_e(k)}</span></div>"
                                        for k, v in cards) + "</div>",
        "<h2>Summary</h2>",
        _html_table(["", ""], [[k, v] for k, v in _summary(run)], "kv").replace("<thead><tr><th></th><th></th>"
                                                                                  "</tr></thead>", ""),
        "<h2>Where the cost went</h2>",
        _charts(run),
    ]
    for title, key, first in (("Cost by stage", "by_stage", "stage"), ("Cost by model", "by_model", "model")):
        rows, _, _ = _cost_rows(run, key)
        sections.append(f"<h2>{_e(title)}</h2>")
        sections.append(_html_table([first, *_COST_HEADERS[1:]], rows) if rows
                        else '<p class="note">No model requests.</p>')
    timeline = _timeline(run)
    sections.append("<h2>Stage timeline</h2>")
    sections.append(timeline_chart(timeline))
    sections.append("<h2>Orchestration overhead</h2>")
    if over:
        sections.append(
            f"<p>Wall time {_e(fmt_seconds(run.get('wall_s')))}, of which model requests "
            f"{_e(fmt_seconds(_model_s(run)))}: <b>{_e(fmt_seconds(over[0]))} ({over[1]:.1%})</b> went to relay "
            "itself, tools and verification.</p>"
        )
    else:
        sections.append('<p class="note">Unknown (wall or model time missing).</p>')
    title = f"relay run {run.get('run_id') or ''}".strip()
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body><main>{''.join(sections)}</main></body></html>\n"
    )


# --------------------------------------------------------------------------- loading a run


def load_run(run_dir: Path) -> dict[str, Any] | None:
    """A run's data from its directory (`run.json` + `ledger.json`), or None when neither exists."""
    data: dict[str, Any] = {}
    found = False
    for name in ("run.json", "ledger.json"):
        try:
            loaded = json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            continue
        found = True
        if name == "ledger.json":
            data["ledger"] = loaded
        elif isinstance(loaded, dict):
            data.update(loaded)  # read first: ledger.json, when present, wins over a "ledger" key here
    if not found:
        return None
    data.setdefault("run_id", run_dir.name)
    return {**data, **run_details(run_dir)}


def run_from_history(record: RunRecord, calls: Sequence[LedgerEntry]) -> dict[str, Any]:
    """A run's data rebuilt from the history DB, for runs whose directory is gone.

    The history has no stage boundaries, so the timeline spans each stage's
    model requests (first start to last end): tool and verify time is missing.
    """
    from relaycode.ledger import Ledger

    spans: dict[str, dict[str, Any]] = {}
    for call in calls:
        item = spans.setdefault(call.stage, {"stage": call.stage, "start": call.started_at,
                                             "end": call.started_at + call.seconds, "model": call.model})
        item["start"] = min(item["start"], call.started_at)
        item["end"] = max(item["end"], call.started_at + call.seconds)
        if item["model"] != call.model:
            item["model"] = "several"
    return {
        "run_id": record.run_id, "status": record.status, "task": record.task, "repo": record.repo,
        "config": record.config_name, "started_at": record.started_at, "wall_s": record.wall_s,
        "model_s": record.model_s, "ledger": Ledger(calls).to_dict(), "timeline": list(spans.values()),
    }
