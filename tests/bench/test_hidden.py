"""The hidden tests' verdict cannot be decided by code the model wrote (bench/hidden.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relaycode.bench.hidden import restore_harness, verdict_for

HIDDEN = "from calc import add\nassert add(2, 2) == 4\nprint('ok')\n"


def run(verdict_command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = verdict_command.replace("python ", f"{sys.executable} ", 1)
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("calc", "passes"), [
    ("def add(a, b):\n    return a + b\n", True),
    ("def add(a, b):\n    return a - b\n", False),
    ("import os\nos._exit(0)\n", False),  # exits 0 before the test ran: not a pass
])
def test_a_python_file_command_passes_only_when_it_finished(tmp_path: Path, calc: str, passes: bool) -> None:
    (tmp_path / "calc.py").write_text(calc)
    (tmp_path / "test_hidden.py").write_text(HIDDEN)
    verdict = verdict_for("python test_hidden.py")
    done = run(verdict.command, tmp_path)
    plain = run("python test_hidden.py", tmp_path)
    assert verdict.passed(done.returncode, done.stdout + done.stderr, tmp_path) is passes
    if "os._exit" in calc:
        assert plain.returncode == 0  # the plain command would have called it a pass


def test_the_models_autoloaded_files_are_removed_and_the_cases_restored(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("rigged = True\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "conftest.py").write_text("rigged = True\n")
    (tmp_path / "sitecustomize.py").write_text("rigged = True\n")
    (tmp_path / "app.py").write_text("x = 1\n")
    restore = restore_harness(tmp_path, {"conftest.py": "shipped = True\n", "app.py": "x = 0\n"})
    assert restore == {"conftest.py": "shipped = True\n"}
    assert not (tmp_path / "pkg" / "conftest.py").exists() and not (tmp_path / "sitecustomize.py").exists()
    assert (tmp_path / "app.py").read_text() == "x = 1\n"  # the model's code itself is what is tested
