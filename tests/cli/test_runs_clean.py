"""`relay runs clean`: removes the branches and worktrees of ended runs, and nothing of the user's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from relaycode.testing.sample_repos import PAGINATION_FIX as GOOD_FIX
from relaycode.testing.sample_repos import PAGINATION_TASK as TASK
from relaycode.testing.sample_repos import PAGINATION_WRONG_FIX as WRONG_FIX
from relaycode.testing.sample_repos import snapshot_checkout
from relaycode.testing.scripted import scripted_text

from .helpers import CHEAP, RELAY_TOML, Relay, demo_repo, interrupting_model


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


def start(relay: Relay, repo: Path, model: object) -> str:
    relay.models = {CHEAP: model}  # type: ignore[dict-item]
    result = relay("run", TASK, "--repo", str(repo), "--yes")
    match = re.search(r"relay/(\d{8}-\d{6}-[0-9a-f]{6})", result.stderr)
    assert match, result.stderr
    return match[1]


@pytest.fixture
def runs(tmp_path: Path, relay: Relay) -> tuple[Path, dict[str, str]]:
    """A repository with a succeeded, a failed and an interrupted run, and the user's own relay/mine branch."""
    repo = demo_repo(tmp_path / "shop", "max_iterations = 1\n" + RELAY_TOML)
    ids = {"succeeded": start(relay, repo, scripted_text([GOOD_FIX])),
           "failed": start(relay, repo, scripted_text([WRONG_FIX])),
           "interrupted": start(relay, repo, interrupting_model())}
    git(repo, "branch", "relay/mine")  # the user's, named like relay's
    (repo / "shop" / "cart.py").write_text("# the user's unstaged edit\n")
    return repo, ids


def test_dry_run_lists_and_removes_nothing(runs: tuple[Path, dict[str, str]], relay: Relay) -> None:
    repo, ids = runs
    before = branches(repo)
    result = relay("runs", "clean", "--repo", str(repo), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would remove {ids['failed']}" in result.stdout and f"would remove {ids['succeeded']}" in result.stdout
    assert f"keep    {ids['interrupted']}" in result.stdout and "relay/mine" not in result.stdout
    assert branches(repo) == before


def test_clean_removes_ended_runs_and_keeps_what_the_user_asks(runs: tuple[Path, dict[str, str]],
                                                              relay: Relay) -> None:
    repo, ids = runs
    checkout = snapshot_checkout(repo)
    result = relay("runs", "clean", "--repo", str(repo), "--keep-succeeded")
    assert result.exit_code == 0, result.output
    left = branches(repo)
    assert f"relay/{ids['failed']}" not in left
    assert {f"relay/{ids['succeeded']}", f"relay/{ids['interrupted']}", "relay/mine", "main"} <= left
    assert not (repo / ".git" / "relay" / "worktrees" / ids["failed"]).exists()
    assert (repo / ".git" / "relay" / "runs" / ids["failed"] / "report.md").is_file()  # the report stays
    assert snapshot_checkout(repo) == checkout

    again = relay("runs", "clean", "--repo", str(repo), "--unfinished", "--keep", ids["succeeded"][:17])
    assert again.exit_code == 0, again.output
    assert branches(repo) == {"main", "relay/mine", f"relay/{ids['succeeded']}"}
    assert "relay/mine" in git(repo, "branch", "--list", "relay/mine")


def test_a_run_branch_the_user_checked_out_is_never_removed(runs: tuple[Path, dict[str, str]],
                                                            relay: Relay) -> None:
    repo, ids = runs
    git(repo, "stash", "-q")
    git(repo, "worktree", "remove", "--force", str(repo / ".git" / "relay" / "worktrees" / ids["failed"]))
    git(repo, "checkout", "-q", f"relay/{ids['failed']}")
    result = relay("runs", "clean", "--repo", str(repo), "--unfinished")
    assert result.exit_code == 0, result.output
    assert f"keep    {ids['failed']}  kept: relay/{ids['failed']} is checked out at {repo.resolve()}" in result.stdout
    assert branches(repo) == {"main", "relay/mine", f"relay/{ids['failed']}"}
