"""Fakes of the run loop's seams, so the loop's decisions are tested in milliseconds.

    tree = DirTree(tmp_path / "tree", {"calc.py": "def add(a, b):\\n    return a - b\\n"})
    verifier = ScriptedVerifier([False, True])       # attempt 1 fails verification, attempt 2 passes
    implementer = ScriptedImplementer({"cheap": [{"calc.py": "..."}]})
    run = _Run(options, store, tree, RunState(), verifier=verifier,
               strategies=dict.fromkeys(STRATEGIES, implementer))

* `DirTree` is a run's checkout without git: real files in a directory (so real strategies can
  read and write them), commits kept in memory, diffs by difflib.
* `ScriptedVerifier` pins the checks it is given and answers each verification from a script.
* `ScriptedImplementer` is an implement strategy that writes scripted files, per model.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from relaycode.stages.implement import ImplementOutcome
from relaycode.stages.verifier import PinnedChecks
from relaycode.stages.verify import PYTEST_COMMAND, CommandResult, VerifyResult

if TYPE_CHECKING:
    from relaycode.session import ModelSession
    from relaycode.stages.attempt import Attempt
    from relaycode.workspace import FileTree

Snapshot = dict[str, str]


class DirTree:
    """A `RunTree` without git: the files live in `root`, each commit is an in-memory snapshot.

    The first snapshot (the files given) is the base commit, `"base"`. Like a git worktree,
    `reset_hard` moves the branch to a commit and `read_tree` only puts a commit's files in the tree.
    """

    def __init__(self, root: Path, files: Mapping[str, str], *, branch: str = "relay/test") -> None:
        self._root = root
        self._branch = branch
        root.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            self.write_text(rel, text)
        self.commits: dict[str, Snapshot] = {"base": self.snapshot()}
        self.head = "base"
        self.log: list[str] = []
        """Commit messages, oldest first."""

    @property
    def root(self) -> Path:
        return self._root

    @property
    def base(self) -> str:
        return "base"

    @property
    def branch(self) -> str:
        return self._branch

    def list_files(self) -> list[str]:
        found = []
        for dirpath, _dirs, names in os.walk(self._root):
            found += [os.path.relpath(os.path.join(dirpath, n), self._root) for n in names]
        return sorted(found)

    def read_text(self, rel: str) -> str:
        return (self._root / rel).read_text(encoding="utf-8")

    def write_text(self, rel: str, text: str) -> None:
        path = self._root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def snapshot(self) -> Snapshot:
        return {rel: self.read_text(rel) for rel in self.list_files()}

    def diff(self, base: str | None = None) -> str:
        """A unified diff (git's headers) of the tree against commit `base` (default: the base)."""
        before, after = self.commits[base or self.base], self.snapshot()
        out: list[str] = []
        for rel in sorted(before.keys() | after.keys()):
            old, new = before.get(rel), after.get(rel)
            if old == new:
                continue
            out.append(f"diff --git a/{rel} b/{rel}\n")
            out.append(f"--- {'a/' + rel if old is not None else '/dev/null'}\n")
            out.append(f"+++ {'b/' + rel if new is not None else '/dev/null'}\n")
            lines = difflib.unified_diff((old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True))
            out += [line if line.endswith("\n") else line + "\n" for line in list(lines)[2:]]
        return "".join(out)

    def commit(self, message: str) -> str | None:
        files = self.snapshot()
        if files == self.commits[self.head]:
            return None
        sha = hashlib.sha1(repr((self.head, message, sorted(files.items()))).encode()).hexdigest()
        self.commits[sha] = files
        self.head = sha
        self.log.append(message)
        return sha

    def reset_hard(self, sha: str) -> None:
        self.read_tree(sha)
        self.head = sha

    def read_tree(self, ref: str) -> None:
        files = self.commits[ref]
        for rel in self.list_files():
            if rel not in files:
                (self._root / rel).unlink()
        for rel, text in files.items():
            self.write_text(rel, text)


def verify_result(passed: bool, *, command: str = PYTEST_COMMAND, output: str = "") -> VerifyResult:
    """A one-command verification result; a failing one names a failing test."""
    if passed:
        return VerifyResult([CommandResult(command, 0, 0.01, output or "1 passed", False)])
    return VerifyResult([CommandResult(command, 1, 0.01, output or "FAILED tests/test_x.py::test_x", False,
                                       failing_tests=["tests/test_x.py::test_x"])])


@dataclass
class ScriptedVerifier:
    """A `Verifier` that pins `checks` and answers verification `i` with `script[i]` (the last one
    repeats). A bool stands for a one-command result that passes or fails (`verify_result`)."""

    script: Sequence[bool | VerifyResult]
    checks: PinnedChecks = field(default_factory=lambda: PinnedChecks(commands=[PYTEST_COMMAND]))
    calls: list[str | None] = field(default_factory=list)
    """Each verification's `sanity_since`, in order (the baseline's is None)."""

    def pin(self) -> PinnedChecks:
        return self.checks

    def verify(self, checks: PinnedChecks, *, sanity_since: str | None = None) -> VerifyResult:
        answer = self.script[min(len(self.calls), len(self.script) - 1)]
        self.calls.append(sanity_since)
        return verify_result(answer) if isinstance(answer, bool) else answer


@dataclass
class ScriptedImplementer:
    """An implement strategy that writes, at each attempt of model `spec`, the next of `script[spec]`
    (path → new content; the last one repeats). `attempts` records what each attempt was given."""

    script: Mapping[str, Sequence[Mapping[str, str]]]
    attempts: list[tuple[str, Attempt]] = field(default_factory=list)

    def given(self, spec: str) -> list[Attempt]:
        """The attempts `spec` made, in order."""
        return [attempt for model, attempt in self.attempts if model == spec]

    async def __call__(self, session: ModelSession, spec: str, worktree: FileTree,
                       attempt: Attempt) -> ImplementOutcome:
        answers = self.script[spec]
        files = answers[min(len(self.given(spec)), len(answers) - 1)]
        self.attempts.append((spec, attempt))
        for rel, text in files.items():
            worktree.write_text(rel, text)
        return ImplementOutcome(model=spec, changed=sorted(files), turns=1, answers=[repr(dict(files))])
