"""Implement, second protocol: an agentic action loop for models that are good at it.

The model works in steps. Each step is one model request that asks for actions:
read_file(path), search(pattern, path), edit(path, search, replace), run(command) and
finish(summary). relay executes each action and answers with its observation (truncated
to a bound). API models act through native tool calls (pydantic-ai tools on the agent that
`ModelSession.run_tools` runs); local and self-hosted models answer one JSON action per step,
constrained by a JSON schema (`ModelSession.ask` with the model's structured-output mode).

Every path goes through the worktree's path-safety layer, edits use `edits.apply_edits` and
are refused when they break Python syntax, commands run in the sandbox with the run's policy.
Exits and limits are exceptions that carry their message (`Finished`, `StepLimitExceeded`,
`TokenLimitExceeded`, `WallTimeExceeded`), caught once in `agent_implement` and recorded in
the same `ImplementOutcome` the edit-block protocol returns: the pipeline does not care
which protocol ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, get_args

from pydantic import BaseModel, Field, ValidationError
from pydantic_ai import ModelRetry, Tool, capture_run_messages
from pydantic_ai import exceptions as pai_exc
from pydantic_ai.messages import ModelMessage, RetryFeedbackPart, ToolReturnPart
from pydantic_ai.output import ToolOutput
from pydantic_ai.usage import RunUsage, UsageLimits

from relaycode import sandbox
from relaycode.edits import Edit, apply_edits
from relaycode.errors import EditError, PathEscape, ProviderError
from relaycode.stages.implement import ImplementOutcome, check_syntax
from relaycode.stages.verify import tool_env
from relaycode.workspace import safe_path

if TYPE_CHECKING:
    from relaycode.models import ResolvedModel
    from relaycode.session import ModelSession, RequestOptions
    from relaycode.stages.attempt import Attempt
    from relaycode.stages.plan import Plan
    from relaycode.workspace import FileTree

EventSink = Callable[..., None]
"""`emit(kind, **data)`: where the loop reports each tool call (the pipeline's events.jsonl)."""

OBSERVATION_CHARS = 6000  # one observation; a whole small file fits, a huge log does not
SEARCH_MAX_HITS = 50
READ_MAX_BYTES = 256 * 1024

INSTRUCTIONS = """You are the implementer of a coding pipeline. Change the repository so the task is done.
Work in small steps: read the files you need, search for names, edit, run the tests, and finish with a
one-line summary when the change is complete. Paths are relative to the repository root.
edit replaces the exact text `search` (copy it exactly, with indentation; a few lines that occur once)
by `replace`; an empty `search` writes `replace` as the whole file. Change only what the task needs and
never change test files unless the task asks for it."""

JSON_INSTRUCTIONS = INSTRUCTIONS + """
Answer each step with exactly one JSON object: {"thought": "<one short sentence>", "action": {...}} where
action is one of {"action": "read_file", "path": ...}, {"action": "search", "pattern": ..., "path": null},
{"action": "edit", "path": ..., "search": ..., "replace": ...}, {"action": "run", "command": ...},
{"action": "finish", "summary": ...}. The next message is the result of the action."""


# ---------------------------------------------------------------- exits: exceptions that carry their message


class LoopExit(Exception):
    """Ends the loop: a finish or a limit. Exits, not errors: caught once, in `agent_implement`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Finished(LoopExit):
    """The model called finish; the message is its summary."""


class StepLimitExceeded(LoopExit): ...


class TokenLimitExceeded(LoopExit): ...


class WallTimeExceeded(LoopExit): ...


# ---------------------------------------------------------------- actions: the JSON schema and the tools' schemas

_PATH = "path relative to the repository root"


class ReadFile(BaseModel):
    """Read a file of the repository."""

    action: Literal["read_file"]
    path: str = Field(description=_PATH)


class Search(BaseModel):
    """Search the files for a regular expression (plain text if it is not one); matching lines come back."""

    action: Literal["search"]
    pattern: str
    path: str | None = Field(default=None, description="only this file or directory")


class EditFile(BaseModel):
    """Replace the exact text `search` (it must occur once) in a file by `replace`; empty `search` writes the whole file."""

    action: Literal["edit"]
    path: str = Field(description=_PATH)
    search: str
    replace: str


class Run(BaseModel):
    """Run a shell command in the repository (sandboxed, no network); its exit code and output tail come back."""

    action: Literal["run"]
    command: str = Field(description="e.g. python -m pytest -q")


class Finish(BaseModel):
    """Call when the change is complete."""

    action: Literal["finish"]
    summary: str = Field(description="one line: what was changed")


Action = Annotated[ReadFile | Search | EditFile | Run | Finish, Field(discriminator="action")]
ToolAction = ReadFile | Search | EditFile | Run


class Step(BaseModel):
    """One step of the JSON-action protocol."""

    thought: str = ""
    action: Action


def truncate(text: str, limit: int = OBSERVATION_CHARS) -> str:
    """Head and tail of `text` within `limit` characters: a file's start and a log's end both survive."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-(limit - head):]}"


@dataclass
class Actions:
    """Executes actions on one worktree and records them: transcript, malformed count, events."""

    worktree: FileTree
    policy: sandbox.SandboxPolicy
    limits: sandbox.Limits
    outcome: ImplementOutcome
    deadline: float
    on_event: EventSink | None = None
    observation_chars: int = OBSERVATION_CHARS
    edited: set[str] = field(default_factory=set)
    venv: Path | None = None
    """The project's own environment (verify's `project_env`): its tools first on PATH, as in verify."""

    def execute(self, action: ToolAction) -> str:
        t0 = time.perf_counter()
        data: dict[str, Any] = {}
        try:
            observation = getattr(self, "_" + action.action)(action, data)
        except (PathEscape, EditError) as exc:
            # A refused action is the model's mistake, like a malformed edit block: counted, and reported back.
            self.outcome.malformed += 1
            data["refused"] = True
            observation = f"Refused: {exc.message}"
        except (OSError, UnicodeDecodeError) as exc:  # the file system's answer, not a crash of the run
            observation = f"Failed: {exc}"
        observation = truncate(observation, self.observation_chars)
        args = action.model_dump(exclude={"action", "search", "replace"})
        self.outcome.answers.append(f"step {self.outcome.turns}: {action.action} {args}\n\n{observation}")
        if self.on_event is not None:
            self.on_event("tool_call", step=self.outcome.turns, tool=action.action,
                          args={k: str(v)[:200] for k, v in args.items()},
                          seconds=round(time.perf_counter() - t0, 3), **data)
        return observation

    def _rel(self, path: str) -> str:
        """The normalised repository path of a model-given path; PathEscape when it leaves the worktree."""
        return safe_path(self.worktree.root, path).relative_to(self.worktree.root.resolve()).as_posix()

    def _read_file(self, action: ReadFile, data: dict[str, Any]) -> str:
        from relaycode.pathsafety import read_text_in_root

        rel = self._rel(action.path)
        path = self.worktree.root / rel
        if not path.exists():
            return f"{action.path} does not exist."
        if path.is_file() and path.stat().st_size > READ_MAX_BYTES:  # a file a test left can be huge
            return f"{action.path} is larger than {READ_MAX_BYTES // 1024} KiB; search it instead."
        text = read_text_in_root(self.worktree.root, rel, max_bytes=READ_MAX_BYTES)
        if text is None:
            return f"{action.path} is not a regular file in the tree."
        if "\ufffd" in text and "\0" in text[:8192]:
            return f"{action.path} is not a UTF-8 text file."
        return text or "(empty file)"

    def _search(self, action: Search, data: dict[str, Any]) -> str:
        from relaycode.stages.search import SearchTimeout, search

        scope = self._rel(action.path) if action.path and action.path.strip("./") else ""
        names = [n for n in self.worktree.list_files() if not scope or n == scope or n.startswith(scope + "/")]
        try:
            hits = search(self.worktree.root, names, action.pattern, max_hits=SEARCH_MAX_HITS)
        except SearchTimeout as exc:
            return str(exc)
        data["matches"] = len(hits)
        if len(hits) > SEARCH_MAX_HITS:
            return "\n".join(hits[:SEARCH_MAX_HITS]) + f"\n(more than {SEARCH_MAX_HITS} matches; narrow the search)"
        return "\n".join(hits) or "No matches."

    def _edit(self, action: EditFile, data: dict[str, Any]) -> str:
        path = self._rel(action.path)
        current: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError):
            current[path] = self.worktree.read_text(path)
        edit = Edit(path=path, search=action.search, replace=action.replace, whole_file=not action.search.strip())
        new_files = apply_edits(current, [edit])
        check_syntax(current, new_files)
        for name, text in new_files.items():
            self.worktree.write_text(name, text)  # path-safe: open_in_root never follows a swapped symlink
        self.edited.add(path)
        return f"{'Edited' if current else 'Created'} {path}."

    def _run(self, action: Run, data: dict[str, Any]) -> str:
        # A command may not outlive the loop's wall time: the event loop is blocked while it runs.
        remaining = self.deadline - time.monotonic()
        if remaining < 1:
            return "Not run: the attempt's wall time is used up. Call finish."
        limits = dataclasses.replace(self.limits, wall_s=min(self.limits.wall_s, remaining))
        env, policy = tool_env(self.venv, self.policy)  # exactly as verify runs its commands
        done = sandbox.run(action.command, self.worktree.root, policy=policy, limits=limits, extra_env=env)
        data.update(exit_code=done.exit_code, timed_out=done.timed_out)
        status = f"exit code {done.exit_code}" + (f" (timed out after {limits.wall_s:.0f}s)" if done.timed_out else "")
        return f"{status}\n{done.output_tail}"


# ---------------------------------------------------------------- the two ways a model acts


def _tool(cls: type[ToolAction], act: Callable[[ToolAction], str]) -> Tool[None]:
    """A native tool with the action model's name, docstring and schema (without the `action` tag)."""
    name = get_args(cls.model_fields["action"].annotation)[0]
    schema = cls.model_json_schema()
    del schema["properties"]["action"]
    schema["required"].remove("action")

    async def call(**args: Any) -> str:
        try:
            action = cls(action=name, **args)
        except ValidationError as exc:  # sent back as a retry, counted as malformed
            raise ModelRetry("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        return act(action)

    # sequential: actions run one at a time, in the order the model asked for them.
    return Tool.from_schema(call, name, cls.__doc__, schema, sequential=True)


def finish(summary: str) -> str:
    """Call when the change is complete.

    Args:
        summary: one line: what was changed
    """
    return summary


def _count_retries(messages: list[ModelMessage]) -> int:
    """Answers pydantic-ai had to send back (bad tool arguments, text instead of a tool call): malformed."""
    return sum(isinstance(part, RetryFeedbackPart) or (isinstance(part, ToolReturnPart) and part.outcome == "retried")
               for message in messages for part in message.parts)


async def _native_loop(session: ModelSession, spec: str, prompt: str, actions: Actions, *, attempt: int,
                       max_steps: int, max_tokens: int | None, options: RequestOptions) -> NoReturn:
    usage = RunUsage()  # updated in place, so what was spent is known however the run ends

    def act(action: ToolAction) -> str:
        actions.outcome.turns = usage.requests
        return actions.execute(action)

    tools = [_tool(cls, act) for cls in (ReadFile, Search, EditFile, Run)]
    with capture_run_messages() as messages:
        try:
            answer = await session.run_tools(
                "implement", spec, prompt, instructions=INSTRUCTIONS, tools=tools,
                output_type=ToolOutput(finish, name="finish"), attempt=attempt, retries=max_steps,
                usage_limits=UsageLimits(request_limit=max_steps, total_tokens_limit=max_tokens), usage=usage,
                options=options)
        except pai_exc.UsageLimitExceeded:
            if max_tokens is not None and usage.total_tokens > max_tokens:
                raise TokenLimitExceeded(f"token limit: {usage.total_tokens} tokens used, the limit is "
                                         f"{max_tokens} (stages.implement.max_tokens_per_attempt)") from None
            raise StepLimitExceeded(f"step limit: {max_steps} model steps used without finishing "
                                    "(stages.implement.max_steps)") from None
        finally:
            actions.outcome.turns = usage.requests
            actions.outcome.malformed += _count_retries(messages)
    raise Finished(str(answer.output))


async def _json_loop(session: ModelSession, spec: str, prompt: str, actions: Actions, *, attempt: int,
                     max_steps: int, max_tokens: int | None, options: RequestOptions) -> NoReturn:
    outcome = actions.outcome
    first_entry = len(session.ledger.entries)
    history: list[ModelMessage] | None = None
    while True:
        used = sum(e.tokens.total for e in session.ledger.entries[first_entry:] if e.stage == "implement")
        if max_tokens is not None and used > max_tokens:
            raise TokenLimitExceeded(f"token limit: {used} tokens used, the limit is {max_tokens} "
                                     "(stages.implement.max_tokens_per_attempt)")
        if outcome.turns >= max_steps:
            raise StepLimitExceeded(f"step limit: {max_steps} model steps used without finishing "
                                    "(stages.implement.max_steps)")
        outcome.turns += 1
        try:  # no output retries: one step is one request, and a bad answer is counted here
            answer = await session.ask("implement", spec, prompt, instructions=JSON_INSTRUCTIONS, output_type=Step,
                                       attempt=attempt, history=history, output_retries=0, options=options)
        except ProviderError as exc:
            if not isinstance(exc.__cause__, pai_exc.UnexpectedModelBehavior):
                raise
            outcome.malformed += 1
            outcome.answers.append(f"step {outcome.turns}: malformed answer\n\n{exc}")
            prompt = f"That answer was not a valid action: {exc}\nAnswer with one JSON action."
            continue
        history = answer.messages
        step: Step = answer.output
        if isinstance(step.action, Finish):
            raise Finished(step.action.summary)
        prompt = actions.execute(step.action)


# ---------------------------------------------------------------- the stage


def agent_prompt(task: str, plan: Plan | None, files: dict[str, str], feedback: str | None,
                 all_files: list[str], checks: list[str] | None) -> str:
    parts = [f"# Task\n\n{task.strip()}\n"]
    if plan is not None:
        parts.append("# Plan\n\n" + plan.to_markdown().removeprefix("# Plan\n\n"))
    if feedback:
        parts.append("# Feedback on your previous attempt\n\n" + feedback.strip() + "\n")
    listing = "\n".join(all_files[:200]) + ("\n..." if len(all_files) > 200 else "")
    parts.append(f"# Repository files\n\n{listing}\n")
    for path, text in files.items():
        parts.append(f"{path}\n```\n{truncate(text).rstrip()}\n```\n")
    if checks:
        parts.append("After you finish, the pipeline runs: " + "; ".join(checks))
    return "\n".join(parts)


async def agent(session: ModelSession, spec: str, worktree: FileTree, attempt: Attempt) -> ImplementOutcome:
    """The agent strategy (`stages/strategies.py`): `agent_implement` with the attempt's data."""
    return await agent_implement(
        session, spec, worktree, task=attempt.task, plan=attempt.plan, files=list(attempt.files),
        feedback=attempt.feedback, attempt=attempt.number, max_steps=attempt.max_steps, policy=attempt.policy,
        limits=attempt.limits, max_tokens=attempt.max_tokens, max_wall_s=attempt.max_wall_s,
        on_event=attempt.on_event, venv=attempt.venv, checks=list(attempt.checks), temperature=attempt.temperature)


def uses_agent(model: ResolvedModel) -> bool:
    """Whether `model` implements with this loop: its `protocol` setting, or with "auto" its profile's."""
    return model.profile.protocol == "agent"


async def agent_implement(
    session: ModelSession,
    spec: str,
    worktree: FileTree,
    *,
    task: str,
    plan: Plan | None,
    files: list[str],
    feedback: str | None,
    attempt: int,
    max_steps: int,
    policy: sandbox.SandboxPolicy,
    limits: sandbox.Limits,
    max_tokens: int | None = None,
    max_wall_s: float = 600.0,
    on_event: EventSink | None = None,
    venv: Path | None = None,
    checks: list[str] | None = None,
    temperature: float | None = None,
) -> ImplementOutcome:
    """Run the action loop until the model finishes or a limit stops it (model errors and budgets propagate).

    `checks` are the commands the result will be verified by (the run's pinned ones), told to the model;
    `temperature` is the attempt's (None: the model's own setting)."""
    from relaycode.session import RequestOptions

    model = session.models.get(spec)
    profile = model.profile
    outcome = ImplementOutcome(model=spec)
    # Every observation stays in the conversation: a small context gets smaller ones (~3 characters a token).
    actions = Actions(worktree, policy, limits, outcome, time.monotonic() + max_wall_s, on_event,
                      observation_chars=min(OBSERVATION_CHARS, model.context_chars(1 / 8)), venv=venv)
    prompt = agent_prompt(task, plan, {path: worktree.read_text(path) for path in files}, feedback,
                          worktree.list_files(), checks)
    # Models that make reliable native tool calls act through them; the others answer JSON actions.
    loop = _native_loop if profile.output_mode == "tool" else _json_loop
    exit_: LoopExit
    try:
        async with asyncio.timeout(max_wall_s) as deadline:
            await loop(session, spec, prompt, actions, attempt=attempt, max_steps=max_steps, max_tokens=max_tokens,
                       options=RequestOptions(temperature=temperature))
    except LoopExit as exc:
        exit_ = exc
    except TimeoutError:
        if not deadline.expired():
            raise
        exit_ = WallTimeExceeded(f"wall time limit: {max_wall_s:g}s used without finishing "
                                 "(stages.implement.max_wall_s)")
    outcome.changed = sorted(actions.edited)
    outcome.last_error = None if isinstance(exit_, Finished) else exit_.message
    outcome.answers.append(f"{type(exit_).__name__}: {exit_.message}")
    if on_event is not None:
        on_event("agent_end", exit=type(exit_).__name__, message=exit_.message, steps=outcome.turns,
                 malformed=outcome.malformed, changed=outcome.changed)
    return outcome
