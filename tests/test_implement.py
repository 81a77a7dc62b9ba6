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
    from relaycode.models import resolve
    from relaycode.stages.implement import answer_options

    local, api = "local:qwen2.5-coder-0.5b", "openai:gpt-5-mini"
    cfg = config_from_dict({"stages": {"implement": {"model": local}}})
    profile = resolve(local, cfg).profile
    options = answer_options(profile, True, ["a.py"], temperature=0.5, seed=5)
    assert options.seed == 5 and options.temperature == 0.5
    assert options.extra_body is not None and '"a.py"' in str(options.extra_body["grammar"])
    assert answer_options(profile, False, ["a.py"]).extra_body is None  # SEARCH/REPLACE: no grammar
    assert answer_options(resolve(api, cfg).profile, True, ["a.py"]).extra_body is None
    off = config_from_dict({"stages": {"implement": {"model": local}}, "models": {local: {"answer_grammar": False}}})
    assert answer_options(resolve(local, off).profile, True, ["a.py"]).extra_body is None


def test_how_many_files_are_shown_depends_on_the_model_context() -> None:
    from relaycode.models import ResolvedModel, resolve
    from relaycode.stages.implement import choose_files, max_files_shown

    local, default, claude = (resolve(s) for s in ("local:qwen2.5-coder-1.5b", "openrouter:z-ai/glm-4.6",
                                                     "anthropic:claude-sonnet-4-6"))
    assert [max_files_shown(m.profile) for m in (local, default, claude)] == [3, 6, 12]
    files = [f"pkg/m{i}.py" for i in range(20)]
    small = dict.fromkeys(files, 1_000)

    def shown(model: ResolvedModel, sizes: dict[str, int]) -> list[str]:
        return choose_files(files, None, files, sizes=sizes, max_chars=model.context_chars(0.45),
                            max_files=max_files_shown(model.profile))

    assert shown(local, small) == files[:3] and shown(claude, small) == files[:12]
    # The character budget (from the same profile) still binds: 40k-character files fill a 200k-token context fast.
    big = dict.fromkeys(files, 40_000)
    assert len(shown(claude, big)) == claude.context_chars(0.45) // 40_000 < 12
