"""Benchmark suites: load and validate JSONL case files, materialise a case as a git repo.

A suite is one `.jsonl` file or a directory of them (read in name order).
Every line is one case (format: `/work/shared/benchmarks/README.md`,
summarised in `docs/benchmarks.md`). Validation is all-or-nothing: every bad
line is reported as `file:line: problem`, and the bench refuses to start if
there is any, because a half-loaded suite would silently change the
denominator of every pass rate.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaycode.errors import UsageError

KINDS = ("bugfix", "implement")

#: Problems listed in one error message; the rest are counted.
MAX_REPORTED = 20


class SuiteError(UsageError):
    """A suite that cannot be used. `problems` has one `file:line: message` per bad line."""

    def __init__(self, problems: Sequence[str]) -> None:
        shown = list(problems[:MAX_REPORTED])
        more = len(problems) - len(shown)
        text = "invalid benchmark suite:\n  " + "\n  ".join(shown)
        if more > 0:
            text += f"\n  ... and {more} more"
        super().__init__(text)
        self.problems = list(problems)


@dataclass(frozen=True, eq=False)
class Case:
    """One benchmark case: a tiny repository, a task, hidden tests and a known-good answer."""

    id: str
    suite: str
    kind: str
    instruction: str
    files: Mapping[str, str]
    hidden_files: Mapping[str, str]
    test_command: str
    timeout_s: float
    reference: Mapping[str, str] = field(default_factory=dict)
    bug_lines: Mapping[str, list[int]] = field(default_factory=dict)
    source: str = ""
    """`file:line` the case was read from (for messages)."""

    def to_dict(self) -> dict[str, Any]:
        """The case in the JSONL format (without `source`)."""
        return {
            "id": self.id,
            "suite": self.suite,
            "kind": self.kind,
            "instruction": self.instruction,
            "files": dict(self.files),
            "hidden_files": dict(self.hidden_files),
            "test_command": self.test_command,
            "timeout_s": self.timeout_s,
            "reference": dict(self.reference),
            "bug_lines": {k: list(v) for k, v in self.bug_lines.items()},
        }


# ---------------------------------------------------------------- validation

_DRIVE = re.compile(r"^[A-Za-z]:")


def path_problem(path: object) -> str | None:
    """Why `path` is not a safe relative path inside a case dir, or None when it is.

    Rejected: non-strings, empty, absolute, Windows drives, backslashes (a
    separator on Windows, a trick elsewhere), NUL, `.`/`..`/empty components,
    and anything inside `.git` (hooks would run on relay's behalf).
    """
    if not isinstance(path, str):
        return f"path {path!r} is not a string"
    if not path:
        return "empty path"
    if "\\" in path:
        return f"path {path!r} contains a backslash"
    if "\x00" in path:
        return f"path {path!r} contains a NUL byte"
    if path.startswith("/") or _DRIVE.match(path):
        return f"path {path!r} is absolute"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return f"path {path!r} has an empty, '.' or '..' component (must stay inside the case dir)"
    if parts[0] == ".git":
        return f"path {path!r} is inside .git"
    return None


def _check_file_map(data: Mapping[str, Any], key: str, *, required: bool, non_empty: bool) -> list[str]:
    if key not in data:
        return [f"missing field {key!r}"] if required else []
    value = data[key]
    if not isinstance(value, dict):
        return [f"field {key!r} must be an object path -> text, got {type(value).__name__}"]
    if non_empty and not value:
        return [f"field {key!r} is empty"]
    problems: list[str] = []
    for path, text in value.items():
        why = path_problem(path)
        if why:
            problems.append(f"field {key!r}: {why}")
        elif not isinstance(text, str):
            problems.append(f"field {key!r}: file {path!r} content must be a string")
    # A file and a directory of the same name cannot both exist.
    names = set(value)
    for path in names:
        for i in range(1, path.count("/") + 1):
            prefix = path.rsplit("/", i)[0]
            if prefix in names:
                problems.append(f"field {key!r}: {prefix!r} is both a file and a directory")
    return problems


def _is_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def validate_case(data: object) -> list[str]:
    """Problems of one decoded line (empty when the case is valid)."""
    if not isinstance(data, dict):
        return [f"a case must be a JSON object, got {type(data).__name__}"]
    problems: list[str] = []
    for key in ("id", "suite", "instruction", "test_command"):
        if key not in data:
            problems.append(f"missing field {key!r}")
        elif not _is_str(data[key]):
            problems.append(f"field {key!r} must be a non-empty string")
    if "kind" not in data:
        problems.append("missing field 'kind'")
    elif data["kind"] not in KINDS:
        problems.append(f"field 'kind' must be one of {', '.join(KINDS)}, got {data['kind']!r}")
    if "timeout_s" not in data:
        problems.append("missing field 'timeout_s'")
    else:
        t = data["timeout_s"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= MAX_CASE_TIMEOUT_S:
            problems.append(f"field 'timeout_s' must be a positive number of seconds up to {MAX_CASE_TIMEOUT_S}, "
                            f"got {t!r}")
    problems += _check_file_map(data, "files", required=True, non_empty=True)
    problems += _check_file_map(data, "hidden_files", required=True, non_empty=True)
    problems += _check_file_map(data, "reference", required=False, non_empty=False)
    bug_lines = data.get("bug_lines", {})
    if not isinstance(bug_lines, dict):
        problems.append("field 'bug_lines' must be an object path -> list of line numbers")
    else:
        raw_files = data.get("files")
        files: dict[str, Any] = raw_files if isinstance(raw_files, dict) else {}
        for path, lines in bug_lines.items():
            if path not in files:
                problems.append(f"field 'bug_lines': {path!r} is not in 'files'")
            if not isinstance(lines, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in lines
            ):
                problems.append(f"field 'bug_lines': {path!r} must be a list of positive line numbers")
    return problems


def _case_from(data: Mapping[str, Any], source: str) -> Case:
    return Case(
        id=data["id"],
        suite=data["suite"],
        kind=data["kind"],
        instruction=data["instruction"],
        files=dict(data["files"]),
        hidden_files=dict(data["hidden_files"]),
        test_command=data["test_command"],
        timeout_s=float(data["timeout_s"]),
        reference=dict(data.get("reference", {})),
        bug_lines={k: list(v) for k, v in data.get("bug_lines", {}).items()},
        source=source,
    )


def suite_files(path: Path) -> list[Path]:
    """The JSONL files of a suite path (a file, or a directory's `*.jsonl` in name order)."""
    if path.is_dir():
        found = sorted(p for p in path.glob("*.jsonl") if p.is_file())
        if not found:
            raise UsageError(f"{path}: no *.jsonl files in this directory")
        return found
    if path.is_file():
        return [path]
    raise UsageError(f"{path}: no such suite file or directory")


def load_suite(path: Path) -> list[Case]:
    """Every case of a suite, validated. Raises SuiteError listing every bad line."""
    cases: list[Case] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for file in suite_files(path):
        with file.open(encoding="utf-8", errors="strict") as fh:
            try:
                lines = fh.read().splitlines()
            except UnicodeDecodeError as exc:
                problems.append(f"{file}: not UTF-8: {exc}")
                continue
        for number, line in enumerate(lines, start=1):
            where = f"{file}:{number}"
            if not line.strip():
                continue  # blank lines (e.g. a trailing newline) carry no case
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})")
                continue
            line_problems = validate_case(data)
            if line_problems:
                problems += [f"{where}: {p}" for p in line_problems]
                continue
            if data["id"] in seen:
                problems.append(f"{where}: duplicate case id {data['id']!r} (first at {seen[data['id']]})")
                continue
            seen[data["id"]] = where
            cases.append(_case_from(data, where))
    if problems:
        raise SuiteError(problems)
    if not cases:
        raise SuiteError([f"{path}: the suite has no cases"])
    return cases


def select_cases(cases: Sequence[Case], ids: Iterable[str] | None = None, limit: int | None = None) -> list[Case]:
    """`--cases ID,...` (in the given order; unknown ids are an error), then `--limit N`."""
    chosen = list(cases)
    if ids is not None:
        wanted = [i for i in ids if i]
        by_id = {c.id: c for c in cases}
        # A short name (`bitcount`) is accepted when it names exactly one case (`quixbugs/bitcount`).
        short: dict[str, list[Case]] = {}
        for c in cases:
            short.setdefault(c.id.rsplit("/", 1)[-1], []).append(c)
        chosen = []
        unknown = []
        for i in wanted:
            if i in by_id:
                chosen.append(by_id[i])
            elif len(short.get(i, [])) == 1:
                chosen.append(short[i][0])
            else:
                unknown.append(i)
        if unknown:
            raise UsageError(f"--cases: unknown or ambiguous case id(s): {', '.join(unknown)}")
        chosen = list({c.id: c for c in chosen}.values())  # a case named twice runs once
    if limit is not None:
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        chosen = chosen[:limit]
    return chosen


# ---------------------------------------------------------------- materialising

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "relay bench",
    "GIT_AUTHOR_EMAIL": "bench@relay.invalid",
    "GIT_COMMITTER_NAME": "relay bench",
    "GIT_COMMITTER_EMAIL": "bench@relay.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


#: A hidden-test run longer than this is a broken (or hostile) case, not a slow one.
MAX_CASE_TIMEOUT_S = 3600


def _git(repo: Path, *args: str) -> None:
    # No user config (reproducible everywhere) and none from the case either: HOME and the global
    # config point at nothing a case file could be (a `.gitconfig` among its files is just a file).
    env = {**os.environ, **_GIT_ENV, "HOME": os.devnull, "GIT_CONFIG_GLOBAL": os.devnull, "XDG_CONFIG_HOME": os.devnull}
    subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "commit.gpgSign=false",
         "-c", "init.defaultBranch=main", *args],
        cwd=repo, env=env, check=True, capture_output=True, text=True,
    )


def write_files(root: Path, files: Mapping[str, str]) -> None:
    """Write `files` under `root` through the path-safety layer: a symlink or FIFO that model-written
    code planted at a hidden-test path is replaced, never followed or opened (a FIFO would block)."""
    from relaycode.errors import PathEscape
    from relaycode.pathsafety import write_in_root

    for rel, text in files.items():
        why = path_problem(rel)
        if why:
            raise UsageError(why)
        target = root.resolve() / rel
        if target.is_symlink() and target.parent.resolve().is_relative_to(root.resolve()):
            target.unlink()  # a link planted at the file itself is replaced; one above it is refused
        try:
            write_in_root(root.resolve(), rel, text.encode("utf-8"))
        except PathEscape as exc:
            raise UsageError(f"path {rel!r}: {exc}") from None


def materialise(case: Case, dest: Path) -> Path:
    """Write the case's starting `files` into a fresh git repo at `dest` with one commit.

    `dest` must not exist or be empty. Hidden files are never written here.
    """
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest}: not empty; refusing to materialise case {case.id} over it")
    dest.mkdir(parents=True, exist_ok=True)
    write_files(dest, case.files)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A", "--", ".")
    _git(dest, "commit", "-q", "--no-verify", "-m", f"bench case {case.id}")
    return dest
