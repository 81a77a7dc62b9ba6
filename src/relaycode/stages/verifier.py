"""The run loop's verifier seam: what verification means for a run (`PinnedChecks`) and what runs it.

The loop asks a `Verifier` twice over: once, on the untouched tree, which checks this run has
(`pin`), and after each attempt, what those checks say of the current tree (`verify`).
`SandboxVerifier` is the real one (the project's commands in the sandbox, plus the basic checks of
`stages/sanity.py`); `relaycode.testing.loop.ScriptedVerifier` answers from a script, so the loop's
decisions are tested without git or bubblewrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from relaycode.sandbox import Limits, SandboxPolicy
    from relaycode.stages.verify import CommandResult, VerifyResult
    from relaycode.workspace import Worktree


class PinnedChecks(BaseModel):
    """The verification fixed once per run, before any change: an attempt that deletes the tests or
    the docstrings holding the examples deletes no checks with them. Saved in `state.json`."""

    model_config = ConfigDict(frozen=True)

    commands: list[str]
    """Display names of the commands (configured, or detected on the untouched tree)."""
    venv: str | None = None
    """The project environment the commands run in (None: relay's own interpreter)."""
    doc_examples: dict[str, list[str]] | None = None
    """The project's own `>>>` examples, by file, when `relay:doc-examples` is one of the commands."""

    def venv_path(self) -> Path | None:
        return Path(self.venv) if self.venv else None

    def can_fail_a_change(self) -> bool:
        """Whether these checks can fail a wrong change (a linter alone cannot)."""
        from relaycode.stages.verify import can_fail_a_change

        return can_fail_a_change(self.commands)


class Verifier(Protocol):
    """What the run loop verifies with."""

    def pin(self) -> PinnedChecks:
        """Decide, on the untouched tree, what verification means for this run."""
        ...

    def verify(self, checks: PinnedChecks, *, sanity_since: str | None = None) -> VerifyResult:
        """Run `checks` on the current tree; with `sanity_since`, also the basic checks of the
        Python files changed since that ref."""
        ...


@dataclass(frozen=True)
class SandboxVerifier:
    """The real verifier: the run's checkout, its commands run in the sandbox."""

    worktree: Worktree
    task: str
    """The run's task: names it mentions are not required by the basic checks."""
    policy: SandboxPolicy
    limits: Limits
    configured: list[str] | None
    """`stages.verify.commands` (None: detect them)."""
    python: str | None
    """`stages.verify.python` (None: the checkout's own untracked virtualenv, if any)."""

    def pin(self) -> PinnedChecks:
        from relaycode.stages import doc_examples
        from relaycode.stages.verify import detect_commands, project_env

        commands = list(self.configured) if self.configured is not None else detect_commands(self.worktree.root)
        venv = project_env(self.worktree.repo.root, self.python)
        examples = doc_examples.collect(self.worktree.root) if doc_examples.COMMAND_NAME in commands else None
        return PinnedChecks(commands=commands, venv=str(venv) if venv else None, doc_examples=examples)

    def verify(self, checks: PinnedChecks, *, sanity_since: str | None = None) -> VerifyResult:
        from relaycode.stages.verify import run_verify

        result = run_verify(self.worktree.root, checks.commands, policy=self.policy, limits=self.limits,
                            examples=checks.doc_examples, venv=checks.venv_path())
        if sanity_since is not None:
            basic = self.sanity(sanity_since, checks.venv_path())
            if basic is not None:
                result.results.append(basic)
        return result

    def sanity(self, since: str, venv: Path | None) -> CommandResult | None:
        """Compile, import and top-level-name checks of the Python files changed since `since`."""
        from relaycode.stages.sanity import plan_checks, run_sanity

        changed_paths = [p for p in self.worktree.changed_files(since) if p.endswith(".py")]
        if not changed_paths:
            return None
        changed = {p: self.read_or_none(p) for p in changed_paths}
        before: dict[str, str | None] = {}
        for path in changed_paths:
            shown = self.worktree.git("show", f"{since}:{path}", check=False)
            before[path] = shown.stdout if shown.returncode == 0 else None
        checks = plan_checks(changed, before, self.task, lambda rel: self.read_or_none(rel) is not None)
        return run_sanity(self.worktree.root, checks, policy=self.policy, limits=self.limits, venv=venv)

    def read_or_none(self, rel: str) -> str | None:
        """A worktree file's text through the path-safety layer; None when it is missing or unreadable."""
        from relaycode.errors import PathEscape

        try:
            return self.worktree.read_text(rel)
        except (OSError, ValueError, PathEscape):
            return None
