"""Unified-diff parsing: file kinds, hunks, markers, and new-side line numbers."""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaycode.review.diff import DiffParseError, parse_diff

MULTI = """\
diff --git a/src/app.py b/src/app.py
index 83db48f..bf269f4 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,4 +1,5 @@
 import os
+import sys
<SP>
 def main():
     return 0
@@ -10,3 +11,3 @@ def helper(x):
     a = 1
-    b = 2
+    b = 3
     return a + b
diff --git a/new.txt b/new.txt
new file mode 100644
index 0000000..3b18e51
--- /dev/null
+++ b/new.txt
@@ -0,0 +1,2 @@
+hello
+world
diff --git a/old.txt b/old.txt
deleted file mode 100644
index 3b18e51..0000000
--- a/old.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-hello
-world
diff --git a/a.py b/b.py
similarity index 90%
rename from a.py
rename to b.py
index 1111111..2222222 100644
--- a/a.py
+++ b/b.py
@@ -1,2 +1,2 @@
-x = 1
+x = 2
 y = 3
diff --git a/moved.py b/there/moved.py
similarity index 100%
rename from moved.py
rename to there/moved.py
diff --git a/logo.png b/logo.png
index 1111111..2222222 100644
Binary files a/logo.png and b/logo.png differ
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
""".replace("<SP>", " ")  # an empty context line is a lone space


def test_multi_file_diff_kinds_and_paths() -> None:
    files = parse_diff(MULTI)
    assert [(f.path, f.status, f.binary) for f in files] == [
        ("src/app.py", "modified", False),
        ("new.txt", "added", False),
        ("old.txt", "deleted", False),
        ("b.py", "renamed", False),
        ("there/moved.py", "renamed", False),
        ("logo.png", "modified", True),
        ("run.sh", "modified", False),
    ]
    assert files[1].old_path is None and files[2].new_path is None
    assert files[3].old_path == "a.py" and files[4].old_path == "moved.py"
    assert files[4].hunks == [] and files[6].hunks == []


def test_line_numbers_on_the_new_side_across_hunks() -> None:
    app = parse_diff(MULTI)[0]
    assert len(app.hunks) == 2
    assert app.hunks[1].section == "def helper(x):"
    assert app.added_lines() == {2, 12}
    assert app.diff_lines() == {1, 2, 3, 4, 5, 11, 12, 13}
    removed = [ln for h in app.hunks for ln in h.lines if ln.kind == "-"]
    assert [(ln.text, ln.old_no, ln.new_no) for ln in removed] == [("    b = 2", 11, None)]
    assert parse_diff(MULTI)[1].added_lines() == {1, 2}
    assert parse_diff(MULTI)[2].added_lines() == set()


def test_no_newline_marker_attaches_to_the_line_before_it() -> None:
    text = """\
--- a/f.txt
+++ b/f.txt
@@ -1,2 +1,2 @@
 a
-b
\\ No newline at end of file
+c
\\ No newline at end of file
"""
    [fd] = parse_diff(text)
    lines = fd.hunks[0].lines
    assert [(ln.kind, ln.text, ln.no_newline) for ln in lines] == [
        (" ", "a", False), ("-", "b", True), ("+", "c", True),
    ]
    assert fd.added_lines() == {2}


def test_removed_lines_that_look_like_headers_are_content() -> None:
    text = """\
diff --git a/notes.md b/notes.md
--- a/notes.md
+++ b/notes.md
@@ -1,2 +1,2 @@
--- a/elsewhere
+++ b/not-a-header
 tail
"""
    [fd] = parse_diff(text)
    kinds = [(ln.kind, ln.text) for ln in fd.hunks[0].lines]
    assert kinds == [("-", "-- a/elsewhere"), ("+", "++ b/not-a-header"), (" ", "tail")]
    assert fd.added_lines() == {1}


def test_plain_diff_u_with_timestamps_and_several_files() -> None:
    text = """\
--- x.c\t2024-01-01 00:00:00.000000000 +0000
+++ x.c\t2024-01-02 00:00:00.000000000 +0000
@@ -1 +1 @@
-int a;
+long a;
--- y.c\t2024-01-01 00:00:00.000000000 +0000
+++ y.c\t2024-01-02 00:00:00.000000000 +0000
@@ -3,0 +4 @@
+int b;
"""
    files = parse_diff(text)
    assert [(f.path, sorted(f.added_lines())) for f in files] == [("x.c", [1]), ("y.c", [4])]


def test_quoted_and_spaced_paths() -> None:
    text = (
        'diff --git "a/dir/caf\\303\\251 x.py" "b/dir/caf\\303\\251 x.py"\n'
        "new file mode 100644\n"
        '--- /dev/null\n+++ "b/dir/caf\\303\\251 x.py"\n@@ -0,0 +1 @@\n+x = 1\n'
        "diff --git a/my file.bin b/my file.bin\nBinary files a/my file.bin and b/my file.bin differ\n"
    )
    files = parse_diff(text)
    assert [f.path for f in files] == ["dir/café x.py", "my file.bin"]
    assert files[1].binary


def test_git_binary_patch_marker() -> None:
    text = "diff --git a/a.bin b/a.bin\nindex 1..2 100644\nGIT binary patch\nliteral 5\nMcmZ?d\n\n"
    [fd] = parse_diff(text)
    assert fd.binary and fd.hunks == []


def test_cut_short_hunk_is_an_error() -> None:
    with pytest.raises(DiffParseError, match="cut short"):
        parse_diff("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n")


def test_empty_and_non_diff_text() -> None:
    assert parse_diff("") == []
    assert parse_diff("just some words\nno diff here\n") == []


def test_to_text_round_trips() -> None:
    files = parse_diff(MULTI)
    again = parse_diff("".join(f.to_text() for f in files))
    assert [(f.path, f.status, f.binary, f.added_lines(), f.diff_lines()) for f in again] == [
        (f.path, f.status, f.binary, f.added_lines(), f.diff_lines()) for f in files
    ]


def test_real_git_diff_with_rename_and_binary(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "keep.py").write_text("".join(f"line{i}\n" for i in range(1, 30)))
    (tmp_path / "img.bin").write_bytes(b"\x00\x01\x02")
    git("add", ".")
    git("commit", "-qm", "base")
    git("mv", "keep.py", "kept.py")
    text = (tmp_path / "kept.py").read_text().replace("line5\n", "line5 changed\n").replace("line20\n", "")
    (tmp_path / "kept.py").write_text(text + "last")
    (tmp_path / "img.bin").write_bytes(b"\x00\x01\x03")
    git("add", ".")
    files = parse_diff(git("diff", "--cached", "-M", "HEAD"))
    by_path = {f.path: f for f in files}
    kept = by_path["kept.py"]
    assert kept.status == "renamed" and kept.old_path == "keep.py"
    new_lines = (tmp_path / "kept.py").read_text().splitlines()
    for hunk in kept.hunks:
        for line in hunk.lines:
            if line.new_no is not None:
                assert new_lines[line.new_no - 1] == line.text
    assert by_path["img.bin"].binary


lines_st = st.lists(st.sampled_from(["a", "b", "c", "d", "", "def f():", "    return 1"]), max_size=25)


@settings(max_examples=150, deadline=None)
@given(old=lines_st, new=lines_st, context=st.integers(0, 4))
def test_line_numbers_match_both_sides(old: list[str], new: list[str], context: int) -> None:
    text = "".join(difflib.unified_diff([x + "\n" for x in old], [x + "\n" for x in new], "a/f", "b/f", n=context))
    files = parse_diff(text)
    assert len(files) == (1 if old != new else 0)
    for fd in files:
        for hunk in fd.hunks:
            for line in hunk.lines:
                if line.new_no is not None:
                    assert new[line.new_no - 1] == line.text
                if line.old_no is not None:
                    assert old[line.old_no - 1] == line.text
        changed = {i + 1 for i, tag in _new_side_changes(old, new)}
        assert fd.added_lines() == changed


def _new_side_changes(old: list[str], new: list[str]) -> list[tuple[int, str]]:
    out = []
    for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag in ("replace", "insert"):
            out += [(j, tag) for j in range(j1, j2)]
    return out
