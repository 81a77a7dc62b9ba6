"""Suite loading: every kind of bad line is refused with file:line; materialising a case."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from relaycode.bench.suite import SuiteError, load_suite, materialise, path_problem, select_cases, write_files
from relaycode.errors import UsageError

# shared/ lies beside the repository (CI copies it there); /work/shared on the developers' machines.
SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks",
                           Path("/work/shared/benchmarks")) if p.is_dir()), Path("/nonexistent"))


def good(**over: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "id": "t/one", "suite": "t", "kind": "bugfix", "instruction": "fix add",
        "files": {"pkg/add.py": "def add(a, b):\n    return a - b\n"},
        "hidden_files": {"test_add.py": "from pkg.add import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"},
        "test_command": "python -m pytest -q test_add.py", "timeout_s": 30,
        "reference": {"pkg/add.py": "def add(a, b):\n    return a + b\n"}, "bug_lines": {"pkg/add.py": [2]},
    }
    case.update(over)
    return case


def write_suite(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_loads_a_valid_file_and_a_directory(tmp_path: Path) -> None:
    write_suite(tmp_path / "a.jsonl", [json.dumps(good()), "", json.dumps(good(id="t/two", kind="implement"))])
    write_suite(tmp_path / "b.jsonl", [json.dumps(good(id="u/three", suite="u"))])
    cases = load_suite(tmp_path / "a.jsonl")
    assert [c.id for c in cases] == ["t/one", "t/two"]
    assert cases[0].source == f"{tmp_path / 'a.jsonl'}:1" and cases[1].source.endswith("a.jsonl:3")
    assert [c.id for c in load_suite(tmp_path)] == ["t/one", "t/two", "u/three"]
    assert cases[0].timeout_s == 30.0 and cases[0].bug_lines == {"pkg/add.py": [2]}


BAD_LINES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({k: v for k, v in good().items() if k != "id"}), "missing field 'id'"),
    (json.dumps({k: v for k, v in good().items() if k != "hidden_files"}), "missing field 'hidden_files'"),
    (json.dumps(good(kind="refactor")), "field 'kind' must be one of bugfix, implement"),
    (json.dumps(good(instruction="  ")), "field 'instruction' must be a non-empty string"),
    (json.dumps(good(test_command=3)), "field 'test_command' must be a non-empty string"),
    (json.dumps(good(timeout_s="30")), "field 'timeout_s' must be a positive number"),
    (json.dumps(good(timeout_s=0)), "field 'timeout_s' must be a positive number"),
    (json.dumps(good(timeout_s=True)), "field 'timeout_s' must be a positive number"),
    (json.dumps(good(files=["a.py"])), "field 'files' must be an object"),
    (json.dumps(good(files={})), "field 'files' is empty"),
    (json.dumps(good(files={"a.py": 1})), "content must be a string"),
    (json.dumps(good(files={"../x.py": ""})), "'..' component"),
    (json.dumps(good(files={"a/../../x.py": ""})), "'..' component"),
    (json.dumps(good(hidden_files={"/etc/passwd": ""})), "is absolute"),
    (json.dumps(good(hidden_files={"C:/x.py": ""})), "is absolute"),
    (json.dumps(good(files={"a\\..\\x.py": ""})), "backslash"),
    (json.dumps(good(files={"": ""})), "empty path"),
    (json.dumps(good(files={"a//b.py": ""})), "empty, '.' or '..' component"),
    (json.dumps(good(files={"./a.py": ""})), "empty, '.' or '..' component"),
    (json.dumps(good(files={".git/hooks/post-commit": ""})), "inside .git"),
    (json.dumps(good(files={"a": "", "a/b.py": ""})), "both a file and a directory"),
    (json.dumps(good(reference={"../r.py": ""})), "field 'reference'"),
    (json.dumps(good(bug_lines={"nope.py": [1]})), "'nope.py' is not in 'files'"),
    (json.dumps(good(bug_lines={"pkg/add.py": [0]})), "positive line numbers"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_each_bad_line_is_refused_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_suite(tmp_path / "s.jsonl", [json.dumps(good(id="t/ok")), line])
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert f"{path}:2: " in str(info.value)
    assert message in str(info.value)
    assert all(p.startswith(f"{path}:2: ") for p in info.value.problems)


def test_every_bad_line_is_reported_and_duplicates_name_the_first(tmp_path: Path) -> None:
    path = write_suite(tmp_path / "s.jsonl", [json.dumps(good()), "{", json.dumps(good()), json.dumps(good(kind=1))])
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    problems = info.value.problems
    assert problems[0].startswith(f"{path}:2: not valid JSON")
    assert problems[1] == f"{path}:3: duplicate case id 't/one' (first at {path}:1)"
    assert problems[2].startswith(f"{path}:4: field 'kind'")
    assert isinstance(info.value, UsageError)


def test_missing_and_empty_suites(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such suite"):
        load_suite(tmp_path / "nope.jsonl")
    with pytest.raises(UsageError, match=r"no \*\.jsonl files"):
        load_suite(tmp_path)
    with pytest.raises(SuiteError, match="no cases"):
        load_suite(write_suite(tmp_path / "e.jsonl", [""]))


@pytest.mark.parametrize("path", ["a.py", "pkg/a.py", "a..b.py", ".github/x.yml"])
def test_ordinary_paths_are_fine(path: str) -> None:
    assert path_problem(path) is None


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared suites not present")
def test_the_shipped_suites_load() -> None:
    assert len(load_suite(SHARED / "quixbugs.jsonl")) == 40
    assert len(load_suite(SHARED / "humanevalfix.jsonl")) == 104
    assert len(load_suite(SHARED)) == 178


def test_select_by_id_short_name_and_limit(tmp_path: Path) -> None:
    cases = load_suite(write_suite(tmp_path / "s.jsonl", [json.dumps(good(id=f"t/c{i}")) for i in range(4)]))
    assert [c.id for c in select_cases(cases, ["t/c2", "c0"])] == ["t/c2", "t/c0"]
    assert [c.id for c in select_cases(cases, None, 2)] == ["t/c0", "t/c1"]
    with pytest.raises(UsageError, match=r"unknown or ambiguous case id\(s\): t/zz"):
        select_cases(cases, ["t/zz"])


def test_materialise_is_one_commit_with_only_the_starting_files(tmp_path: Path) -> None:
    [case] = load_suite(write_suite(tmp_path / "s.jsonl", [json.dumps(good())]))
    repo = materialise(case, tmp_path / "work" / "repo")
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True, check=True).stdout  # noqa: E731
    assert git("ls-files").split() == ["pkg/add.py"]
    assert git("rev-list", "--count", "HEAD").strip() == "1"
    assert git("status", "--porcelain") == ""
    assert (repo / "pkg/add.py").read_text() == case.files["pkg/add.py"]
    assert not (repo / "test_add.py").exists()  # hidden tests stay hidden
    with pytest.raises(UsageError, match="not empty"):
        materialise(case, repo)


def test_write_files_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(UsageError, match="outside"):
        write_files(root, {"sub/test.py": "x"})
    (root / "t.py").symlink_to(outside / "victim.py")
    write_files(root, {"t.py": "hidden"})
    assert not (outside / "victim.py").exists() and (root / "t.py").read_text() == "hidden"
    assert not list(outside.iterdir())
