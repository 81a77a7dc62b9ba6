"""Verify stage: run the project's own checks on the worktree, in the sandbox.

Which checks (`detect_commands`), in this order:

* `python -m pytest -q -p no:cacheprovider` if the project has tests: a `tests/`
  directory, a `test_*.py` / `*_test.py` file anywhere outside hidden, vendored
  and virtualenv directories, or pytest configuration (pytest.ini,
  `[tool.pytest...]` in pyproject.toml, `[pytest]` in tox.ini,
  `[tool:pytest]` in setup.cfg);
* `ruff check .` if ruff is configured (ruff.toml, .ruff.toml, or `[tool.ruff`
  in pyproject.toml): relay does not impose a linter the project does not use;
* `npm test` if package.json has a `scripts.test` that is not npm's placeholder.

Every command runs (a lint failure does not hide test failures), each through
`sandbox.run`. `VerifyResult.summary()` is the text fed back to the model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from relaycode import sandbox
from relaycode.errors import ConfigError
from relaycode.pathsafety import walk
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.stages import doc_examples
from relaycode.testfiles import is_python_test_file

#: No -x: the model gets every failing test at once. No cache provider: no .pytest_cache in the diff.
PYTEST_COMMAND = "python -m pytest -q -p no:cacheprovider"
RUFF_COMMAND = "ruff check ."
NPM_COMMAND = "npm test"

#: Directories never searched for test files: not the project's own code.
_SKIP_DIRS = frozenset(
    {"node_modules", "venv", ".venv", "env", "site-packages", "build", "dist", "__pycache__"}
)
_NPM_PLACEHOLDER = 'echo "Error: no test specified" && exit 1'
#: `FAILED tests/x.py::test_y - reason` and `ERROR tests/x.py::test_y` (summary lines, -rfE / -q).
_PYTEST_NODE = re.compile(r"^(?:FAILED|ERROR)\s+(\S+?)(?:\s+-\s.*)?$", re.MULTILINE)
#: `tests/x.py::test_y FAILED` (verbose progress lines).
_PYTEST_VERBOSE = re.compile(r"^(\S+::\S+)\s+(?:FAILED|ERROR)\b", re.MULTILINE)


@dataclass
class CommandResult:
    """One verification command and what came out of it."""

    command: str
    exit_code: int
    seconds: float
    output_tail: str
    timed_out: bool
    failing_tests: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class VerifyResult:
    """All verification commands of one attempt. No command means nothing to fail."""

    results: list[CommandResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "results": [asdict(r) for r in self.results]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifyResult:
        return cls(results=[CommandResult(**r) for r in data.get("results", [])])

    def summary(self, max_tail_chars: int = 4000) -> str:
        """Plain text for the model: each failing command, its failing tests, the end of its output."""
        if not self.results:
            return "No verification commands were found for this project."
        if self.passed:
            return "All verification commands passed: " + ", ".join(r.command for r in self.results)
        parts: list[str] = []
        for r in self.results:
            if r.passed:
                parts.append(f"PASSED: {r.command}")
                continue
            why = f"timed out after {r.seconds:.0f}s" if r.timed_out else f"exit code {r.exit_code}"
            parts.append(f"FAILED: {r.command} ({why})")
            if r.failing_tests:
                parts.append("Failing tests:\n" + "\n".join(f"  {t}" for t in r.failing_tests))
            parts.append("Output (end):\n" + r.output_tail[-max_tail_chars:].rstrip())
        return "\n\n".join(parts)


def _has_test_files(root: Path) -> bool:
    for _dirpath, dirnames, filenames in walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS]
        if any(is_python_test_file(f) for f in filenames):
            return True
    return False


def _read(path: Path) -> str:
    from relaycode.pathsafety import read_text_in_root

    return read_text_in_root(path.parent, path.name) or ""


def _has_pytest_config(root: Path) -> bool:
    return (
        (root / "pytest.ini").is_file()
        or "[tool.pytest" in _read(root / "pyproject.toml")
        or "[pytest]" in _read(root / "tox.ini")
        or "[tool:pytest]" in _read(root / "setup.cfg")
    )


def _has_ruff_config(root: Path) -> bool:
    return (
        (root / "ruff.toml").is_file()
        or (root / ".ruff.toml").is_file()
        or "[tool.ruff" in _read(root / "pyproject.toml")
    )


def _has_npm_test(root: Path) -> bool:
    try:
        package = json.loads(_read(root / "package.json") or "{}")
    except (json.JSONDecodeError, RecursionError):  # a hostile package.json nests too deep for the parser
        return False
    scripts = package.get("scripts") if isinstance(package, dict) else None
    test = scripts.get("test") if isinstance(scripts, dict) else None
    return isinstance(test, str) and bool(test.strip()) and test.strip() != _NPM_PLACEHOLDER


def can_fail_a_change(commands: list[str]) -> bool:
    """Whether these verification commands can fail a wrong change: anything but the linter alone."""
    return any(c != RUFF_COMMAND for c in commands)


def detect_commands(root: Path) -> list[str]:
    """The verification commands for the project at `root` (rules in the module docstring)."""
    commands: list[str] = []
    if (root / "tests").is_dir() or _has_pytest_config(root) or _has_test_files(root):
        commands.append(PYTEST_COMMAND)
    if _has_ruff_config(root):
        commands.append(RUFF_COMMAND)
    if _has_npm_test(root):
        commands.append(NPM_COMMAND)
    if PYTEST_COMMAND not in commands and _has_doc_examples(root):
        # No test suite, but the project shows `>>>` examples: run those (stages/doc_examples.py).
        commands.append(doc_examples.COMMAND_NAME)
    return commands


def _has_doc_examples(root: Path) -> bool:
    for rel in doc_examples.python_files(root)[:500]:
        if rel.name.startswith("test_"):
            continue
        if doc_examples.has_examples(root / rel, root):
            return True
    return False


def _expand(command: str, examples: dict[str, list[str]] | None = None) -> tuple[str, bytes | None]:
    """The shell command behind a display name (`relay:doc-examples` runs relay's example checker),
    and what it reads on stdin (pinned examples go there: a repository's can be any size)."""
    if command == doc_examples.COMMAND_NAME:
        source = Path(doc_examples.__file__).read_text(encoding="utf-8")
        if examples is not None:
            return "python -c " + shlex.quote(source) + " --pinned", json.dumps(examples).encode("utf-8")
        return "python -c " + shlex.quote(source), None
    return command, None


def parse_pytest_failures(output: str) -> list[str]:
    """Node ids of failed and errored tests, in order of appearance, without duplicates."""
    found = _PYTEST_NODE.findall(output) + _PYTEST_VERBOSE.findall(output)
    return list(dict.fromkeys(found))


VENV_NAMES = (".venv", "venv")


def _tracked(checkout: Path, rel: str) -> bool:
    """Whether git tracks anything under `rel` in the checkout (so the repository, not the user, made it)."""
    try:
        proc = subprocess.run(
            ["git", "-c", "core.fsmonitor=false", "ls-files", "-z", "--", rel], cwd=checkout,
            capture_output=True, stdin=subprocess.DEVNULL, check=False, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: do not use it
    return proc.returncode != 0 or bool(proc.stdout.strip(b"\0"))  # git failed: cannot tell either


def project_env(checkout: Path, setting: str | None) -> Path | None:
    """The project's own virtualenv, whose tools verify puts first on PATH; None for relay's.

    `setting` is `stages.verify.python`: a virtualenv directory or its `bin/python`, relative
    to the checkout or absolute. Unset: the checkout's `.venv` or `venv`, when it holds a
    Python and git does not track it: a committed environment is the repository's say, and
    what relay mounts must not be chosen by the repository. A project's tests import the
    project's dependencies, which relay's own environment does not have.
    """
    if setting:
        given = Path(setting).expanduser()
        given = given if given.is_absolute() else checkout / given
        venv = given.parent.parent if given.name.startswith("python") and given.parent.name == "bin" else given
        if not (venv / "bin" / "python").exists():
            raise ConfigError(f"stages.verify.python: {setting} is not a virtualenv (no {venv / 'bin' / 'python'})")
        return venv
    for name in VENV_NAMES:
        candidate = checkout / name
        # A real directory only: a link (`.venv -> ~/.local`, planted by a test) would choose the mount.
        if candidate.is_dir() and not candidate.is_symlink() and (candidate / "bin" / "python").exists() \
                and not _tracked(checkout, name):
            return candidate
    return None


_PYTHON_NAME = re.compile(r"python3(\.\d+)?")


def interpreter_prefix(venv: Path) -> Path | None:
    """The installation the venv's interpreter really is (the real path of `bin/python`, two levels up).

    Read from the file system, not from `pyvenv.cfg`, which is text anyone could have written. None
    when the interpreter is not a regular executable file or lives in the system directories (the
    sandbox shows those anyway).
    """
    real = Path(os.path.realpath(venv / "bin" / "python"))
    if not real.is_file() or not os.access(real, os.X_OK) or not _PYTHON_NAME.fullmatch(real.name):
        return None
    prefix = real.parent.parent
    if prefix == Path("/") or any(prefix == Path(d) or prefix.is_relative_to(d) for d in ("/usr", "/bin", "/lib")):
        return None
    # Only a Python installation is shown: its standard library must be where the interpreter expects
    # it. A link to any other program (`~/.cargo/bin/cargo`) would otherwise choose a host directory.
    if not any((lib / "os.py").is_file() for lib in (prefix / "lib").glob("python3*")):
        return None
    return prefix


def tool_env(venv: Path | None, policy: SandboxPolicy) -> tuple[dict[str, str], SandboxPolicy]:
    """PATH (the project's venv, then relay's own tools, then the system) and a policy that can see them.

    Without a project venv, `python`, `ruff` and `pytest` resolve to relay's interpreter (pytest is
    a dependency of relay). No bytecode caches end up in the diff.
    """
    dirs = [str(Path(sys.executable).parent)]
    if venv is not None:
        dirs.insert(0, str(venv / "bin"))
        visible = tuple(p for p in (venv, interpreter_prefix(venv)) if p is not None and p.exists())
        policy = dataclasses.replace(policy, readonly_paths=policy.readonly_paths + visible)
    env = {
        "PATH": os.pathsep.join([*dirs, os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return env, policy


def run_verify(
    root: Path, commands: list[str] | None, *, policy: SandboxPolicy, limits: Limits,
    examples: dict[str, list[str]] | None = None, venv: Path | None = None,
) -> VerifyResult:
    """Run each command (detected if None) in the sandbox; all of them, even after a failure.

    `examples` pins the doc examples `relay:doc-examples` replays (see `doc_examples.collect`);
    `venv` is the project's own environment (`project_env`), put first on PATH.
    """
    if commands is None:
        commands = detect_commands(root)
    extra_env, policy = tool_env(venv, policy)
    results: list[CommandResult] = []
    # `limits.wall_s` bounds the whole verification, not each command: a repository listing a slow
    # command N times must not multiply the time the user allowed.
    deadline = time.monotonic() + limits.wall_s
    for command in commands:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            results.append(CommandResult(command=command, exit_code=124, seconds=0.0, timed_out=True,
                                         output_tail="not run: the verification's time limit was used up",
                                         failing_tests=[]))
            continue
        shell, stdin = _expand(command, examples)
        done = sandbox.run(shell, root, policy=policy, limits=dataclasses.replace(limits, wall_s=remaining),
                           extra_env=extra_env, stdin=stdin)
        failing = parse_pytest_failures(done.output_tail) if "pytest" in command else []
        results.append(
            CommandResult(
                command=command,
                exit_code=done.exit_code,
                seconds=done.seconds,
                output_tail=done.output_tail,
                timed_out=done.timed_out,
                failing_tests=failing,
            )
        )
    return VerifyResult(results=results)
