"""Scripted models and tiny cases for bench tests (module-level so worker processes can import them)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic_ai.models import Model

from relaycode.bench.suite import Case
from relaycode.testing.scripted import scripted_text

GOOD = "openai:gpt-5-mini"
BAD = "google:gemini-2.5-flash"
USAGE = {GOOD: (1000, 100), BAD: (500, 50)}

PYTEST = "python -m pytest -q -p no:cacheprovider"


def _case(name: str, module: str, buggy: str, fixed: str, test: str, timeout: float = 30) -> dict[str, Any]:
    return {
        "id": f"tiny/{name}", "suite": "tiny", "kind": "bugfix",
        "instruction": f"`{module}.py` is wrong; fix it.",
        "files": {f"{module}.py": buggy, "README.md": f"# {name}\n"},
        "hidden_files": {f"test_{module}.py": f"from {module} import *\n\n\ndef test_it():\n    {test}\n"},
        "test_command": f"{PYTEST} test_{module}.py", "timeout_s": timeout,
        "reference": {f"{module}.py": fixed}, "bug_lines": {f"{module}.py": [2]},
    }


CASES = [
    _case("add", "add", "def add(a, b):\n    return a - b\n", "def add(a, b):\n    return a + b\n",
          "assert add(2, 3) == 5"),
    _case("mul", "mul", "def mul(a, b):\n    return a + b\n", "def mul(a, b):\n    return a * b\n",
          "assert mul(2, 3) == 6"),
    # The buggy version never returns: the hidden test must be killed at its timeout.
    _case("spin", "spin", "def spin():\n    while True:\n        pass\n", "def spin():\n    return 1\n",
          "assert spin() == 1", timeout=10),
]


def write_suite(path: Path) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in CASES))
    return path


def write_configs(root: Path) -> list[str]:
    """Two configs: `good` (its implementer applies the reference) and `bad` (leaves the bug in place)."""
    paths = []
    for name, model in (("good", GOOD), ("bad", BAD)):
        path = root / f"{name}.toml"
        path.write_text(
            "diversity = \"off\"\nmax_iterations = 1\n"
            f"[stages.implement]\nmodel = \"{model}\"\n"
            "[stages.verify]\ncommands = [\"python -c pass\"]\n"
        )
        paths.append(str(path))
    return paths


def whole_files(files: Mapping[str, str]) -> str:
    return "".join(f"{path}\n```python\n{text}```\n\n" for path, text in files.items())


def overrides(case: Case, config: str) -> dict[str, Model]:
    """The good implementer answers with the case's reference; the bad one with a harmless wrong edit."""
    wrong = {p: t + "\n# looked at it\n" for p, t in case.files.items() if p.endswith(".py")}
    return {
        GOOD: scripted_text([whole_files(case.reference)], usage=USAGE[GOOD], name="good"),
        BAD: scripted_text([whole_files(wrong)], usage=USAGE[BAD], name="bad"),
    }


def slow_overrides(case: Case, config: str) -> dict[str, Model]:
    """Like `overrides`, but every case after the first hangs (so a test can kill the bench mid-case)."""
    if case.id != CASES[0]["id"]:
        time.sleep(120)
    return overrides(case, config)


def interrupting_overrides(case: Case, config: str) -> dict[str, Model]:
    """The second case's model call is interrupted (as by Ctrl-C)."""
    if case.id == CASES[0]["id"]:
        return overrides(case, config)
    from pydantic_ai.models.function import FunctionModel

    def interrupt(*_: object) -> Any:
        raise KeyboardInterrupt

    return {GOOD: FunctionModel(interrupt), BAD: FunctionModel(interrupt)}


#: A local model spec: pairs of a config using it need a node that serves it (Ray executor).
LOCAL = "local:qwen2.5-coder-0.5b"


def write_local_config(root: Path) -> str:
    """Config `good-local`: like `good`, but its implementer is a local model (scripted in tests)."""
    path = root / "good-local.toml"
    path.write_text(
        "diversity = \"off\"\nmax_iterations = 1\n"
        f"[stages.implement]\nmodel = \"{LOCAL}\"\n"
        "[stages.verify]\ncommands = [\"python -c pass\"]\n"
    )
    return str(path)


def local_overrides(case: Case, config: str) -> dict[str, Model]:
    """`overrides`, plus the local model answering as the good one does."""
    return {**overrides(case, config), LOCAL: scripted_text([whole_files(case.reference)], name="good-local")}


def dying_overrides(marker_dir: str, case: Case, config: str) -> dict[str, Model]:
    """Kills the process running the pair: `tiny/add` on its first try only, `tiny/mul` on every try.

    Each try leaves a file in `marker_dir`, so a test can count the tries. Bind `marker_dir` with
    functools.partial.
    """
    import os
    import signal

    marks = Path(marker_dir)
    name = case.id.split("/")[1]
    tries = len(list(marks.glob(f"{name}-*")))
    (marks / f"{name}-{tries + 1}").touch()
    if case.id == "tiny/mul" or (case.id == "tiny/add" and tries == 0):
        os.kill(os.getpid(), signal.SIGKILL)
    return overrides(case, config)
