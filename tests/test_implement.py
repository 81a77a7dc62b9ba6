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


def test_answer_options_carry_the_seed_and_a_grammar_only_where_the_server_takes_one() -> None:
    from relaycode.config import config_from_dict
    from relaycode.stages.implement import answer_options

    local, api = "local:qwen2.5-coder-0.5b", "openai:gpt-5-mini"
    cfg = config_from_dict({"stages": {"implement": {"model": local}}})
    options = answer_options(local, cfg, True, ["a.py"], temperature=0.5, seed=5)
    assert options.seed == 5 and options.temperature == 0.5
    assert options.extra_body is not None and '"a.py"' in str(options.extra_body["grammar"])
    assert answer_options(local, cfg, False, ["a.py"]).extra_body is None  # SEARCH/REPLACE: no grammar
    assert answer_options(api, cfg, True, ["a.py"]).extra_body is None
    off = config_from_dict({"stages": {"implement": {"model": local}}, "models": {local: {"answer_grammar": False}}})
    assert answer_options(local, off, True, ["a.py"]).extra_body is None
