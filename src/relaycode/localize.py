"""Where a failing test points: the source files it imports, found before any model is asked.

When the task or the baseline's failing output names test files, the code under test is what
those tests import (Agentless localizes the same way, from the failing tests down). Showing the
implementer those files, and not every file that shares a word with the task, gives a small
model less to echo back or break and fewer tokens to write: on the demo the 1.5B rewrote the
README and an unrelated module beside the one file that had the bug.

Python only (imports are resolved against the repository's own files from its root, `src/`, `lib/`
and the importing file's directory); other languages fall back to word ranking. Reads go through the path-safety
layer and parse with `ast` only (never imports or runs anything): the tree is untrusted.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from relaycode.pathsafety import read_text_in_root
from relaycode.testfiles import is_test_path

__all__ = ["named_test_files", "sources_under_test"]

_MAX_BYTES = 512_000
_PATHISH = re.compile(r"[\w./-]+\.py\b")


def named_test_files(texts: Iterable[str], files: Sequence[str]) -> list[str]:
    """Test files of the repository that `texts` (the task, the baseline's failing output) name by path."""
    known = set(files)
    found: list[str] = []
    for text in texts:
        for match in _PATHISH.findall(text or ""):
            path = match.lstrip("./")
            if path in known and is_test_path(path) and path not in found:
                found.append(path)
    return found


def _import_roots(importer: str) -> list[str]:
    """Directories an import in `importer` is resolved from: the repository root, `src/` and `lib/`
    layouts, and the importer's own directory (pytest's rootdir insertion makes sibling modules of a
    test importable)."""
    own = importer.rsplit("/", 1)[0] + "/" if "/" in importer else ""
    return list(dict.fromkeys(["", "src/", "lib/", own]))


def _resolve(name: str, importer: str, known: set[str]) -> list[str]:
    """The repository files a dotted import name can mean, seen from `importer`."""
    rel = name.replace(".", "/")
    found = []
    for root in _import_roots(importer):
        for candidate in (f"{root}{rel}.py", f"{root}{rel}/__init__.py"):
            if candidate in known and candidate not in found:
                found.append(candidate)
    return found


def _imports(text: str, path: str) -> list[str]:
    """Dotted names a Python file imports (absolute, and relative ones resolved against its package)."""
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    package = path.split("/")[:-1]
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level - 1 <= len(package) else []
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module:
                out.append(module)
            out.extend(f"{module}.{alias.name}" if module else alias.name for alias in node.names)
    return out


def _imported_files(root: Path, path: str, known: set[str]) -> list[str]:
    text = read_text_in_root(root, path, max_bytes=_MAX_BYTES)
    if text is None:
        return []
    found: list[str] = []
    for name in _imports(text, path):
        for target in _resolve(name, path, known):
            if target != path and target not in found:
                found.append(target)
    return found


def sources_under_test(root: Path, files: Sequence[str], texts: Iterable[str], *, hops: int = 2) -> list[str]:
    """Source files the named test files import, then what those import (`hops` levels), nearest first.

    Empty when no text names a test file of the repository, or the tests import none of its files."""
    tests = named_test_files(texts, files)
    if not tests:
        return []
    known = set(files)
    order: list[str] = []
    frontier = tests
    for _ in range(hops):
        following: list[str] = []
        for path in frontier:
            for target in _imported_files(root, path, known):
                if target not in order and target not in tests and not is_test_path(target):
                    order.append(target)
                    following.append(target)
        frontier = following
    return [path for path in order if not path.endswith("__init__.py") or _has_code(root, path)]


def _has_code(root: Path, path: str) -> bool:
    """An `__init__.py` is worth showing only when it holds more than imports and a docstring."""
    text = read_text_in_root(root, path, max_bytes=_MAX_BYTES)
    if not text:
        return False
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(not isinstance(node, ast.Import | ast.ImportFrom | ast.Expr) for node in tree.body)
