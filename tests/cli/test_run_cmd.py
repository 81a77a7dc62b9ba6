"""`relay run` as a person meets it: interruption, resume, and what the end of a run says."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from relaycode.testing.sample_repos import PAGINATION_FIX as GOOD_FIX
from relaycode.testing.sample_repos import PAGINATION_TASK as TASK
from relaycode.testing.sample_repos import PAGINATION_WRONG_FIX as WRONG_FIX
from relaycode.testing.scripted import scripted_output, scripted_text

from .helpers import CHEAP, RELAY_TOML, REVIEWER, Relay, demo_repo, interrupting_model


def _state(repo: Path, run_id: str) -> dict:
    return json.loads((repo / ".git" / "relay" / "runs" / run_id / "state.json").read_text())


def _interrupted_run(relay: Relay, repo: Path) -> str:
    """Start a run that Ctrl-C stops in its first model call; return its id."""
    relay.models = {CHEAP: interrupting_model()}
    stopped = relay("run", TASK, "--repo", str(repo), "--yes")
    assert stopped.exit_code == 130, stopped.output
    match = re.search(r"relay run --resume (\S+) --repo (\S+)", stopped.stderr)
    assert match and match[2] == str(repo), stopped.stderr
    return match[1]


def test_ctrl_c_exits_130_prints_the_resume_command_and_resume_finishes(tmp_path: Path, relay: Relay) -> None:
    repo = demo_repo(tmp_path / "shop")
    r1 = _interrupted_run(relay, repo)
    assert _state(repo, r1)["status"] == "interrupted"

    relay.models = {CHEAP: scripted_text([GOOD_FIX])}
    resumed = relay("run", "--resume", r1, "--repo", str(repo), "--yes", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["status"] == "succeeded"


def test_resume_continues_with_the_config_the_run_started_with(tmp_path: Path, relay: Relay) -> None:
    repo = demo_repo(tmp_path / "shop")
    r1 = _interrupted_run(relay, repo)
    # The repository's config changes meanwhile: the run still resumes with the one it started with.
    (repo / "relay.toml").write_text('[stages.implement]\nmodel = "anthropic:claude-sonnet-4-5"\n')
    relay.models = {CHEAP: scripted_text([GOOD_FIX])}
    resumed = relay("run", "--resume", r1, "--repo", str(repo), "--yes", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["models_used"] == [CHEAP]


def test_resume_with_a_different_preset_is_a_one_line_usage_error(tmp_path: Path, relay: Relay) -> None:
    repo = demo_repo(tmp_path / "shop")
    r1 = _interrupted_run(relay, repo)
    refused = relay("run", "--resume", r1, "--repo", str(repo), "--yes", "--preset", "smoke")
    assert refused.exit_code == 2, refused.output
    assert "--preset smoke" in refused.stderr and r1 in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert _state(repo, r1)["status"] == "interrupted"  # nothing ran


def test_missing_local_models_are_found_before_anything_is_created(tmp_path: Path, relay: Relay,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_HOME", str(tmp_path / "empty-home"))  # no runtime, no model
    repo = demo_repo(tmp_path / "shop")
    relay.models = {}
    refused = relay("run", TASK, "--repo", str(repo), "--yes", "--preset", "smoke")
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.strip().splitlines() == [
        "relay: error: the local runtime (llama-server) and local model smollm2-135m are not installed: "
        "run `relay local setup --preset smoke`"]
    assert not (repo / ".git" / "relay").exists()
    branches = subprocess.run(["git", "branch", "--list", "relay/*"], cwd=repo, capture_output=True, text=True)
    assert branches.stdout == ""


@pytest.mark.parametrize("damage", ["not a database", "newer schema"])
def test_an_unusable_history_is_one_line_before_anything_is_created(tmp_path: Path, relay: Relay,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    damage: str) -> None:
    import sqlite3

    db = tmp_path / "history.db"
    if damage == "not a database":
        db.write_bytes(b"this is not SQLite" * 100)
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA user_version = 999")
    monkeypatch.setenv("RELAY_HISTORY_DB", str(db))
    repo = demo_repo(tmp_path / "shop")
    relay.models = {CHEAP: scripted_text([GOOD_FIX])}
    refused = relay("run", TASK, "--repo", str(repo), "--yes")
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"relay: error: {db}:"), refused.stderr
    assert not (repo / ".git" / "relay").exists()
    assert "relay/" not in subprocess.run(["git", "branch"], cwd=repo, capture_output=True, text=True).stdout


# ---------------------------------------------------------------- what the end of a run says


def _report(result_stderr: str) -> str:
    match = re.search(r"report: (\S+report\.md)", result_stderr)
    assert match, result_stderr
    return Path(match[1]).read_text()


def test_an_answer_cut_off_at_the_token_limit_is_named_as_the_reason(tmp_path: Path, relay: Relay) -> None:
    repo = demo_repo(tmp_path / "shop", "max_iterations = 1\n" + RELAY_TOML)
    runaway = "shop/pagination.py\n```python\n" + "def paginate(items, page, per_page):\n" * 40
    relay.models = {CHEAP: scripted_text([runaway], usage=(800, 768), cut_off={0})}
    result = relay("run", TASK, "--repo", str(repo), "--yes")
    assert result.exit_code == 1, result.output
    assert "cut off at the token limit" in result.stderr
    report = _report(result.stderr)
    assert "## Why it did not succeed" in report and "cut off at the token limit" in report
    assert "| Verify | not run: no attempt changed a file |" in report


def test_a_run_stopped_by_findings_shows_their_text(tmp_path: Path, relay: Relay) -> None:
    toml = RELAY_TOML.replace("[stages.verify]", f'[stages.review]\nmodels = ["{REVIEWER}"]\n[stages.verify]')
    repo = demo_repo(tmp_path / "shop", "max_iterations = 1\n" + toml)
    blocker = {"findings": [{"line": 15, "severity": "blocker", "category": "bug",
                             "message": "page zero must be rejected here too", "suggestion": ""}]}
    relay.models = {CHEAP: scripted_text([GOOD_FIX]), REVIEWER: scripted_output([blocker])}
    result = relay("run", TASK, "--repo", str(repo), "--yes")
    assert result.exit_code == 1, result.output
    assert "page zero must be rejected here too" in result.stderr, result.stderr
    report = _report(result.stderr)
    assert "## Review findings" in report and "[blocker] page zero must be rejected here too" in report
    assert "## Verify" in report and "passed" in report


def test_a_run_whose_tests_still_fail_names_them(tmp_path: Path, relay: Relay) -> None:
    repo = demo_repo(tmp_path / "shop", "max_iterations = 1\n" + RELAY_TOML)
    relay.models = {CHEAP: scripted_text([WRONG_FIX])}
    result = relay("run", TASK, "--repo", str(repo), "--yes")
    assert result.exit_code == 1, result.output
    assert "Verification still fails" in result.stderr and "test_first_page_starts_at_first_item" in result.stderr
    report = _report(result.stderr)
    assert "FAILED `tests/test_pagination.py::test_first_page_starts_at_first_item`" in report
    assert "Verify | failed" in report


def test_a_success_shows_the_change_and_how_to_take_it(tmp_path: Path, relay: Relay) -> None:
    repo = demo_repo(tmp_path / "shop")
    relay.models = {CHEAP: scripted_text([GOOD_FIX])}
    result = relay("run", TASK, "--repo", str(repo), "--yes")
    assert result.exit_code == 0, result.output
    branch = re.search(r"branch (relay/\S+)", result.stderr)
    assert branch, result.stderr
    assert "shop/pagination.py  +1 -1" in result.stderr
    assert f"git -C {repo} merge {branch[1]}" in result.stderr
    report = _report(result.stderr)
    assert f"git -C {repo} cherry-pick" in report and "`shop/pagination.py` +1 −1" in report


def test_resume_is_sandboxed_unless_no_sandbox_is_said_again(tmp_path: Path, relay: Relay) -> None:
    from relaycode.cli.run_cmd import resume_config

    repo = demo_repo(tmp_path / "shop")
    relay.models = {CHEAP: interrupting_model()}
    stopped = relay("run", TASK, "--repo", str(repo), "--yes", "--no-sandbox")
    assert stopped.exit_code == 130, stopped.output
    run_id = re.search(r"--resume (\S+)", stopped.stderr)[1]  # type: ignore[index]
    assert _state(repo, run_id)["config"]["sandbox"]["enabled"] is False
    assert resume_config(repo, run_id, None, None).sandbox.enabled is True
    # Naming the config the run started with (the repository's relay.toml) is not a different one.
    assert resume_config(repo, run_id, repo / "relay.toml", None).stages.implement.model == CHEAP
