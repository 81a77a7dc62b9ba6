"""A compact map of a repository for the planner: the file tree plus signatures of relevant files.

Small models have small context windows, so the map is bounded (`max_chars`)
and never the whole repo: every path (or, for big trees, a per-directory
summary), then class/function signatures of the files that share the most
words with the task, best first, until the budget is spent.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from relaycode.pathsafety import read_text_in_root
from relaycode.testfiles import is_test_path

__all__ = ["relevant_files", "repo_map", "signatures"]

_MAX_FILE_BYTES = 512_000
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b)|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOPWORDS = frozenset(
    {"the", "and", "for", "with", "that", "this", "from", "into", "when", "then", "than", "not", "are",
     "was", "were", "has", "have", "had", "but", "you", "your", "can", "should", "would", "could", "will",
     "make", "makes", "made", "add", "adds", "use", "uses", "using", "fix", "fixes", "new", "file", "files",
     "code", "all", "any", "some", "its", "our", "out", "get", "set", "def", "class", "self", "return",
     "import", "none", "true", "false"}
)  # fmt: skip
_TEST_WORDS = frozenset({"test", "tests", "testing", "pytest", "unittest", "fail", "fails", "failing",
                         "failure", "failures", "failed", "broken", "red", "assert", "spec", "specs"})  # fmt: skip
# Top-level definitions in languages other than Python: good enough to show the shape of a file.
_DEF_RE = re.compile(
    r"^(?:export\s+(?:default\s+)?|pub(?:\([\w:]+\))?\s+|public\s+|private\s+|protected\s+|internal\s+|"
    r"static\s+|abstract\s+|final\s+|async\s+|unsafe\s+|extern\s+|inline\s+|sealed\s+|open\s+|data\s+)*"
    r"(?:function\*?|class|interface|struct|enum|trait|impl|fn|func|def|type|module|object|record|"
    r"namespace|protocol|extension|fun|macro_rules!)\s+\S"
)
_MAX_SIG_LINES = 80


def _words(text: str) -> list[str]:
    """Lower-case word pieces of identifiers: `parseEdits`/`parse_edits` -> parse, edits (+ whole)."""
    out: list[str] = []
    for ident in _IDENT_RE.findall(text):
        pieces = [p.lower() for chunk in ident.split("_") for p in _CAMEL_RE.findall(chunk)]
        out.extend(p for p in pieces if len(p) > 2 and p not in _STOPWORDS)
        whole = ident.lower()
        if len(pieces) > 1 and whole not in _STOPWORDS:
            out.append(whole)
    return out


def _is_test(path: str) -> bool:
    return is_test_path(path)


def _read(root: Path, rel: str) -> str | None:
    """File text, or None for binary, huge, unreadable or unsafe files."""
    text = read_text_in_root(root, rel, max_bytes=_MAX_FILE_BYTES)
    if text is None or "\0" in text[:8192]:
        return None
    return text


def _scores(root: Path, files: Sequence[str], task: str) -> dict[str, float]:
    task_words = set(_words(task))
    compounds = {
        i.lower() for i in _IDENT_RE.findall(task) if len(_CAMEL_RE.findall(i.replace("_", " "))) > 1
    }
    include_tests = bool(task_words & _TEST_WORDS) or bool(
        set(re.findall(r"[a-z]+", task.lower())) & _TEST_WORDS
    )
    candidates = [f for f in files if include_tests or not _is_test(f)]
    if not task_words or not candidates:
        return {}
    counts: dict[str, Counter[str]] = {}
    for f in candidates:
        text = _read(root, f)
        counts[f] = Counter(w for w in _words(text) if w in task_words) if text else Counter()
    # Words found in many files say little about which file matters (idf weighting).
    n = len(candidates)
    df = Counter(w for c in counts.values() for w in c)
    scores: dict[str, float] = {}
    for f in candidates:
        path_words = set(_words(f.replace("/", " ").replace(".", " ").replace("-", " ")))
        idf = {w: math.log((n + 1) / (df[w] + 1)) + 1.0 for w in task_words}
        score = 3.0 * sum(idf[w] for w in task_words & path_words)
        # A compound identifier (`apply_discount`, `renderCart`) named in the task is a far
        # stronger hint than its common pieces, so it weighs triple.
        score += sum(
            (1.0 + math.log(c)) * idf[w] * (3.0 if w in compounds else 1.0) for w, c in counts[f].items()
        )
        if f in task or Path(f).name in task:  # the task names the file outright
            score += 10.0
        if score > 0:
            scores[f] = score
    return scores


def relevant_files(root: Path, files: Sequence[str], task: str, *, limit: int | None = None) -> list[str]:
    """`files` that share words with `task`, most relevant first (ties by path).

    Test files count only when the task talks about tests or failures; files
    with nothing in common with the task are left out.
    """
    scores = _scores(root, files, task)
    ranked = sorted(scores, key=lambda f: (-scores[f], f))
    return ranked[:limit] if limit is not None else ranked


def _first_doc_line(node: ast.AST) -> str:
    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        doc = ast.get_docstring(node)
        if doc:
            first = doc.strip().splitlines()[0].strip()
            return first if len(first) <= 80 else first[:77] + "..."
    return ""


def _py_signatures(text: str) -> list[str]:
    tree = ast.parse(text)
    lines: list[str] = []

    def visit(body: list[ast.stmt], depth: int) -> None:
        for node in body:
            pad = "  " * depth
            if isinstance(node, ast.ClassDef):
                bases = ", ".join(ast.unparse(b) for b in [*node.bases, *node.keywords])
                head = f"{pad}class {node.name}({bases}):" if bases else f"{pad}class {node.name}:"
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
                returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                head = f"{pad}{prefix} {node.name}({ast.unparse(node.args)}){returns}:"
            else:
                continue
            doc = _first_doc_line(node)
            lines.append(f"{head}  # {doc}" if doc else head)
            if isinstance(node, ast.ClassDef) and depth < 2:
                visit(node.body, depth + 1)

    visit(tree.body, 0)
    return lines


def _regex_signatures(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        # Top level, or one level in (methods of a class/impl block); deeper lines are bodies.
        if len(line) - len(line.lstrip()) <= 4 and _DEF_RE.match(stripped):
            sig = line.rstrip().rstrip("{").rstrip()
            out.append(sig if len(sig) <= 160 else sig[:157] + "...")
    return out


def signatures(path: str, text: str) -> list[str]:
    """Signature lines of one file: `ast` for Python (falls back to regex on syntax errors)."""
    if path.endswith((".py", ".pyi")):
        try:
            return _py_signatures(text)[:_MAX_SIG_LINES]
        except (SyntaxError, ValueError, RecursionError):
            pass
    return _regex_signatures(text)[:_MAX_SIG_LINES]


def _tree(files: Sequence[str], keep: Sequence[str], budget: int) -> str:
    """All paths if they fit in `budget`; otherwise relevant paths plus per-directory counts."""
    full = "\n".join(sorted(files))
    if len(full) <= budget:
        return full
    dirs = Counter(f.rsplit("/", 1)[0] + "/" if "/" in f else "./" for f in files)
    summary = [f"{d} ({n} files)" for d, n in sorted(dirs.items())]
    out: list[str] = []
    used = 0
    # Relevant paths get at most half the room, so the directory overview always shows.
    for lines, limit in ((keep, budget // 2), (summary, budget)):
        for line in lines:
            if used + len(line) + 1 > limit:
                break
            out.append(line)
            used += len(line) + 1
    if len(out) < len(keep) + len(summary):
        out.append(f"... ({len(files)} files in total)")
    return "\n".join(out)


def repo_map(root: Path, files: list[str], task: str, *, max_chars: int = 6000) -> str:
    """The file tree plus signatures of the files most relevant to `task`, at most `max_chars` long."""
    ranked = relevant_files(root, files, task)
    header = f"Files ({len(files)}):\n"
    tree = _tree(files, ranked[:20], max(200, int(max_chars * 0.4)) - len(header))
    parts = [header + tree]
    used = len(parts[0])
    if ranked:
        title = "\n\nSignatures of the files most related to the task:\n"
        sections: list[str] = []
        for f in ranked:
            text = _read(root, f)
            sigs = signatures(f, text) if text else []
            if not sigs:
                continue
            section = f"\n{f}:\n" + "\n".join("  " + s for s in sigs)
            room = max_chars - used - len(title) - sum(len(s) for s in sections)
            if len(section) > room:
                if not sections and room > 80:  # the best file alone is too long: show its start
                    sections.append(section[: room - 4].rsplit("\n", 1)[0] + "\n  ...")
                break
            sections.append(section)
        if sections:
            parts.append(title + "".join(sections))
    out = "".join(parts)
    return out if len(out) <= max_chars else out[: max_chars - 4].rsplit("\n", 1)[0] + "\n..."
