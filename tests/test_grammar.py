"""GBNF grammars for constrained implement answers (relaycode/grammar.py)."""

from __future__ import annotations

import re

import pytest

from relaycode.grammar import whole_file_grammar


def test_paths_are_the_only_choices_and_are_escaped() -> None:
    grammar = whole_file_grammar(["b.py", 'we"ird\\name.py', "b.py"])
    [path_rule] = [line for line in grammar.splitlines() if line.startswith("path ::=")]
    assert path_rule == 'path ::= "b.py" | "we\\"ird\\\\name.py"'
    assert set(re.findall(r"^(\w+) ::=", grammar, re.MULTILINE)) == {"root", "block", "path", "lang", "line"}


def test_no_paths_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        whole_file_grammar([])


def test_an_answer_has_at_most_one_block_per_shown_file() -> None:
    # Unbounded, small models repeat the same files until the token limit.
    assert whole_file_grammar(["a.py", "b.py", "c.py"]).splitlines()[0] == 'root ::= block ("\\n" block){0,2}'
    assert whole_file_grammar(["a.py"]).splitlines()[0] == "root ::= block"
