"""Finding and removing the branches and worktrees relay's runs leave in a repository.

Every run leaves a branch `relay/<run-id>` and a checkout under `<git dir>/relay/worktrees/`. Only
what relay itself made is a candidate: a `relay/<id>` branch or worktree counts only when the run's
directory `<git dir>/relay/runs/<id>/state.json` exists, and a branch checked out anywhere but in
relay's own worktree (the user's checkout, a worktree of the user's) is never touched. Run
directories (reports, ledgers) are kept: `relay runs show` still reads them.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from relaycode.errors import RelayError
from relaycode.runstore import TERMINAL_STATUSES, runs_dir_of
from relaycode.workspace import Repo, Worktree

BRANCH_PREFIX = "relay/"


@dataclass(frozen=True)
class RunLeftovers:
    """What one run left in the repository."""

    run_id: str
    status: str | None
    """From the run's state.json; None for a run killed before it recorded one."""
    branch: str | None
    """`relay/<run-id>` when the branch exists."""
    worktree: Path | None
    """relay's checkout of the run, when it exists."""
    checked_out_elsewhere: Path | None = None
    """A checkout that is not relay's own where the branch is checked out: never removed."""

    @property
    def resumable(self) -> bool:
        return self.status not in TERMINAL_STATUSES


@dataclass(frozen=True)
class Decision:
    run: RunLeftovers
    remove: bool
    reason: str


def find_leftovers(repo: Repo) -> list[RunLeftovers]:
    """relay's branches and worktrees in `repo`, one entry per run, oldest run id first."""
    runs_dir = runs_dir_of(repo.git_dir)
    worktrees_dir = repo.git_dir / "relay" / "worktrees"
    branches = {ref.removeprefix(BRANCH_PREFIX) for ref in repo.git(
        "for-each-ref", "--format=%(refname:short)", f"refs/heads/{BRANCH_PREFIX}").stdout.split()}
    checkouts = _checkouts(repo)
    ids = branches | ({p.name for p in worktrees_dir.iterdir()} if worktrees_dir.is_dir() else set())
    found: list[RunLeftovers] = []
    for run_id in sorted(ids):
        state_file = runs_dir / run_id / "state.json"
        if not state_file.is_file():
            continue  # not a run relay made here: a branch of the user's that happens to be called relay/...
        own = worktrees_dir / run_id
        branch = f"{BRANCH_PREFIX}{run_id}"
        elsewhere = next((path for path, name in checkouts if name == branch and path != own.resolve()), None)
        found.append(RunLeftovers(run_id=run_id, status=_status(state_file),
                                  branch=branch if run_id in branches else None,
                                  worktree=own if own.exists() else None, checked_out_elsewhere=elsewhere))
    return found


def decide(runs: list[RunLeftovers], *, keep: Collection[str] = (), keep_succeeded: bool = False,
           unfinished: bool = False) -> list[Decision]:
    """Which runs to remove: ended ones, except those the user keeps; unfinished (resumable) ones only
    when asked. `keep` holds run ids or unique prefixes of them."""
    out: list[Decision] = []
    for run in runs:
        if any(run.run_id.startswith(k) for k in keep):
            out.append(Decision(run, False, "kept (--keep)"))
        elif run.checked_out_elsewhere is not None:
            out.append(Decision(run, False, f"kept: {run.branch} is checked out at {run.checked_out_elsewhere}"))
        elif keep_succeeded and run.status == "succeeded":
            out.append(Decision(run, False, "kept (--keep-succeeded)"))
        elif run.resumable and not unfinished:
            out.append(Decision(run, False, f"kept: {run.status or 'unfinished'}, can be resumed (--unfinished "
                                            "removes it)"))
        else:
            out.append(Decision(run, True, run.status or "unfinished"))
    return out


def remove(repo: Repo, run: RunLeftovers) -> None:
    """Delete the run's checkout and branch (its run directory stays)."""
    if run.checked_out_elsewhere is not None:
        raise RelayError(f"{run.branch} is checked out at {run.checked_out_elsewhere}; not removing it")
    branch = run.branch or f"{BRANCH_PREFIX}{run.run_id}"
    root = run.worktree or repo.git_dir / "relay" / "worktrees" / run.run_id
    Worktree(repo=repo, root=root, branch=branch, base="").remove(keep_branch=run.branch is None)


def _status(state_file: Path) -> str | None:
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    status = state.get("status") if isinstance(state, dict) else None
    return str(status) if status else None


def _checkouts(repo: Repo) -> list[tuple[Path, str]]:
    """(path, branch) of every checkout of the repository (`git worktree list`)."""
    out: list[tuple[Path, str]] = []
    path: Path | None = None
    for line in repo.git("worktree", "list", "--porcelain").stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree ")).resolve()
        elif line.startswith("branch ") and path is not None:
            out.append((path, line.removeprefix("branch refs/heads/")))
    return out
