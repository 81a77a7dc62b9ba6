"""Run files under `.relay/runs/<run-id>/` (by default inside the repository's git dir).

Every file is written atomically (temp file in the same directory, fsync,
rename), so a run killed at any point leaves either the old or the new
version of each file, never half of one. `events.jsonl` is append-only, one
event per line, flushed per event; a torn last line is ignored on read.
`state.json` holds what resume needs (`runstate.RunState`): which stages are done and their results.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from relaycode.atomic import atomic_write
from relaycode.errors import UsageError
from relaycode.runstate import RunState

#: Statuses a run ends with; `--resume` refuses them. "interrupted" (Ctrl-C, SIGTERM), "error" (a provider
#: or runtime failure a retry may get past) and a run killed outright (no status) continue where they stopped.
TERMINAL_STATUSES = frozenset({"succeeded", "unverified", "failed", "budget_exceeded", "aborted"})


def runs_dir_of(git_dir: Path) -> Path:
    """Where a repository's run directories live: inside its (common) git dir, never in the checkout."""
    return git_dir / "relay" / "runs"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class RunStore:
    """The directory of one run."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.run_id = run_dir.name

    @classmethod
    def create(cls, runs_dir: Path, run_id: str) -> RunStore:
        run_dir = runs_dir / run_id
        if run_dir.exists():
            raise UsageError(f"run {run_id} already exists at {run_dir}; use --resume {run_id}")
        run_dir.mkdir(parents=True)
        return cls(run_dir)

    @classmethod
    def open(cls, runs_dir: Path, run_id: str) -> RunStore:
        run_dir = runs_dir / run_id
        if not (run_dir / "state.json").is_file():
            raise UsageError(f"no run {run_id} under {runs_dir}")
        return cls(run_dir)

    def path(self, name: str) -> Path:
        return self.dir / name

    def write_text(self, name: str, text: str) -> Path:
        atomic_write(self.dir / name, text)
        return self.dir / name

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, default=str) + "\n")

    def read_json(self, name: str, default: Any = None) -> Any:
        try:
            return json.loads((self.dir / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default

    def event(self, kind: str, **data: Any) -> None:
        """Append one event to events.jsonl (model call, command, stage boundary)."""
        line = json.dumps({"t": round(time.time(), 3), "kind": kind, **data}, default=str)
        with open(self.dir / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            lines = (self.dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from a killed process
        return out

    # state: what resume needs
    def load_state(self) -> RunState:
        """The saved state (a fresh one when there is none, or it is not an object); `UsageError`
        when it holds a value of the wrong type."""
        data = self.read_json("state.json", {})
        try:
            return RunState.model_validate(data if isinstance(data, dict) else {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise UsageError(f"{self.path('state.json')}: {where}: {first['msg']}; this run cannot be resumed") \
                from None

    def save_state(self, state: RunState) -> None:
        self.write_text("state.json", state.model_dump_json(indent=2) + "\n")
