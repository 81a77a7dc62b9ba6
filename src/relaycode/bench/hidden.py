"""Running a case's hidden tests so that code the model wrote cannot decide the verdict.

The hidden tests run in the final worktree, next to everything the model wrote. Exit code 0 alone
is not a pass: a model-written `conftest.py` can mark every report passed, and a module that calls
`os._exit(0)` when the test imports it ends the run "successfully" before any test ran. So:

* files that pytest or Python load on their own (`conftest.py`, `sitecustomize.py`,
  `usercustomize.py`, `*.pth`, and the pytest config files) are put back to what the case
  shipped: the model's versions are removed or overwritten before the hidden files are written;
* a pytest command writes a JUnit report to a name the model cannot know in advance; the case
  passes only if that report exists and counts at least one test and no failure or error;
* a `python FILE.py` command runs through a wrapper that prints a random token after the file
  finished; without the token it did not finish, whatever its exit code.
"""

from __future__ import annotations

import re
import secrets
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from relaycode.pathsafety import walk

#: Files Python or pytest load without being asked: a model's copy could rig the verdict.
_AUTOLOADED = re.compile(r"(^|/)(conftest\.py|sitecustomize\.py|usercustomize\.py|[^/]*\.pth)$")
_PYTEST_CONFIG = ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", ".pytest.ini")
_PYTHON_FILE = re.compile(r"^python3?\s+([\w./-]+\.py)$")


def restore_harness(worktree: Path, shipped: Mapping[str, str]) -> dict[str, str]:
    """Files to write so that the autoloaded files are exactly the case's own (`shipped`: its files and
    hidden files); deletes the model's extra ones. Returns the files to (re)write."""
    restore: dict[str, str] = {}
    for dirpath, dirnames, filenames in walk(worktree):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            rel = str((Path(dirpath) / name).relative_to(worktree))
            if _AUTOLOADED.search(rel) or rel in _PYTEST_CONFIG:
                if rel in shipped:
                    restore[rel] = shipped[rel]
                else:
                    (Path(dirpath) / name).unlink(missing_ok=True)
    for rel in _PYTEST_CONFIG:
        if rel in shipped:
            restore[rel] = shipped[rel]
    return restore


@dataclass(frozen=True)
class Verdict:
    """How a hidden-test run is judged: the command to run and what its output must show."""

    command: str
    token: str | None = None
    junit: str | None = None

    def passed(self, exit_code: int, output: str, worktree: Path) -> bool:
        clean = _junit_clean(worktree / self.junit) if self.junit is not None else True  # also removes it
        if exit_code != 0 or not clean:
            return False
        return self.token is None or self.token in output


def verdict_for(command: str) -> Verdict:
    """Wrap a suite's test command so its verdict cannot be rigged from inside (see module docstring)."""
    nonce = secrets.token_hex(8)
    if "pytest" in command:
        report = f".relay-hidden-{nonce}.xml"
        return Verdict(f"{command} --junitxml={shlex.quote(report)}", junit=report)
    match = _PYTHON_FILE.match(command.strip())
    if match:
        token = f"relay-hidden-tests-finished-{nonce}"
        script = (f"import runpy, sys; sys.argv = [{match[1]!r}]; sys.path.insert(0, '.'); "
                  f"runpy.run_path({match[1]!r}, run_name='__main__'); print({token!r})")
        return Verdict(f"python -c {shlex.quote(script)}", token=token)
    return Verdict(command)


def _junit_clean(path: Path) -> bool:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return False
    finally:
        path.unlink(missing_ok=True)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    return tests > 0 and bad == 0
