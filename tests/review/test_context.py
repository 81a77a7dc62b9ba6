"""What reviewers are shown: enclosing code, numbering, chunking, and what is listed as not reviewed."""

from __future__ import annotations

from relaycode.review.context import WINDOW, chunks_for_file, context_ranges, plan_chunks, render
from relaycode.review.diff import parse_diff
from relaycode.review.evaluate import unified_diff

OLD = """import os


def first(x):
    a = x + 1
    b = a * 2
    c = b - 3
    d = c / 4
    e = d ** 5
    return e


class Box:
    def size(self):
        return 1

    def area(self):
        w = 2
        h = 3
        return w * h
"""
NEW = OLD.replace("        h = 3\n", "        h = 4\n").replace("    e = d ** 5\n", "    e = d ** 6\n")


def test_enclosing_python_definitions_are_shown_with_new_line_numbers() -> None:
    [fd] = parse_diff(unified_diff("box.py", OLD, NEW))
    text, shown = render(fd, fd.hunks, NEW)
    lines = NEW.splitlines()
    # the whole of `first` and of `Box.area`, each line numbered as in the new file
    assert set(range(4, 11)) <= shown and set(range(17, 21)) <= shown
    assert "    4   def first(x):" in text
    assert f"    9 + {lines[8]}" in text and f"   19 + {lines[18]}" in text
    assert "      -     e = d ** 5" in text and "      -         h = 3" in text
    assert 1 not in shown  # `import os` is in no enclosing definition and outside the windows


def test_without_source_only_hunks_are_shown() -> None:
    [fd] = parse_diff(unified_diff("box.py", OLD, NEW))
    _text, shown = render(fd, fd.hunks, None)
    assert shown == fd.diff_lines()


def test_other_languages_get_a_window() -> None:
    old = "".join(f"line {i}\n" for i in range(1, 61))
    new = old.replace("line 30\n", "line thirty\n")
    [fd] = parse_diff(unified_diff("notes.txt", old, new))
    _text, shown = render(fd, fd.hunks, new)
    assert shown == set(range(21, 39))  # ±8 around both neighbours (29, 30) of the replaced line


def test_a_file_that_does_not_match_the_diff_gets_no_context() -> None:
    [fd] = parse_diff(unified_diff("box.py", OLD, NEW))
    [chunk], skipped = chunks_for_file(fd, "something else entirely\n" * 30, 100_000)
    assert skipped == [] and chunk.shown_lines == fd.diff_lines()


def test_python_that_does_not_parse_falls_back_to_a_window() -> None:
    broken = NEW.replace("def area(self):", "def area(self:")
    old = OLD.replace("def area(self):", "def area(self:")
    [fd] = parse_diff(unified_diff("box.py", old, broken))
    _text, shown = render(fd, fd.hunks, broken)
    assert {11, 19, 27} - shown == {27} and 19 in shown


def test_pure_removal_is_reviewed_on_its_neighbours() -> None:
    old = "def f(x):\n    if x:\n        return 1\n    return 0\n"
    new = "def f(x):\n    if x:\n    return 0\n"
    [fd] = parse_diff(unified_diff("f.py", old, new))
    chunks, skipped = plan_chunks([fd], 10_000, lambda _p: new)
    assert skipped == [] and len(chunks) == 1
    assert "      -         return 1" in chunks[0].text
    assert {1, 2, 3} <= chunks[0].shown_lines


def test_large_file_is_split_by_hunks_and_oversized_hunks_are_listed() -> None:
    old = "".join(f"v{i} = {i}\n" for i in range(1, 400))
    new = old.replace("v10 = 10\n", "v10 = -10\n").replace("v200 = 200\n", "v200 = -200\n")
    new = new.replace("v300 = 300\n", "".join(f"w{i} = {i}  # a long added block line\n" for i in range(80)))
    [fd] = parse_diff(unified_diff("big.py", old, new))
    assert len(fd.hunks) == 3
    chunks, skipped = plan_chunks([fd], 250, lambda _p: new)
    assert [c.label for c in chunks] == ["big.py (hunks 1 of 3)", "big.py (hunks 2 of 3)"]
    assert len(skipped) == 1 and "big.py: hunk @@ -297,7 +297,86 @@ too large" in skipped[0]
    assert all(len(c.text) <= 250 for c in chunks)
    # with room for everything: one chunk, context included
    chunks, skipped = plan_chunks([fd], 10_000, lambda _p: new)
    assert len(chunks) == 1 and skipped == [] and chunks[0].shown_lines > fd.diff_lines()


def test_binary_deleted_and_emptied_files_are_listed_not_dropped() -> None:
    diff = (
        "diff --git a/a.png b/a.png\nBinary files a/a.png and b/a.png differ\n"
        "diff --git a/gone.py b/gone.py\ndeleted file mode 100644\n--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n"
        "diff --git a/empty.py b/empty.py\n--- a/empty.py\n+++ b/empty.py\n@@ -1 +0,0 @@\n-x = 1\n"
        "diff --git a/r.py b/s.py\nsimilarity index 100%\nrename from r.py\nrename to s.py\n"
    )
    chunks, skipped = plan_chunks(parse_diff(diff), 10_000)
    assert chunks == []
    assert skipped == [
        "a.png: binary file",
        "gone.py: deleted (no new lines to comment on)",
        "empty.py: every line removed (no new lines to comment on)",
    ]


def test_a_file_nested_too_deeply_for_the_parser_gets_plain_windows() -> None:
    deep = "x = " + "-" * 20_000 + "1\n" + "y = 1\n" * 40  # overflows ast.parse (RecursionError or MemoryError)
    assert context_ranges("deep.py", deep, [20], 41) == [(20 - WINDOW, 20 + WINDOW)]
