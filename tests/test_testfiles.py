"""One rule for test files and test-related tasks (regressions: substring matches)."""

from __future__ import annotations

import pytest

from relaycode.testfiles import is_test_path, task_is_about_tests


@pytest.mark.parametrize("path", ["tests/test_x.py", "pkg/tests/helpers.py", "test/data.py", "test_api.py",
                                  "src/x_test.go", "web/a.spec.ts", "conftest.py", "app/__tests__/a.js"])
def test_test_paths(path: str) -> None:
    assert is_test_path(path)


@pytest.mark.parametrize("path", ["contests/scoring.py", "latest/x.py",
                                  "attestation.py", "src/testing_utils.py", "protests/tests_data.md"])
def test_not_test_paths(path: str) -> None:
    assert not is_test_path(path)  # `"tests/" in path` called contests/scoring.py a test file


@pytest.mark.parametrize(("task", "about"), [
    ("add a test for the empty page", True),
    ("fix the failing tests in pagination", True),
    ("make pytest pass", True),
    ("use the latest API for dates", False),  # `"test" in task` said yes
    ("score contests by the fastest time", False),
    ("fix the bug; do not change the tests", False),
])
def test_task_about_tests(task: str, about: bool) -> None:
    assert task_is_about_tests(task) is about


def test_the_repo_map_uses_the_same_rule() -> None:
    from relaycode.repomap import _is_test

    assert not _is_test("contests/scoring.py") and _is_test("tests/test_a.py")


def test_the_implementer_is_shown_what_the_rule_says() -> None:
    """Regressions: `"tests/" in path` hid contests/scoring.py from the implementer; `"test" in task` showed
    test files for a task that said "latest"."""
    from relaycode.stages.implement import choose_files

    files = ["contests/scoring.py", "tests/test_scoring.py"]
    sizes = dict.fromkeys(files, 100)
    assert choose_files(files, None, files, max_chars=10_000, max_files=3, sizes=sizes, task="use the latest scoring rule") == [
        "contests/scoring.py"]
    assert "tests/test_scoring.py" in choose_files(files, None, files, max_chars=10_000, max_files=3, sizes=sizes,
                                                   task="add a test for ties")
