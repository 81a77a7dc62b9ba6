"""Verify stage: command detection, pytest failure parsing, real runs through the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relaycode import sandbox
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.stages.verify import (
    NPM_COMMAND,
    PYTEST_COMMAND,
    RUFF_COMMAND,
    CommandResult,
    VerifyResult,
    detect_commands,
    parse_pytest_failures,
    run_verify,
)

needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed")


def _make(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"README.md": "x"}, []),
        ({"tests/__init__.py": ""}, [PYTEST_COMMAND]),
        ({"test/x.js": ""}, []),
        ({"test/test_x.py": ""}, [PYTEST_COMMAND]),
        ({"pkg/test_core.py": ""}, [PYTEST_COMMAND]),
        ({"pkg/core_test.py": ""}, [PYTEST_COMMAND]),
        ({".venv/lib/test_vendored.py": "", "node_modules/x/test_y.py": ""}, []),
        ({"pytest.ini": "[pytest]\n"}, [PYTEST_COMMAND]),
        ({"pyproject.toml": "[tool.pytest.ini_options]\n"}, [PYTEST_COMMAND]),
        ({"setup.cfg": "[tool:pytest]\n"}, [PYTEST_COMMAND]),
        ({"tox.ini": "[pytest]\n"}, [PYTEST_COMMAND]),
        ({"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}, [RUFF_COMMAND]),
        ({"ruff.toml": ""}, [RUFF_COMMAND]),
        ({"pyproject.toml": "[tool.ruff.lint]\n", "tests/t.py": ""}, [PYTEST_COMMAND, RUFF_COMMAND]),
        ({"package.json": json.dumps({"scripts": {"test": "jest"}})}, [NPM_COMMAND]),
        (
            {"package.json": json.dumps({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}})},
            [],
        ),
        ({"package.json": json.dumps({"scripts": {"build": "tsc"}})}, []),
        ({"package.json": "{not json"}, []),
    ],
    ids=lambda v: ",".join(v) if isinstance(v, dict) else None,
)
def test_detect_commands(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    assert detect_commands(_make(tmp_path, files)) == expected


def test_parse_pytest_failures() -> None:
    output = """
tests/test_a.py::test_ok PASSED
tests/test_a.py::test_bad FAILED
=========================== short test summary info ============================
FAILED tests/test_a.py::test_bad - assert 1 == 2
FAILED tests/test_a.py::test_param[1-2] - ValueError: x - y
ERROR tests/test_b.py::test_fixture - RuntimeError: boom
ERROR tests/test_c.py
2 failed, 1 passed, 1 error in 0.12s
"""
    assert parse_pytest_failures(output) == [
        "tests/test_a.py::test_bad",
        "tests/test_a.py::test_param[1-2]",
        "tests/test_b.py::test_fixture",
        "tests/test_c.py",
    ]
    assert parse_pytest_failures("3 passed in 0.01s") == []


def test_verify_result_round_trip_and_summary() -> None:
    result = VerifyResult(
        [
            CommandResult("ruff check .", 0, 0.1, "All checks passed!", False),
            CommandResult(
                "python -m pytest", 1, 2.0, "...\nFAILED t.py::test_x - boom\n", False, ["t.py::test_x"]
            ),
            CommandResult("npm test", 137, 5.0, "", True),
        ]
    )
    assert not result.passed
    again = VerifyResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    summary = result.summary()
    assert "PASSED: ruff check ." in summary
    assert "FAILED: python -m pytest (exit code 1)" in summary
    assert "  t.py::test_x" in summary and "boom" in summary
    assert "FAILED: npm test (timed out after 5s)" in summary
    assert VerifyResult([]).passed
    assert VerifyResult([CommandResult("x", 0, 0.0, "", False)]).summary().startswith("All verification")


_FAILING_PROJECT = {
    "pyproject.toml": "[tool.pytest.ini_options]\ntestpaths = ['tests']\n",
    "calc.py": "def add(a, b):\n    return a - b  # the bug\n",
    "tests/test_calc.py": (
        "import pytest\nfrom calc import add\n\n"
        "def test_add():\n    assert add(2, 2) == 4\n\n"
        "def test_zero():\n    assert add(0, 0) == 0\n\n"
        "@pytest.fixture\ndef broken():\n    raise RuntimeError('fixture boom')\n\n"
        "def test_uses_broken(broken):\n    pass\n"
    ),
    "tests/conftest.py": "import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).parent.parent))\n",
}


@needs_bwrap
@pytest.mark.sandbox
def test_failing_project_through_sandbox(tmp_path: Path) -> None:
    root = _make(tmp_path / "proj", _FAILING_PROJECT)
    result = run_verify(root, None, policy=SandboxPolicy(), limits=Limits(wall_s=60))
    assert [r.command for r in result.results] == [PYTEST_COMMAND]
    (run,) = result.results
    assert not result.passed and run.exit_code == 1, run.output_tail
    assert run.failing_tests == ["tests/test_calc.py::test_add", "tests/test_calc.py::test_uses_broken"]
    assert "fixture boom" in run.output_tail
    assert "tests/test_calc.py::test_add" in result.summary()
    # No bytecode or pytest caches left in the worktree (they would pollute the diff).
    leftovers = {p.name for p in root.rglob("*")} & {"__pycache__", ".pytest_cache"}
    assert not leftovers


@needs_bwrap
@pytest.mark.sandbox
def test_passing_project_and_all_commands_run(tmp_path: Path) -> None:
    root = _make(tmp_path / "proj", {**_FAILING_PROJECT, "calc.py": "def add(a, b):\n    return a + b\n"})
    (root / "tests" / "test_calc.py").write_text(
        "from calc import add\n\ndef test_add():\n    assert add(2, 2) == 4\n"
    )
    result = run_verify(
        root, ["false", PYTEST_COMMAND, "echo done"], policy=SandboxPolicy(), limits=Limits(wall_s=60)
    )
    assert [r.exit_code for r in result.results] == [1, 0, 0]
    assert "1 passed" in result.results[1].output_tail
    assert not result.passed


def _pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.parametrize("enabled", [False, pytest.param(True, marks=[needs_bwrap, pytest.mark.sandbox])])
def test_hanging_command_is_killed_with_its_group(tmp_path: Path, enabled: bool) -> None:
    root = _make(tmp_path / "proj", {"README": ""})
    # Unsandboxed, the child's pid file names it; in the sandbox that pid is namespace-local, so
    # there we look for the uniquely timed sleep in the host's /proc instead.
    duration = f"29.{os.getpid()}{int(time.time() * 1000) % 100000}"  # unique, to find it in /proc
    command = f"sleep {duration} & echo $! > child.pid; echo started; wait"
    start = time.monotonic()
    result = run_verify(root, [command], policy=SandboxPolicy(enabled=enabled), limits=Limits(wall_s=1))
    elapsed = time.monotonic() - start
    (run,) = result.results
    assert run.timed_out and not result.passed
    assert run.exit_code == 128 + 9
    assert "started" in run.output_tail
    assert elapsed < 5
    if not enabled:
        pid = int((root / "child.pid").read_text())
        deadline = time.monotonic() + 2
        while not _pid_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pid_gone(pid)
    else:
        # Nothing of the sandbox is left: no process anywhere still runs our uniquely timed sleep.
        time.sleep(0.2)
        wanted = f"sleep\0{duration}\0".encode()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            assert cmdline != wanted or _pid_gone(int(proc.name)), f"left behind: pid {proc.name}"


# --------------------------------------------------------------------------- the project's own environment

def _venv(path: Path) -> Path:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def test_project_env_finds_the_checkouts_venv_or_the_configured_one(tmp_path: Path) -> None:
    from relaycode.errors import ConfigError
    from relaycode.stages.verify import project_env

    assert project_env(tmp_path, None) is None
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    venv = _venv(tmp_path / ".venv")
    assert project_env(tmp_path, None) == venv
    other = _venv(tmp_path / "envs" / "dev")
    assert project_env(tmp_path, "envs/dev") == other
    assert project_env(tmp_path, "envs/dev/bin/python") == other
    with pytest.raises(ConfigError, match=r"stages\.verify\.python: nowhere is not a virtualenv"):
        project_env(tmp_path, "nowhere")


def test_a_committed_venv_is_not_used_and_pyvenv_cfg_chooses_no_mount(tmp_path: Path) -> None:
    """A repository that commits `.venv` (with `home = /` in pyvenv.cfg) must not choose what is mounted."""
    from relaycode.stages.verify import interpreter_prefix, project_env, tool_env

    venv = _venv(tmp_path / ".venv")
    (venv / "pyvenv.cfg").write_text("home = /x\n")  # the old reader bound the parent of this: `/`
    prefix = interpreter_prefix(venv)
    assert prefix is not None and prefix != Path("/")
    assert Path(os.path.realpath(sys.executable)).is_relative_to(prefix)
    _, policy = tool_env(venv, SandboxPolicy())
    assert Path("/") not in policy.readonly_paths
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    assert project_env(tmp_path, None) == venv  # the user's own, untracked environment
    subprocess.run([*git, "add", "-f", ".venv/pyvenv.cfg"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "venv"], cwd=tmp_path, check=True)
    assert project_env(tmp_path, None) is None  # committed: the repository's say, not used
    assert project_env(tmp_path, ".venv") == venv  # unless the user names it


def test_an_interpreter_linked_to_a_wide_directory_is_refused(tmp_path: Path) -> None:
    from relaycode.errors import SandboxRefused

    if not sandbox.bwrap_available():
        pytest.skip("bubblewrap is not installed (scripts/dev installs it)")
    wt = tmp_path / "wt"
    wt.mkdir()
    home_parent = Path.home().parent
    with pytest.raises(SandboxRefused, match="refusing to mount"):
        run_verify(wt, ["true"], policy=SandboxPolicy(readonly_paths=(home_parent,)), limits=Limits(wall_s=30))


@pytest.mark.parametrize("sandboxed", [True, False])
def test_verify_runs_the_projects_python_first(tmp_path: Path, sandboxed: bool) -> None:
    from relaycode.stages.verify import project_env

    if sandboxed and not sandbox.bwrap_available():
        pytest.skip("bubblewrap is not installed (scripts/dev installs it)")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=checkout, check=True)
    venv = _venv(checkout / ".venv")
    worktree = tmp_path / "worktree"  # as in a run: the venv is in the checkout, not in the worktree
    worktree.mkdir()
    result = run_verify(worktree, ["python -c 'import sys; print(sys.prefix)'"],
                        policy=SandboxPolicy(enabled=sandboxed), limits=Limits(wall_s=30),
                        venv=project_env(checkout, None))
    assert result.passed, result.results[0].output_tail
    assert result.results[0].output_tail.strip() == str(venv)
