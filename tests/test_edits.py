"""Tests for relaycode.edits: parsing real-looking model answers and applying them."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from relaycode.edits import Edit, apply_edits, parse_edits, unwrap_path_fences
from relaycode.errors import EditError

APP = """import os


def add(a, b):
    return a-b


class Greeter:
    def greet(self, name):
        print("hello", name)
        return name
"""


# --------------------------------------------------------------------------- parsing


def test_parse_fenced_block_with_bold_path() -> None:
    text = (
        "Sure, here is the fix.\n\n**src/app.py**\n```python\n<<<<<<< SEARCH\ndef add(a, b):\n"
        "    return a-b\n=======\ndef add(a, b):\n    return a + b\n>>>>>>> REPLACE\n```\n"
    )
    assert parse_edits(text) == [
        Edit("src/app.py", "def add(a, b):\n    return a-b\n", "def add(a, b):\n    return a + b\n")
    ]


def test_parse_unfenced_block() -> None:
    text = "src/app.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"
    assert parse_edits(text) == [Edit("src/app.py", "x = 1\n", "x = 2\n")]


@pytest.mark.parametrize(
    "path_line",
    [
        "`src/app.py`",
        "File: src/app.py",
        "# src/app.py",
        "### File: `src/app.py`",
        "**`src/app.py`**",
        "src/app.py:",
        "./src/app.py",
        "filename: src/app.py",
    ],
)
def test_parse_decorated_paths(path_line: str) -> None:
    text = f"{path_line}\n```\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```"
    assert parse_edits(text)[0].path == "src/app.py"


def test_parse_path_inside_fence_and_in_fence_info() -> None:
    inside = "```python\nsrc/app.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```"
    info = "```src/app.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```"
    assert parse_edits(inside)[0].path == "src/app.py"
    assert parse_edits(info)[0].path == "src/app.py"


@pytest.mark.parametrize("n", [5, 7, 9])
def test_parse_marker_lengths(n: int) -> None:
    text = f"a.py\n{'<' * n} SEARCH\nold\n{'=' * n}\nnew\n{'>' * n} REPLACE\n"
    assert parse_edits(text) == [Edit("a.py", "old\n", "new\n")]


def test_parse_crlf_answer() -> None:
    text = "a.py\r\n```\r\n<<<<<<< SEARCH\r\nold\r\n=======\r\nnew\r\n>>>>>>> REPLACE\r\n```\r\n"
    assert parse_edits(text) == [Edit("a.py", "old\n", "new\n")]


def test_parse_several_blocks_one_path_line_and_separate_fences() -> None:
    text = (
        "a.py\n```\n<<<<<<< SEARCH\none\n=======\n1\n>>>>>>> REPLACE\n\n<<<<<<< SEARCH\ntwo\n=======\n2\n"
        ">>>>>>> REPLACE\n```\nAnd also:\n```\n<<<<<<< SEARCH\nthree\n=======\n3\n>>>>>>> REPLACE\n```\n"
        "b.py\n```\n<<<<<<< SEARCH\nfour\n=======\n4\n>>>>>>> REPLACE\n```\n"
    )
    assert [(e.path, e.search) for e in parse_edits(text)] == [
        ("a.py", "one\n"),
        ("a.py", "two\n"),
        ("a.py", "three\n"),
        ("b.py", "four\n"),
    ]


def test_parse_empty_search_and_empty_replace() -> None:
    text = "new/mod.py\n<<<<<<< SEARCH\n=======\nVALUE = 1\n>>>>>>> REPLACE\n"
    text += "old.py\n<<<<<<< SEARCH\ndelete me\n=======\n>>>>>>> REPLACE\n"
    assert parse_edits(text) == [Edit("new/mod.py", "", "VALUE = 1\n"), Edit("old.py", "delete me\n", "")]


def test_parse_whole_file_blocks() -> None:
    text = (
        "Here are the files.\n\nsrc/app.py\n```python\nprint('a')\n```\n\n**tests/test_app.py**\n\n"
        "```\ndef test():\n    assert True\n```\n\nRun it with:\n```sh\npytest -q\n```\n"
    )
    assert parse_edits(text) == [
        Edit("src/app.py", "", "print('a')\n", whole_file=True),
        Edit("tests/test_app.py", "", "def test():\n    assert True\n", whole_file=True),
    ]


def test_parse_whole_file_after_search_block_is_not_lost() -> None:
    # The closing fence of a SEARCH block must not be taken as an opening fence.
    text = "a.py\n```\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```\n\nb.py\n```\nB = 1\n```\n"
    assert parse_edits(text) == [Edit("a.py", "x\n", "y\n"), Edit("b.py", "", "B = 1\n", whole_file=True)]


def test_parse_ignores_prose_and_plain_code() -> None:
    text = "I looked at the code.\n\n```python\nprint('no path above me')\n```\nDone."
    assert parse_edits(text) == []


def test_parse_missing_divider_names_block_and_format() -> None:
    text = "a.py\n<<<<<<< SEARCH\nold\n>>>>>>> REPLACE\n"
    with pytest.raises(EditError) as err:
        parse_edits(text)
    msg = str(err.value)
    assert "Block 1" in msg and "a.py" in msg and "'=======' line" in msg
    assert "<<<<<<< SEARCH" in msg and ">>>>>>> REPLACE" in msg  # the expected format is shown


def test_parse_missing_replace_marker_at_end() -> None:
    with pytest.raises(EditError, match=r"REPLACE' line is missing"):
        parse_edits("a.py\n<<<<<<< SEARCH\nold\n=======\nnew\n")


def test_parse_missing_replace_before_next_block_reports_second_block_too() -> None:
    text = (
        "a.py\n<<<<<<< SEARCH\nold\n=======\nnew\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nonly search\n"
    )
    with pytest.raises(EditError) as err:
        parse_edits(text)
    assert "Block 1" in str(err.value) and "Block 3" in str(err.value)
    assert "Block 2" not in str(err.value)


def test_parse_no_path() -> None:
    with pytest.raises(EditError, match="no file path"):
        parse_edits("Change this:\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n")


def test_parse_replace_without_search() -> None:
    with pytest.raises(EditError, match="without a '<<<<<<< SEARCH'"):
        parse_edits("a.py\nold\n=======\nnew\n>>>>>>> REPLACE\n")


def test_parse_unclosed_whole_file_fence() -> None:
    with pytest.raises(EditError, match="never closed"):
        parse_edits("a.py\n```python\nprint(1)\n")


# --------------------------------------------------------------------------- applying


def test_apply_exact() -> None:
    edits = [Edit("app.py", "def add(a, b):\n    return a-b\n", "def add(a, b):\n    return a + b\n")]
    out = apply_edits({"app.py": APP}, edits)
    assert out == {"app.py": APP.replace("a-b", "a + b")}


def test_apply_parsed_answer_end_to_end() -> None:
    answer = (
        "app.py\n```python\n<<<<<<< SEARCH\n    return a-b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
        "```\n\nhelpers.py\n```python\n<<<<<<< SEARCH\n=======\ndef helper():\n    return 1\n"
        ">>>>>>> REPLACE\n```\n"
    )
    out = apply_edits({"app.py": APP, "README.md": "hi\n"}, parse_edits(answer))
    assert out == {"app.py": APP.replace("a-b", "a + b"), "helpers.py": "def helper():\n    return 1\n"}


def test_apply_does_not_mutate_input_and_returns_only_changes() -> None:
    files = {"app.py": APP, "other.py": "x = 1\n"}
    snapshot = dict(files)
    out = apply_edits(files, [Edit("app.py", "import os\n", "import sys\n")])
    assert files == snapshot
    assert set(out) == {"app.py"}


def test_apply_ignores_trailing_whitespace() -> None:
    files = {"app.py": "def f():   \n    return 1  \n"}
    out = apply_edits(files, [Edit("app.py", "def f():\n    return 1\n", "def f():\n    return 2\n")])
    assert out["app.py"] == "def f():\n    return 2\n"


def test_apply_reindents_when_model_dropped_indentation() -> None:
    search = 'def greet(self, name):\n    print("hello", name)\n'
    replace = 'def greet(self, name):\n    """Say hello."""\n    print("hi", name)\n'
    out = apply_edits({"app.py": APP}, [Edit("app.py", search, replace)])
    assert (
        '    def greet(self, name):\n        """Say hello."""\n        print("hi", name)\n' in out["app.py"]
    )
    assert out["app.py"].endswith("        return name\n")


def test_apply_reindents_when_model_over_indented() -> None:
    files = {"a.py": "if x:\n    y = 1\nz = 2\n"}
    search = "        if x:\n            y = 1\n"
    replace = "        if x:\n            y = 10\n        w = 3\n"
    out = apply_edits(files, [Edit("a.py", search, replace)])
    assert out["a.py"] == "if x:\n    y = 10\nw = 3\nz = 2\n"


def test_apply_tabs_file_with_shifted_block() -> None:
    files = {"main.go": "func main() {\n\tif ok {\n\t\trun()\n\t}\n}\n"}
    search = "if ok {\n\trun()\n}\n"
    replace = "if ok {\n\trun()\n\tlog()\n}\n"
    out = apply_edits(files, [Edit("main.go", search, replace)])
    assert out["main.go"] == "func main() {\n\tif ok {\n\t\trun()\n\t\tlog()\n\t}\n}\n"


def test_apply_indentation_must_be_consistent() -> None:
    # Only one line is shifted: that is not a consistent offset, so it must not match.
    files = {"a.py": "def f():\n    a = 1\n    b = 2\n"}
    with pytest.raises(EditError, match="not found"):
        apply_edits(files, [Edit("a.py", "def f():\n    a = 1\n        b = 2\n", "x\n")])


def test_apply_crlf_file_keeps_crlf() -> None:
    files = {"a.txt": "one\r\ntwo\r\nthree\r\n"}
    out = apply_edits(files, [Edit("a.txt", "two\n", "TWO\nextra\n")])
    assert out["a.txt"] == "one\r\nTWO\r\nextra\r\nthree\r\n"


def test_apply_preserves_missing_final_newline() -> None:
    out = apply_edits({"a.py": "a\nb"}, [Edit("a.py", "b\n", "c\n")])
    assert out["a.py"] == "a\nc"


def test_apply_tolerates_extra_blank_lines_around_search() -> None:
    files = {"a.py": "x = 1\ny = 2\n"}
    out = apply_edits(files, [Edit("a.py", "\ny = 2\n\n", "\ny = 3\n\n")])
    assert out["a.py"] == "x = 1\ny = 3\n"


def test_apply_two_edits_same_file_sequential() -> None:
    edits = [
        Edit("a.py", "x = 1\n", "x = 2\n"),
        Edit("a.py", "x = 2\n", "x = 3\n"),  # only matches after the first edit
    ]
    assert apply_edits({"a.py": "x = 1\n"}, edits) == {"a.py": "x = 3\n"}


def test_apply_create_new_file_and_append_with_empty_search() -> None:
    edits = [Edit("pkg/new.py", "", "A = 1\n"), Edit("pkg/new.py", "", "B = 2\n")]
    assert apply_edits({}, edits) == {"pkg/new.py": "A = 1\nB = 2\n"}
    assert apply_edits({"empty.py": ""}, [Edit("empty.py", "", "X = 1\n")]) == {"empty.py": "X = 1\n"}
    assert apply_edits({"n.py": "a"}, [Edit("n.py", "", "b\n")]) == {"n.py": "a\nb\n"}


def test_apply_edit_after_creating_file_in_same_batch() -> None:
    edits = [Edit("new.py", "", "A = 1\n"), Edit("new.py", "A = 1\n", "A = 2\n")]
    assert apply_edits({}, edits) == {"new.py": "A = 2\n"}


def test_apply_unknown_file_names_known_files() -> None:
    with pytest.raises(EditError) as err:
        apply_edits({"src/app.py": APP, "README.md": ""}, [Edit("src/ap.py", "x\n", "y\n")])
    msg = str(err.value)
    assert "src/ap.py does not exist" in msg and "src/app.py" in msg and "README.md" in msg
    assert "Did you mean src/app.py" in msg


def test_apply_ambiguous_match_asks_for_more_context() -> None:
    files = {"a.py": "def f():\n    return 1\n\n\ndef g():\n    return 1\n"}
    with pytest.raises(EditError) as err:
        apply_edits(files, [Edit("a.py", "    return 1\n", "    return 2\n")])
    msg = str(err.value)
    assert "matches 2 places" in msg and "lines 2, 6" in msg and "more surrounding lines" in msg


def test_apply_not_found_quotes_search_and_closest_lines_with_numbers() -> None:
    search = "class Greeter:\n    def greet(self, nam):\n        print('hello', name)\n"
    with pytest.raises(EditError) as err:
        apply_edits({"app.py": APP}, [Edit("app.py", search, "x\n")])
    msg = str(err.value)
    assert "SEARCH text was not found in app.py" in msg
    assert "    def greet(self, nam):" in msg  # the failed SEARCH is quoted
    assert " 8 | class Greeter:" in msg and " 9 |     def greet(self, name):" in msg
    assert '10 |         print("hello", name)' in msg
    assert "3 | " not in msg.split("closest lines")[1]  # far-away lines are not shown


def test_apply_not_found_mentions_tabs() -> None:
    with pytest.raises(EditError, match="indents with tabs"):
        apply_edits({"a.go": "func f() {\n\treturn 1\n}\n"}, [Edit("a.go", "func f() {\n  return 2\n", "")])


def test_apply_all_or_nothing_collects_every_error() -> None:
    edits = [
        Edit("a.py", "x = 1\n", "x = 2\n"),  # fine
        Edit("a.py", "nope\n", "y\n"),  # not found
        Edit("missing.py", "z\n", "w\n"),  # unknown file
    ]
    with pytest.raises(EditError) as err:
        apply_edits({"a.py": "x = 1\n"}, edits)
    msg = str(err.value)
    assert msg.startswith("2 edits failed; no changes were applied")
    assert "Edit 2 (a.py)" in msg and "Edit 3: missing.py does not exist" in msg


def test_apply_whole_file_replace_and_limit() -> None:
    small = {"a.py": "old\n"}
    assert apply_edits(small, [Edit("a.py", "", "new\n", whole_file=True)]) == {"a.py": "new\n"}
    big = {"a.py": "line\n" * 401}
    with pytest.raises(EditError, match="401 lines"):
        apply_edits(big, [Edit("a.py", "", "new\n", whole_file=True)])
    # New files have no limit; an explicit higher limit lets the rewrite through.
    assert apply_edits({}, [Edit("n.py", "", "x\n" * 1000, whole_file=True)])["n.py"].count("\n") == 1000
    assert apply_edits(big, [Edit("a.py", "", "new\n", whole_file=True)], max_whole_file_lines=500)


def test_apply_unchanged_result_is_not_returned() -> None:
    assert apply_edits({"a.py": "x\n"}, [Edit("a.py", "x\n", "x\n")]) == {}


# --------------------------------------------------------------------------- properties

_line = st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=12)
_lines = st.lists(_line, min_size=1, max_size=25)


@st.composite
def _file_and_block(draw: st.DrawFn) -> tuple[str, str]:
    lines = draw(_lines)
    trailing = draw(st.booleans())
    # Without a final newline, a last empty line would just be a final newline: keep one spelling.
    assume(trailing or lines[-1] != "")
    text = "\n".join(lines) + ("\n" if trailing else "")
    start = draw(st.integers(0, len(lines) - 1))
    end = draw(st.integers(start + 1, len(lines)))
    block = "\n".join(lines[start:end]) + ("\n" if end < len(lines) or trailing else "")
    assume(block.strip())  # a blank SEARCH means "create/append", not "find"
    # Unique as a run of whole lines (a block's final "\n" also matches a last line without one).
    n = end - start
    assume(sum(lines[i : i + n] == lines[start:end] for i in range(len(lines) - n + 1)) == 1)
    return text, block


@settings(max_examples=300, deadline=None)
@given(_file_and_block())
def test_property_same_search_and_replace_is_identity(fb: tuple[str, str]) -> None:
    text, block = fb
    assert apply_edits({"f": text}, [Edit("f", block, block)]) == {}


@settings(max_examples=300, deadline=None)
@given(_file_and_block(), st.lists(_line, max_size=5))
def test_property_replace_then_reverse_round_trips(fb: tuple[str, str], new_lines: list[str]) -> None:
    text, block = fb
    # A sentinel line makes the replacement unique in the edited file, so reversing is well defined.
    replacement = "\n".join([*new_lines, "@@relay-sentinel@@"]) + "\n"
    assume("@@relay-sentinel@@" not in text)
    edited = apply_edits({"f": text}, [Edit("f", block, replacement)])["f"]
    assert "@@relay-sentinel@@" in edited
    restored = apply_edits({"f": edited}, [Edit("f", replacement, block)]).get("f", edited)
    assert restored == text


# --------------------------------------------------------------------------- path in its own fence
# Seen in Qwen2.5-Coder 1.5B whole-file answers on QuixBugs (the gcd case, verbatim shape).

def test_path_wrapped_in_a_bare_fence_is_not_part_of_the_file() -> None:
    answer = "```\ngcd.py\n```python\ndef gcd(a, b):\n    return a\n```"
    assert parse_edits(answer) == [Edit(path="gcd.py", search="", replace="def gcd(a, b):\n    return a\n",
                                        whole_file=True)]


def test_path_with_its_own_closed_fence_then_the_code_fence() -> None:
    answer = "```\ngcd.py\n```\n```python\ndef gcd(a, b):\n    return a\n```\n"
    assert parse_edits(answer) == [Edit(path="gcd.py", search="", replace="def gcd(a, b):\n    return a\n",
                                        whole_file=True)]


def test_path_fence_and_code_fence_separated_by_blank_lines() -> None:
    answer = "```\nkth.py\n```\n\n```python\ndef kth(arr, k):\n    return arr[k]\n```\n"
    assert parse_edits(answer) == [Edit(path="kth.py", search="", replace="def kth(arr, k):\n    return arr[k]\n",
                                        whole_file=True)]


def test_a_fenced_block_that_only_mentions_a_file_name_is_left_alone() -> None:
    # A bare fence, a path-like line, then code (no language fence): ordinary content, not a wrapper.
    lines = ["```", "setup.py", "print(1)", "```"]
    assert unwrap_path_fences(lines) == lines


def test_the_files_own_path_as_the_first_code_line_is_dropped() -> None:
    # QuixBugs gcd, local preset at ec50e7d: the module began with a bare `gcd.py` line (valid
    # Python, so the syntax gate passed it) and failed at import with NameError.
    for answer in ("gcd.py\n```python\ngcd.py\ndef gcd(a, b):\n    return a\n```",
                   "gcd.py\n```python\n\n`gcd.py`\ndef gcd(a, b):\n    return a\n```",
                   "src/gcd.py\n```python\ngcd.py\ndef gcd(a, b):\n    return a\n```"):
        [edit] = parse_edits(answer)
        assert edit.replace == "def gcd(a, b):\n    return a\n", answer


def test_a_comment_or_another_name_on_the_first_line_stays() -> None:
    [edit] = parse_edits("gcd.py\n```python\n# gcd.py\ndef gcd(a, b):\n    return a\n```")
    assert edit.replace.startswith("# gcd.py\n")
    [edit] = parse_edits("gcd.py\n```python\nhelpers.py\ndef gcd(a, b):\n    return a\n```")
    assert edit.replace.startswith("helpers.py\n")  # not this file's name: content, left to the syntax gate


# --------------------------------------------------------------------------- placeholder answers


@pytest.mark.parametrize("answer", [
    "allergies.py\n```python\nallergies.py\n```\n",  # the file's own name as its whole content
    "allergies.py\n```python\n\n```\n",  # nothing at all
    "allergies.py\n```\nsrc/other.py\n```\n",  # another path
])
def test_a_whole_file_answer_that_is_no_code_is_refused(answer: str) -> None:
    files = {"allergies.py": "class Allergies:\n    pass\n"}
    with pytest.raises(EditError, match=r"allergies\.py"):
        apply_edits(files, parse_edits(answer))


def test_a_whole_file_answer_may_fill_an_empty_file_or_keep_a_one_line_file() -> None:
    assert apply_edits({"new.py": ""}, parse_edits("new.py\n```python\nx = 1\n```\n")) == {"new.py": "x = 1\n"}
    assert apply_edits({"a.py": "x = 1\n"}, parse_edits("a.py\n```python\nx = 2\n```\n")) == {"a.py": "x = 2\n"}
