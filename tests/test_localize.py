"""Localization from failing tests to the code they import (relaycode/localize.py)."""

from __future__ import annotations

import os
from pathlib import Path

from relaycode.localize import named_test_files, sources_under_test
from relaycode.testing.sample_repos import DEMO_FILES, DEMO_TASK


def make(root: Path, files: dict[str, str]) -> list[str]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)


def test_the_demo_task_points_at_the_one_module_its_failing_test_imports(tmp_path: Path) -> None:
    files = make(tmp_path, DEMO_FILES)
    assert sources_under_test(tmp_path, files, [DEMO_TASK]) == ["shop/cart.py"]


def test_test_paths_named_in_failing_output_count_and_other_paths_do_not(tmp_path: Path) -> None:
    files = ["tests/test_a.py", "tests/test_b.py", "a.py"]
    output = "FAILED tests/test_b.py::test_x - AssertionError\n a.py:3: in f\n ./tests/test_a.py"
    assert named_test_files([output], files) == ["tests/test_b.py", "tests/test_a.py"]
    assert named_test_files(["see tests/test_missing.py and a.py"], files) == []


def test_src_layout_relative_imports_and_a_second_hop(tmp_path: Path) -> None:
    files = make(tmp_path, {
        "src/pkg/__init__.py": '"""Package."""\nfrom .api import run\n',
        "src/pkg/api.py": "from .engine import step\n\ndef run():\n    return step()\n",
        "src/pkg/engine.py": "import json\n\ndef step():\n    return 1\n",
        "src/pkg/unrelated.py": "def other():\n    return 2\n",
        "tests/test_api.py": "from pkg.api import run\n\ndef test_run():\n    assert run() == 2\n",
        "json.py": "# a repo file that shares a stdlib module's name is not what `import json` means here\n",
    })
    assert sources_under_test(tmp_path, files, ["tests/test_api.py fails"]) == ["src/pkg/api.py", "src/pkg/engine.py"]
    assert sources_under_test(tmp_path, files, ["tests/test_api.py fails"], hops=1) == ["src/pkg/api.py"]


def test_from_package_import_module_and_sibling_helpers(tmp_path: Path) -> None:
    files = make(tmp_path, {
        "shop/__init__.py": "",
        "shop/cart.py": "def total():\n    return 0\n",
        "tests/helpers.py": "def build():\n    return 1\n",
        "tests/conftest.py": "",
        "tests/test_cart.py": "from shop import cart\nfrom helpers import build\nimport conftest\n",
    })
    # The package's empty __init__ is not worth showing; test helpers are tests, not the code under test.
    assert sources_under_test(tmp_path, files, ["tests/test_cart.py"]) == ["shop/cart.py"]


def test_nothing_named_unparsable_or_unsafe_tests_give_nothing(tmp_path: Path) -> None:
    files = make(tmp_path, {"m.py": "x = 1\n", "tests/test_m.py": "import m\n", "tests/test_bad.py": "import (\n"})
    assert sources_under_test(tmp_path, files, ["fix the bug in m"]) == []
    assert sources_under_test(tmp_path, files, ["tests/test_bad.py"]) == []
    outside = tmp_path.parent / f"{tmp_path.name}-outside.py"
    outside.write_text("import m\n", encoding="utf-8")
    os.symlink(outside, tmp_path / "tests" / "test_link.py")
    # A linked test file is not read outside the tree (path-safety layer), so it points nowhere.
    assert sources_under_test(tmp_path, [*files, "tests/test_link.py"], ["tests/test_link.py"]) == []
    assert sources_under_test(tmp_path, files, ["tests/test_m.py"]) == ["m.py"]


def test_deeply_nested_test_files_do_not_crash(tmp_path: Path) -> None:
    files = make(tmp_path, {"m.py": "", "tests/test_deep.py": "x = " + "(" * 5000 + ")" * 5000 + "\nimport m\n"})
    assert sources_under_test(tmp_path, files, ["tests/test_deep.py"]) == []
