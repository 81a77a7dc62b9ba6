"""The import graph of `relaycode`: names and providers below config, config below models, no cycle.

`providers.py` knows model names and providers and imports neither `config` nor `models`; `config.py`
validates names with it at import time; `models.py` resolves configured models and imports `config`.
Every import counts here, at module level, inside functions and under `TYPE_CHECKING`: a cycle hidden
in a function or a type annotation is still two modules that cannot be read (or moved) apart.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import relaycode

PACKAGE = Path(relaycode.__file__).parent


def _module_names() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


MODULES = _module_names()


def _imported(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


GRAPH = {name: {m for m in _imported(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def reaches(start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_the_graph_sees_the_imports_it_checks() -> None:
    # Guards the checks below against passing vacuously (a parser that found no imports).
    assert "relaycode.providers" in GRAPH["relaycode.config"]
    assert "relaycode.config" in GRAPH["relaycode.models"]
    assert reaches("relaycode.session", "relaycode.config")


def test_providers_import_neither_config_nor_models() -> None:
    assert not reaches("relaycode.providers", "relaycode.config")
    assert not reaches("relaycode.providers", "relaycode.models")


def test_config_and_models_import_each_other_in_one_direction_only() -> None:
    assert reaches("relaycode.models", "relaycode.config")
    assert not reaches("relaycode.config", "relaycode.models")


@pytest.mark.parametrize("module", ["relaycode.providers", "relaycode.config", "relaycode.models"])
def test_each_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
