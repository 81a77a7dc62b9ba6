"""What a reviewer is shown: one file's change with its enclosing code, split to fit a context window.

A file's view is one numbered listing of the new file: the changed lines
(`+`), the removed lines (`-`, unnumbered, where they were), and around them
the enclosing functions or classes (Python, via `ast`) or a window of lines
(other languages, or Python that does not parse). Every new-side line carries
its line number, so a reviewer cites lines instead of counting them. Without
the new file (no repository, or the file on disk does not match the diff) the
view is the hunks alone, numbered the same way.

Chunks hold one file each (the answer schema has no path). A file too large
for a reviewer's window loses its enclosing code first, is then split by
hunks, and what still does not fit is listed as not reviewed, with the reason.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from relaycode.review.diff import FileDiff, Hunk

SourceReader = Callable[[str], "str | None"]
"""Returns the new-side text of a path, or None when it is not available."""

#: Characters per token used for sizing. Code tokenises denser than prose (~3–4 chars), so this errs low.
CHARS_PER_TOKEN = 3.5
#: Lines shown either side of a change when no enclosing definition is used.
WINDOW = 8
#: An enclosing definition longer than this is replaced by the window (a 2,000-line class helps nobody).
MAX_ENCLOSING_LINES = 150


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1


@dataclass(frozen=True)
class Chunk:
    """One request's worth of code: a file (or some of its hunks), rendered and numbered."""

    path: str
    label: str
    """`path`, or `path (hunks 2-3 of 5)` when the file was split."""
    text: str
    shown_lines: frozenset[int]
    """New-side line numbers printed in `text`: the lines a finding may cite."""
    changed_lines: frozenset[int]

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.text)


def _removed_positions(hunks: Iterable[Hunk]) -> dict[int, list[str]]:
    """Removed lines keyed by the new-side line they stood before."""
    before: dict[int, list[str]] = {}
    for hunk in hunks:
        pending: list[str] = []
        for line in hunk.lines:
            if line.kind == "-":
                pending.append(line.text)
            elif pending and line.new_no is not None:
                before.setdefault(line.new_no, []).extend(pending)
                pending = []
        if pending:
            before.setdefault(hunk.new_start + hunk.new_count, []).extend(pending)
    return before


def _anchor_lines(hunks: Iterable[Hunk]) -> set[int]:
    """New-side lines the change touches: added lines, and both neighbours of a removal."""
    anchors: set[int] = set()
    for hunk in hunks:
        for line in hunk.lines:
            if line.kind == "+" and line.new_no is not None:
                anchors.add(line.new_no)
        for pos in _removed_positions([hunk]):
            anchors.update({pos - 1, pos})
    return {a for a in anchors if a >= 1}


def _definition_spans(source: str) -> list[tuple[int, int]] | None:
    """(first, last) lines of every function and class, decorators included; None if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # a PR's file nesting deep enough to overflow the parser
        return None
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.end_lineno:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            spans.append((first, node.end_lineno))
    return spans


def context_ranges(path: str, source: str | None, anchors: Iterable[int], n_lines: int) -> list[tuple[int, int]]:
    """Line ranges of context for `anchors`: the innermost enclosing definition, or a ±WINDOW window."""
    spans = _definition_spans(source) if source is not None and path.endswith((".py", ".pyi")) else None
    ranges = []
    for anchor in anchors:
        inner = None
        for first, last in spans or ():
            if first <= anchor <= last and (inner is None or last - first < inner[1] - inner[0]):
                inner = (first, last)
        if inner is not None and inner[1] - inner[0] < MAX_ENCLOSING_LINES:
            ranges.append(inner)
        else:
            ranges.append((anchor - WINDOW, anchor + WINDOW))
    return [(max(1, a), min(n_lines, b)) for a, b in ranges if a <= n_lines]


def _merge_ranges(ranges: Iterable[tuple[int, int]], gap: int = 2) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + gap + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def source_matches(fd: FileDiff, source: str) -> bool:
    """Does `source` have, at every new-side line number of the diff, the diff's text?"""
    lines = source.splitlines()
    for hunk in fd.hunks:
        for line in hunk.lines:
            if line.new_no is None:
                continue
            if line.new_no > len(lines) or lines[line.new_no - 1].rstrip("\r") != line.text.rstrip("\r"):
                return False
    return True


def render(fd: FileDiff, hunks: list[Hunk], source: str | None) -> tuple[str, frozenset[int]]:
    """The numbered listing of `hunks` (with enclosing code when `source` is given) and its shown lines."""
    known: dict[int, str] = {}
    for hunk in hunks:
        for line in hunk.lines:
            if line.new_no is not None:
                known[line.new_no] = line.text
    changed = {ln.new_no for h in hunks for ln in h.lines if ln.kind == "+" and ln.new_no is not None}
    removed = _removed_positions(hunks)
    ranges = [(h.new_start, h.new_end) for h in hunks if h.new_count > 0]
    if source is not None:
        src_lines = source.splitlines()
        known = {i: text for i, text in enumerate(src_lines, start=1)}
        ranges += context_ranges(fd.path, source, _anchor_lines(hunks), len(src_lines))
    out: list[str] = []
    shown: set[int] = set()
    for first, last in _merge_ranges(ranges):
        if out:
            out.append("      ...")
        for no in range(first, last + 1):
            out += [f"      - {text}" for text in removed.pop(no, [])]
            if no in known:
                marker = "+" if no in changed else " "
                out.append(f"{no:5d} {marker} {known[no]}")
                shown.add(no)
        out += [f"      - {text}" for text in removed.pop(last + 1, [])]
    for no in sorted(removed):  # removals next to no shown line (e.g. a whole file emptied)
        out += [f"      - {text}" for text in removed[no]]
    return "\n".join(out), frozenset(shown)


def file_header(fd: FileDiff) -> str:
    if fd.status == "renamed":
        return f"File: {fd.path} (renamed from {fd.old_path})"
    return f"File: {fd.path} ({fd.status})"


def chunks_for_file(fd: FileDiff, source: str | None, budget_chars: int) -> tuple[list[Chunk], list[str]]:
    """Chunks for one file under `budget_chars`, and what could not be fitted (with reasons)."""
    if source is not None and not source_matches(fd, source):
        source = None  # the file on disk is another version: numbering from it would be wrong
    header = file_header(fd)
    changed = frozenset(fd.added_lines())
    for src in (source, None) if source is not None else (None,):
        text, shown = render(fd, fd.hunks, src)
        body = f"{header}\n{text}"
        if len(body) <= budget_chars:
            return [Chunk(fd.path, fd.path, body, shown, changed)], []
    # Too large even without context: pack hunks greedily, in order.
    chunks: list[Chunk] = []
    skipped: list[str] = []
    group: list[int] = []

    def flush() -> None:
        if group:
            hunks = [fd.hunks[i] for i in group]
            text, shown = render(fd, hunks, None)
            span = f"{group[0] + 1}" if len(group) == 1 else f"{group[0] + 1}-{group[-1] + 1}"
            label = f"{fd.path} (hunks {span} of {len(fd.hunks)})"
            added = frozenset(ln.new_no for h in hunks for ln in h.lines if ln.kind == "+" and ln.new_no)
            chunks.append(Chunk(fd.path, label, f"{header}\n{text}", shown, added))
            group.clear()

    for i, hunk in enumerate(fd.hunks):
        alone = len(header) + 1 + len(render(fd, [hunk], None)[0])
        if alone > budget_chars:
            flush()
            skipped.append(
                f"{fd.path}: hunk {hunk.header} too large "
                f"(~{int(alone / CHARS_PER_TOKEN)} tokens > {int(budget_chars / CHARS_PER_TOKEN)})"
            )
            continue
        candidate = [fd.hunks[j] for j in [*group, i]]
        if len(header) + 1 + len(render(fd, candidate, None)[0]) > budget_chars:
            flush()
        group.append(i)
    flush()
    return chunks, skipped


def skip_reason(fd: FileDiff) -> str | None:
    """Why a file is not reviewed at all, or None when it is."""
    if fd.binary:
        return f"{fd.path}: binary file"
    if fd.status == "deleted":
        return f"{fd.path}: deleted (no new lines to comment on)"
    if not fd.hunks:
        return None  # rename or mode change only: no code changed
    if not fd.added_lines():
        return None if fd.diff_lines() else f"{fd.path}: every line removed (no new lines to comment on)"
    return None


def plan_chunks(
    files: list[FileDiff], budget_chars: int, read_source: SourceReader | None = None
) -> tuple[list[Chunk], list[str]]:
    """Chunks for every reviewable file under `budget_chars`; the rest listed with reasons."""
    chunks: list[Chunk] = []
    skipped: list[str] = []
    for fd in files:
        reason = skip_reason(fd)
        if reason:
            skipped.append(reason)
            continue
        if not fd.hunks:
            continue
        source = None
        if read_source is not None:
            try:
                source = read_source(fd.path)
            except (OSError, UnicodeDecodeError, ValueError):
                source = None
        file_chunks, file_skipped = chunks_for_file(fd, source, budget_chars)
        chunks += file_chunks
        skipped += file_skipped
    return chunks, skipped
