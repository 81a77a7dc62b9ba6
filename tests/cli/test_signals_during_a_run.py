"""Ctrl-C and SIGTERM sent to a real `relay run` process while a model request is in flight."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relaycode.testing.fake_openai import FakeOpenAI, Reply
from relaycode.testing.sample_repos import PAGINATION_FIX as GOOD_FIX
from relaycode.testing.sample_repos import PAGINATION_TASK as TASK

from .helpers import demo_repo

SRC = Path(__file__).resolve().parents[2] / "src"

pytestmark = pytest.mark.usefixtures("allow_model_requests")


def relay_toml(server: FakeOpenAI) -> str:
    return (f'[endpoints.fake]\nbase_url = "{server.base_url}"\n[stages.implement]\nmodel = "fake:impl"\n'
            '[stages.verify]\ncommands = ["python -m pytest -q"]\n[retry]\nmax_attempts = 1\n'
            '[models."fake:impl".price]\ninput_per_mtok = 0\noutput_per_mtok = 0\n')


def relay(repo: Path, *args: str) -> subprocess.Popen[str]:
    # The fake API is the user's own config (a repository's relay.toml may not define endpoints).
    env = {**os.environ, "PYTHONPATH": str(SRC), "TERM": "dumb", "XDG_CONFIG_HOME": str(repo.parent / "xdg")}
    # -X faulthandler: a process that does not end in time is sent SIGABRT (see `finish`), and its
    # threads' stacks say where it was stuck.
    return subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "relaycode", "run", *args,
                             "--repo", str(repo), "--yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """The process's output once it ends; a test failure with its stacks if it has not ended in `timeout` s."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"relay did not end within {timeout} s; its stacks:\n{err}\n{out}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_request_pauses_the_run_and_resume_finishes_it(tmp_path: Path, sig: int) -> None:
    with FakeOpenAI(default=lambda _r: Reply.text(GOOD_FIX)) as server:
        repo = demo_repo(tmp_path / "shop", relay_toml(server))
        (tmp_path / "xdg" / "relay").mkdir(parents=True)
        (tmp_path / "xdg" / "relay" / "config.toml").write_text(relay_toml(server))
        server.push(Reply.hang(60))  # the first implement request never answers
        proc = relay(repo, TASK)
        deadline = time.monotonic() + 60
        while not server.requests:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = finish(proc, 60)
        assert proc.returncode == 130, err
        match = re.search(r"continue it with: relay run --resume (\S+) --repo (\S+)$", err, flags=re.M)
        assert match and match[2] == str(repo), err
        state = json.loads((repo / ".git" / "relay" / "runs" / match[1] / "state.json").read_text())
        assert state["status"] == "interrupted"

        resumed = relay(repo, "--resume", match[1], "--json")
        out, err = finish(resumed, 120)
        assert resumed.returncode == 0, err
        assert json.loads(out)["status"] == "succeeded"
