"""Running a case's hidden tests so that code the model wrote cannot decide the verdict.

The hidden tests run in the final worktree, next to everything the model wrote. Exit code 0 alone
is not a pass: a model-written `conftest.py` can mark every report passed, and a module that calls
`os._exit(0)` when the test imports it ends the run "successfully" before any test ran. So:

* files that pytest or Python load on their own (`conftest.py`, `sitecustomize.py`,
  `usercustomize.py`, `*.pth`, and the pytest config files) are put back to what the case
  shipped: the model's versions are removed or overwritten before the hidden files are written;
* a pytest, `python -m unittest` or `python FILE.py` command runs through relay's own wrapper,
  `python -I -B -c <wrapper>` (isolated: the tree is not on sys.path while the wrapper imports
  pytest or unittest, so a `pytest.py` in the tree cannot stand in for the real one). The wrapper
  reads a random secret from its standard input and replaces it by /dev/null before any code of
  the tree runs, so no argv, environment variable, file or descriptor shows the secret to that
  code; it prints the secret only after the tests ran, none failed and at least one passed. The
  case passes only if the run exits 0 and its output holds exactly one pass line, with the secret.
  Nothing is read back from the tree (an earlier JUnit report there could be forged, or be a FIFO
  that blocks relay).

Limit: the secret is in the wrapper's memory (masked), in the process that imports the model's code. Code
in that process can always rig a runner it shares a process with (monkeypatch pytest, walk the
stack to the wrapper's frame); that takes code written against relay's harness, and is the line
this module draws. A command of another shape (a pipeline, a shell script) is judged by its exit
code alone.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from relaycode.pathsafety import walk

#: Files Python or pytest load without being asked, at any depth (pytest reads the config file nearest
#: to the tests it is given, e.g. `tests/pytest.ini` with `addopts = -k "not test_the_bug"`): a model's
#: copy could rig the verdict.
_AUTOLOADED = re.compile(r"(^|/)(conftest\.py|sitecustomize\.py|usercustomize\.py|[^/]*\.pth"
                         r"|pytest\.ini|\.pytest\.ini|pyproject\.toml|tox\.ini|setup\.cfg)$")
#: `cd DIR && ` before a command; the rest must be one plain command (no shell operators or expansions).
_CD_PREFIX = re.compile(r"^\s*cd\s+([^\s;&|<>$`()]+)\s*&&\s*")
_SHELL_SYNTAX = re.compile(r"[;&|<>$`()\n\\*?\[\]{}~]")
_INTERPRETERS = ("python", "python3")
#: What the wrapper prints before the secret (the secret alone decides; the words are for a reader).
PASS_LINE = "relay-hidden-tests-passed"

#: Runs inside the sandbox as `python -I -B -c WRAPPER DIR MODE ARGS...`. relaycode is not importable
#: there, hence a script. fd 0 becomes /dev/null before anything is imported. The secret arrives as raw
#: bytes read straight into a buffer that is then masked with a random pad: while the tests run, no
#: copy of it, raw or as the hex it is printed in, is in memory for code that scans its own process
#: (/proc/self/mem) for likely secrets.
WRAPPER = r"""
import os, sys


def _main():
    raw = bytearray(64)
    size = 0
    while size < len(raw):
        got = os.readv(0, [memoryview(raw)[size:]])
        if not got:
            break
        size += got
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    pad = os.urandom(size)
    for i in range(size):
        raw[i] ^= pad[i]
    directory, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.chdir(directory)
    here = os.getcwd()
    # -I ignored PYTHONPATH (the user's, if anyone's); it takes its usual place once the runner is imported.
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if mode in ("pytest", "pytest-m"):
        import pytest

        class Tally:
            passed = failed = 0

            def pytest_runtest_logreport(self, report):
                if report.failed:
                    self.failed += 1
                elif report.passed and report.when == "call":
                    self.passed += 1

            def pytest_collectreport(self, report):
                if report.failed:
                    self.failed += 1

        tally = Tally()
        sys.argv = ["pytest", *args]
        sys.path[:0] = [here] + extra if mode == "pytest-m" else extra  # as `python -m pytest` / `pytest` would
        code = int(pytest.main(args, plugins=[tally]))
        clean = code == 0 and tally.passed > 0 and tally.failed == 0
    elif mode == "unittest":
        import unittest

        sys.path[:0] = [here] + extra
        sys.argv = ["python -m unittest", *args]
        result = unittest.main(module=None, argv=sys.argv, exit=False).result
        ran = result.testsRun - len(result.skipped)
        clean = result.wasSuccessful() and ran > 0
        code = 0 if clean else 1
    else:
        import runpy

        sys.argv = list(args)
        sys.path[:0] = [os.path.dirname(os.path.abspath(args[0]))] + extra
        runpy.run_path(args[0], run_name="__main__")  # an exception or sys.exit ends here: no pass
        code, clean = 0, True
    sys.stdout.flush()
    sys.stderr.flush()
    if clean:
        print("\n%s %s" % (PASS_LINE, bytes(a ^ b for a, b in zip(raw[:size], pad)).hex()), flush=True)
    sys.exit(code)


_main()
""".replace("PASS_LINE", repr(PASS_LINE))


def restore_harness(worktree: Path, shipped: Mapping[str, str]) -> dict[str, str]:
    """Files to write so that the autoloaded files are exactly the case's own (`shipped`: its files and
    hidden files); deletes the model's extra ones. Returns the files to (re)write."""
    for dirpath, dirnames, filenames in walk(worktree):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            rel = str((Path(dirpath) / name).relative_to(worktree))
            if _AUTOLOADED.search(rel) and rel not in shipped:
                (Path(dirpath) / name).unlink(missing_ok=True)
    # Every shipped one is written again, also where the model deleted it.
    restore = {rel: text for rel, text in shipped.items() if _AUTOLOADED.search(rel)}
    return restore


@dataclass(frozen=True)
class Verdict:
    """How a hidden-test run is judged: the command to run, the secret it gets on stdin, what its output must show.

    `secret` is None for a command relay cannot wrap: then its exit code alone decides.
    """

    command: str
    secret: str | None = None

    @property
    def stdin(self) -> bytes | None:
        """The secret as raw bytes (the wrapper prints it as hex)."""
        return None if self.secret is None else bytes.fromhex(self.secret)

    def passed(self, exit_code: int, output: str) -> bool:
        if exit_code != 0:
            return False
        # Exactly one pass line, the right one: code that prints many guesses gets none of them counted.
        return self.secret is None or (output.count(PASS_LINE) == 1 and f"{PASS_LINE} {self.secret}" in output)


def verdict_for(command: str) -> Verdict:
    """Wrap a suite's test command so its verdict cannot be rigged from inside (see module docstring)."""
    wrapped = _wrapper_args(command)
    if wrapped is None:
        return Verdict(command)
    interpreter, args = wrapped
    return Verdict(shlex.join([interpreter, "-I", "-B", "-c", WRAPPER, *args]), secret=secrets.token_hex(16))


def _wrapper_args(command: str) -> tuple[str, list[str]] | None:
    """(interpreter, [directory, mode, args...]) for the wrapper, or None for a command of another shape."""
    directory = "."
    cd = _CD_PREFIX.match(command)
    if cd:
        directory, command = cd[1], command[cd.end():]
    if _SHELL_SYNTAX.search(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words:
        return None
    interpreter = words[0] if words[0] in _INTERPRETERS else "python"
    if words[0] == "pytest":
        return interpreter, [directory, "pytest", *words[1:]]
    if words[0] not in _INTERPRETERS or len(words) < 2:
        return None
    if words[1] == "-m" and len(words) >= 3 and words[2] in ("pytest", "unittest"):
        return interpreter, [directory, "pytest-m" if words[2] == "pytest" else "unittest", *words[3:]]
    if words[1].endswith(".py") and not words[1].startswith("-"):
        return interpreter, [directory, "file", *words[1:]]
    return None
