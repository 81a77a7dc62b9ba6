"""Evidence: parsing what models write, the verdict rule, and sandboxed reproduction on scratch copies."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaycode import sandbox
from relaycode.review.evidence import (
    EvidenceChecker,
    FilesTree,
    GitTree,
    RunResult,
    WorkingTree,
    module_of,
    parse_outcome,
    verdict,
    write_runner,
)
from relaycode.review.findings import Evidence, Finding, ModelFinding, ModelReview
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.stages.verify import tool_env

needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed")

BUGGY = "def bitcount(n):\n    c = 0\n    while n:\n        n ^= n - 1\n        c += 1\n    return c\n"
FIXED = BUGGY.replace("^=", "&=")
OFF_BY_ONE = "def last(xs):\n    return xs[len(xs)]\n"
RIGHT = "def last(xs):\n    return xs[len(xs) - 1]\n"


def finding(evidence: Evidence | None, path: str = "m.py") -> Finding:
    return Finding(path=path, start_line=2, end_line=2, severity="major", category="bug", message="m",
                   models=["r"], evidence=evidence)


# --- what models write -------------------------------------------------------------------------


def test_model_evidence_is_parsed_leniently() -> None:
    review = ModelReview.model_validate({"findings": [
        {"line": 4, "message": "x", "evidence": {"call": "f(3)", "expected": 4}},
        {"line": 5, "message": "y", "evidence": "f(3) should be 4"},  # not the object: no evidence, not a failure
        {"line": 6, "message": "z", "evidence": None},
        {"line": 7, "message": "t", "evidence": {"test": "assert f(1) == [1, 2]"}},
        {"line": 8, "message": "u", "evidence": {"call": "f(1)"}},  # no expected value: nothing to check
    ]})
    first, second, third, fourth, fifth = review.findings
    assert first.evidence == Evidence(call="f(3)", expected="4") and first.evidence.checkable
    assert second.evidence is None and third.evidence is None
    assert fourth.evidence is not None and fourth.evidence.describe() == "assert f(1) == [1, 2]"
    assert fifth.evidence is not None and not fifth.evidence.checkable


def test_evidence_is_in_the_json_schema_local_models_are_constrained_by() -> None:
    schema = ModelReview.model_json_schema()
    finding_schema = schema["$defs"]["ModelFinding"]
    assert "evidence" in finding_schema["properties"]
    assert set(schema["$defs"]["Evidence"]["properties"]) == {"call", "expected", "test"}
    assert "evidence" not in finding_schema.get("required", [])  # optional: a finding without it stays valid
    assert ModelFinding.model_validate({"line": 1}).evidence is None


def test_describe_for_reports() -> None:
    assert Evidence(call="f(2)", expected="3").describe() == "f(2) should be 3"
    assert Evidence(test="x = f(2)\nassert x == 3\n").describe() == "x = f(2) ..."


# --- pure rules --------------------------------------------------------------------------------


def test_module_of() -> None:
    assert module_of("bitcount.py") == ("bitcount", ["."])
    assert module_of("pkg/mod.py") == ("pkg.mod", ["."])
    assert module_of("src/pkg/__init__.py") == ("pkg", ["src", "."])
    assert module_of("README.md") is None
    assert module_of("../evil.py") is None and module_of("/etc/x.py") is None
    assert module_of("my-scripts/x.py") is None  # not importable by name


def test_parse_outcome_needs_the_nonce() -> None:
    out = "noise\nRELAY-EVIDENCE-abc fail \"f(1) returned 2, expected 3\"\n"
    assert parse_outcome(out, "abc", timed_out=False, exit_code=0) == ("fail", "f(1) returned 2, expected 3")
    # The code under test printing a marker without the nonce is not a result.
    assert parse_outcome("RELAY-EVIDENCE-xyz pass \"\"\n", "abc", timed_out=False, exit_code=0)[0] == "error"
    assert parse_outcome("", "abc", timed_out=True, exit_code=137)[0] == "timeout"
    # The last tagged line wins (the runner's own report comes last).
    both = "RELAY-EVIDENCE-abc pass \"\"\nRELAY-EVIDENCE-abc error \"ValueError: v\"\n"
    assert parse_outcome(both, "abc", timed_out=False, exit_code=0) == ("error", "ValueError: v")


OUTCOMES = st.sampled_from(["pass", "fail", "error", "invalid", "timeout"])


@given(OUTCOMES, st.one_of(st.none(), OUTCOMES))
def test_verdict_rule(changed: str, base: str | None) -> None:
    status, how = verdict(RunResult(changed, "d", 0.1), None if base is None else RunResult(base, "d", 0.1))  # type: ignore[arg-type]
    if changed == "pass":
        assert status == "refuted"
    elif changed == "invalid":
        assert status == "unchecked"
    elif base is None:
        assert status == ("confirmed" if changed == "fail" else "unchecked")
    else:
        assert status == ("confirmed" if base == "pass" else "unchecked")
    assert how


# --- sandboxed reproduction --------------------------------------------------------------------


def checker(changed: dict[str, str], base: dict[str, str] | None, wall_s: float = 5) -> EvidenceChecker:
    env, policy = tool_env(None, SandboxPolicy())
    return EvidenceChecker(FilesTree(changed), None if base is None else FilesTree(base), None, policy,
                           Limits(wall_s=wall_s, memory_mb=1024), env)


@pytest.mark.sandbox
@needs_bwrap
def test_evidence_reproduces_on_the_change_and_not_on_the_base() -> None:
    box = checker({"m.py": OFF_BY_ONE}, {"m.py": RIGHT})
    try:
        confirmed = box.check(finding(Evidence(call="last([1, 2, 3])", expected="3")))
        assert confirmed.status == "confirmed" and "passes on the base" in confirmed.check
        assert "IndexError" in confirmed.check
        refuted = box.check(finding(Evidence(call="last([])", expected="None")))
        assert refuted.status == "unchecked" and "on the base too" in refuted.check  # fails on both: not this change
        wrong = box.check(finding(Evidence(call="last.__name__", expected="'first'")))
        assert wrong.status == "unchecked"  # a wrong expectation fails on both trees: never confirmed
        holds = box.check(finding(Evidence(call="last.__name__", expected="'last'")))
        assert holds.status == "refuted" and holds.check == "evidence passes on the change"
        broken = box.check(finding(Evidence(call="last([1,", expected="1")))
        assert broken.status == "unchecked" and "does not compile" in broken.check
        none = box.check(finding(None))
        assert none.status == "unchecked" and none.check == "no evidence given"
        other = box.check(finding(Evidence(call="f()", expected="1"), path="notes.md"))
        assert other.status == "unchecked" and "Python" in other.check
    finally:
        box.close()


@pytest.mark.sandbox
@needs_bwrap
def test_a_bug_that_hangs_is_confirmed_by_the_time_limit_against_a_base_that_returns() -> None:
    box = checker({"bitcount.py": BUGGY}, {"bitcount.py": FIXED}, wall_s=3)
    try:
        f = finding(Evidence(call="bitcount(127)", expected="7"), path="bitcount.py")
        checked = box.check(f)
        assert checked.status == "confirmed" and checked.check.startswith("timeout on the change")
    finally:
        box.close()


@pytest.mark.sandbox
@needs_bwrap
def test_without_a_base_only_a_failed_assertion_confirms() -> None:
    box = checker({"m.py": OFF_BY_ONE}, None)
    try:
        assert box.check(finding(Evidence(test="assert last.__doc__ == 'doc'"))).status == "confirmed"
        crash = box.check(finding(Evidence(call="last([1, 2])", expected="2")))
        assert crash.status == "unchecked" and "no base version" in crash.check
    finally:
        box.close()


@pytest.mark.sandbox
@needs_bwrap
def test_evidence_runs_sandboxed_on_a_scratch_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model-written evidence sees no secrets, cannot touch the user's checkout, and leaves no trace."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "m.py").write_text(RIGHT)
    probe = tmp_path / "probe"
    box = EvidenceChecker(WorkingTree(repo), None, None, *_policy_limits_env())
    try:
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        leak = box.check(finding(Evidence(test="import os\nassert 'OPENAI_API_KEY' not in os.environ")))
        assert leak.status == "refuted"  # the assertion held: the key is not there
        escape = Evidence(test=f"open('m.py', 'w').write('broken')\nopen({str(probe)!r}, 'w').write('x')")
        assert box.check(finding(escape)).status in ("unchecked", "confirmed")
        assert (repo / "m.py").read_text() == RIGHT and not probe.exists()
    finally:
        box.close()
    assert box._root is None


def _policy_limits_env() -> tuple[SandboxPolicy, Limits, dict[str, str]]:
    env, policy = tool_env(None, SandboxPolicy())
    return policy, Limits(wall_s=5, memory_mb=1024), env


def test_git_trees_export_without_touching_the_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    (repo / "m.py").write_text("one\n")
    git("add", "m.py")
    git("commit", "-qm", "one")
    (repo / "m.py").write_text("two\n")
    git("add", "m.py")
    (repo / "m.py").write_text("three\n")
    (repo / "new.py").write_text("new\n")
    for tree, want in ((GitTree(repo, "HEAD"), "one\n"), (GitTree(repo, None), "two\n"), (WorkingTree(repo), "three\n")):
        dest = tmp_path / f"out-{want.strip()}"
        dest.mkdir()
        tree.write_to(dest)
        assert (dest / "m.py").read_text() == want
    assert (tmp_path / "out-three" / "new.py").exists() and not (tmp_path / "out-one" / "new.py").exists()
    assert (repo / "m.py").read_text() == "three\n"


def test_the_runner_goes_into_a_new_directory_whatever_the_tree_holds(tmp_path: Path) -> None:
    """The scratch copy is the PR's tree: relay's writes (outside the sandbox) never follow its links."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = tmp_path / "bashrc"
    victim.write_text("mine\n")
    work = tmp_path / "tree"
    (work / "pkg").mkdir(parents=True)
    (work / ".relay_evidence").symlink_to(outside)
    (work / "pkg" / "run.py").symlink_to(victim)
    name = write_runner(work, "ab12", {"nonce": "ab12"})
    assert (work / name).is_dir() and not (work / name).is_symlink()
    assert (work / name / "claim.json").read_text() == '{"nonce": "ab12"}'
    assert list(outside.iterdir()) == [] and victim.read_text() == "mine\n"
    (work / name / "run.py").unlink()
    (work / name / "run.py").symlink_to(victim)  # a name already taken, a link or not, is refused
    with pytest.raises(FileExistsError):
        write_runner(work, "ab12", {})
    (work / ".relay_evidence-cd34").symlink_to(outside)
    with pytest.raises(FileExistsError):
        write_runner(work, "cd34", {})
    assert list(outside.iterdir()) == [] and victim.read_text() == "mine\n"


def test_the_working_tree_copy_reads_nothing_through_a_link_out_of_the_checkout(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("private\n")
    (secret / "inside.py").write_text("private\n")
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "inside.py").write_text("kept\n")
    (repo / "m.py").write_text("x = 1\n")
    (repo / "keys").mkdir()
    (repo / "keys" / "key").write_text("a fixture\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    (repo / "keys" / "key").unlink()
    (repo / "keys").rmdir()
    (repo / "keys").symlink_to(secret)  # the index still lists keys/key: read through the link it is the secret
    (repo / "alias").symlink_to(repo / "src")  # a link inside the checkout (untracked: listed as one path)
    dest = tmp_path / "dest"
    dest.mkdir()
    WorkingTree(repo).write_to(dest)
    copied = {p.relative_to(dest).as_posix(): p.read_text() for p in dest.rglob("*") if p.is_file()}
    assert copied == {"m.py": "x = 1\n", "src/inside.py": "kept\n"}


def test_git_trees_run_no_filter_driver_of_the_users_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tree's `.gitattributes` is the PR's; the user's drivers (git-lfs, sops) must not run on it."""
    marker = tmp_path / "ran"
    config = tmp_path / "gitconfig"
    config.write_text(f'[filter "probe"]\n\tsmudge = "touch {marker}; cat"\n\tclean = cat\n'
                      "[user]\n\tname = t\n\temail = t@t\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitattributes").write_text("*.dat filter=probe\n")
    (repo / "x.dat").write_text("data\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "c"], check=True)
    for i, tree in enumerate((GitTree(repo, "HEAD"), GitTree(repo, None))):
        dest = tmp_path / f"out{i}"
        dest.mkdir()
        tree.write_to(dest)
        assert (dest / "x.dat").read_text() == "data\n" and not marker.exists()


def test_files_tree_ignores_paths_leaving_it(tmp_path: Path) -> None:
    dest = tmp_path / "t"
    dest.mkdir()
    FilesTree({"a/b.py": "x", "../outside.py": "y"}).write_to(dest)
    assert (dest / "a" / "b.py").read_text() == "x" and not (tmp_path / "outside.py").exists()


def test_repo_trees_follow_the_source_of_the_change(tmp_path: Path) -> None:
    from relaycode.errors import UsageError
    from relaycode.review.evidence import repo_trees

    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    with pytest.raises(UsageError, match="--evidence: git rev-parse failed"):
        repo_trees(repo, staged=False, base=None, head=None)  # not a repository
    git("init", "-q", "-b", "main")
    (repo / "m.py").write_text("base\n")
    git("add", "m.py")
    git("commit", "-qm", "base")
    git("checkout", "-qb", "feature")
    (repo / "m.py").write_text("feature\n")
    (repo / "new.py").write_text("new\n")
    git("add", ".")
    git("commit", "-qm", "feature")
    git("checkout", "-q", "main")
    (repo / "m.py").write_text("main moved on\n")
    git("commit", "-qam", "main")

    def read(tree: object, name: str) -> str:
        dest = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        dest.mkdir()
        tree.write_to(dest)  # type: ignore[attr-defined]
        return (dest / name).read_text()

    changed, base, paths = repo_trees(repo, staged=False, base="main", head="feature")
    assert read(changed, "m.py") == "feature\n" and read(base, "m.py") == "base\n"  # the merge base, not main
    assert paths == {"m.py"}  # new.py is new: its evidence has no base run
    changed, base, paths = repo_trees(repo, staged=False, base=None, head=None)
    assert read(changed, "m.py") == "main moved on\n" and read(base, "m.py") == "main moved on\n"
