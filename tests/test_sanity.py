"""Basic checks of changed Python files: compile, import, top-level names kept (stages/sanity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaycode import sandbox
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.stages.sanity import module_name, plan_checks, run_sanity, top_level_names


def test_top_level_names_are_functions_and_classes() -> None:
    source = "import os\nX = 1\ndef f():\n    def inner(): pass\nasync def g(): pass\nclass C: pass\n"
    assert top_level_names(source) == ["f", "g", "C"]
    assert top_level_names("def f(:\n") == []


def test_module_name_walks_up_the_package_chain() -> None:
    packages = {"pkg/__init__.py", "pkg/sub/__init__.py"}
    assert module_name("pkg/sub/mod.py", packages.__contains__) == ("pkg.sub.mod", ".")
    assert module_name("src/pkg/__init__.py", {"src/pkg/__init__.py"}.__contains__) == ("pkg", "src")
    assert module_name("python_programs/gcd.py", packages.__contains__) == ("gcd", "python_programs")


def test_plan_skips_files_broken_before_and_names_the_task_mentions() -> None:
    before = {"a.py": "def keep(): pass\ndef rename_me(): pass\n", "broken.py": "def f(:\n", "new.py": None}
    changed = {"a.py": "def keep(): pass\n", "broken.py": "x = 1\n", "new.py": "y = 2\n", "notes.md": "x",
               "gone.py": None}
    checks = plan_checks(changed, before, "rename rename_me to better", lambda _p: False)
    assert [(c.path, c.names) for c in checks] == [("a.py", ("keep",)), ("new.py", ())]


def test_a_file_nested_too_deeply_for_the_parser_is_planned_as_broken_not_a_crash() -> None:
    deep = "x = " + "-" * 20_000 + "1\n"  # overflows ast.parse / compile (RecursionError or MemoryError)
    assert top_level_names(deep) == []
    assert plan_checks({"deep.py": deep + "y = 1\n"}, {"deep.py": deep}, "fix it", lambda _p: False) == []


def _run(root: Path, files_before: dict[str, str], files_after: dict[str, str], task: str = "do it",
         enabled: bool = True) -> tuple[int, str]:
    for path, text in files_after.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    checks = plan_checks(dict(files_after), dict(files_before), task, lambda p: (root / p).is_file())
    result = run_sanity(root, checks, policy=SandboxPolicy(enabled=enabled), limits=Limits(wall_s=60))
    assert result is not None
    return result.exit_code, result.output_tail


sandboxes = [False, pytest.param(True, marks=[pytest.mark.sandbox, pytest.mark.skipif(
    not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed")])]


@pytest.mark.parametrize("enabled", sandboxes)
def test_good_change_passes(tmp_path: Path, enabled: bool) -> None:
    code, out = _run(tmp_path, {"m.py": "def f():\n    return 1\n"}, {"m.py": "def f():\n    return 2\n"},
                     enabled=enabled)
    assert code == 0, out


@pytest.mark.parametrize("enabled", sandboxes)
def test_a_lost_name_an_import_error_and_a_hang_fail(tmp_path: Path, enabled: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    before = {"pkg/__init__.py": "", "pkg/a.py": "def f():\n    return 1\n\nclass C:\n    pass\n",
              "pkg/b.py": "X = 1\n", "pkg/c.py": "Y = 1\n"}
    after = {"pkg/__init__.py": "", "pkg/a.py": "def f():\n    return 2\n",
             "pkg/b.py": "from .missing import thing\nX = 1\n", "pkg/c.py": "while True:\n    pass\n"}
    monkeypatch.setattr("relaycode.stages.sanity.IMPORT_TIMEOUT_S", 2.0)
    code, out = _run(tmp_path, before, after, enabled=enabled)
    assert code == 1
    assert "pkg/a.py: no longer defines C" in out
    assert "pkg/b.py: the module no longer imports" in out and "missing" in out
    assert "pkg/c.py: the module no longer imports: importing it did not finish" in out


@pytest.mark.parametrize("enabled", sandboxes)
def test_a_module_that_never_imported_is_judged_by_its_names_only(tmp_path: Path, enabled: bool) -> None:
    before = {"tool.py": "import not_installed_anywhere\n\ndef main():\n    pass\n"}
    code, out = _run(tmp_path, before, {"tool.py": "import not_installed_anywhere\n\ndef main():\n    return 1\n"},
                     enabled=enabled)
    assert code == 0, out
    code, out = _run(tmp_path, before, {"tool.py": "import not_installed_anywhere\n"}, enabled=enabled)
    assert code == 1 and "no longer defines main" in out


@pytest.mark.parametrize("enabled", sandboxes)
def test_a_module_larger_than_a_command_line_argument_is_checked(tmp_path: Path, enabled: bool) -> None:
    old = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(8000))  # ~200 KB: over MAX_ARG_STRLEN
    code, out = _run(tmp_path, {"big.py": old}, {"big.py": old.replace("def f7999", "def g7999")}, enabled=enabled)
    assert code == 1 and "no longer defines f7999" in out, out
