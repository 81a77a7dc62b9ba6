"""`relay bench` and `relay bench-report` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from relaycode.bench.results import append_record
from relaycode.cli import _register, app

from . import fakes


def invoke(*args: str):
    _register()
    return CliRunner().invoke(app, list(args))


def test_bench_refuses_a_bad_suite_before_anything(tmp_path: Path) -> None:
    suite = fakes.write_suite(tmp_path / "s.jsonl")
    with suite.open("a") as fh:
        fh.write(json.dumps({**fakes.CASES[0], "id": "tiny/x", "files": {"../evil.py": ""}}) + "\n")
    result = invoke("bench", str(suite), "--configs", "local", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert f"{suite}:4: field 'files': path '../evil.py'" in result.output
    assert not (tmp_path / "out").exists()


def test_bench_refuses_a_non_empty_out_dir(tmp_path: Path) -> None:
    suite = fakes.write_suite(tmp_path / "s.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text("")
    result = invoke("bench", str(suite), "--configs", "local", "--out", str(out), "--limit", "1")
    assert result.exit_code == 2 and "pass --resume" in result.output


def test_bench_report_re_renders_and_re_prices(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for case, passed in (("c1", True), ("c2", False)):
        append_record(out / "results.jsonl", {
            "case": case, "config": "local", "suite": "t", "passed": passed, "usd": "0", "wall_s": 3.0,
            "cpu_s": {"total": 2.0}, "stages": {"plan": {"requests": 1, "input_tokens": 1000, "output_tokens": 100}},
            "requests": [{"stage": "plan", "input_tokens": 1000, "output_tokens": 100, "usd": "0"}],
        })
    result = invoke("bench-report", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "report.md").is_file() and (out / "pareto.png").is_file()
    result = invoke("bench-report", str(out), "--price-as", "plan=anthropic:claude-opus-4-5")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary-estimate.json").read_text())
    assert summary["estimate"] and summary["configs"]["local"]["usd_per_case"] == 0.0075  # 1000×$5 + 100×$25 per M
    bad = invoke("bench-report", str(out), "--price-as", "verify=x:y")
    assert bad.exit_code == 2 and "unknown stage 'verify'" in bad.output
    empty = invoke("bench-report", str(tmp_path))
    assert empty.exit_code == 2 and "no records" in empty.output
