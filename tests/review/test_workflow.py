"""The review workflow (.github/workflows/relay-review.yml) and the composite action (action.yml).

The YAML is parsed and its steps checked; then its shell steps run here, as a runner would run them,
against a fake OpenAI-compatible API and a fake GitHub: install, review to SARIF, post the review.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from relaycode.review.evaluate import unified_diff
from relaycode.testing.fake_openai import FakeOpenAI

from .fake_github import FakeGitHub
from .test_cli import NEW, OLD, flag_first_added, git, write_config

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "relay-review.yml"
ACTION = ROOT / "action.yml"

pytestmark = pytest.mark.usefixtures("allow_model_requests")


def steps(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    if "jobs" in data:
        return list(data["jobs"]["review"]["steps"])
    return list(data["runs"]["steps"])


def step(name: str) -> dict[str, Any]:
    return next(s for s in steps(WORKFLOW) if s.get("name") == name)


@pytest.mark.parametrize("path", [WORKFLOW, ACTION])
def test_relay_is_never_installed_from_a_package_index_by_name(path: Path) -> None:
    runs = [s["run"] for s in steps(path) if "run" in s]
    installs = [line for run in runs for line in run.splitlines() if "pip install" in line]
    assert installs, "no install step"
    for line in installs:
        target = line.split("pip install", 1)[1].split()
        # Only a path (quoted variable of a checkout) may follow: never a bare distribution name.
        assert all(t.startswith('"$') for t in target), line
    assert not re.search(r"pip install[^\n]*\brelaycode\b", "\n".join(runs))


def test_workflow_pins_relay_to_the_base_commit_and_keeps_expressions_out_of_scripts() -> None:
    install = step("Install relay")
    assert install["env"]["RELAY_SHA"] == "${{ github.event.pull_request.base.sha }}"
    for s in steps(WORKFLOW):
        assert "${{" not in s.get("run", ""), s  # values reach scripts through env, never pasted into them
    assert step("Upload findings to code scanning")["with"]["sarif_file"] == "relay-review.sarif"


def _shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # GitHub runs `run:` steps with `bash -e {0}`.
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _bin(tmp_path: Path, name: str, body: str) -> Path:
    bindir = tmp_path / f"bin-{name}"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return bindir


def test_the_workflow_steps_run_end_to_end_against_fake_apis(tmp_path: Path) -> None:
    server = FakeOpenAI(default=flag_first_added)
    with server, FakeGitHub(unified_diff("bitcount.py", OLD, NEW)) as gh:
        # The checkout a runner makes: the pull request's head, with origin/main as its base.
        repo = tmp_path / "checkout"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        (repo / "bitcount.py").write_text(OLD)
        # The fake API is the runner's own config (a pull request's relay.toml may not define endpoints).
        user_config = tmp_path / "xdg" / "relay" / "config.toml"
        user_config.parent.mkdir(parents=True)
        user_config.write_text(write_config(tmp_path, server).read_text())
        git(repo, "add", ".")
        git(repo, "commit", "-qm", "base")
        base = git(repo, "rev-parse", "HEAD").strip()
        git(repo, "update-ref", "refs/remotes/origin/main", base)
        git(repo, "checkout", "-qb", "feature")
        (repo / "bitcount.py").write_text(NEW)
        git(repo, "commit", "-qam", "the change under review")
        runner_temp = tmp_path / "runner-temp"
        runner_temp.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "OPENAI_"))}
        env.update(RUNNER_TEMP=str(runner_temp), TERM="dumb", XDG_CONFIG_HOME=str(tmp_path / "xdg"))

        # Install: a stand-in `python` records the pip call; the source must be the base commit's tree.
        calls = tmp_path / "pip-calls"
        fake_python = _bin(tmp_path, "python", f'echo "$@" >> "{calls}"\n')
        install = step("Install relay")
        done = _shell(install["run"], repo, {**env, **{k: str(v).replace("${{ github.event.pull_request.base.sha }}",
                                                                          base) for k, v in install["env"].items()},
                                             "PATH": f"{fake_python}:{env['PATH']}"})
        assert done.returncode == 0, done.stderr
        source = runner_temp / "relay-source"
        assert calls.read_text().split() == ["-m", "pip", "install", str(source)]
        assert (source / "bitcount.py").read_text() == OLD  # the base commit, not the pull request's head

        # The real relay from this checkout of the project stands in for the installed one.
        relay = _bin(tmp_path, "relay", f'PYTHONPATH="{ROOT / "src"}" exec "{sys.executable}" -m relaycode "$@"\n')
        step_env = {**env, "PATH": f"{relay}:{env['PATH']}", "OPENAI_API_KEY": "k", "OPENROUTER_API_KEY": "k"}
        review = step("Review the pull request's commits")
        done = _shell(review["run"], repo, {**step_env, "BASE_REF": "main"})
        assert done.returncode == 0, done.stderr
        sarif = json.loads((repo / "relay-review.sarif").read_text())
        [result] = sarif["runs"][0]["results"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "bitcount.py"

        post = step("Post a pull-request review")
        done = _shell(post["run"], repo, {**step_env, "PR": "octo/widgets#7", "GITHUB_TOKEN": "ghp_x",
                                          "GITHUB_API_URL": gh.url})
        assert done.returncode == 0, done.stderr
        [posted] = [r for r in gh.requests if r["method"] == "POST"]
        assert posted["body"]["comments"][0]["path"] == "bitcount.py"


def test_the_composite_action_installs_from_its_own_commit(tmp_path: Path) -> None:
    install, review = steps(ACTION)
    calls = tmp_path / "pip-calls"
    fake_python = _bin(tmp_path, "python", f'echo "$@" >> "{calls}"\n')
    env = {**os.environ, "PATH": f"{fake_python}:{os.environ['PATH']}", "GITHUB_ACTION_PATH": str(ROOT)}
    done = _shell(install["run"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().split() == ["-m", "pip", "install", str(ROOT)]
    assert review["env"]["RELAY_ARGS"] == "${{ inputs.args }}" and review["run"] == "relay review $RELAY_ARGS"
