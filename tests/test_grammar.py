"""GBNF grammars for constrained implement answers (relaycode/grammar.py), checked by the language they accept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbnf_match import accepts
from relaycode.grammar import whole_file_grammar


def block(path: str, body: str = "x = 1\n", lang: str = "python") -> str:
    return f"{path}\n```{lang}\n{body}```\n"


def test_a_whole_file_answer_for_a_shown_path_is_accepted() -> None:
    grammar = whole_file_grammar(["src/a.py"])
    assert accepts(grammar, block("src/a.py"))
    assert accepts(grammar, block("src/a.py", body="", lang=""))  # an emptied file
    assert accepts(grammar, block("src/a.py").rstrip("\n"))  # the last newline is optional


def test_paths_not_shown_prose_and_unclosed_fences_are_refused() -> None:
    grammar = whole_file_grammar(["a.py"])
    assert not accepts(grammar, block("b.py"))
    assert not accepts(grammar, "Here is the fix:\n" + block("a.py"))
    assert not accepts(grammar, "a.py\n```python\nx = 1\n")
    assert not accepts(grammar, "a.py\n```python\nx = 1\n```\ntrailing prose\n")


def test_paths_are_matched_literally_even_with_quotes_and_backslashes() -> None:
    weird = 'we"ird\\name.py'
    grammar = whole_file_grammar([weird])
    assert accepts(grammar, block(weird))
    assert not accepts(grammar, block("weird.py"))


def test_each_shown_file_at_most_once_in_the_order_shown() -> None:
    # Unbounded, small models repeat the same files until the token limit, or write one file twice.
    grammar = whole_file_grammar(["a.py", "b.py", "c.py"])
    for paths in (["a.py"], ["b.py"], ["c.py"], ["a.py", "c.py"], ["a.py", "b.py", "c.py"], ["b.py", "c.py"]):
        assert accepts(grammar, "\n".join(block(p) for p in paths)), paths
    for paths in (["a.py", "a.py"], ["b.py", "a.py"], ["a.py", "b.py", "c.py", "a.py"], []):
        assert not accepts(grammar, "\n".join(block(p) for p in paths)), paths


def test_a_duplicate_shown_path_counts_once() -> None:
    grammar = whole_file_grammar(["a.py", "a.py"])
    assert accepts(grammar, block("a.py"))
    assert not accepts(grammar, block("a.py") + "\n" + block("a.py"))


def test_no_paths_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        whole_file_grammar([])


lines = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
                         max_size=12), max_size=5)


@settings(max_examples=60, deadline=None)
@given(lines)
def test_any_content_without_a_fence_line_is_accepted(body_lines: list[str]) -> None:
    body = "".join(line + "\n" for line in body_lines)
    grammar = whole_file_grammar(["a.py"])
    assert accepts(grammar, block("a.py", body)) == (not any(line.startswith("```") for line in body_lines))


@pytest.mark.parametrize("line", ["`", "``", "`x", "``x", "x```", " ```", ""])
def test_lines_that_do_not_open_with_three_backticks_are_content(line: str) -> None:
    assert accepts(whole_file_grammar(["a.py"]), block("a.py", f"a = 1\n{line}\nb = 2\n"))


def test_a_line_opening_with_three_backticks_closes_the_fence() -> None:
    assert not accepts(whole_file_grammar(["a.py"]), block("a.py", "a = 1\n```x\nb = 2\n"))
