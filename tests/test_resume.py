"""Kill relay with SIGKILL at every event of a run, then resume it.

After each kill: the user's checkout is byte-identical, the run files parse,
and `--resume` finishes the run without paying again for stages that had
completed (the planner is never asked twice once its plan was saved).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from relaycode.testing.sample_repos import make_demo_repo
from relaycode.testing.sample_repos import snapshot_checkout as snapshot

DRIVER = textwrap.dedent('''
    import json, os, signal, sys
    from pathlib import Path
    from relaycode.config import config_from_dict
    from relaycode.pipeline import RunOptions, run_task
    from relaycode.testing.sample_repos import PAGINATION_TASK as DEMO_TASK
    from relaycode.testing.scripted import scripted_output, scripted_text

    repo, run_id, kill_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    for var in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY"):
        os.environ[var] = "test-key"
    plan = {"goal": "fix pagination", "files": ["shop/pagination.py"], "steps": ["use (page - 1)"],
            "acceptance": ["tests pass"]}
    wrong = "shop/pagination.py\\n<<<<<<< SEARCH\\n    start = page * per_page\\n=======\\n    start = page * per_page - 1\\n>>>>>>> REPLACE\\n"
    good = "shop/pagination.py\\n<<<<<<< SEARCH\\n    start = page * per_page - 1\\n=======\\n    start = (page - 1) * per_page\\n>>>>>>> REPLACE\\n"
    good0 = good.replace("per_page - 1\\n=", "per_page\\n=")
    implementer = scripted_text([wrong, good, good0], usage=(500, 40))
    reviewer = scripted_output([{"findings": []}], usage=(300, 10))
    cfg = config_from_dict({"stages": {
        "plan": {"model": "anthropic:claude-opus-4-5"},
        "implement": {"model": "google:gemini-2.5-flash", "max_steps": 2},
        "review": {"models": ["openai:gpt-5-mini"]},
        "verify": {"commands": ["python -m pytest -q"], "timeout_s": 60}}})
    seen = 0

    def on_event(event):
        global seen
        seen += 1
        if seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    result = run_task(RunOptions(repo=Path(repo), task=DEMO_TASK, config=cfg, run_id=run_id, resume=resume,
                                 model_overrides={"anthropic:claude-opus-4-5": scripted_output([plan]),
                                                  "google:gemini-2.5-flash": implementer,
                                                  "openai:gpt-5-mini": reviewer},
                                 on_event=on_event, history=False))
    print(json.dumps({"status": result.status, "error": result.error}))
''')


def drive(tmp_path: Path, repo: Path, run_id: str, kill_at: int, resume: bool) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run([sys.executable, str(script), str(repo), run_id, str(kill_at), "1" if resume else "0"],
                          capture_output=True, text=True, env=env, timeout=300)


def runs_dir(repo: Path) -> Path:
    return repo / ".git" / "relay" / "runs"


def count_events(tmp_path: Path) -> int:
    repo = make_demo_repo(tmp_path / "full", bug="pagination")
    done = drive(tmp_path, repo, "full", 0, False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    return len((runs_dir(repo) / "full" / "events.jsonl").read_text().splitlines())


@pytest.fixture(scope="module")
def total_events(tmp_path_factory: pytest.TempPathFactory) -> int:
    return count_events(tmp_path_factory.mktemp("count"))


# A complete run emits ~23 events (run/stage boundaries, model calls, commands) over
# plan, two implement/verify rounds and a review: kill after each of them in turn.
@pytest.mark.parametrize("kill_at", range(1, 27))
def test_sigkill_then_resume(tmp_path: Path, kill_at: int, total_events: int) -> None:
    if kill_at >= total_events:
        pytest.skip(f"the run has only {total_events} events")
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    before = snapshot(repo)
    killed = drive(tmp_path, repo, "r1", kill_at, False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(repo) == before
    run_dir = runs_dir(repo) / "r1"
    for name in ("state.json", "ledger.json"):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())  # never torn: written atomically
    planned_before = json.loads((run_dir / "state.json").read_text()).get("planned", False)
    resumed = drive(tmp_path, repo, "r1", 0, True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded", resumed.stdout
    assert snapshot(repo) == before
    ledger = json.loads((run_dir / "ledger.json").read_text())
    plan_calls = [e for e in ledger["entries"] if e["stage"] == "plan"]
    assert len(plan_calls) == 1 if planned_before else len(plan_calls) <= 2
    branch = subprocess.run(["git", "show", "relay/r1:shop/pagination.py"], cwd=repo, capture_output=True,
                            text=True, check=True).stdout
    assert "(page - 1) * per_page" in branch
