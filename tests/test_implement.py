"""Pure parts of the implement stage: the syntax gate."""

from __future__ import annotations

import pytest

from relaycode.errors import EditError
from relaycode.stages.implement import check_syntax


def test_a_file_that_compiled_must_still_compile() -> None:
    with pytest.raises(EditError, match=r"a\.py line 1"):
        check_syntax({"a.py": "x = 1\n"}, {"a.py": "```python\nx = 1\n"})


def test_new_python_files_are_checked_too() -> None:
    with pytest.raises(EditError, match=r"new\.py"):
        check_syntax({}, {"new.py": "def f(:\n"})


def test_a_file_that_was_already_broken_is_not_judged() -> None:
    check_syntax({"a.py": "def f(:\n"}, {"a.py": "def f(:\n    pass\n"})


def test_non_python_files_are_not_judged() -> None:
    check_syntax({"README.md": "x"}, {"README.md": "def f(:"})
