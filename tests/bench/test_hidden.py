"""The hidden tests' verdict cannot be decided by code the model wrote (bench/hidden.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relaycode import sandbox
from relaycode.bench.hidden import Verdict, restore_harness, verdict_for

HIDDEN = "from calc import add\nassert add(2, 2) == 4\nprint('ok')\n"
HIDDEN_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
HIDDEN_UNITTEST = ("import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n"
                   "    def test_add(self):\n        self.assertEqual(add(2, 2), 4)\n")
FIXED = "def add(a, b):\n    return a + b\n"
BUG = "def add(a, b):\n    return a - b\n"


def run(verdict_command: str, cwd: Path, stdin: bytes | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """The command as the sandbox would run it (through /bin/sh, stdin as given), with this interpreter."""
    command = verdict_command.replace("python ", f"{sys.executable} ", 1)
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, timeout=120,
                          input=stdin if stdin is not None else b"", env=env)


def judge(verdict: Verdict, cwd: Path, env: dict[str, str] | None = None) -> tuple[bool, str]:
    done = run(verdict.command, cwd, verdict.stdin, env)
    output = (done.stdout + done.stderr).decode(errors="replace")
    return verdict.passed(done.returncode, output), output


@pytest.mark.parametrize(("calc", "passes"), [
    ("def add(a, b):\n    return a + b\n", True),
    ("def add(a, b):\n    return a - b\n", False),
    ("import os\nos._exit(0)\n", False),  # exits 0 before the test ran: not a pass
])
def test_a_python_file_command_passes_only_when_it_finished(tmp_path: Path, calc: str, passes: bool) -> None:
    (tmp_path / "calc.py").write_text(calc)
    (tmp_path / "test_hidden.py").write_text(HIDDEN)
    verdict = verdict_for("python test_hidden.py")
    plain = run("python test_hidden.py", tmp_path)
    assert judge(verdict, tmp_path)[0] is passes
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



def test_a_models_pytest_config_beside_the_hidden_tests_is_removed(tmp_path: Path) -> None:
    # pytest reads the config nearest to the tests it is given: tests/pytest.ini deselecting the failing test
    # would leave only the passing ones.
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "pytest.ini").write_text('[pytest]\naddopts = -k "not test_add"\n')
    (tmp_path / "tests" / "setup.cfg").write_text("[tool:pytest]\naddopts = -x\n")
    (tmp_path / "calc.py").write_text(BUG)
    hidden = {"tests/test_hidden.py": HIDDEN_TEST + "\n\ndef test_import():\n    assert add\n",
              "tests/conftest.py": "shipped = True\n"}
    restore = restore_harness(tmp_path, hidden)
    assert restore == {"tests/conftest.py": "shipped = True\n"}  # written again, though the model deleted it
    assert not (tmp_path / "tests" / "pytest.ini").exists() and not (tmp_path / "tests" / "setup.cfg").exists()
    for rel, text in hidden.items():
        (tmp_path / rel).write_text(text)
    assert not judge(verdict_for("python -m pytest -q -p no:cacheprovider tests/test_hidden.py"), tmp_path)[0]

#: A module under test that looks for the secret everywhere the OS shows it: the argv and environment of
#: its own process and of every ancestor up to this test's process (sh, the wrapper), every descriptor it
#: holds, every file in the tree; it keeps what it found in `snooped`.
SNOOP = """import glob, os
seen = []
pid = os.getpid()
while pid not in (1, STOP):
    for part in ("cmdline", "environ"):
        try:
            seen.append(open("/proc/%d/%s" % (pid, part), "rb").read())
        except OSError:
            pass
    with open("/proc/%d/stat" % pid) as fh:
        pid = int(fh.read().rsplit(")", 1)[1].split()[1])
for fd in os.listdir("/proc/self/fd"):
    try:
        os.set_blocking(int(fd), False)
        seen.append(os.read(int(fd), 65536))
    except OSError:
        pass
for path in glob.glob("**", recursive=True, include_hidden=True):
    if os.path.isfile(path):
        seen.append(open(path, "rb").read())
open("snooped", "wb").write(b"".join(seen))
""" + FIXED


@pytest.mark.parametrize("command", ["python test_hidden.py", "python -m pytest -q -p no:cacheprovider test_hidden.py"])
def test_the_secret_is_in_no_argv_environment_descriptor_or_file_the_code_can_read(tmp_path: Path,
                                                                                  command: str) -> None:
    (tmp_path / "calc.py").write_text(SNOOP.replace("STOP", str(os.getpid())))
    (tmp_path / "test_hidden.py").write_text(HIDDEN if command.endswith("test_hidden.py") and "pytest" not in command
                                             else HIDDEN_TEST)
    verdict = verdict_for(command)
    assert verdict.secret is not None
    passed, output = judge(verdict, tmp_path)
    assert passed, output[-300:]  # the snoop found nothing to forge with, and the real tests still pass
    snooped = (tmp_path / "snooped").read_bytes()
    assert b"def add" in snooped and b"_main()" in snooped and verdict.secret.encode() not in snooped


#: A module under test that copies its own process's memory (every readable mapping) to `memory`.
MEMORY_DUMP = """import re
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem, open("memory", "wb") as out:
    for line in maps:
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) r", line)
        if not m or "[vvar" in line or "[vsyscall" in line:
            continue
        start, end = int(m[1], 16), int(m[2], 16)
        if end - start > 1 << 28:
            continue
        try:
            mem.seek(start)
            out.write(mem.read(end - start))
        except (OSError, ValueError, OverflowError):
            pass
""" + FIXED


@pytest.mark.parametrize("command", ["python test_hidden.py", "python -m pytest -q -p no:cacheprovider test_hidden.py"])
def test_the_secret_is_not_in_the_memory_of_the_process_that_runs_the_code(tmp_path: Path, command: str) -> None:
    # Code that scans its own memory for 32 hex digits (or prints every 16-byte window) finds nothing: the
    # wrapper holds the secret masked until the tests are over.
    (tmp_path / "calc.py").write_text(MEMORY_DUMP)
    (tmp_path / "test_hidden.py").write_text(HIDDEN if "pytest" not in command else HIDDEN_TEST)
    verdict = verdict_for(command)
    assert verdict.secret is not None and verdict.stdin is not None
    passed, output = judge(verdict, tmp_path)
    assert passed, output[-300:]
    memory = (tmp_path / "memory").read_bytes()
    (tmp_path / "memory").unlink()
    assert len(memory) > 1 << 20 and b"def add" in memory  # the scan did read the process
    assert verdict.secret.encode() not in memory and verdict.stdin not in memory

@pytest.mark.parametrize("command", ["python -m pytest -q -p no:cacheprovider test_hidden.py",
                                     "pytest -q -p no:cacheprovider test_hidden.py",
                                     "cd . && python -m pytest -q -p no:cacheprovider test_hidden.py"])
@pytest.mark.parametrize(("calc", "passes"), [
    (FIXED, True),
    (BUG, False),
    ("import os\nos._exit(0)\n", False),
    ("import sys\nsys.exit(0)\n", False),  # a collection error, whatever the exit code
])
def test_a_pytest_command_passes_only_when_its_tests_passed(tmp_path: Path, command: str, calc: str,
                                                            passes: bool) -> None:
    (tmp_path / "calc.py").write_text(calc)
    (tmp_path / "test_hidden.py").write_text(HIDDEN_TEST)
    assert judge(verdict_for(command), tmp_path)[0] is passes


def test_a_pytest_in_the_tree_does_not_stand_in_for_the_real_one(tmp_path: Path) -> None:
    (tmp_path / "pytest.py").write_text("import sys\nprint('shadow')\nsys.exit(0)\n")
    (tmp_path / "calc.py").write_text(BUG)
    (tmp_path / "test_hidden.py").write_text(HIDDEN_TEST)
    passed, output = judge(verdict_for("python -m pytest -q test_hidden.py"), tmp_path)
    assert not passed and "shadow" not in output and "1 failed" in output


@pytest.mark.parametrize("command", ["python -m pytest -q -p no:cacheprovider test_hidden.py", "python test_hidden.py"])
def test_the_users_pythonpath_still_reaches_the_tests(tmp_path: Path, command: str) -> None:
    # `python -I` ignores PYTHONPATH; the wrapper puts it back once the runner is imported.
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "calc.py").write_text(FIXED)
    (tmp_path / "test_hidden.py").write_text(HIDDEN if "pytest" not in command else HIDDEN_TEST)
    env = {**os.environ, "PYTHONPATH": "src"}
    assert judge(verdict_for(command), tmp_path, env)[0]
    assert not judge(verdict_for(command), tmp_path, {k: v for k, v in env.items() if k != "PYTHONPATH"})[0]


def test_no_test_at_all_is_not_a_pass(tmp_path: Path) -> None:
    (tmp_path / "test_hidden.py").write_text("x = 1\n")
    assert not judge(verdict_for("python -m pytest -q test_hidden.py"), tmp_path)[0]
    assert not judge(verdict_for("python -m unittest test_hidden"), tmp_path)[0]


@pytest.mark.parametrize(("calc", "passes"), [(FIXED, True), (BUG, False), ("import os\nos._exit(0)\n", False)])
def test_a_unittest_command_passes_only_when_its_tests_passed(tmp_path: Path, calc: str, passes: bool) -> None:
    (tmp_path / "calc.py").write_text(calc)
    (tmp_path / "test_hidden.py").write_text(HIDDEN_UNITTEST)
    assert judge(verdict_for("python -m unittest test_hidden"), tmp_path)[0] is passes


def test_output_without_the_secret_is_not_a_pass(tmp_path: Path) -> None:
    verdict = verdict_for("python -m pytest -q test_hidden.py")
    assert verdict.secret is not None and verdict.secret not in verdict.command  # never on a command line
    assert not verdict.passed(0, "relay-hidden-tests-passed 0123456789abcdef0123456789abcdef\n")
    assert verdict.passed(0, f"relay-hidden-tests-passed {verdict.secret}\n")
    assert not verdict.passed(1, f"relay-hidden-tests-passed {verdict.secret}\n")
    guesses = "".join(f"relay-hidden-tests-passed {guess}\n" for guess in ("0" * 32, verdict.secret, "f" * 32))
    assert not verdict.passed(0, guesses)  # one guess, not many


@pytest.mark.parametrize("command", ["make test", "python -m pytest | tee log", "pytest $ARGS", "sh run.sh",
                                     "python -m pytest tests/test_*.py"])
def test_a_command_of_another_shape_is_judged_by_its_exit_code(command: str) -> None:
    verdict = verdict_for(command)
    assert verdict == Verdict(command) and verdict.stdin is None


@pytest.mark.sandbox
@pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed")
@pytest.mark.parametrize(("command", "hidden"), [("python -m pytest -q -p no:cacheprovider test_hidden.py", HIDDEN_TEST),
                                                 ("python test_hidden.py", HIDDEN),
                                                 ("python -m unittest test_hidden", HIDDEN_UNITTEST)])
def test_a_fixed_case_passes_in_the_sandbox(tmp_path: Path, command: str, hidden: str) -> None:
    # The control of the red-team tests: the secret does reach the wrapper through the sandbox's stdin.
    from relaycode.bench.runner import _run_hidden_tests
    from relaycode.bench.suite import Case
    from relaycode.config import load_config

    worktree = tmp_path / "wt"
    worktree.mkdir()
    (worktree / "calc.py").write_text(FIXED)
    case = Case(id="c1", suite="s", kind="bugfix", instruction="fix add", files={},
                hidden_files={"test_hidden.py": hidden}, test_command=command, timeout_s=120)
    record = _run_hidden_tests(case, worktree, load_config(repo=worktree), no_sandbox=False)
    if "No module named pytest" in record["test_output_tail"] or "python: not found" in record["test_output_tail"]:
        pytest.skip("relay's interpreter (with pytest) is not `python` inside the sandbox here")
    assert record["test_sandboxed"] and record["passed"], record["test_output_tail"][-300:]
