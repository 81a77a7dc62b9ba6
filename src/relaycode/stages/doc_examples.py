"""Run the `>>>` examples written in a project's own Python files, as a verify command.

Many small repositories (and benchmark cases) have no test suite but do show
examples in docstrings or description strings. Those examples are ground
truth the project itself wrote, so when no test command is detected, verify
runs them: deterministic, no model involved. Every string literal holding a
`>>>` line counts, not only docstrings (QuixBugs keeps its examples in a bare
string after the function).

This file is executed as a script inside the sandbox (`python -c`), so it
imports only the standard library.
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import json
import os
import signal
import stat
import sys
from pathlib import Path

#: The name verify shows for this check; run_verify expands it to the real command.
COMMAND_NAME = "relay:doc-examples"
PER_EXAMPLE_TIMEOUT_S = 5


def _source(root: Path, rel: Path) -> str:
    """A file's text, read without following links out of the tree ('' when it cannot be).

    Self-contained (this module also runs alone inside the sandbox): the real path must stay inside
    the root, the file itself must not be a link, and a FIFO must not block the read.
    """
    path = root / rel
    real = os.path.realpath(path)
    if os.path.commonpath([real, os.path.realpath(root)]) != os.path.realpath(root):
        return ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(1 << 20).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def has_examples(path: Path, root: Path | None = None) -> bool:
    root = root if root is not None else path.parent
    text = _source(root, path.relative_to(root) if path.is_absolute() else path)
    return ">>>" in text and bool(example_strings(text))


def example_strings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # deep nesting overflows the parser
        return []
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ">>>" in node.value]


class ExampleTimeout(KeyboardInterrupt):
    """Raised by the alarm. A KeyboardInterrupt, because doctest re-raises those instead of
    counting them as an ordinary failure and going on to the next (possibly endless) example."""


def _timeout(signum: int, frame: object) -> None:
    raise ExampleTimeout(f"example took longer than {PER_EXAMPLE_TIMEOUT_S} s")


def python_files(root: Path) -> list[Path]:
    """Python files under `root` (relative paths, sorted), `.git` excluded; links are not followed.

    Iterative: `Path.rglob` recurses per directory level in Python 3.11, and a test can leave a
    directory chain deep enough to end relay with a RecursionError outside the sandbox.
    """
    found: list[Path] = []
    stack = [root]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as entries:
                listed = list(entries)
        except OSError:
            continue
        for entry in listed:
            if entry.name == ".git":
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.name.endswith(".py"):
                found.append(Path(entry.path).relative_to(root))
    return sorted(found)


def candidate_files(root: Path) -> list[Path]:
    """Python files under `root` (relative paths) that hold examples; test files and .git excluded."""
    return [p for p in python_files(root) if not p.name.startswith("test_") and has_examples(root / p, root)]


def collect(root: Path) -> dict[str, list[str]]:
    """The example strings of every file, by relative path: what `check(pinned=...)` replays.

    A run pins the examples of the code as it was before any change, so an implementer that
    deletes a docstring (small models rewriting a whole file often do) deletes no checks.
    """
    return {p.as_posix(): example_strings(_source(root, p)) for p in candidate_files(root)}


def check(paths: list[Path], pinned: dict[str, list[str]] | None = None) -> int:
    """Run every example of every file; print failures; return the number that failed.

    With `pinned`, the examples come from there (path -> example strings) instead of the files'
    current text; a pinned file that no longer exists or imports fails all of its examples.
    """
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags, verbose=False)
    parser = doctest.DocTestParser()
    signal.signal(signal.SIGALRM, _timeout)
    sys.path.insert(0, str(Path.cwd()))
    if pinned is not None:
        paths = [Path(p) for p in pinned]
    for path in paths:
        if pinned is not None:
            strings = pinned[path.as_posix()]
        else:
            strings = example_strings(path.read_text(encoding="utf-8"))
        if not strings:
            continue
        name = path.with_suffix("").as_posix().replace("/", ".")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            signal.alarm(PER_EXAMPLE_TIMEOUT_S)
            if not path.is_file():
                raise FileNotFoundError(f"{path} no longer exists")
            spec.loader.exec_module(module)
        except (Exception, ExampleTimeout) as exc:  # the module itself is broken: every example fails
            print(f"{path}: import failed: {type(exc).__name__}: {exc}")
            runner.failures += len(strings)
            continue
        finally:
            signal.alarm(0)
        globs = dict(vars(module))
        for i, text in enumerate(strings):
            test = parser.get_doctest(text, globs, f"{path}[{i}]", str(path), 0)
            for example in test.examples:  # one alarm per example: a hang fails only that one
                single = doctest.DocTest([example], globs, test.name, test.filename, test.lineno, None)
                signal.alarm(PER_EXAMPLE_TIMEOUT_S)
                try:
                    runner.run(single, clear_globs=False)
                except ExampleTimeout as exc:
                    print(f"{path}: line {example.lineno + 1}: {example.source.strip()}: {exc}")
                    runner.failures += 1
                    runner.tries += 1
                finally:
                    signal.alarm(0)
                sys.stdout.flush()
    failed, tried = runner.failures, runner.tries
    print(f"doc examples: {tried - failed} passed, {failed} failed")
    return failed


def main(argv: list[str]) -> int:
    """`[--pinned | PATH...]`: check the given files, or every file with examples; with `--pinned`,
    the examples `collect` pinned, as JSON on stdin."""
    if argv[:1] == ["--pinned"]:
        return 1 if check([], pinned=json.loads(sys.stdin.read())) else 0
    paths = [Path(p) for p in argv] or candidate_files(Path("."))
    return 1 if check(paths) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
