"""Checks a model writes when the repository has none: evidence for choosing a candidate, never a verdict.

When the run's pinned verification cannot fail a wrong change (no tests, no `>>>` examples: 14 of
40 QuixBugs cases, most `implement` tasks), the sampling strategy's ranking is blind: every
candidate that compiles "passes". CodeT's answer: ask a model for tests too, and prefer the
candidates that pass many of them and agree with many other candidates on which.

So, once per run (`pin`), the implementer's model is asked for a few small checks from the task and
the code it will see: one call with concrete inputs and the value it must return (a Python literal;
a bare word or sentence is taken as the string it spells, since small models write returned strings
unquoted: 28 of 34 runs of the 1.5B on the polyglot suite lost every check to that).
Local models answer under a JSON schema (their profile's structured output), so the answer is
well-formed by construction. Each check runs in the sandbox (`run_checks`: the verification's policy,
limits and venv), in its own child process with a short timeout: once on the unchanged tree (a
check that already passes there, on a bug-fix task, cannot tell a fix from no fix, so it carries no
weight; one that does not even parse is dropped) and on each candidate that passes the pinned and
basic checks. `dual_agreement` then scores each such candidate: (candidates with the same result on
the weighted checks) x (weighted checks that result passes).

What the checks can never do: make a run `succeeded` (the run's status comes from the pinned
verification alone), fail a run, or steer anything outside the sandbox. The model's text is run only
inside the sandbox (the runner there parses and evaluates it); outside, relay reads only the runner's
last report line, a bounded JSON list of known statuses, and treats anything else as every check
erroring. Like any test run, code under test could fake its own result: the worst it can do is
reorder candidates that all passed the real checks.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from relaycode import sandbox
from relaycode.errors import ProviderError
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.scratch import scratch_copy
from relaycode.stages.sanity import module_name
from relaycode.stages.verify import tool_env
from relaycode.testfiles import is_test_path

if TYPE_CHECKING:
    from relaycode.config import Config
    from relaycode.session import ModelSession
    from relaycode.workspace import FileTree

COMMAND_NAME = "relay:generated-checks"
"""The display name of the sandboxed run of the generated checks."""

MAX_CHECKS = 6
"""Checks asked for and kept at most (the schema bounds the model's answer too)."""
MAX_EXPRESSION_CHARS = 200
"""A call or an expected value longer than this is not a small check (`select` drops it)."""
CHECK_TIMEOUT_S = 5.0
"""Per check: the bugs these checks meet include functions that never return."""
MAX_SHOWN_CHARS = 12_000
"""The code shown to the model for writing checks (whole files, most relevant first)."""
MAX_SHOWN_FILES = 3

STATUSES = ("pass", "fail", "error", "timeout", "invalid", "import")
"""A check's result: returned the expected value, returned another, raised, took longer than
`CHECK_TIMEOUT_S`, is not a self-contained call and a literal (dropped at pin time), or the files did
not import. Self-contained: every name it uses is defined by the shown files, a builtin, bound inside
the expression, or named in the task (a function the task asks for may not exist yet). Small models
write calls on variables they never define (`breadth_first_search(graph, startnode)`): such a check
errors on every tree and could only waste time."""

REPORT_MARKER = "relay-generated-checks:"
"""Starts the runner's one report line (the last line of its output)."""

INSTRUCTIONS = f"""You write small checks for a coding task, before anyone changes the code.
Each check is one Python expression that calls a function (or class) defined in the shown files with
concrete inputs (`call`, e.g. `gcd(12, 18)`), and the exact value it must return once the task is done, as a
Python literal (`expected`, e.g. `6`). Every top-level name of the shown files is available: no imports.
Work the expected values out by hand from the task and the code's own documentation (docstrings, comments,
examples): the current code may be wrong, so never copy what it would return. Prefer small inputs and edge
cases. Each check must be self-contained: build every input inside the call itself (e.g.
`f([3, 1, 2], key=len)` or `g(Node("a", successors=[Node("b")]))`), never use a variable you did not define.
Write at most {MAX_CHECKS} checks, each a different call."""


class ProposedCheck(BaseModel):
    """One check as the model writes it (the JSON schema a local model's answer is constrained by).

    No `maxLength` in the schema: llama-server turns it into a bounded repetition of characters, a
    cost in grammar sampling others have reported (with it, on a loaded 2-core machine, one request
    for checks slowed from 0.6 to 0.2 tokens/s and timed out; the load was not ruled out). `select`
    drops long ones instead, and the model's token limit bounds them."""

    call: str
    """A Python expression calling the code under test (at most 200 characters)."""
    expected: str
    """The value the call must return, as a Python literal (at most 200 characters)."""


class ProposedChecks(BaseModel):
    """The model's whole answer (at most `MAX_CHECKS` items: a small bound llama-server handles well)."""

    checks: list[ProposedCheck] = Field(max_length=MAX_CHECKS)


@dataclass(frozen=True)
class GeneratedCheck:
    """One check: `call` must evaluate to the literal `expected`."""

    call: str
    expected: str

    def display(self) -> str:
        return f"{self.call} == {self.expected}"


@dataclass(frozen=True)
class GeneratedChecks:
    """The checks pinned for a run (kept in state.json and generated-checks.json)."""

    model: str
    files: tuple[str, ...]
    """The Python files shown to the model; their modules are imported for every check."""
    modules: tuple[tuple[str, str], ...]
    """(module name, import root) of each file, in the order their names are made available."""
    checks: tuple[GeneratedCheck, ...]
    baseline: tuple[str, ...]
    """Each check's status on the unchanged tree."""
    dropped: int = 0
    """Checks the model wrote that were not a self-contained call and a literal, or repeated an earlier call."""
    task_names: tuple[str, ...] = ()
    """Identifiers of the task: a check may use them even when the shown files do not define them."""

    @property
    def weighted(self) -> tuple[int, ...]:
        """Indices of the checks that count for choosing: those that did not already pass unchanged."""
        return tuple(i for i, status in enumerate(self.baseline) if status != "pass")

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "files": list(self.files), "modules": [list(m) for m in self.modules],
                "checks": [{"call": c.call, "expected": c.expected, "baseline": s, "weighted": s != "pass"}
                           for c, s in zip(self.checks, self.baseline, strict=True)],
                "dropped": self.dropped, "task_names": list(self.task_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> GeneratedChecks:
        raw_checks = data.get("checks")
        checks = [c for c in raw_checks if isinstance(c, dict)] if isinstance(raw_checks, list) else []
        files = data.get("files")
        modules = data.get("modules")
        dropped = data.get("dropped")
        names = data.get("task_names")
        return cls(model=str(data.get("model", "")),
                   files=tuple(str(f) for f in files) if isinstance(files, list) else (),
                   modules=tuple((str(m[0]), str(m[1])) for m in modules if isinstance(m, list) and len(m) == 2)
                   if isinstance(modules, list) else (),
                   checks=tuple(GeneratedCheck(str(c.get("call", "")), str(c.get("expected", ""))) for c in checks),
                   baseline=tuple(str(c.get("baseline", "error")) for c in checks),
                   dropped=dropped if isinstance(dropped, int) else 0,
                   task_names=tuple(str(n) for n in names) if isinstance(names, list) else ())


def from_state(data: object) -> GeneratedChecks | None:
    """The pinned checks saved in a run's state (None: the run has none)."""
    return GeneratedChecks.from_dict(data) if isinstance(data, dict) else None


# ---------------------------------------------------------------- when, and by which model


def wanted(config: Config, *, has_checks: bool) -> bool:
    """Whether a run generates checks: only when nothing pinned can fail a wrong change, the setting is on,
    and an implementer draws several candidates (with one answer there is nothing to choose between)."""
    from relaycode.models import resolve
    from relaycode.stages.strategies import samples_for

    impl = config.stages.implement
    return (not has_checks and impl.generate_checks
            and any(samples_for(resolve(spec, config), config) > 1 for spec in [impl.model, *impl.escalate_to]))


def checks_model(config: Config) -> str:
    """The implementer that writes the checks: the one a run without checks starts with (the strongest
    when `start_strong_without_checks` skips the cheap first attempt, else the first)."""
    impl = config.stages.implement
    return impl.escalate_to[-1] if impl.escalate_to and impl.start_strong_without_checks else impl.model


# ---------------------------------------------------------------- asking the model


def shown_files(worktree: FileTree, task: str) -> list[str]:
    """The Python files the checks are about: the most relevant to the task, test files left out."""
    from relaycode.repomap import relevant_files

    files = [f for f in worktree.list_files() if f.endswith(".py") and not is_test_path(f)]
    chosen: list[str] = []
    used = 0
    for path in relevant_files(worktree.root, files, task):
        size = _size(worktree.root / path)
        if path not in files or len(chosen) >= MAX_SHOWN_FILES or (chosen and used + size > MAX_SHOWN_CHARS):
            continue
        chosen.append(path)
        used += size
    return chosen


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def checks_prompt(task: str, contents: Mapping[str, str]) -> str:
    parts = [f"# Task\n\n{task.strip()}\n", "# Files\n"]
    parts += [f"{path}\n```python\n{text.rstrip()}\n```\n" for path, text in contents.items()]
    parts.append(f"Write up to {MAX_CHECKS} checks of what the code must do once the task is done.")
    return "\n".join(parts)


def select(proposed: Sequence[ProposedCheck]) -> tuple[list[GeneratedCheck], int]:
    """The checks worth running (stripped, non-empty, short, one per call) and how many were dropped.

    Whether a check parses is decided in the sandbox, where the runner compiles it: nothing a model
    wrote is parsed as Python outside it."""
    kept: list[GeneratedCheck] = []
    calls: set[str] = set()
    for check in proposed:
        call, expected = check.call.strip(), check.expected.strip()
        too_long = max(len(call), len(expected)) > MAX_EXPRESSION_CHARS
        if not call or not expected or too_long or call in calls or len(kept) >= MAX_CHECKS:
            continue
        calls.add(call)
        kept.append(GeneratedCheck(call, expected))
    return kept, len(proposed) - len(kept)


async def propose(session: ModelSession, spec: str, task: str, contents: Mapping[str, str], *,
                  seed: int | None) -> list[ProposedCheck]:
    """One request for checks; [] when the model's answer cannot be used (a failed request is no check).

    No output retries: the checks are optional evidence, and a local model's schema-constrained answer
    that still fails validation was cut off at its token limit, which asking again would repeat."""
    from relaycode.session import RequestOptions

    try:
        answer = await session.ask("implement", spec, checks_prompt(task, contents), instructions=INSTRUCTIONS,
                                   output_type=ProposedChecks, attempt=0, output_retries=0,
                                   options=RequestOptions(seed=seed))
    except ProviderError as exc:
        if exc.kind == "auth":
            raise
        return []
    output = answer.output
    return list(output.checks) if isinstance(output, ProposedChecks) else []


EventSink = Callable[..., None]


async def pin(session: ModelSession, spec: str, worktree: FileTree, task: str, *, policy: SandboxPolicy,
              limits: Limits, venv: Path | None, seed: int | None,
              on_event: EventSink | None = None) -> GeneratedChecks | None:
    """Ask `spec` once for checks, run them on the unchanged tree, keep those that parse.

    None when there is no Python file to check or no usable check. A `generated_checks` event says
    what was kept, how each did on the unchanged tree, and how many were dropped."""
    import asyncio

    files = shown_files(worktree, task)
    contents = {p: text for p in files if (text := _read(worktree, p)) is not None}
    if not contents:
        _emit(on_event, spec, None, "no Python file to write checks for")
        return None
    proposed = await propose(session, spec, task, contents, seed=seed)
    checks, dropped = select(proposed)
    if not checks:
        _emit(on_event, spec, None, "the model wrote no usable check")
        return None
    def exists(rel: str) -> bool:
        return (worktree.root / rel).is_file()

    modules = tuple(module_name(p, exists) for p in contents)
    task_names = tuple(sorted(set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", task))))
    draft = GeneratedChecks(model=spec, files=tuple(contents), modules=modules, checks=tuple(checks),
                            baseline=("error",) * len(checks), task_names=task_names)
    baseline = await asyncio.to_thread(_run_in_copy, worktree.root, draft, policy, limits, venv)
    valid = [i for i, status in enumerate(baseline) if status != "invalid"]
    pinned = GeneratedChecks(model=spec, files=draft.files, modules=modules,
                             checks=tuple(checks[i] for i in valid), baseline=tuple(baseline[i] for i in valid),
                             dropped=dropped + len(checks) - len(valid), task_names=task_names)
    # What the model wrote that the runner refused, so a run's events say why its checks were dropped.
    invalid = [checks[i] for i, status in enumerate(baseline) if status == "invalid"]
    if not pinned.checks:
        _emit(on_event, spec, pinned, "no check the model wrote is a self-contained call and a literal", invalid)
        return None
    _emit(on_event, spec, pinned, None, invalid)
    return pinned


def _read(worktree: FileTree, path: str) -> str | None:
    from relaycode.errors import PathEscape

    try:
        return worktree.read_text(path)
    except (OSError, ValueError, PathEscape):
        return None


def _emit(on_event: EventSink | None, spec: str, pinned: GeneratedChecks | None, skipped: str | None,
          invalid: Sequence[GeneratedCheck] = ()) -> None:
    if on_event is None:
        return
    if pinned is None:
        on_event("generated_checks", model=spec, checks=[], skipped=skipped)
        return
    data = pinned.to_dict()
    # Bounded: `select` keeps at most MAX_CHECKS checks of at most MAX_EXPRESSION_CHARS each.
    on_event("generated_checks", model=spec, checks=data["checks"], dropped=pinned.dropped, skipped=skipped,
             invalid=[{"call": c.call, "expected": c.expected} for c in invalid])


def _run_in_copy(root: Path, pinned: GeneratedChecks, policy: SandboxPolicy, limits: Limits,
                 venv: Path | None) -> list[str]:
    """`run_checks` on a scratch copy of `root` (the checks may write files; the tree must stay as it was)."""
    with tempfile.TemporaryDirectory(prefix="relay-checks-") as tmp:
        copy = scratch_copy(root, Path(tmp) / "tree")
        return run_checks(copy, pinned, policy=policy, limits=limits, venv=venv)


# ---------------------------------------------------------------- running them (in the sandbox)


def run_checks(root: Path, pinned: GeneratedChecks, *, policy: SandboxPolicy, limits: Limits,
               venv: Path | None = None) -> list[str]:
    """Each check's status (one of `STATUSES`) on the tree at `root`, run in the sandbox."""
    if not pinned.checks:
        return []
    extra_env, policy = tool_env(venv, policy)
    payload = json.dumps({"modules": [m for m, _ in pinned.modules],
                          "roots": list(dict.fromkeys(r for _, r in pinned.modules)),
                          "task_names": list(pinned.task_names),
                          "checks": [{"call": c.call, "expected": c.expected} for c in pinned.checks],
                          "timeout": CHECK_TIMEOUT_S})
    command = "python -c " + shlex.quote(_RUNNER) + " " + shlex.quote(payload) + " </dev/null"
    wall = min(limits.wall_s, len(pinned.checks) * (CHECK_TIMEOUT_S + 2) + 10)
    done = sandbox.run(command, root, policy=policy, limits=dataclasses.replace(limits, wall_s=wall),
                       extra_env=extra_env)
    return parse_report(done.output_tail, len(pinned.checks))


MAX_REPORT_CHARS = 4096


def parse_report(output: str, count: int) -> list[str]:
    """The statuses in the runner's last report line; every check `error` when there is no well-formed one.

    The output is the sandbox's: only a line starting with `REPORT_MARKER`, of bounded length, holding a
    JSON list of exactly `count` known statuses is believed."""
    for line in reversed(output.splitlines()):
        if not line.startswith(REPORT_MARKER):
            continue
        body = line[len(REPORT_MARKER):]
        if len(body) > MAX_REPORT_CHARS:
            break
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            break
        if isinstance(data, list) and len(data) == count and all(isinstance(s, str) and s in STATUSES
                                                                 for s in data):
            return list(data)
        break
    return ["error"] * count


# Runs inside the sandbox with the project's interpreter: standard library only, no relay imports.
# One child process per check (fresh imports, its own timeout, its output thrown away); the child's
# process group is killed after it, so nothing it started outlives it.
_RUNNER = r'''
import json, os, signal, subprocess, sys

CHILD = """
import ast, builtins, importlib, os, re, sys
report = os.fdopen(os.dup(1), "w")
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)
os.dup2(devnull, 2)
data = __import__("json").loads(sys.stdin.read())

def done(status):
    report.write("status:" + status + "\\n")
    report.flush()
    os._exit(0)

def as_expected(text):
    # Small models write a returned string bare (ybty for 'ybty'): that is the string itself, unless it
    # reads as a broken literal or as a call (an exception written as ValueError(...)).
    try:
        return ast.literal_eval(text)
    except Exception:
        if (not text or text[0] in "[({+-.0123456789" or text[0] in (chr(34), chr(39))
                or re.match("[A-Za-z_][A-Za-z0-9_.]*[ ]*[(]", text)):
            raise
        return text

try:
    expected = as_expected(data["expected"])
    tree = ast.parse(data["call"], mode="eval")
    if not any(isinstance(node, ast.Call) for node in ast.walk(tree)):
        raise ValueError("not a call")
    code = compile(tree, "<check>", "eval")
except BaseException:
    done("invalid")
sys.path[:0] = data["roots"]
namespace = {}
imported = 0
for name in data["modules"]:
    try:
        namespace.update(vars(importlib.import_module(name)))
        imported += 1
    except BaseException:
        pass
if not imported:
    done("import")
bound = set(data["task_names"]) | set(namespace) | set(dir(builtins))
for node in ast.walk(tree):
    if isinstance(node, ast.comprehension):
        bound |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    elif isinstance(node, ast.Lambda):
        a = node.args
        bound |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x is not None}
    elif isinstance(node, ast.NamedExpr):
        bound.add(node.target.id)
if any(isinstance(n, ast.Name) and n.id not in bound for n in ast.walk(tree)):
    done("invalid")
try:
    got = eval(code, namespace)
    # A sequence is a sequence: models write `2, 3, 5` (a tuple) for a list, and generators are drained.
    if isinstance(expected, (list, tuple)) and not isinstance(got, (str, bytes, dict)) and hasattr(got, "__iter__"):
        got, expected = list(got), list(expected)
    same = bool(got == expected)
except BaseException:
    done("error")
done("pass" if same else "fail")
"""

data = json.loads(sys.argv[1])
statuses = []
for check in data["checks"]:
    payload = json.dumps({"call": check["call"], "expected": check["expected"], "modules": data["modules"],
                          "roots": data["roots"], "task_names": data["task_names"]})
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(payload.encode(), timeout=data["timeout"])
        lines = [l for l in out.decode("utf-8", "replace").splitlines() if l.startswith("status:")]
        status = lines[-1][len("status:"):] if lines else "error"
    except subprocess.TimeoutExpired:
        status = "timeout"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
    statuses.append(status)
sys.stdout.write("\n''' + REPORT_MARKER + r'''" + json.dumps(statuses) + "\n")
'''


# ---------------------------------------------------------------- choosing (CodeT's dual agreement)


@dataclass
class Scored:
    """One candidate's evidence: how many sampled answers produced it, and its checks' statuses."""

    agreeing: int
    statuses: list[str] = field(default_factory=list)


def dual_agreement(candidates: Sequence[Scored], weighted: Sequence[int]) -> list[int]:
    """Each candidate's score: (answers whose result passes the same weighted checks) x (weighted checks it passes).

    CodeT (Chen et al., 2022): a result that many samples agree on, and that passes many generated
    tests, is more likely right than one that passes many tests alone (tests can be wrong) or is merely
    common (a common mistake). Checks outside `weighted` (passing on the unchanged tree) count for nothing."""
    def passed(c: Scored) -> frozenset[int]:
        return frozenset(i for i in weighted if i < len(c.statuses) and c.statuses[i] == "pass")

    sets = [passed(c) for c in candidates]
    return [sum(c.agreeing for c, other in zip(candidates, sets, strict=True) if other == mine) * len(mine)
            for mine in sets]
