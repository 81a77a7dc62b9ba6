"""Reports: summary numbers, markdown tables, Pareto front, PNG/HTML written; estimates labelled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relaycode.bench.report import pareto_front, render_markdown, summarise, write_reports


def rec(case: str, config: str, passed: bool, usd: str, cpu: float, tokens: tuple[int, int] = (1000, 100)) -> dict[str, Any]:
    return {
        "case": case, "config": config, "suite": "t", "passed": passed, "usd": usd, "status": "succeeded",
        "cpu_s": {"total": cpu}, "wall_s": cpu, "model_s": cpu / 2, "relay_version": "0.1.0", "relay_commit": "abc",
        "stages": {"implement": {"requests": 1, "input_tokens": tokens[0], "output_tokens": tokens[1]}},
        "requests": [{"stage": "implement", "input_tokens": tokens[0], "output_tokens": tokens[1], "usd": usd}],
    }


def local_records() -> list[dict[str, Any]]:
    out = []
    for i in range(4):
        out.append(rec(f"c{i}", "solo-local", i < 2, "0", 10.0))
        out.append(rec(f"c{i}", "local", i < 3, "0", 30.0))
        out.append(rec(f"c{i}", "local-cascade", i < 1, "0", 40.0))
    return out


def test_pareto_front() -> None:
    points = {"a": (1.0, 0.5), "b": (2.0, 0.7), "c": (3.0, 0.6), "d": (2.0, 0.7), "e": (0.5, 0.1)}
    assert pareto_front(points) == ["e", "a", "b", "d"]  # c is beaten by b (cheaper and better)


def test_zero_cost_configs_use_compute_axis_and_the_report_says_so(tmp_path: Path) -> None:
    records = local_records()
    summary = summarise(records)
    assert summary["x_axis"] == "compute"
    assert list(summary["configs"]) == ["solo-local", "local", "local-cascade"]
    assert summary["configs"]["local"]["passed"] == 3 and summary["configs"]["local"]["compute_s_mean"] == 30
    assert summary["oracle"]["chosen"] == {"c0": "solo-local", "c1": "solo-local", "c2": "local", "c3": None}
    assert [(p["a"], p["b"], p["a_only"], p["b_only"]) for p in summary["paired"]] == [
        ("solo-local", "local", 0, 1), ("solo-local", "local-cascade", 1, 0), ("local", "local-cascade", 2, 0)]
    md = render_markdown(summary)
    assert "| local | 4 | 3 | 75.0% | 30.1–95.4% | 0.0% | $0 |" in md  # no iterations recorded: not first
    assert "## Repeats" not in md
    assert "$0 configs run on local models" in md and "ESTIMATE" not in md
    paths = write_reports(tmp_path, records)
    assert [p.name for p in paths] == ["summary.json", "report.md", "pareto.png", "pareto.html"]
    assert json.loads((tmp_path / "summary.json").read_text())["configs"]["local"]["n"] == 4
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "pareto.html").read_text()
    assert "data:image/png;base64," in page and "CPU seconds" in page and "local-cascade" in page


def test_price_as_writes_labelled_estimates_beside_the_measured_report(tmp_path: Path) -> None:
    records = local_records()
    write_reports(tmp_path, records)
    measured = (tmp_path / "report.md").read_text()
    paths = write_reports(tmp_path, records, {"implement": "google:gemini-2.5-flash"})
    assert [p.name for p in paths] == ["summary-estimate.json", "report-estimate.md", "pareto-estimate.png",
                                       "pareto-estimate.html"]
    assert (tmp_path / "report.md").read_text() == measured
    summary = json.loads((tmp_path / "summary-estimate.json").read_text())
    assert summary["estimate"] and summary["x_axis"] == "usd"
    # 1000 in at $0.30/M + 100 out at $2.50/M = $0.00055 per case
    assert summary["configs"]["local"]["usd_per_case"] == 0.00055
    assert summary["configs"]["local"]["usd_measured_total"] == 0.0
    md = (tmp_path / "report-estimate.md").read_text()
    assert md.startswith("# relay bench report (ESTIMATE)") and "priced as implement=google:gemini-2.5-flash" in md
    assert "ESTIMATE" in (tmp_path / "pareto-estimate.html").read_text()


def test_by_verification_signal_splits_cases_the_run_could_check() -> None:
    records = local_records()
    for r in records:  # c0, c1: doc examples pinned; c2: a linter only; c3: nothing at all
        r["verify_checks"] = {"c0": ["relay:doc-examples"], "c1": ["python -m pytest -q"],
                              "c2": ["ruff check ."], "c3": []}[r["case"]]
    summary = summarise(records)
    assert summary["by_checks"]["local"] == {"checked": [2, 2], "unchecked": [2, 1]}
    assert summary["by_checks"]["local-cascade"] == {"checked": [2, 1], "unchecked": [2, 0]}
    md = render_markdown(summary)
    assert "## By verification signal" in md and "| local | 2/2 | 1/2 |" in md
    older = summarise(local_records())  # records from before the field: no section, no guess
    assert older["by_checks"] == {} and "By verification signal" not in render_markdown(older)


def test_repeats_get_a_mean_with_a_bootstrap_interval_and_first_attempts_beside_the_loop() -> None:
    records = []
    for k in range(3):
        for i in range(4):
            r = rec(f"c{i}", "local", i < 2 + (k == 1), "0", 30.0)  # passes 2, 3, 2 of 4
            r.update(repeat=k, iterations=1 if i == 0 else 2)
            records.append(r)
    summary = summarise(records)
    c = summary["configs"]["local"]
    assert c["repeats"] == 3 and c["passed_by_repeat"] == {"0": [2, 4], "1": [3, 4], "2": [2, 4]}
    assert c["mean_pass_rate"] == (0.5 + 0.75 + 0.5) / 3 and c["first_attempt_pass_rate"] == 0.25
    lo, hi = c["mean_ci95"]
    assert 0 <= lo < c["mean_pass_rate"] < hi <= 1
    assert summary["oracle"]["n"] == 12 and "c2#r1" in summary["oracle"]["chosen"]
    md = render_markdown(summary)
    assert "## Repeats" in md and "| local | 3 | 2/4, 3/4, 2/4 | 58.3% |" in md
