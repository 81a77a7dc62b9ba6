"""Verify falls back to the project's own `>>>` examples when it has no test suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaycode.sandbox import Limits, SandboxPolicy, bwrap_available
from relaycode.stages.doc_examples import COMMAND_NAME, collect, example_strings
from relaycode.stages.verify import detect_commands, run_verify

BUGGY = '''
def bitcount(n):
    count = 0
    while n:
        n ^= n - 1
        count += 1
    return count


"""
Examples:
    >>> bitcount(127)
    7
    >>> bitcount(128)
    1
"""
'''
FIXED = BUGGY.replace("n ^= n - 1", "n &= n - 1")


def test_examples_in_bare_strings_are_found() -> None:
    assert len(example_strings(BUGGY)) == 1
    assert example_strings("def f():\n    return 1\n") == []


def test_detected_only_without_a_test_suite(tmp_path: Path) -> None:
    (tmp_path / "bitcount.py").write_text(BUGGY)
    assert detect_commands(tmp_path) == [COMMAND_NAME]
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    assert COMMAND_NAME not in detect_commands(tmp_path)


@pytest.mark.parametrize("sandboxed", [True, False])
def test_examples_fail_on_the_bug_and_pass_on_the_fix(tmp_path: Path, sandboxed: bool) -> None:
    if sandboxed and not bwrap_available():
        pytest.skip("bubblewrap is not installed (scripts/dev installs it)")
    policy = SandboxPolicy(enabled=sandboxed)
    limits = Limits(wall_s=30)
    (tmp_path / "bitcount.py").write_text(BUGGY)
    bad = run_verify(tmp_path, None, policy=policy, limits=limits)
    assert not bad.passed
    assert bad.results[0].command == COMMAND_NAME
    assert "0 passed" in bad.results[0].output_tail or "failed" in bad.results[0].output_tail
    (tmp_path / "bitcount.py").write_text(FIXED)
    good = run_verify(tmp_path, None, policy=policy, limits=limits)
    assert good.passed, good.results[0].output_tail
    assert "2 passed, 0 failed" in good.results[0].output_tail


def test_an_endless_loop_is_a_failure_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "loop.py").write_text('def f():\n    while True:\n        pass\n\n"""\n>>> f()\n1\n"""\n')
    result = run_verify(tmp_path, None, policy=SandboxPolicy(enabled=False), limits=Limits(wall_s=60))
    assert not result.passed
    assert result.results[0].seconds < 30


def test_pinned_examples_still_run_after_the_docstring_is_deleted(tmp_path: Path) -> None:
    (tmp_path / "bitcount.py").write_text(BUGGY)
    pinned = collect(tmp_path)
    assert list(pinned) == ["bitcount.py"]
    policy, limits = SandboxPolicy(enabled=False), Limits(wall_s=30)
    stripped_bug = BUGGY.split('"""')[0]  # a whole-file answer that kept the bug and lost the examples
    (tmp_path / "bitcount.py").write_text(stripped_bug)
    assert run_verify(tmp_path, None, policy=policy, limits=limits).results == []  # unpinned: nothing to check
    bad = run_verify(tmp_path, [COMMAND_NAME], policy=policy, limits=limits, examples=pinned)
    assert not bad.passed
    (tmp_path / "bitcount.py").write_text(FIXED.split('"""')[0])
    good = run_verify(tmp_path, [COMMAND_NAME], policy=policy, limits=limits, examples=pinned)
    assert good.passed and "2 passed, 0 failed" in good.results[0].output_tail


def test_a_pinned_file_that_was_deleted_fails_its_examples(tmp_path: Path) -> None:
    (tmp_path / "bitcount.py").write_text(FIXED)
    pinned = collect(tmp_path)
    (tmp_path / "bitcount.py").unlink()
    result = run_verify(tmp_path, [COMMAND_NAME], policy=SandboxPolicy(enabled=False), limits=Limits(wall_s=30),
                        examples=pinned)
    assert not result.passed and "no longer exists" in result.results[0].output_tail


def test_pinned_examples_travel_on_stdin_not_the_command_line() -> None:
    from relaycode.stages.verify import _expand

    pinned = {"a.py": [">>> ''\n" * 50_000]}  # 400 KB, three times what one argument may hold
    command, stdin = _expand(COMMAND_NAME, pinned)
    assert ">>> ''" not in command and command.endswith(" --pinned")
    assert stdin is not None and json.loads(stdin) == pinned
    assert _expand(COMMAND_NAME, None)[1] is None and _expand("pytest -q") == ("pytest -q", None)
