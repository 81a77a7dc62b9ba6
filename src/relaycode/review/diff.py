"""Unified-diff parsing with new-side line numbers.

Reads what `git diff` prints (several files, several hunks, new and deleted
files, renames, mode changes, binary markers, `\\ No newline at end of file`)
and plain `diff -u` output. Hunk bodies are read by their line counts, not by
their first character, so a removed line that reads `-- x` or `+++ y` is never
mistaken for a file header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

LineKind = Literal["+", "-", " "]
FileStatus = Literal["modified", "added", "deleted", "renamed", "copied"]

_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_GIT_HEADER_RE = re.compile(r"^diff --git (?P<a>\"(?:[^\"\\]|\\.)*\"|\S+) (?P<b>\"(?:[^\"\\]|\\.)*\"|\S+)$")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "r": "\r", "v": "\v"}


@dataclass(frozen=True)
class DiffLine:
    """One line of a hunk. `new_no` is its line number in the new file (None for removed lines)."""

    kind: LineKind
    text: str
    old_no: int | None
    new_no: int | None
    no_newline: bool = False
    """Followed by `\\ No newline at end of file`."""


@dataclass
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    section: str = ""
    """Text after the second `@@` (git puts the enclosing function's first line there)."""
    lines: list[DiffLine] = field(default_factory=list)

    @property
    def header(self) -> str:
        return f"@@ -{self.old_start},{self.old_count} +{self.new_start},{self.new_count} @@"

    @property
    def new_end(self) -> int:
        """Last new-side line the hunk covers (new_start - 1 when it covers none)."""
        return self.new_start + self.new_count - 1


@dataclass
class FileDiff:
    """The changes of one file."""

    old_path: str | None
    """None for an added file."""
    new_path: str | None
    """None for a deleted file."""
    status: FileStatus = "modified"
    binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    """Extended header lines (`new file mode`, `rename from`, `index`, ...), verbatim."""

    @property
    def path(self) -> str:
        """The path findings refer to: the new path, or the old one for a deleted file."""
        return self.new_path or self.old_path or ""

    def added_lines(self) -> set[int]:
        """New-side numbers of added (`+`) lines."""
        return {ln.new_no for h in self.hunks for ln in h.lines if ln.kind == "+" and ln.new_no is not None}

    def diff_lines(self) -> set[int]:
        """New-side numbers of every line shown in a hunk (added and context): where GitHub accepts comments."""
        return {ln.new_no for h in self.hunks for ln in h.lines if ln.new_no is not None}

    def to_text(self) -> str:
        """This file's part of the diff, re-rendered in git's format."""
        old = f"a/{self.old_path}" if self.old_path else "/dev/null"
        new = f"b/{self.new_path}" if self.new_path else "/dev/null"
        out = [f"diff --git a/{self.old_path or self.new_path} b/{self.new_path or self.old_path}", *self.headers]
        if self.binary:
            out.append(f"Binary files {old} and {new} differ")
            return "\n".join(out) + "\n"
        if self.hunks:
            out += [f"--- {old}", f"+++ {new}"]
        for hunk in self.hunks:
            out.append(f"{hunk.header} {hunk.section}".rstrip())
            for line in hunk.lines:
                out.append(line.kind + line.text)
                if line.no_newline:
                    out.append("\\ No newline at end of file")
        return "\n".join(out) + "\n"


class DiffParseError(ValueError):
    """The text is not a unified diff, or a hunk is cut short."""


def _unquote(path: str) -> str:
    """Undo git's C-style quoting of paths with unusual characters (octal escapes are UTF-8 bytes)."""
    if not (len(path) >= 2 and path[0] == path[-1] == '"'):
        return path
    body, out, i = path[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if re.fullmatch(r"[0-7]{3}", body[i + 1 : i + 4]):
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt).encode()
            i += 2
            continue
        out += ch.encode()
        i += 1
    return out.decode("utf-8", errors="surrogateescape")


def _strip_prefix(path: str, prefix: str) -> str:
    return path[len(prefix):] if path.startswith(prefix) else path


def _file_path(raw: str, prefix: str) -> str | None:
    """A `---`/`+++` path: tab-separated timestamps dropped, quoting undone, `a/`/`b/` removed."""
    raw = raw.split("\t", 1)[0].rstrip()
    if raw == "/dev/null":
        return None
    return _strip_prefix(_unquote(raw), prefix)


def _git_header_paths(rest: str) -> tuple[str | None, str | None]:
    """Paths of a `diff --git` line; later `---`/`+++` or `rename` lines override them."""
    match = _GIT_HEADER_RE.match("diff --git " + rest)
    if match:
        return _strip_prefix(_unquote(match["a"]), "a/"), _strip_prefix(_unquote(match["b"]), "b/")
    # Unquoted paths with spaces: without a rename both halves name the same file.
    half = (len(rest) - 1) // 2
    if rest.startswith("a/") and rest[half] == " " and rest[2:half] == rest[half + 3:]:
        return rest[2:half], rest[2:half]
    return None, None


def parse_diff(text: str) -> list[FileDiff]:
    """Parse a unified diff into files with hunks; raises `DiffParseError` on a malformed hunk."""
    lines = text.splitlines()
    files: list[FileDiff] = []
    current: FileDiff | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            current = FileDiff(old_path=None, new_path=None)
            current.old_path, current.new_path = _git_header_paths(line[len("diff --git "):])
            files.append(current)
            i += 1
            continue
        if current is not None and not current.hunks and _extended_header(current, line):
            i += 1
            continue
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if current is None or current.hunks:
                # Plain `diff -u` output (no `diff --git` line): each `---`/`+++` pair starts a file.
                current = FileDiff(old_path=None, new_path=None)
                files.append(current)
            current.old_path = _file_path(line[4:], "a/")
            current.new_path = _file_path(lines[i + 1][4:], "b/")
            if current.old_path is None:
                current.status = "added"
            elif current.new_path is None:
                current.status = "deleted"
            i += 2
            continue
        match = _HUNK_RE.match(line)
        if match and current is not None:
            i = _read_hunk(lines, i, match, current)
            continue
        i += 1  # anything else (commit message, `index` line of a plain diff, trailing text) is ignored
    for f in files:
        if f.status == "added":
            f.old_path = None
        elif f.status == "deleted":
            f.new_path = None
    return files


def _extended_header(current: FileDiff, line: str) -> bool:
    """Apply a git extended header line; False if `line` is not one."""
    if line.startswith("new file mode"):
        current.status = "added"
    elif line.startswith("deleted file mode"):
        current.status = "deleted"
    elif line.startswith("rename from "):
        current.status = "renamed"
        current.old_path = _unquote(line[len("rename from "):])
    elif line.startswith("rename to "):
        current.status = "renamed"
        current.new_path = _unquote(line[len("rename to "):])
    elif line.startswith("copy from "):
        current.status = "copied"
        current.old_path = _unquote(line[len("copy from "):])
    elif line.startswith("copy to "):
        current.status = "copied"
        current.new_path = _unquote(line[len("copy to "):])
    elif line.startswith("Binary files ") or line == "GIT binary patch":
        current.binary = True
    elif not line.startswith(("old mode", "new mode", "similarity index", "dissimilarity index", "index ")):
        return False
    current.headers.append(line)
    return True


def _read_hunk(lines: list[str], i: int, match: re.Match[str], current: FileDiff) -> int:
    """Read the hunk whose header is `lines[i]`; return the index after it."""
    old_start, new_start = int(match[1]), int(match[3])
    old_count = 1 if match[2] is None else int(match[2])
    new_count = 1 if match[4] is None else int(match[4])
    hunk = Hunk(old_start, old_count, new_start, new_count, match[5].strip())
    old_no, new_no = old_start, new_start
    old_left, new_left = old_count, new_count
    i += 1
    while old_left > 0 or new_left > 0:
        if i >= len(lines):
            raise DiffParseError(f"{current.path}: hunk {hunk.header} is cut short")
        body = lines[i]
        kind = body[:1] or " "  # some tools strip the space of an empty context line
        if body.startswith("\\"):
            _mark_no_newline(hunk)
            i += 1
            continue
        if kind == "+" and new_left > 0:
            hunk.lines.append(DiffLine("+", body[1:], None, new_no))
            new_no, new_left = new_no + 1, new_left - 1
        elif kind == "-" and old_left > 0:
            hunk.lines.append(DiffLine("-", body[1:], old_no, None))
            old_no, old_left = old_no + 1, old_left - 1
        elif kind == " " and old_left > 0 and new_left > 0:
            hunk.lines.append(DiffLine(" ", body[1:], old_no, new_no))
            old_no, new_no = old_no + 1, new_no + 1
            old_left, new_left = old_left - 1, new_left - 1
        else:
            raise DiffParseError(f"{current.path}: unexpected line in hunk {hunk.header}: {body[:60]!r}")
        i += 1
    if i < len(lines) and lines[i].startswith("\\"):
        _mark_no_newline(hunk)
        i += 1
    current.hunks.append(hunk)
    return i


def _mark_no_newline(hunk: Hunk) -> None:
    if hunk.lines:
        last = hunk.lines[-1]
        hunk.lines[-1] = DiffLine(last.kind, last.text, last.old_no, last.new_no, no_newline=True)
