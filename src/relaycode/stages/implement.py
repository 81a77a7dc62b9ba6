"""Implement: the plan (or the task) and the files it names in, edits applied to the worktree out.

The text protocol works with any model, down to 0.5B local ones: the model
answers with SEARCH/REPLACE blocks (or a whole small file), `relaycode.edits`
applies them as pure functions, and a block that does not apply goes back to
the model with the closest lines, in the same conversation, up to `max_steps`
turns. Malformed answers are counted; they are a measured property of a model.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from relaycode.edits import FORMAT_HELP, Edit, apply_edits, parse_edits
from relaycode.errors import EditError, PathEscape
from relaycode.testfiles import is_test_path, task_is_about_tests

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage

    from relaycode.models import ModelProfile
    from relaycode.session import ModelSession, RequestOptions
    from relaycode.stages.attempt import Attempt
    from relaycode.stages.plan import Plan
    from relaycode.workspace import FileTree


IMPLEMENT_INSTRUCTIONS = f"""You are the implementer of a coding pipeline. Change the repository to do the task.
Answer ONLY with edit blocks, no explanations. Each block names the file on its own line, then:
<<<<<<< SEARCH
the exact lines currently in the file (copy them exactly, a few lines are enough)
=======
the new lines
>>>>>>> REPLACE

Rules: change only the lines needed for the task and leave everything else exactly as it is;
the SEARCH part must match the file exactly, including indentation; keep each block small (a few lines
around the change); use several blocks for several places; never edit test files unless the task asks for it.
{FORMAT_HELP}"""

WHOLE_FILE_INSTRUCTIONS = """You are the implementer of a coding pipeline. Change the code so the task is done.
Reply with the complete new content of each file you change: the file's path alone on one line, then the
whole file in one fenced code block. Change only what the task needs and keep every other line exactly as it
is. Never change test files unless the task asks for it. No explanations."""


@dataclass
class ImplementOutcome:
    model: str
    changed: list[str] = field(default_factory=list)
    turns: int = 0
    malformed: int = 0
    last_error: str | None = None
    answers: list[str] = field(default_factory=list)
    """Every raw answer of the model, kept in the run dir for people to read."""


CUT_OFF_FEEDBACK = ("Your answer was cut off at the answer length limit before it was complete, so nothing "
                    "was applied. Answer with only the changed code, no explanations, and do not repeat lines.")


def cut_off(messages: list[ModelMessage]) -> bool:
    """Whether the model's last answer stopped at the token limit (rather than finishing)."""
    from pydantic_ai.messages import ModelResponse

    return bool(messages) and isinstance(messages[-1], ModelResponse) and messages[-1].finish_reason == "length"


WHOLE_FILE_MAX_LINES = 300
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def _bare_fence(text: str, path: str) -> list[Edit]:
    """One fenced block and no path, when exactly one file was shown: that file's new content."""
    blocks = _FENCE.findall(text)
    return [Edit(path=path, search="", replace=blocks[0], whole_file=True)] if len(blocks) == 1 else []


def _resolve(edit: Edit, known: list[str]) -> Edit:
    """Small models drop directories from paths (`pagination.py` for `shop/pagination.py`):
    map a path that is not a file to the one known file with that name, if exactly one exists."""
    if edit.path in known:
        return edit
    matches = [k for k in known if k.endswith("/" + edit.path)]
    return replace(edit, path=matches[0]) if len(matches) == 1 else edit


def max_files_shown(profile: ModelProfile) -> int:
    """How many files the implementer is shown at most, by the model's context window.

    Every file shown is a file a small model may echo back or break: the local models (8k to 16k tokens)
    and self-hosted ones (32k assumed) keep the three they were measured with; a 128k model gets six and
    a 200k-token or larger API model a dozen. The character budget (`choose_files`' `max_chars`, also
    from the profile) still bounds what they add up to.
    """
    tokens = profile.context_tokens
    if tokens <= 32_768:
        return 3
    if tokens <= 131_072:
        return 6
    return 12


def _syntax_error(path: str, text: str) -> SyntaxError | None:
    try:
        compile(text, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return exc
    except ValueError:  # null bytes: not ours to judge
        return None
    except (RecursionError, MemoryError):  # nesting deep enough to overflow the compiler: refuse it
        return SyntaxError("nested too deeply for Python to compile", (path, 1, 0, ""))
    return None


def check_syntax(before: dict[str, str], after: dict[str, str]) -> None:
    """Refuse edits that turn a Python file that compiled into one that does not.

    Cheap, deterministic and local: the model hears about its broken answer in the same
    conversation, instead of a whole verify round (or, with no tests, nobody) finding it.
    Files that did not compile before are not judged (the task may be to fix exactly that).
    """
    problems = []
    for path, text in after.items():
        if not path.endswith(".py") or (path in before and _syntax_error(path, before[path])):
            continue
        error = _syntax_error(path, text)
        if error is not None:
            line = (error.text or "").rstrip()
            problems.append(f"- {path} line {error.lineno}: {error.msg}" + (f": `{line.strip()}`" if line else ""))
    if problems:
        raise EditError("Your change leaves Python syntax errors, so it was not applied:\n" + "\n".join(problems)
                        + "\nSend the corrected change again.")


def choose_files(all_files: list[str], plan: Plan | None, ranked: list[str], *, max_chars: int, max_files: int,
                 sizes: dict[str, int], task: str = "") -> list[str]:
    """Files to show the implementer: the plan's first, then the most relevant, within a budget of
    characters and of files (both from the model's profile: `max_files_shown`).

    Test files are left out unless the task asks to change tests: the failing tests' output is in the
    feedback already, and small models shown a test file tend to rewrite it.
    """
    wants_tests = task_is_about_tests(task)
    wanted: list[str] = []
    for path in ([*plan.files] if plan else []) + ranked:
        if path in all_files and path not in wanted and (wants_tests or not is_test_path(path)):
            wanted.append(path)
    chosen: list[str] = []
    used = 0
    for path in wanted:
        size = sizes.get(path, 0)
        if len(chosen) >= max_files or (used + size > max_chars and chosen):
            continue
        chosen.append(path)
        used += size
    return chosen


def implement_prompt(task: str, plan: Plan | None, files: dict[str, str], feedback: str | None,
                     *, whole_file: bool = False) -> str:
    parts = [f"# Task\n\n{task.strip()}\n"]
    if plan is not None:
        parts.append("# Plan\n\n" + plan.to_markdown().removeprefix("# Plan\n\n"))
    parts.append("# Files\n")
    for path, text in files.items():
        lang = "python" if path.endswith(".py") else ""
        parts.append(f"{path}\n```{lang}\n{text.rstrip()}\n```\n")
    if feedback:
        parts.append("# Feedback on your previous attempt\n\n" + feedback.strip() + "\n")
    if whole_file:
        parts.append("Reply with the path and the complete new content of each file you change.")
    else:
        parts.append("Reply with SEARCH/REPLACE edit blocks only.")
    return "\n".join(parts)


def answer_format(profile: ModelProfile, contents: dict[str, str]) -> tuple[bool, str]:
    """Whole files (the profile says so and every shown file is small enough) or SEARCH/REPLACE; its instructions."""
    whole = profile.edit_format == "whole-file" and all(
        text.count("\n") <= WHOLE_FILE_MAX_LINES for text in contents.values())
    return whole, WHOLE_FILE_INSTRUCTIONS if whole else IMPLEMENT_INSTRUCTIONS


def answer_options(profile: ModelProfile, whole: bool, shown: list[str],
                   temperature: float | None = None, seed: int | None = None) -> RequestOptions:
    """The request options of an implement answer: a grammar for whole-file answers where the server takes one."""
    from relaycode.grammar import whole_file_grammar
    from relaycode.session import RequestOptions

    grammar = whole and bool(shown) and profile.answer_grammar
    return RequestOptions(temperature=temperature, seed=seed,
                          extra_body={"grammar": whole_file_grammar(shown)} if grammar else None)


def answer_to_files(text: str, contents: dict[str, str], all_files: list[str], whole: bool,
                    worktree: FileTree) -> dict[str, str]:
    """The files an answer writes (new content of changed files only); EditError when it is malformed,
    does not apply, or breaks Python syntax. Pure apart from reading files the model edits unshown."""
    edits = [_resolve(edit, all_files) for edit in parse_edits(text)]
    if not edits and whole and len(contents) == 1:
        edits = _bare_fence(text, next(iter(contents)))
    if not edits:
        raise EditError("Your answer contained no edit blocks.\n" + FORMAT_HELP)
    current = dict(contents)
    for edit in edits:  # files the model edits without having been shown them
        if edit.path not in current:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                current[edit.path] = worktree.read_text(edit.path)
    new_files = apply_edits(current, edits)
    check_syntax(current, new_files)
    return new_files


async def edit_blocks(session: ModelSession, spec: str, worktree: FileTree, attempt: Attempt) -> ImplementOutcome:
    """The edit-block strategy (`stages/strategies.py`): `implement` with the attempt's data."""
    return await implement(session, spec, worktree, task=attempt.task, plan=attempt.plan, files=list(attempt.files),
                           feedback=attempt.feedback, attempt=attempt.number, max_steps=attempt.max_steps,
                           temperature=attempt.temperature, seed=attempt.seed)


async def implement(
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
    temperature: float | None = None,
    seed: int | None = None,
) -> ImplementOutcome:
    """Run the edit-block protocol until the edits apply or `max_steps` turns are used."""
    contents = {path: worktree.read_text(path) for path in files}
    all_files = worktree.list_files()
    outcome = ImplementOutcome(model=spec)
    profile = session.models.get(spec).profile
    whole, instructions = answer_format(profile, contents)
    options = answer_options(profile, whole, files, temperature, seed)
    prompt = implement_prompt(task, plan, contents, feedback, whole_file=whole)
    history: list[ModelMessage] | None = None
    previous: str | None = None
    while outcome.turns < max_steps:
        outcome.turns += 1
        answer = await session.ask("implement", spec, prompt, instructions=instructions,
                                   attempt=attempt, history=history, options=options)
        history = answer.messages
        outcome.answers.append(answer.output)
        if answer.output == previous:  # the same broken answer again: more turns would not help
            outcome.malformed += 1
            break
        previous = answer.output
        try:
            new_files = answer_to_files(answer.output, contents, all_files, whole, worktree)
            for path, text in new_files.items():
                worktree.write_text(path, text)  # path-safe: escapes raise PathEscape
        except (EditError, PathEscape) as exc:
            outcome.malformed += 1
            outcome.last_error = exc.message
            if cut_off(answer.messages):
                # A runaway answer (small models loop until the token limit) makes the next turn of this
                # conversation longer and just as likely to run away: on QuixBugs one such attempt took
                # 12 turns of 768 tokens. End the attempt; the next one starts a new conversation.
                outcome.last_error = CUT_OFF_FEEDBACK
                break
            prompt = exc.message
            continue
        outcome.changed = sorted(new_files)
        outcome.last_error = None
        return outcome
    return outcome
