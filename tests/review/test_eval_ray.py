"""`relay review-eval --executor ray`: the same rows and tallies as a local run, reviewed by Ray tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaycode.testing.fake_openai import FakeOpenAI

from .test_cli import NEW, OLD, invoke, server, write_config  # noqa: F401  (server is a fixture)

pytest.importorskip("ray", reason="ray is not installed (the `ray` extra: pip install 'relaycode[ray]')")

pytestmark = pytest.mark.usefixtures("allow_model_requests")


def test_review_eval_on_ray_matches_the_local_evaluation(tmp_path: Path, server: FakeOpenAI) -> None:  # noqa: F811
    suite = tmp_path / "suite.jsonl"
    cases = [
        {"id": "t/bitcount", "files": {"b.py": NEW}, "reference": {"b.py": OLD}, "bug_lines": {"b.py": [4]}},
        {"id": "t/other", "files": {"o.py": "x = 1\ny = 3\n"}, "reference": {"o.py": "x = 1\ny = 2\n"},
         "bug_lines": {"o.py": [1]}},
    ]
    suite.write_text("".join(json.dumps(c) + "\n" for c in cases))
    cfg = str(write_config(tmp_path, server))
    local = invoke("review-eval", str(suite), "--config", cfg, "--out", str(tmp_path / "local"))
    assert local.exit_code == 0, local.output
    on_ray = invoke("review-eval", str(suite), "--config", cfg, "--out", str(tmp_path / "ray"), "--executor", "ray")
    assert on_ray.exit_code == 0, on_ray.output
    assert "[2/2] t/" in on_ray.stderr and "t/bitcount: 2 reviews" in on_ray.stderr, on_ray.stderr

    def tallies(d: str) -> dict[str, dict[str, object]]:
        data = json.loads((tmp_path / d / "review_eval.json").read_text())
        assert data["cases_done"] == 2
        return {name: {k: v for k, v in s.items() if k != "seconds_per_review"} for name, s in data["summary"].items()}

    assert tallies("ray") == tallies("local")
    bad = invoke("review-eval", str(suite), "--config", cfg, "--out", str(tmp_path / "x"), "--executor", "dask")
    assert bad.exit_code == 2 and "--executor: unknown executor 'dask'" in bad.stderr
