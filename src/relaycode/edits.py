"""Search/replace edit blocks: parse them out of model text and apply them purely.

Models answer with aider-style blocks::

    path/to/file.py
    <<<<<<< SEARCH
    old lines
    =======
    new lines
    >>>>>>> REPLACE

or with a whole file in a fence directly under a line holding only its path.
`parse_edits` turns text into `Edit` values; `apply_edits` applies them to an
in-memory mapping of files and returns new contents. Nothing here touches the
disk, so the caller decides where (and whether) results are written.

Every error message is written for the model that produced the blocks: it says
which block failed, why, and what a correct block looks like, because the
message is fed back verbatim for a retry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from relaycode.errors import EditError

__all__ = ["FORMAT_HELP", "Edit", "apply_edits", "parse_edits"]

FORMAT_HELP = """Expected format, one block per change:
path/to/file.py
<<<<<<< SEARCH
exact existing lines to find
=======
new lines to put there
>>>>>>> REPLACE
An empty SEARCH section creates a new file."""

# Small models miscount marker characters, so accept 5-9 of each.
_SEARCH_RE = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE_RE = re.compile(r"^\s*(`{3,}|~{3,})\s*(.*?)\s*$")
_PATH_TOKEN_RE = re.compile(r"[\w.\-+@~/\\]+")
_PATH_PREFIX_RE = re.compile(r"^(?:file\s*name|file|path)\s*:\s*", re.IGNORECASE)
# Extensionless files a model may legitimately name; anything else must contain "." or "/"
# so that a stray word ("Changes:") is never mistaken for a path.
_BARE_FILENAMES = frozenset(
    {
        "Makefile",
        "Dockerfile",
        "LICENSE",
        "README",
        "Procfile",
        "Gemfile",
        "Rakefile",
        "Jenkinsfile",
        "Vagrantfile",
        "CODEOWNERS",
        "Containerfile",
        "Justfile",
        "justfile",
        "makefile",
    }
)


@dataclass(frozen=True)
class Edit:
    """One change to one file.

    `search` empty means create the file (or append to it). `whole_file` means
    `replace` is the complete new content and `search` is ignored.
    """

    path: str
    search: str
    replace: str
    whole_file: bool = False


# --------------------------------------------------------------------------- parsing


def _clean_path(line: str) -> str | None:
    """Return the path a line names, or None if the line is not just a path.

    Strips the decorations models put around paths: `#` headings, bold, backticks,
    quotes, a `File:` prefix and a trailing colon.
    """
    s = line.strip()
    previous = None
    while s != previous:
        previous = s
        s = s.lstrip("#").strip()
        s = _PATH_PREFIX_RE.sub("", s)
        s = s.rstrip(":").strip()
        for wrap in ("**", "*", "`", '"', "'"):
            if len(s) > 2 * len(wrap) and s.startswith(wrap) and s.endswith(wrap):
                s = s[len(wrap) : -len(wrap)].strip()
    if not s or not _PATH_TOKEN_RE.fullmatch(s):
        return None
    s = s.replace("\\", "/")
    while s.startswith("./"):
        s = s[2:]
    if not s or set(s) <= {".", "/"}:
        return None
    if "." not in s and "/" not in s and s not in _BARE_FILENAMES:
        return None
    return s


def _fence_info_path(line: str) -> str | None:
    """A fence line like ```` ```src/app.py ```` names the file; ```` ```python ```` does not."""
    m = _FENCE_RE.match(line)
    if not m or not m.group(2):
        return None
    info = m.group(2).split()[-1]
    if "." not in info and "/" not in info:
        return None
    return _clean_path(info)


def _is_marker(line: str) -> bool:
    return bool(_SEARCH_RE.match(line) or _DIVIDER_RE.match(line) or _REPLACE_RE.match(line))


def _closing_fence(lines: list[str], start: int, opener: str) -> int | None:
    """Index of the line closing the fence opened at `start`, or None if it never closes."""
    char, width = opener[0], len(opener)
    for j in range(start + 1, len(lines)):
        m = _FENCE_RE.match(lines[j])
        if m and not m.group(2) and m.group(1)[0] == char and len(m.group(1)) >= width:
            return j
    return None


def _path_before(lines: list[str], index: int) -> str | None:
    """The path named just above line `index`, skipping blank lines and one opening fence."""
    j = index - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j >= 0 and _FENCE_RE.match(lines[j]):
        info_path = _fence_info_path(lines[j])
        if info_path:
            return info_path
        j -= 1
        while j >= 0 and not lines[j].strip():
            j -= 1
    if j < 0 or _is_marker(lines[j]):
        return None
    return _clean_path(lines[j])


def _join(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _fence_info(line: str) -> str | None:
    """The info string of a fence line ('' for a bare fence), None if the line is not a fence."""
    m = _FENCE_RE.match(line)
    return m.group(2) if m else None


def _is_language_fence(line: str) -> bool:
    return bool(_fence_info(line)) and _fence_info_path(line) is None


def unwrap_path_fences(lines: list[str]) -> list[str]:
    """Drop the fence small models put around the path line of a whole-file answer.

    Qwen2.5-Coder 1.5B often answers ```` ``` ```` / ``gcd.py`` / ```` ```python ```` / code / ```` ``` ````
    (or closes the path's own fence first). Taken literally, the path and the inner fence
    line would become the first lines of the file; that corrupted 9 of 23 QuixBugs answers.
    """
    def next_nonblank(j: int) -> int:
        while j < len(lines) and not lines[j].strip():
            j += 1
        return j

    out: list[str] = []
    i = 0
    while i < len(lines):
        if _fence_info(lines[i]) == "" and i + 2 < len(lines) and _clean_path(lines[i + 1]) is not None:
            if _is_language_fence(lines[i + 2]):  # ``` / path / ```python
                out.append(lines[i + 1])
                i += 2
                continue
            code = next_nonblank(i + 3)
            if _fence_info(lines[i + 2]) == "" and code < len(lines) and _is_language_fence(lines[code]):
                out.append(lines[i + 1])  # ``` / path / ``` / (blank lines) / ```python: the path had its own fence
                i = code
                continue
        out.append(lines[i])
        i += 1
    return out


def _drop_echoed_path(body: list[str], path: str) -> list[str]:
    """Drop the file's own path repeated as the first code line of a whole-file answer.

    Another habit of Qwen2.5-Coder 1.5B (QuixBugs gcd): ```` ```python ```` / ``gcd.py`` / code. A bare
    path line is valid Python (an attribute access), so the syntax gate lets it through and the module
    fails at import. A comment naming the file (``# gcd.py``) is harmless and stays.
    """
    first = next((k for k, line in enumerate(body) if line.strip()), None)
    if first is None or body[first].lstrip().startswith("#"):
        return body
    named = _clean_path(body[first])
    if named is not None and named in {path, path.rsplit("/", 1)[-1]}:
        return body[first + 1 :]
    return body


def parse_edits(text: str) -> list[Edit]:
    """Parse every edit block in a model's answer, in order.

    A SEARCH block without a path line reuses the previous block's path (models
    often put several blocks for one file under a single heading). All malformed
    blocks are reported together in one `EditError`.
    """
    lines = unwrap_path_fences(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    edits: list[Edit] = []
    errors: list[str] = []
    last_path: str | None = None
    fence: tuple[str, int] | None = None  # the open fence that wraps SEARCH blocks
    block = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SEARCH_RE.match(line):
            block += 1
            path = _path_before(lines, i) or last_path
            i, edit, error = _parse_block(lines, i, block, path)
            if error:
                errors.append(error)
            if edit:
                edits.append(edit)
            # Remember the path even when the block failed, so the blocks after it
            # are reported for what they are, not as "no path".
            last_path = path
            continue
        if _REPLACE_RE.match(line):
            errors.append(
                f"Block near line {i + 1}: found '>>>>>>> REPLACE' without a '<<<<<<< SEARCH' before it."
            )
            i += 1
            continue
        m = _FENCE_RE.match(line)
        if (
            m
            and fence is not None
            and not m.group(2)
            and m.group(1)[0] == fence[0]
            and len(m.group(1)) >= fence[1]
        ):
            fence = None
            i += 1
            continue
        if m and fence is None:
            close = _closing_fence(lines, i, m.group(1))
            body = lines[i + 1 : close if close is not None else len(lines)]
            if any(_is_marker(b) for b in body):
                # A fence wrapping SEARCH blocks: step inside and let the marker logic run.
                fence = (m.group(1)[0], len(m.group(1)))
                i += 1
                continue
            path = _fence_info_path(line) or _path_before(lines, i)
            if path is not None and close is None:
                errors.append(
                    f"Whole-file block for {path} (line {i + 1}): the code fence is never closed; "
                    "the answer looks cut off. Send the file again with a closing ``` line."
                )
                break
            if path is not None:
                body = _drop_echoed_path(body, path)
                edits.append(Edit(path=path, search="", replace=_join(body), whole_file=True))
                last_path = path
            i = (close + 1) if close is not None else i + 1
            continue
        i += 1
    if errors:
        raise EditError(
            "Could not parse the edit blocks:\n" + "\n".join(f"- {e}" for e in errors) + "\n" + FORMAT_HELP
        )
    return edits


def _parse_block(
    lines: list[str], start: int, block: int, path: str | None
) -> tuple[int, Edit | None, str | None]:
    """Parse the block whose SEARCH marker is at `start`; return (next index, edit, error)."""
    where = f"Block {block} (line {start + 1}{', ' + path if path else ''})"
    i = start + 1
    search: list[str] = []
    while i < len(lines) and not _DIVIDER_RE.match(lines[i]):
        if _SEARCH_RE.match(lines[i]) or _REPLACE_RE.match(lines[i]):
            return i, None, f"{where}: the '=======' line between SEARCH and REPLACE is missing."
        search.append(lines[i])
        i += 1
    if i >= len(lines):
        return i, None, f"{where}: the '=======' line and the '>>>>>>> REPLACE' line are missing."
    i += 1
    replace: list[str] = []
    while i < len(lines) and not _REPLACE_RE.match(lines[i]):
        if _SEARCH_RE.match(lines[i]):
            return i, None, f"{where}: the '>>>>>>> REPLACE' line is missing before the next block."
        replace.append(lines[i])
        i += 1
    if i >= len(lines):
        return i, None, f"{where}: the '>>>>>>> REPLACE' line is missing (the answer may be cut off)."
    i += 1
    if path is None:
        return i, None, f"{where}: no file path; put the path alone on the line before '<<<<<<< SEARCH'."
    return i, Edit(path=path, search=_join(search), replace=_join(replace)), None


# --------------------------------------------------------------------------- applying


def _split(text: str) -> tuple[list[str], bool]:
    """Split into lines without their "\\n" and say whether the text ended with one.

    Deliberately not `str.splitlines`: that also splits on \\r, \\x0b, \\u2028 and friends,
    which would corrupt files containing them.
    """
    if not text:
        return [], False
    trailing = text.endswith("\n")
    return (text[:-1] if trailing else text).split("\n"), trailing


def _unsplit(lines: list[str], trailing: bool) -> str:
    return "\n".join(lines) + ("\n" if trailing and lines else "")


def _find(hay: list[str], needle: list[str], key: Callable[[str], str]) -> list[int]:
    """Start indexes where `needle` occurs in `hay` comparing lines through `key`."""
    n = len(needle)
    keyed_needle = [key(x) for x in needle]
    keyed_hay = [key(x) for x in hay]
    return [i for i in range(len(hay) - n + 1) if keyed_hay[i : i + n] == keyed_needle]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _common_indent(lines: list[str]) -> str:
    """Longest whitespace prefix shared by all non-blank lines."""
    indents = [_indent(x) for x in lines if x.strip()]
    if not indents:
        return ""
    prefix = indents[0]
    for ind in indents[1:]:
        while not ind.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def _find_reindented(hay: list[str], needle: list[str]) -> list[tuple[int, str]]:
    """Matches that differ only by one consistent indentation offset: (start, file indent)."""
    base = _common_indent(needle)
    body = [x[len(base) :].rstrip() if x.strip() else "" for x in needle]
    anchor = next((k for k, x in enumerate(body) if x), None)
    if anchor is None:
        return []
    found: list[tuple[int, str]] = []
    for i in range(len(hay) - len(needle) + 1):
        first = hay[i + anchor].rstrip()
        if not first.endswith(body[anchor]):
            continue
        prefix = first[: len(first) - len(body[anchor])]
        if prefix.strip():
            continue
        if all(
            (not b and not hay[i + k].strip()) or (b and hay[i + k].rstrip() == prefix + b)
            for k, b in enumerate(body)
        ):
            found.append((i, prefix))
    return found


def _reindent(lines: list[str], old: str, new: str) -> list[str]:
    """Move `lines` from indentation `old` to `new`, keeping their relative nesting."""
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif line.startswith(old):
            out.append(new + line[len(old) :])
        elif new.startswith(old):  # less indented than the block, model under-indented: add
            out.append(new[len(old) :] + line)
        else:  # model over-indented: remove as much of the surplus as the line has
            surplus = len(old) - len(new)
            lead = _indent(line)
            out.append(line[min(surplus, len(lead)) :])
    return out


def _strip_blank_edges(lines: list[str]) -> tuple[list[str], int, int]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end], start, len(lines) - end


def _trim_like(lines: list[str], lead: int, tail: int) -> list[str]:
    """Drop up to `lead`/`tail` blank lines from the edges of the replacement too."""
    out, start, end = list(lines), 0, len(lines)
    while lead and start < end and not out[start].strip():
        start, lead = start + 1, lead - 1
    while tail and end > start and not out[end - 1].strip():
        end, tail = end - 1, tail - 1
    return out[start:end]


class _Ambiguous(Exception):
    def __init__(self, starts: list[int]) -> None:
        super().__init__(starts)
        self.starts = starts


def _locate(hay: list[str], search: list[str], replace: list[str]) -> tuple[int, int, list[str]] | None:
    """Find `search` in `hay` with the allowed tolerances; return (start, end, replacement).

    Tiers, stopping at the first that finds anything: exact; trailing whitespace
    ignored; one consistent indentation offset (replacement re-indented to match).
    No fuzzy matching: a near miss is an error the model must fix, not a guess.
    Raises `_Ambiguous` when a tier finds several places.
    """
    n = len(search)
    keys: tuple[Callable[[str], str], ...] = (lambda s: s, str.rstrip)
    for key in keys:
        starts = _find(hay, search, key)
        if len(starts) > 1:
            raise _Ambiguous(starts)
        if starts:
            return starts[0], starts[0] + n, replace
    shifted = _find_reindented(hay, search)
    if len(shifted) > 1:
        raise _Ambiguous([s for s, _ in shifted])
    if shifted:
        start, prefix = shifted[0]
        return start, start + n, _reindent(replace, _common_indent(search), prefix)
    return None


def _quote(text_lines: list[str]) -> str:
    return "\n".join("    " + x for x in text_lines) if text_lines else "    (empty)"


def _closest(hay: list[str], needle: list[str], context: int = 2) -> str:
    """The file lines most similar to `needle`, numbered, for a retry prompt."""
    if not hay:
        return "The file is empty."
    n = max(1, min(len(needle), len(hay)))
    target = "\n".join(x.strip() for x in needle)
    best_ratio, best_start = -1.0, 0
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    for i in range(len(hay) - n + 1):
        matcher.set_seq1("\n".join(x.strip() for x in hay[i : i + n]))
        # quick_ratio is an upper bound on ratio, so it safely skips hopeless windows.
        if matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best_ratio, best_start = ratio, i
    lo, hi = max(0, best_start - context), min(len(hay), best_start + n + context)
    width = len(str(hi))
    shown = "\n".join(f"{k + 1:>{width}} | {hay[k]}" for k in range(lo, hi))
    note = ""
    if any("\t" in x for x in hay[lo:hi]) and not any("\t" in x for x in needle):
        note = "\nNote: the file indents with tabs."
    return f"The closest lines in the file are {lo + 1}-{hi}:\n{shown}{note}"


def _apply_one(content: str, edit: Edit, number: int) -> str:
    """Apply one SEARCH/REPLACE edit to `content`; raise EditError with a retry hint."""
    # Keep CRLF files CRLF: match in LF space, convert back at the end. Only when
    # every newline is CRLF, so files with mixed endings round-trip unchanged.
    crlf = "\r\n" in content and content.count("\n") == content.count("\r\n")
    search, replace = edit.search, edit.replace
    if crlf:
        content = content.replace("\r\n", "\n")
        search, replace = search.replace("\r\n", "\n"), replace.replace("\r\n", "\n")
    hay, trailing = _split(content)
    needle, _ = _split(search)
    repl, _ = _split(replace)
    where = f"Edit {number} ({edit.path})"
    try:
        found = _locate(hay, needle, repl)
        if found is None:
            core, lead, tail = _strip_blank_edges(needle)
            if (lead or tail) and core:
                found = _locate(hay, core, _trim_like(repl, lead, tail))
    except _Ambiguous as amb:
        places = ", ".join(str(s + 1) for s in amb.starts[:10])
        raise EditError(
            f"{where}: the SEARCH text matches {len(amb.starts)} places (starting at lines {places}). "
            "Add more surrounding lines to SEARCH so it matches exactly one place.\n"
            f"SEARCH was:\n{_quote(needle)}"
        ) from None
    if found is None:
        raise EditError(
            f"{where}: the SEARCH text was not found in {edit.path}.\n"
            f"SEARCH was:\n{_quote(needle)}\n{_closest(hay, needle)}\n"
            "Copy the lines exactly as they are in the file (same spelling and indentation)."
        )
    start, end, new_lines = found
    # The file keeps its own final-newline state whatever the model's block ended with.
    result = _unsplit(hay[:start] + new_lines + hay[end:], trailing)
    return result.replace("\n", "\r\n") if crlf else result


def _unknown_file(path: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(path, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    listing = ", ".join(sorted(known)[:30]) + (" ..." if len(known) > 30 else "")
    return (
        f"{path} does not exist, so SEARCH cannot match in it.{hint} Known files: {listing or '(none)'}. "
        "To create a new file, use an empty SEARCH section."
    )


def _refuse_placeholder(edit: Edit, current: str) -> None:
    """Refuse a whole-file answer that is no file: empty, or only a path, for a file that had content.

    Small models answer with a fence holding just the file's name (`allergies.py` became the line
    `allergies.py`); written, that replaces the code with a line that compiles, and a repository
    without tests has nothing to notice it. Such an answer is malformed, never written.
    """
    if not current.strip():
        return
    lines = [line for line in edit.replace.splitlines() if line.strip()]
    if not lines:
        raise EditError(f"Your answer for {edit.path} holds no code: the whole file would become empty. "
                        "Send the complete new content of the file, not only its name.")
    if len(lines) == 1 and _clean_path(lines[0]) is not None and not current.strip() == lines[0].strip():
        raise EditError(f"Your answer for {edit.path} holds only a file name ({lines[0].strip()}), not the "
                        "file's code. Send the complete new content of the file.")


def apply_edits(
    files: Mapping[str, str], edits: Sequence[Edit], *, max_whole_file_lines: int = 400
) -> dict[str, str]:
    """Apply `edits` in order to `files` and return the new content of changed or created files.

    Pure: `files` is not modified. Later edits see the results of earlier ones.
    All-or-nothing: if any edit fails, one `EditError` lists every failure and
    nothing is returned. Partial application would leave the model's next
    attempt reasoning about a half-edited file it never saw; a clean retry of the
    whole answer is easier for small models. Failures are still all collected,
    so one round trip fixes every broken block.

    Empty SEARCH creates the file, or appends to it if it exists (aider's rule,
    so several empty-SEARCH blocks can build up one new file).
    """
    state: dict[str, str] = {}
    errors: list[str] = []
    for number, edit in enumerate(edits, start=1):
        exists = edit.path in state or edit.path in files
        current = state.get(edit.path, files.get(edit.path, ""))
        try:
            if edit.whole_file:
                lines = len(_split(current)[0])
                if edit.path in files and lines > max_whole_file_lines:
                    raise EditError(
                        f"Edit {number} ({edit.path}): the file has {lines} lines; whole-file rewrites "
                        f"are allowed only up to {max_whole_file_lines} lines. Use SEARCH/REPLACE blocks "
                        "for the lines you change.\n" + FORMAT_HELP
                    )
                _refuse_placeholder(edit, current)
                state[edit.path] = edit.replace
            elif not edit.search.strip():
                if current and not current.endswith("\n") and edit.replace:
                    current += "\n"
                state[edit.path] = current + edit.replace
            elif not exists:
                raise EditError(f"Edit {number}: " + _unknown_file(edit.path, list(files)))
            else:
                state[edit.path] = _apply_one(current, edit, number)
        except EditError as exc:
            errors.append(exc.message)
    if errors:
        noun = "edit" if len(errors) == 1 else "edits"
        raise EditError(
            f"{len(errors)} {noun} failed; no changes were applied. Fix these and send all blocks again:\n\n"
            + "\n\n".join(errors)
        )
    return {p: c for p, c in state.items() if p not in files or files[p] != c}
