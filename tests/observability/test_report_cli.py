"""The run report (Markdown, HTML) and the `relay costs` / `relay runs` commands."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaycode.cli import _register, app
from relaycode.cli.costs_cmd import parse_since
from relaycode.history import History
from relaycode.ledger import Ledger
from relaycode.report import model_busy_seconds, render_html, render_markdown

from .sample_run import T0, sample_ledger, sample_run

_register()
runner = CliRunner()


# ------------------------------------------------------------------ report


def test_markdown_has_every_section_and_the_numbers() -> None:
    md = render_markdown(sample_run())
    for heading in ("## Summary", "## Cost by stage", "## Cost by model", "## Stage timeline",
                    "## Orchestration overhead"):
        assert heading in md
    assert "| Cost | $0.1240 |" in md
    assert "| review | 2 | 50,000 | 4,100 | 0 | 0 | $0.0533 | 43.0% | 45.8% | 45.0 s |" in md
    # model time counts the two parallel reviewers' overlap once: 9.5 + 21 + 0.4 + 17.2 + 31 = 79.1 s
    assert "| Model time (requests in flight) | 1m 19s |" in md
    assert "48.9 s (38.2%)" in md
    assert "| verify | — | +33.5 s | 23.0 s |" in md


def test_markdown_says_loudly_when_the_sandbox_was_off() -> None:
    assert "sandbox was OFF" not in render_markdown(sample_run())
    run = {**sample_run(), "sandboxed": False}
    md = render_markdown(run)
    assert md.index("sandbox was OFF") < md.index("## Summary")


def test_markdown_escapes_the_task() -> None:
    md = render_markdown(sample_run(task="a | b <script>x</script>\nsecond line"))
    assert "a \\| b &lt;script&gt;x&lt;/script&gt; second line" in md
    assert "<script>" not in md


def test_unknown_prices_are_unknown_not_zero() -> None:
    ledger = sample_ledger()
    ledger.entries[0].usd = None
    run = sample_run(ledger=ledger.to_dict())
    md = render_markdown(run)
    assert "| Cost | ≥ $0.0828 (1 unpriced) |" in md
    assert re.search(r"\| plan \| 1 \|.*\| unknown \|", md)
    html = render_html(run)
    assert "unknown" in html and "≥ $0.0828 (1 unpriced)" in html


def test_html_is_self_contained_escaped_and_charts_cost() -> None:
    page = render_html(sample_run(task="<img src=x onerror=alert(1)>"))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "src=" not in page.replace("&lt;img src=x", "")
    assert not re.search(r"(href|src)=\"?(https?:|//)", page)  # no external assets
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<svg") == 3  # cost by stage, cost by model, timeline
    assert "Cost by stage" in page and "$0.0533" in page


def test_html_charts_tokens_when_everything_is_free() -> None:
    ledger = Ledger(sample_ledger().entries)
    for e in ledger.entries:
        e.usd = Decimal(0)
    page = render_html(sample_run(ledger=ledger.to_dict()))
    assert "Tokens (no priced cost) by stage" in page and " tok</text>" in page


def test_report_of_a_run_with_missing_pieces() -> None:
    md = render_markdown({"run_id": "r", "status": "failed"})
    assert "No model requests." in md and "No stage timeline recorded." in md and "Unknown" in md
    page = render_html({"run_id": "r"})
    assert "<svg" not in page and page.count("Nothing to chart.") == 2


def test_model_busy_seconds_merges_overlaps() -> None:
    entries = [{"started_at": 0, "seconds": 10}, {"started_at": 5, "seconds": 10}, {"started_at": 20, "seconds": 1}]
    assert model_busy_seconds(entries) == 16


# ------------------------------------------------------------------ relay costs


def test_parse_since() -> None:
    now = datetime(2025, 6, 15, 12)
    assert parse_since("7d", now) == datetime(2025, 6, 8, 12)
    assert parse_since("12h", now) == datetime(2025, 6, 15)
    assert parse_since("2025-06-01", now) == datetime(2025, 6, 1)
    assert parse_since(None, now) is None
    with pytest.raises(Exception, match="duration like 7d"):
        parse_since("last tuesday", now)


def _fill_history() -> None:
    with History.open() as h:
        h.start_run("20250615-101500-a1b2c3", repo="/home/dev/shop", task="fix pagination", config_name="api",
                    started_at=T0)
        for e in sample_ledger().entries:
            h.record_call(e)
        h.finish_run("20250615-101500-a1b2c3", status="done", ended_at=T0 + 128)
        h.start_run("20250616-090000-ffffff", repo="/home/dev/api", task="unpriced one", started_at=T0 + 86400)
        h.record_call(sample_ledger().entries[0].__class__(
            run_id="20250616-090000-ffffff", stage="implement", attempt=1, model="fake:m", provider="fake",
            tokens=sample_ledger().entries[0].tokens, usd=None, seconds=3.0, started_at=T0 + 86400))


def test_costs_table_with_totals_shares_and_unknown() -> None:
    _fill_history()
    result = runner.invoke(app, ["costs", "--by", "model"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "relay costs by model, all time" in out
    line = next(x for x in out.splitlines() if "google:gemini-2.5-pro" in x)
    assert "$0.0533" in line and "43.0%" in line
    fake = next(x for x in out.splitlines() if "fake:m" in x)
    assert fake.count("unknown") == 2 and "$0 " not in fake and "0.0%" not in fake  # cost and its share
    total = next(x for x in out.splitlines() if "total" in x)
    assert re.search(r"total\s*│\s*7\s*│\s*114,000\s*│", total) and "≥ $0.1240 (1 unpriced)" in total
    assert "no known price" in out


def test_costs_json_since_and_bad_options() -> None:
    _fill_history()
    result = runner.invoke(app, ["costs", "--by", "stage", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    stages = {g["key"]: g for g in data["groups"]}
    assert stages["review"]["usd"] == "0.0533" and stages["review"]["requests"] == 2
    assert stages["implement"]["usd"] is None and stages["implement"]["unpriced_requests"] == 1
    assert data["total"]["requests"] == 7 and data["total"]["usd"] is None
    assert data["total"]["usd_priced_part"] == "0.1240"
    since = datetime.fromtimestamp(T0 + 3600).isoformat()
    later = json.loads(runner.invoke(app, ["costs", "--since", since, "--json"]).output)
    assert later["total"]["requests"] == 1
    assert runner.invoke(app, ["costs", "--by", "week"]).exit_code == 2
    assert runner.invoke(app, ["costs", "--since", "soon"]).exit_code == 2


def test_costs_on_an_empty_history() -> None:
    result = runner.invoke(app, ["costs"])
    assert result.exit_code == 0 and "No model requests" in result.output


# ------------------------------------------------------------------ relay runs


def test_runs_lists_newest_first() -> None:
    _fill_history()
    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)
    assert [r["run_id"] for r in runs] == ["20250616-090000-ffffff", "20250615-101500-a1b2c3"]
    assert runs[1]["usd"] == "0.1240" and runs[1]["status"] == "done"
    table = runner.invoke(app, ["runs", "--limit", "1"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "ffffff" in table.output and "a1b2c3" not in table.output


def test_runs_show_prints_report_md_from_the_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "20250617-000000-abcdef"
    run_dir.mkdir()
    (run_dir / "report.md").write_text("# the report the pipeline wrote\n")
    with History.open() as h:
        h.start_run(run_dir.name, run_dir=run_dir)
    result = runner.invoke(app, ["runs", "show", "20250617"])
    assert result.exit_code == 0 and result.output == "# the report the pipeline wrote\n"


def test_runs_show_prints_no_terminal_controls_from_a_report_md(tmp_path: Path) -> None:
    # A report quotes failing tests and findings; one written by another relay (or edited since) may
    # hold them raw: `relay runs show` cleans what it prints, whichever report it is.
    run_dir = tmp_path / "20250618-000000-abcdef"
    run_dir.mkdir()
    (run_dir / "report.md").write_text("FAILED test_a\x1b]52;c;Y3VybA==\x1b\\\x1b[2J\n")
    with History.open() as h:
        h.start_run(run_dir.name, run_dir=run_dir)
    result = runner.invoke(app, ["runs", "show", "20250618"])
    assert result.exit_code == 0 and result.output == "FAILED test_a\\x1b]52;c;Y3VybA==\\x1b\\\\x1b[2J\n"


def test_runs_show_html_from_run_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "20250615-101500-a1b2c3"
    run_dir.mkdir()
    data = sample_run()
    (run_dir / "ledger.json").write_text(json.dumps(data.pop("ledger")))
    (run_dir / "run.json").write_text(json.dumps(data))
    with History.open() as h:
        h.start_run(run_dir.name, run_dir=run_dir, started_at=T0)
    out = tmp_path / "out" / "report.html"
    result = runner.invoke(app, ["runs", "show", run_dir.name, "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "2m 08s" in page and "$0.0533" in page and "pytest: 212 passed" in page


def test_runs_show_rebuilds_from_history_when_the_run_dir_is_gone(tmp_path: Path) -> None:
    _fill_history()
    result = runner.invoke(app, ["runs", "show", "20250615-101500-a1b2c3"])
    assert result.exit_code == 0, result.output
    assert "| Status | done |" in result.output and "| Cost | $0.1240 |" in result.output
    assert "| review | several |" in result.output  # the timeline spans each stage's model requests


def test_runs_show_unknown_run_is_a_usage_error() -> None:
    result = runner.invoke(app, ["runs", "show", "nope"])
    assert result.exit_code == 2 and "no run 'nope'" in result.output
