"""Checks that always apply to the Python files an attempt changed, whatever the project's tests are.

Each changed `.py` file must still compile, its module must still import (within a timeout), and
the top-level functions and classes it defined before must still be there. They cannot tell a
right change from a wrong one, so they never make a run *verified*; they catch the broken answers
that nothing else would (a repository without tests, a module the tests never import).

The import runs the repository's code, so it runs in the sandbox like verify: one
`python -c` script (`_SCRIPT`) that executes each module in a child process with a timeout.
A module that did not import before the change (missing dependencies, a script that needs its
input) is not judged on importing, only on its names, read from its syntax tree. Names the task
mentions are not required: a task that asks to rename or remove a function names it.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from relaycode import sandbox
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.stages.verify import CommandResult, tool_env

COMMAND_NAME = "relay:python-sanity"
"""The display name of the check, as it appears in verify results and the model's feedback."""

IMPORT_TIMEOUT_S = 20.0
"""Per module: an import that takes longer is treated as hanging (a module waiting for input)."""


def top_level_names(source: str) -> list[str]:
    """Functions and classes a module defines at its top level (empty when it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # deep nesting overflows the parser
        return []
    return [node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def module_name(path: str, exists: Callable[[str], bool]) -> tuple[str, str]:
    """The dotted module name of `path` and the directory to import it from (the top of its package chain)."""
    parts = path[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    package_dirs = path.split("/")[:-1]
    top = len(package_dirs)
    while top > 0 and exists("/".join([*package_dirs[:top], "__init__.py"])):
        top -= 1
    root = "/".join(package_dirs[:top]) or "."
    name = ".".join(parts[top:]) or parts[-1]
    return name, root


@dataclass(frozen=True)
class FileCheck:
    """What the sandboxed script checks for one changed file."""

    path: str
    module: str
    import_root: str
    before: str | None
    """The file's content before the attempt (None: a new file)."""
    names: tuple[str, ...]
    """Top-level names that must still be defined."""

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "module": self.module, "root": self.import_root, "before": self.before,
                "names": list(self.names)}


def plan_checks(changed: Mapping[str, str | None], before: Mapping[str, str | None], task: str,
                exists: Callable[[str], bool]) -> list[FileCheck]:
    """The checks for changed files: `changed` maps each path to its new content (None: deleted)."""
    checks = []
    for path, text in sorted(changed.items()):
        if not path.endswith(".py") or text is None:
            continue
        old = before.get(path)
        if old is not None and not _compiles(path, old):
            continue  # broken before: the task may be to fix exactly that
        mentioned = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", task))
        names = tuple(n for n in top_level_names(old or "") if n not in mentioned)
        module, root = module_name(path, exists)
        checks.append(FileCheck(path=path, module=module, import_root=root, before=old, names=names))
    return checks


def _compiles(path: str, text: str) -> bool:
    try:
        compile(text, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # deep nesting overflows the compiler
        return False
    return True


def run_sanity(root: Path, checks: list[FileCheck], *, policy: SandboxPolicy, limits: Limits,
               venv: Path | None = None) -> CommandResult | None:
    """Run `checks` in the sandbox; None when there is nothing to check."""
    if not checks:
        return None
    extra_env, policy = tool_env(venv, policy)
    # On stdin, not the command line: the files' old text is as large as the repository's modules.
    payload = json.dumps({"checks": [c.to_dict() for c in checks], "timeout": IMPORT_TIMEOUT_S})
    command = "python -c " + shlex.quote(_SCRIPT)
    done = sandbox.run(command, root, policy=policy, limits=limits, extra_env=extra_env,
                       stdin=payload.encode("utf-8"))
    return CommandResult(command=COMMAND_NAME, exit_code=done.exit_code, seconds=done.seconds,
                         output_tail=done.output_tail, timed_out=done.timed_out)


# Runs inside the sandbox with the project's interpreter: standard library only, no relay imports.
_SCRIPT = r'''
import ast, json, subprocess, sys

CHILD = """
import json, sys, types
path, module, root, names = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
source = sys.stdin.read() if sys.argv[5] == "stdin" else open(path, encoding="utf-8").read()
sys.path[:0] = [root, "."]
mod = types.ModuleType(module)
mod.__file__ = path
mod.__package__ = module.rpartition(".")[0] if not path.endswith("__init__.py") else module
sys.modules[module] = mod
exec(compile(source, path, "exec"), mod.__dict__)
missing = [n for n in names if n not in mod.__dict__]
print(json.dumps(missing))
"""

def load(check, source_from, timeout):
    args = [sys.executable, "-c", CHILD, check["path"], check["module"], check["root"],
            json.dumps(check["names"]), source_from]
    stdin = check["before"] if source_from == "stdin" else ""
    try:
        done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "importing it did not finish within %ds" % timeout
    if done.returncode != 0:
        lines = [l for l in done.stderr.strip().splitlines() if l.strip()]
        return None, lines[-1] if lines else "exit code %d" % done.returncode
    return json.loads(done.stdout.strip().splitlines()[-1]), None

data = json.loads(sys.stdin.read())
problems = []
for check in data["checks"]:
    path = check["path"]
    try:
        source = open(path, encoding="utf-8").read()
        compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        problems.append("%s line %s: does not compile: %s" % (path, exc.lineno, exc.msg))
        continue
    except (RecursionError, MemoryError):
        problems.append("%s: does not compile: nested too deeply for the compiler" % path)
        continue
    except (OSError, ValueError) as exc:
        problems.append("%s: cannot be read: %s" % (path, exc))
        continue
    missing, error = load(check, "file", data["timeout"])
    if error is not None:
        imported_before = check["before"] is None or load(check, "stdin", data["timeout"])[1] is None
        if imported_before:
            problems.append("%s: the module no longer imports: %s" % (path, error))
            continue
        tree = ast.parse(source)
        defined = {n.name for n in tree.body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        missing = [n for n in check["names"] if n not in defined]
    if missing:
        problems.append("%s: no longer defines %s, which it defined before" % (path, ", ".join(missing)))
if problems:
    print("Basic checks of the changed Python files failed:")
    print("\n".join("- " + p for p in problems))
    sys.exit(1)
print("%d changed Python file(s) compile, import and keep their top-level names" % len(data["checks"]))
'''
