"""relay's typed errors.

Every error carries the message a user should read; the CLI prints it on one
line and maps the class to an exit code. Limits and early exits are exceptions
too (`BudgetExceeded`, `StepLimit`, `Stuck`), raised where they happen and
caught once, in the pipeline.
"""

from __future__ import annotations

from typing import Literal

#: Exit codes: 0 ok, 1 the work failed (tests still red, findings at --fail-on), 2 usage or config error,
#: 130 interrupted.
EXIT_OK = 0
EXIT_WORK_FAILED = 1
EXIT_USAGE = 2
#: Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it); a run stopped so can be resumed.
EXIT_INTERRUPTED = 130


class RelayError(Exception):
    """Base of every error relay raises on purpose."""

    exit_code: int = EXIT_WORK_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(RelayError):
    """Bad input from the user: not a git repo, an empty task, a missing file."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A config file or preset that cannot be used. The message names file, key and fix."""


ProviderErrorKind = Literal[
    "auth", "rate_limit", "context_overflow", "timeout", "connection", "server", "bad_response", "other"
]


class ProviderError(RelayError):
    """A model provider failed. `kind` says what failed, `retryable` whether a retry can help."""

    RETRYABLE: frozenset[str] = frozenset({"rate_limit", "timeout", "connection", "server", "bad_response"})

    def __init__(
        self,
        message: str,
        *,
        kind: ProviderErrorKind = "other",
        model: str = "",
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ProviderErrorKind = kind
        self.model = model
        self.status_code = status_code
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE


class MissingApiKey(UsageError):
    """A model's provider needs a key that is not set. Names the variable to set."""

    def __init__(self, model: str, variable: str) -> None:
        super().__init__(f"model {model!r} needs an API key: set the environment variable {variable}")
        self.model = model
        self.variable = variable


class LimitReached(RelayError):
    """A configured limit stopped the work. `status` is the run status it maps to."""

    status: str = "failed"


class BudgetExceeded(LimitReached):
    """The next request could cost more than what is left of a budget."""

    status = "budget_exceeded"


class StepLimit(LimitReached):
    """A loop (agent steps, fix iterations, requests, tokens, wall time) hit its limit."""

    status = "failed"


class Stuck(LimitReached):
    """An attempt changed nothing or repeated an earlier diff: more attempts would not help."""

    status = "failed"


class Aborted(RelayError):
    """The user declined the plan or interrupted the run."""

    status = "aborted"


class HistoryError(RelayError):
    """The run history database cannot be used (not a database, a newer schema). Names the file and the fix."""

    exit_code = EXIT_USAGE


class SandboxUnavailable(UsageError):
    """bubblewrap is missing and `--no-sandbox` was not given."""


class SandboxViolation(RelayError):
    """A sandboxed command did something the sandbox exists to prevent (e.g. rewrote git metadata).

    The work stops: whatever produced it is hostile or broken, and nothing it made is trusted.
    """


class SandboxRefused(UsageError):
    """A sandbox setting would expose too much of the host (e.g. mounting `/`); nothing was run."""


class PathEscape(RelayError):
    """A path given by a model resolves outside the worktree."""


class EditError(RelayError):
    """Edit blocks that could not be parsed or applied; the message is fed back to the model."""


class ScratchCopyError(RelayError):
    """The scratch copy a candidate or the generated checks run in cannot be made: the worktree is past its
    bounds, or the copy cannot be written."""
