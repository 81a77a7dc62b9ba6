"""Check a finding's evidence by running it in the sandbox, on the changed tree and on the base tree.

Evidence (`findings.Evidence`) is model-written code: it is never executed by relay's own
process. For each check relay copies the tree into a fresh scratch directory (never the user's
checkout), writes its fixed runner script and the claim as JSON data next to it, and runs the
runner with `relaycode.sandbox.run` under the verify stage's policy and limits (scrubbed
environment, no network, bounded time and memory). The runner imports the changed module and
evaluates the claim; its last output line, tagged with a random nonce, is the outcome:

- ``pass``: the claim held (the assertion did not fail);
- ``fail``: an assertion failed, or the call returned something other than the expected value;
- ``error``: something else was raised (the name of the exception is the detail);
- ``invalid``: the evidence itself does not compile;
- ``timeout``: the run hit the time limit.

Verdict (`verdict`): the evidence *reproduces* when it does not pass on the changed tree and,
where the file exists in the base tree, passes there. Passing on the change refutes the finding;
failing on the base too means the claim is not about this change (or its expectation is wrong),
so the finding stays unchecked. Without a base version only a failed assertion confirms.

A change under review is code under test here: it can detect the runner and fake a pass. Evidence
is a check of behaviour, not a defence against a hostile change; keep refuted findings
(`--min-score 0`) when reviewing code that may be adversarial.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from relaycode.config import SandboxSettings
from relaycode.errors import PathEscape, UsageError
from relaycode.gitguard import host_git_options
from relaycode.pathsafety import open_in_root
from relaycode.review.findings import Evidence, Finding, Status
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.sandbox import run as sandbox_run

Outcome = Literal["pass", "fail", "error", "invalid", "timeout"]

#: Seconds one evidence run may take; a call on a bug that loops forever ends here.
EVIDENCE_WALL_S = 10.0
#: Name prefix of the directory relay creates in the scratch copy for the runner and the claim.
RUNNER_DIR = ".relay_evidence"

RUNNER = r'''
import importlib, json, sys


def outcome(claim):
    try:
        call = compile(claim["call"], "<evidence call>", "eval") if claim["call"] else None
        expected = compile(claim["expected"], "<evidence expected>", "eval") if claim["expected"] else None
        test = compile(claim["test"], "<evidence test>", "exec") if claim["test"] else None
    except SyntaxError as exc:
        return "invalid", "SyntaxError: " + str(exc)
    for entry in reversed(claim["sys_path"]):
        sys.path.insert(0, entry)
    try:
        module = importlib.import_module(claim["module"])
    except BaseException as exc:
        return "error", "import " + claim["module"] + ": " + type(exc).__name__ + ": " + str(exc)
    namespace = dict(vars(module))
    try:
        if test is not None:
            exec(test, namespace)
            return "pass", ""
        want = eval(expected, namespace)
        got = eval(call, namespace)
        if got == want:
            return "pass", ""
        return "fail", claim["call"] + " returned " + repr(got)[:120] + ", expected " + repr(want)[:120]
    except AssertionError as exc:
        return "fail", "AssertionError: " + str(exc)
    except BaseException as exc:
        return "error", type(exc).__name__ + ": " + str(exc)


claim = json.load(open(sys.argv[1], encoding="utf-8"))
result, detail = outcome(claim)
sys.stdout.flush()
print("\n" + "RELAY-EVIDENCE-" + claim["nonce"] + " " + result + " " + json.dumps(str(detail)[:300]), flush=True)
'''


class Tree(Protocol):
    """A source tree that can be written out to a directory (a scratch copy)."""

    def write_to(self, dest: Path) -> None: ...


@dataclass(frozen=True)
class FilesTree:
    """A tree given as path -> text (review-eval cases, tests)."""

    files: Mapping[str, str]

    def write_to(self, dest: Path) -> None:
        for rel, text in self.files.items():
            target = dest / PurePosixPath(rel)
            if not target.resolve().is_relative_to(dest.resolve()):
                continue  # a path leaving the tree is not part of it
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


@dataclass(frozen=True)
class GitTree:
    """A commit's tree (`rev`), or with `rev=None` the index, exported with git; the checkout is not touched.

    git runs with `gitguard.host_git_options`: the tree's `.gitattributes` is the PR's, and must not
    send its files through the user's filter drivers (git-lfs, sops) outside the sandbox.
    """

    repo_root: Path
    rev: str | None

    def write_to(self, dest: Path) -> None:
        git = ["git", *host_git_options(self.repo_root), "-C", str(self.repo_root)]
        if self.rev is None:
            subprocess.run([*git, "checkout-index", "-a", f"--prefix={dest}/"],
                           check=True, capture_output=True, stdin=subprocess.DEVNULL)
            return
        # Piped from git to tar, never through relay: a PR's file of zeros is a few MiB in git and
        # gigabytes in the tar. GNU tar creates a member's links after its files, so a link in the
        # tree never redirects where a later member is written.
        with subprocess.Popen([*git, "archive", "--format=tar", self.rev], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as archive:
            assert archive.stdout is not None
            try:
                extract = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
            finally:
                archive.stdout.close()
        if archive.returncode != 0:
            raise subprocess.CalledProcessError(archive.returncode, [*git, "archive", self.rev])
        if extract.returncode != 0:
            raise subprocess.CalledProcessError(extract.returncode, ["tar", "-x"], stderr=extract.stderr[-2000:])


@dataclass(frozen=True)
class WorkingTree:
    """The working tree's tracked and untracked, not ignored, files (read, never written).

    Each file is opened with `pathsafety.open_in_root`: a tracked directory the checkout now has as a
    link (a patch, or the repository's tests during `relay verify`, can swap one in) leading out of
    the tree is not followed, so nothing outside the checkout lands in the scratch copy.
    """

    repo_root: Path

    def write_to(self, dest: Path) -> None:
        listed = subprocess.run(["git", *host_git_options(self.repo_root), "-C", str(self.repo_root), "ls-files",
                                 "-z", "--cached", "--others", "--exclude-standard"],
                                check=True, capture_output=True, stdin=subprocess.DEVNULL).stdout
        for rel in sorted({p for p in listed.decode("utf-8", "surrogateescape").split("\0") if p}):
            if (self.repo_root / rel).is_symlink():
                continue  # a link that could point anywhere
            try:
                source = open_in_root(self.repo_root, rel, "rb")
            except (OSError, PathEscape):
                continue  # deleted but still in the index, not a regular file, or reached through a link out
            with source:
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "xb") as out:
                    shutil.copyfileobj(source, out)


def sandbox_for(box: SandboxSettings, wall_s: float) -> tuple[SandboxPolicy, Limits, dict[str, str]]:
    """The verify stage's policy and limits for evidence and hidden-test runs, with relay's interpreter as
    `python`. Always sandboxed: evidence is model-written code, and no setting runs it outside."""
    from relaycode.stages.verify import tool_env

    policy = SandboxPolicy(enabled=True, env_allow=tuple(box.env_allow))
    limits = Limits(wall_s=wall_s, memory_mb=box.memory_mb, max_procs=box.max_procs)
    env, policy = tool_env(None, policy)
    return policy, limits, env


def repo_trees(repo_root: Path, *, staged: bool, base: str | None, head: str | None) -> tuple[Tree, Tree, frozenset[str]]:
    """(changed tree, base tree, paths in the base) for `relay review`'s sources of a change:
    the working tree against HEAD, the index against HEAD, or `head` against its merge base with `base`."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *host_git_options(repo_root), "-C", str(repo_root), *args],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise UsageError(f"--evidence: git {args[0]} failed in {repo_root}: {done.stderr.strip()[:200]}")
        return done.stdout.strip()

    if base is not None:
        head_sha = git("rev-parse", "--verify", f"{head or 'HEAD'}^{{commit}}")
        base_sha = git("merge-base", git("rev-parse", "--verify", f"{base}^{{commit}}"), head_sha)
        changed: Tree = GitTree(repo_root, head_sha)
    else:
        base_sha = git("rev-parse", "--verify", "HEAD^{commit}")
        changed = GitTree(repo_root, None) if staged else WorkingTree(repo_root)
    paths = frozenset(p for p in git("ls-tree", "-r", "--name-only", "-z", base_sha).split("\0") if p)
    return changed, GitTree(repo_root, base_sha), paths


def module_of(path: str) -> tuple[str, list[str]] | None:
    """(module name, sys.path entries relative to the tree root) for a Python file; None otherwise."""
    pure = PurePosixPath(path)
    if pure.suffix != ".py" or pure.is_absolute() or ".." in pure.parts:
        return None
    parts = list(pure.with_suffix("").parts)
    roots = ["."]
    if parts[0] == "src" and len(parts) > 1:
        parts, roots = parts[1:], ["src", "."]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts), roots


def write_runner(work: Path, nonce: str, claim: Mapping[str, object]) -> str:
    """Write the runner and `claim` into a directory relay creates in the scratch copy `work`; its name.

    The copy is the PR's tree: whatever it holds at any name (a link to `~/.ssh`, a `run.py` linked
    to the user's `~/.bashrc`) must not receive relay's writes, which happen outside the sandbox. So
    the directory is new (`mkdir` refuses an existing name, a link included) under a name with the
    run's random nonce, and its files are created exclusively inside it.
    """
    name = f"{RUNNER_DIR}-{nonce}"
    (work / name).mkdir(mode=0o755)
    with open(work / name / "run.py", "x", encoding="utf-8") as fh:
        fh.write(RUNNER)
    with open(work / name / "claim.json", "x", encoding="utf-8") as fh:
        json.dump(claim, fh)
    return name


@dataclass(frozen=True)
class RunResult:
    """One evidence run on one tree."""

    outcome: Outcome
    detail: str
    seconds: float


def parse_outcome(output: str, nonce: str, *, timed_out: bool, exit_code: int) -> tuple[Outcome, str]:
    """The runner's tagged last line; a run that ended without one is an error (or a timeout)."""
    if timed_out:
        return "timeout", "no answer within the time limit"
    found = re.findall(rf"^RELAY-EVIDENCE-{re.escape(nonce)} (pass|fail|error|invalid) (.*)$", output, flags=re.M)
    if not found:
        return "error", f"exited ({exit_code}) without a result: {output.strip()[-200:]}"
    outcome, detail = found[-1]
    try:
        text = str(json.loads(detail))
    except json.JSONDecodeError:
        text = detail
    return outcome, text  # type: ignore[return-value]


def verdict(changed: RunResult, base: RunResult | None) -> tuple[Status, str]:
    """confirmed / refuted / unchecked from the runs on the changed tree and (if meaningful) the base."""
    on_change = f"{changed.outcome} on the change" + (f" ({changed.detail})" if changed.detail else "")
    if changed.outcome == "pass":
        return "refuted", "evidence passes on the change"
    if changed.outcome == "invalid":
        return "unchecked", f"evidence does not compile: {changed.detail}"
    if base is None:
        if changed.outcome == "fail":
            return "confirmed", f"{on_change}; no base version to compare"
        return "unchecked", f"{on_change}; no base version to compare"
    if base.outcome == "pass":
        return "confirmed", f"{on_change}, passes on the base"
    return "unchecked", f"{on_change}, {base.outcome} on the base too ({base.detail})"


@dataclass
class EvidenceChecker:
    """Runs findings' evidence in the sandbox against scratch copies of `changed` and `base`.

    `base_paths` are the files that exist in the base tree (the base run is skipped for others).
    Thread-safe: `check` may run from several threads; each run gets its own scratch copy.
    """

    changed: Tree
    base: Tree | None
    base_paths: frozenset[str] | None
    policy: SandboxPolicy
    limits: Limits
    extra_env: dict[str, str] = field(default_factory=dict)
    _root: Path | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _materialized(self) -> Path:
        with self._lock:
            if self._root is None:
                root = Path(tempfile.mkdtemp(prefix="relay-evidence-"))
                (root / "changed").mkdir()
                self.changed.write_to(root / "changed")
                if self.base is not None:
                    (root / "base").mkdir()
                    self.base.write_to(root / "base")
                self._root = root
            return self._root

    def close(self) -> None:
        with self._lock:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    def has_base(self, path: str) -> bool:
        if self.base is None:
            return False
        return self.base_paths is None or path in self.base_paths

    def run(self, which: Literal["changed", "base"], path: str, evidence: Evidence) -> RunResult:
        """Run `evidence` against `path` in a fresh scratch copy of one tree."""
        found = module_of(path)
        if found is None:
            return RunResult("invalid", f"{path}: evidence runs only for importable Python files", 0.0)
        module, sys_path = found
        source = self._materialized() / which
        nonce = secrets.token_hex(8)
        with tempfile.TemporaryDirectory(prefix="relay-evidence-run-") as scratch:
            work = Path(scratch) / "tree"
            shutil.copytree(source, work, symlinks=True)
            claim = {"nonce": nonce, "module": module, "sys_path": sys_path,
                     "call": evidence.call.strip() if not evidence.test.strip() else "",
                     "expected": evidence.expected.strip() if not evidence.test.strip() else "",
                     "test": evidence.test}
            runner = write_runner(work, nonce, claim)
            # -I: no user site, no PYTHON* variables; the runner puts the tree's roots on sys.path itself.
            done = sandbox_run(["python", "-I", f"{runner}/run.py", f"{runner}/claim.json"],
                               work, policy=self.policy, limits=self.limits, extra_env=self.extra_env)
        outcome, detail = parse_outcome(done.output_tail, nonce, timed_out=done.timed_out, exit_code=done.exit_code)
        return RunResult(outcome, detail, done.seconds)

    def check(self, finding: Finding) -> Finding:
        """`finding` with `status` and `check` set from its evidence (unchanged status if it has none)."""
        evidence = finding.evidence
        if evidence is None or not evidence.checkable:
            return finding.model_copy(update={"status": "unchecked", "check": "no evidence given"})
        if module_of(finding.path) is None:
            return finding.model_copy(update={"status": "unchecked",
                                              "check": "evidence runs only for importable Python files"})
        changed = self.run("changed", finding.path, evidence)
        base = None
        if changed.outcome != "pass" and changed.outcome != "invalid" and self.has_base(finding.path):
            base = self.run("base", finding.path, evidence)
        status, how = verdict(changed, base)
        return finding.model_copy(update={"status": status, "check": how})
