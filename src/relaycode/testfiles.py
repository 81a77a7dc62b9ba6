"""Which files are tests, and whether a task is about tests: one rule for every stage.

The implementer is not shown test files unless the task is about tests (small models shown a test
tend to rewrite it), the repo map ranks them last, and verify detects a test suite by them: the
three must agree. A path is a test when a directory on it is a test directory (`tests`, `test`,
`__tests__`, `spec`) or its name follows a test-file convention; a substring is not enough
(`contests/scoring.py` is not a test, a task saying "latest" is not about tests).
"""

from __future__ import annotations

import re

_TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "specs"})
_TEST_NAME = re.compile(r"^(test_.*|.*_test\.\w+|.*\.(test|spec)\.\w+|conftest\.py)$")
_ABOUT_TESTS = re.compile(r"\b(tests?|testing|pytest|unittest|specs?|test[-_ ]?cases?)\b", re.IGNORECASE)
_NOT_THE_TESTS = re.compile(r"\b(do not|don't|never|not)\s+(change|edit|modify|touch)?\s*the\s+tests?\b",
                            re.IGNORECASE)


def is_test_path(path: str) -> bool:
    """True for `tests/x.py`, `pkg/test/x.py`, `test_x.py`, `x_test.go`, `x.spec.ts`, `conftest.py`."""
    parts = path.replace("\\", "/").split("/")
    return any(part in _TEST_DIRS for part in parts[:-1]) or bool(_TEST_NAME.match(parts[-1]))


def is_python_test_file(name: str) -> bool:
    """A file pytest collects by default: `test_*.py` or `*_test.py`."""
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def task_is_about_tests(task: str) -> bool:
    """Whether a task asks to change tests (whole words: "latest" or "contest" do not count)."""
    return bool(_ABOUT_TESTS.search(task)) and not _NOT_THE_TESTS.search(task)
