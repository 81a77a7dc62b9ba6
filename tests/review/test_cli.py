"""`relay review` and `relay review-eval` end to end: real HTTP to a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from relaycode.cli import _register, app
from relaycode.review.evaluate import unified_diff
from relaycode.testing.fake_openai import FakeOpenAI, Reply

from .fake_github import FakeGitHub

_register()
runner = CliRunner()

OLD = "def bitcount(n):\n    count = 0\n    while n:\n        n &= n - 1\n        count += 1\n    return count\n"
NEW = OLD.replace("n &= n - 1", "n ^= n - 1")

pytestmark = pytest.mark.usefixtures("allow_model_requests")


def flag_first_added(request: dict[str, Any]) -> Reply:
    """r1 flags the first added line as major; r2 as minor; an unchanged file gets no finding."""
    text = "\n".join(str(m.get("content") or "") for m in request["messages"])
    added = re.findall(r"^\s*(\d+) \+ ", text, flags=re.M)
    if not added:
        return Reply.json_output({"findings": []}, input_tokens=300, output_tokens=10)
    severity = "major" if request["model"] == "r1" else "minor"
    return Reply.json_output({"findings": [{"line": int(added[0]), "severity": severity, "category": "bug",
                                            "message": "xor instead of and", "suggestion": "n &= n - 1"}]},
                             input_tokens=300, output_tokens=40)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(default=flag_first_added) as fake:
        yield fake


def write_config(tmp_path: Path, server: FakeOpenAI, models: str = '["fake:r1", "fake:r2"]') -> Path:
    path = tmp_path / "relay-test.toml"
    path.write_text(f"""
diversity = "off"
[endpoints.fake]
base_url = "{server.base_url}"
[stages.implement]
model = "fake:impl"
[stages.review]
models = {models}
[retry]
max_attempts = 1
[models."fake:r1".price]
input_per_mtok = 1.0
output_per_mtok = 2.0
[models."fake:r2".price]
input_per_mtok = 0.5
output_per_mtok = 1.0
""")
    return path


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "bitcount.py").write_text(OLD)
    git(root, "add", ".")
    git(root, "commit", "-qm", "base")
    return root


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env)


def test_review_diff_file_json(tmp_path: Path, server: FakeOpenAI) -> None:
    diff = tmp_path / "change.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    cfg = write_config(tmp_path, server)
    result = invoke("review", "--diff", str(diff), "--config", str(cfg), "--format", "json", "--repo", str(tmp_path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [finding] = data["findings"]
    assert (finding["start_line"], finding["severity"], finding["models"]) == (4, "major", ["fake:r1", "fake:r2"])
    assert data["usage"]["fake:r1"]["usd"] == pytest.approx((300 * 1 + 40 * 2) / 1e6)
    assert data["usage"]["fake:r2"]["input_tokens"] == 300
    assert len(server.requests) == 2


@pytest.mark.parametrize(("fail_on", "code"), [("major", 1), ("minor", 1), ("blocker", 0), (None, 0)])
def test_fail_on_sets_the_exit_code(tmp_path: Path, server: FakeOpenAI, fail_on: str | None, code: int) -> None:
    diff = tmp_path / "change.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    args = ["review", "--diff", str(diff), "--config", str(write_config(tmp_path, server)), "--format", "md"]
    result = invoke(*args, *(["--fail-on", fail_on] if fail_on else []))
    assert result.exit_code == code, result.output
    assert "| `fake:r1` |" in result.stdout


def test_min_agree_from_the_command_line(tmp_path: Path, server: FakeOpenAI) -> None:
    diff = tmp_path / "change.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    cfg = write_config(tmp_path, server)
    result = invoke("review", "--diff", str(diff), "--config", str(cfg), "--format", "json", "--min-agree", "2")
    [finding] = json.loads(result.stdout)["findings"]
    assert finding["severity"] == "minor"  # both agree on minor, only r1 on major
    result = invoke("review", "--diff", str(diff), "--config", str(cfg), "--format", "json", "--min-agree", "3")
    assert json.loads(result.stdout)["findings"] == []


def test_working_tree_includes_untracked_files(repo: Path, tmp_path: Path, server: FakeOpenAI) -> None:
    (repo / "bitcount.py").write_text(NEW)
    (repo / "extra.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("ignored.py\n")
    (repo / "ignored.py").write_text("y = 2\n")
    cfg = write_config(tmp_path, server)
    out = tmp_path / "out" / "review.sarif"
    result = invoke("review", "--repo", str(repo), "--config", str(cfg), "--format", "sarif", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0"
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]}
    assert uris == {"bitcount.py", "extra.py", ".gitignore"}, result.stderr  # ignored.py is not reviewed
    assert git(repo, "status", "--porcelain").count("??") == 2  # the user's index is untouched


def test_base_and_head_review_the_branch(repo: Path, tmp_path: Path, server: FakeOpenAI) -> None:
    git(repo, "checkout", "-qb", "feature")
    (repo / "bitcount.py").write_text(NEW)
    git(repo, "commit", "-qam", "break it")
    (repo / "bitcount.py").write_text(OLD + "\n# uncommitted\n")  # not part of main...feature
    cfg = write_config(tmp_path, server)
    result = invoke("review", "--repo", str(repo), "--config", str(cfg), "--format", "json", "--base", "main")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["files"] == ["bitcount.py"] and data["findings"][0]["start_line"] == 4
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "uncommitted" not in prompt
    result = invoke("review", "--repo", str(repo), "--config", str(cfg), "--format", "json",
                    "--base", "main", "--head", "main")
    assert json.loads(result.stdout)["files"] == []


def test_staged(repo: Path, tmp_path: Path, server: FakeOpenAI) -> None:
    (repo / "bitcount.py").write_text(NEW)
    git(repo, "add", "bitcount.py")
    (repo / "bitcount.py").write_text(OLD)  # the working tree differs from the index
    cfg = write_config(tmp_path, server)
    result = invoke("review", "--repo", str(repo), "--config", str(cfg), "--format", "json", "--staged")
    data = json.loads(result.stdout)
    assert data["files"] == ["bitcount.py"] and data["findings"][0]["start_line"] == 4
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "    1   def bitcount(n):" in prompt  # enclosing function read from the index, numbered


@pytest.mark.parametrize("args", [
    ["--format", "xml"], ["--head", "x"], ["--staged", "--diff", "-"], ["--fail-on", "fatal"], ["--min-agree", "0"],
    ["--base", "no-such-ref"], ["--pr", "not-a-pr"],
])
def test_usage_errors_exit_2(repo: Path, tmp_path: Path, server: FakeOpenAI, args: list[str]) -> None:
    cfg = write_config(tmp_path, server)
    result = invoke("review", "--repo", str(repo), "--config", str(cfg), *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("relay: error:")
    assert server.requests == []


def test_missing_api_key_is_named_before_any_work(tmp_path: Path) -> None:
    diff = tmp_path / "d.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    result = invoke("review", "--diff", str(diff), "--reviewers", "local:qwen2.5-coder-0.5b,openai:gpt-5-mini")
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr
    result = invoke("review", "--diff", str(diff), "--reviewers", "local:nope")
    assert result.exit_code == 2 and "unknown local model" in result.stderr


def test_every_reviewer_failing_exits_1(tmp_path: Path) -> None:
    diff = tmp_path / "d.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    with FakeOpenAI(default=lambda _r: Reply.error(401, "bad key")) as server:
        cfg = write_config(tmp_path, server)
        result = invoke("review", "--diff", str(diff), "--config", str(cfg))
    assert result.exit_code == 1
    assert "every reviewer failed" in result.stderr and "auth" in result.stderr


def test_diff_from_stdin(tmp_path: Path, server: FakeOpenAI) -> None:
    cfg = write_config(tmp_path, server, models='["fake:r2"]')
    result = runner.invoke(app, ["review", "--diff", "-", "--config", str(cfg), "--format", "text"],
                           input=unified_diff("bitcount.py", OLD, NEW))
    assert result.exit_code == 0, result.output
    assert "MINOR" in result.stdout and "bitcount.py:4" in result.stdout and "fake:r2" in result.stdout


@pytest.mark.parametrize("post", [True, False])
def test_pull_request_review_is_posted_once(tmp_path: Path, server: FakeOpenAI, post: bool) -> None:
    with FakeGitHub(unified_diff("bitcount.py", OLD, NEW)) as gh:
        env = {"GITHUB_TOKEN": "ghp_x", "GITHUB_API_URL": gh.url}
        cfg = write_config(tmp_path, server)
        args = ["review", "--pr", "octo/widgets#7", "--config", str(cfg), "--format", "json"]
        result = invoke(*args, *([] if post else ["--no-post"]), env=env)
    assert result.exit_code == 0, result.output
    posts = [r for r in gh.requests if r["method"] == "POST"]
    assert len(posts) == (1 if post else 0)
    if post:
        [comment] = posts[0]["body"]["comments"]
        assert (comment["path"], comment["line"], comment["side"]) == ("bitcount.py", 4, "RIGHT")
        assert "fake:r1" in posts[0]["body"]["body"]


def test_pull_request_needs_a_token(tmp_path: Path, server: FakeOpenAI) -> None:
    result = invoke("review", "--pr", "octo/widgets#7", "--config", str(write_config(tmp_path, server)))
    assert result.exit_code == 2 and "GITHUB_TOKEN" in result.stderr


def test_review_eval_command(tmp_path: Path, server: FakeOpenAI) -> None:
    suite = tmp_path / "suite.jsonl"
    cases = [
        {"id": "t/bitcount", "files": {"b.py": NEW}, "reference": {"b.py": OLD}, "bug_lines": {"b.py": [4]}},
        {"id": "t/other", "files": {"o.py": "x = 1\ny = 3\n"}, "reference": {"o.py": "x = 1\ny = 2\n"},
         "bug_lines": {"o.py": [1]}},
        {"id": "t/implement", "files": {}, "reference": {}, "bug_lines": {}},
    ]
    suite.write_text("".join(json.dumps(c) + "\n" for c in cases))
    out = tmp_path / "eval"
    result = invoke("review-eval", str(suite), "--config", str(write_config(tmp_path, server)), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "[2/2] t/other clean" in result.stderr
    data = json.loads((out / "review_eval.json").read_text())
    r1 = data["summary"]["fake:r1"]
    # bitcount: line 4 flagged (true); other: line 2 flagged, bug labelled on line 1 → touches ±1 (true)
    assert (r1["found"], r1["bugs"], r1["precision"]) == (2, 2, 1.0)
    # clean changes (the fixes) get flagged too by this naive reviewer: 1 false alarm each
    assert r1["false_alarms_per_clean"] == 1.0 and r1["clean_flagged_share"] == 1.0
    assert data["summary"]["ensemble"]["usd_per_review"] == pytest.approx(
        r1["usd_per_review"] + data["summary"]["fake:r2"]["usd_per_review"])
    table = (out / "review_eval.md").read_text()
    assert "| `ensemble` | 2/2 | 100% |" in table and table.splitlines()[-1] in result.stdout
    assert table.startswith("review-eval of suite.jsonl: 2 of 2 cases") and data["cases_done"] == 2


def test_review_eval_refuses_to_overwrite_and_resumes(tmp_path: Path, server: FakeOpenAI) -> None:
    suite = tmp_path / "suite.jsonl"
    cases = [{"id": f"t/{n}", "files": {"b.py": NEW}, "reference": {"b.py": OLD}, "bug_lines": {"b.py": [4]}}
             for n in range(2)]
    suite.write_text("".join(json.dumps(c) + "\n" for c in cases))
    out, cfg = tmp_path / "eval", str(write_config(tmp_path, server))
    assert invoke("review-eval", str(suite), "--config", cfg, "--out", str(out), "--limit", "1").exit_code == 0
    again = invoke("review-eval", str(suite), "--config", cfg, "--out", str(out))
    assert again.exit_code == 2 and "--resume" in again.stderr
    requests = len(server.requests)
    resumed = invoke("review-eval", str(suite), "--config", cfg, "--out", str(out), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "1 cases already reviewed" in resumed.stderr and "t/0" not in resumed.stderr
    assert len(server.requests) - requests == 4  # case t/1 only: two reviewers × buggy and clean
    data = json.loads((out / "review_eval.json").read_text())
    assert data["cases_done"] == 2 and data["summary"]["ensemble"]["reviews"] == 4
    assert "relay commit" in (out / "review_eval.md").read_text()
    other = invoke("review-eval", str(suite), "--config", cfg, "--out", str(out), "--resume", "--min-agree", "2")
    assert other.exit_code == 2 and "another evaluation" in other.stderr
    assert invoke("review-eval", str(suite), "--config", cfg, "--out", str(out), "--force").exit_code == 0


# ------------------------------------------------------------------ a gate never passes on nothing


def test_input_that_is_not_a_diff_is_a_usage_error(tmp_path: Path, server: FakeOpenAI) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("just some notes, not a change\n")
    cfg = write_config(tmp_path, server)
    result = invoke("review", "--diff", str(notes), "--config", str(cfg), "--fail-on", "major")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"relay: error: {notes}: not a unified diff "
                                     "(no file header such as `diff --git` or `--- a/...`)")
    assert "No findings" not in result.stdout and server.requests == []


BINARY_ONLY = "diff --git a/logo.png b/logo.png\nindex 1111111..2222222 100644\nBinary files a/logo.png and b/logo.png differ\n"


@pytest.mark.parametrize(("extra", "code"), [([], 1), (["--allow-unreviewed"], 0)])
def test_a_change_nothing_of_which_was_reviewed_fails_the_gate(tmp_path: Path, server: FakeOpenAI,
                                                               extra: list[str], code: int) -> None:
    diff = tmp_path / "logo.diff"
    diff.write_text(BINARY_ONLY)
    cfg = write_config(tmp_path, server)
    result = invoke("review", "--diff", str(diff), "--config", str(cfg), "--fail-on", "blocker", *extra)
    assert result.exit_code == code, result.output
    assert server.requests == []
    assert result.stdout.splitlines()[0] == "Not reviewed: no part of the change could be reviewed (below)."
    assert "no part of the change could be reviewed" in result.stderr


@pytest.mark.parametrize(("extra", "code"), [([], 1), (["--allow-unreviewed"], 0)])
def test_every_reviewer_failing_fails_the_gate_and_never_says_no_findings(tmp_path: Path, extra: list[str],
                                                                          code: int) -> None:
    diff = tmp_path / "d.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    with FakeOpenAI(default=lambda _r: Reply.error(401, "bad key")) as server:
        cfg = write_config(tmp_path, server)
        result = invoke("review", "--diff", str(diff), "--config", str(cfg), "--fail-on", "blocker",
                        "--format", "text", *extra)
    assert result.exit_code == code, result.output
    assert result.stdout.splitlines()[0] == "Not reviewed: every reviewer failed (below)."


def test_one_reviewer_failing_is_said_in_the_first_line(tmp_path: Path) -> None:
    diff = tmp_path / "d.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))

    def r1_fails(request: dict[str, Any]) -> Reply:
        if request["model"] == "r1":
            return Reply.error(401, "bad key")
        return Reply.json_output({"findings": []})

    with FakeOpenAI(default=r1_fails) as server:
        cfg = write_config(tmp_path, server)
        result = invoke("review", "--diff", str(diff), "--config", str(cfg), "--format", "text")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("No findings from the reviewers that finished; fake:r1 failed"), first


def test_a_local_reviewer_that_is_not_installed_is_named_before_any_work(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_HOME", str(tmp_path / "empty-home"))
    diff = tmp_path / "d.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    result = invoke("review", "--diff", str(diff), "--reviewers", "local:smollm2-135m")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == ("relay: error: the local runtime (llama-server) and local model smollm2-135m "
                                     "are not installed: run `relay local setup --models smollm2-135m`")
ADD_OLD = "def add(a, b):\n    return a + b\n"
ADD_NEW = "def add(a, b):\n    return a - b\n"


def flag_with_evidence(request: dict[str, Any]) -> Reply:
    """r1's evidence reproduces the bug (add(2, 2) should be 4); r2's holds on the change (add(2, 0) is 2)."""
    text = "\n".join(str(m.get("content") or "") for m in request["messages"])
    added = re.findall(r"^\s*(\d+) \+ ", text, flags=re.M)
    call, expected = ("add(2, 2)", "4") if request["model"] == "r1" else ("add(2, 0)", "2")
    return Reply.json_output({"findings": [{"line": int(added[0]), "severity": "major", "category": "bug",
                                            "message": "subtracts", "suggestion": "a + b",
                                            "evidence": {"call": call, "expected": expected}}]})


@pytest.mark.sandbox
@pytest.mark.skipif(__import__("shutil").which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_evidence_confirms_in_the_sandbox_and_gates_on_confirmed_only(tmp_path: Path) -> None:
    root = tmp_path / "calc"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "calc.py").write_text(ADD_OLD)
    git(root, "add", ".")
    git(root, "commit", "-qm", "base")
    (root / "calc.py").write_text(ADD_NEW)
    with FakeOpenAI(default=flag_with_evidence) as fake:
        cfg = write_config(tmp_path, fake)
        args = ["review", "--repo", str(root), "--config", str(cfg), "--evidence"]
        result = invoke(*args, "--format", "json", "--fail-on", "major", "--fail-on-confirmed-only")
        assert result.exit_code == 1, result.output  # a confirmed major finding fails the gate
        data = json.loads(result.stdout)
        [merged] = data["findings"]
        assert merged["status"] == "confirmed" and merged["evidence"]["call"] == "add(2, 2)"
        assert "add(2, 2) returned 0, expected 4" in merged["check"] and "passes on the base" in merged["check"]
        statuses = {spec: [f["status"] for f in fs] for spec, fs in data["per_reviewer"].items()}
        assert statuses == {"fake:r1": ["confirmed"], "fake:r2": ["refuted"]}
        assert merged["score"] == pytest.approx(1 - (1 - 0.9) * (1 - 0.05))
        assert (root / "calc.py").read_text() == ADD_NEW and git(root, "status", "--porcelain") == " M calc.py\n"
        text = invoke(*args, "--format", "text").stdout
        assert "evidence: confirmed: `add(2, 2) should be 4`" in text
        # With r1 alone refuted nothing is confirmed; the confirmed-only gate passes on r2's refuted opinion.
        result = invoke(*args, "--reviewers", "fake:r2", "--format", "json", "--min-score", "0",
                        "--fail-on", "major", "--fail-on-confirmed-only")
        assert result.exit_code == 0, result.output
        assert [f["status"] for f in json.loads(result.stdout)["findings"]] == ["refuted"]


def test_confirmed_only_gate_needs_evidence(tmp_path: Path, server: FakeOpenAI) -> None:
    diff = tmp_path / "change.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    result = invoke("review", "--diff", str(diff), "--config", str(write_config(tmp_path, server)),
                    "--fail-on", "major", "--fail-on-confirmed-only")
    assert result.exit_code == 2 and "--fail-on-confirmed-only needs --evidence" in result.output
    result = invoke("review", "--diff", str(diff), "--config", str(write_config(tmp_path, server)),
                    "--evidence-followup")
    assert result.exit_code == 2 and "--evidence-followup needs --evidence" in result.output


def test_min_score_drops_low_scoring_findings(tmp_path: Path, server: FakeOpenAI) -> None:
    diff = tmp_path / "change.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    cfg = write_config(tmp_path, server)
    base = ["review", "--diff", str(diff), "--config", str(cfg), "--format", "json"]
    # Two unmeasured reviewers at the default weight 0.4 each: 1 - 0.6 * 0.6 = 0.64.
    [kept] = json.loads(invoke(*base, "--min-score", "0.6").stdout)["findings"]
    assert kept["score"] == pytest.approx(0.64) and kept["status"] == "unchecked"
    assert json.loads(invoke(*base, "--min-score", "0.7").stdout)["findings"] == []
    assert invoke(*base, "--min-score", "1.5").exit_code == 2


def judge_says(verdict: str) -> Any:
    """Reviewers as `flag_first_added`; requests to model "j" are judgements answered with `verdict`."""

    def handle(request: dict[str, Any]) -> Reply:
        if request["model"] == "j":
            return Reply.json_output({"why": "the loop is fine", "verdict": verdict}, input_tokens=100, output_tokens=9)
        return flag_first_added(request)

    return handle


def test_judge_drops_a_finding_below_min_score_and_reports_it(tmp_path: Path) -> None:
    diff = tmp_path / "change.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    with FakeOpenAI(default=judge_says("not_a_bug")) as fake:
        cfg = write_config(tmp_path, fake)
        base = ["review", "--diff", str(diff), "--config", str(cfg), "--reviewers", "fake:r1", "--judge", "fake:j"]
        result = invoke(*base, "--format", "json", "--min-score", "0.25", "--fail-on", "major")
        assert result.exit_code == 0, result.output  # the only finding was judged out: the gate passes
        data = json.loads(result.stdout)
        assert data["findings"] == [] and data["judged_out"][0]["judgement"]["judge"] == "fake:j"
        assert data["judge_usage"]["fake:j"]["requests"] == 1
        assert [r["model"] for r in fake.requests] == ["r1", "j"]
        # Unweighted, the verdict marks the finding and keeps it.
        kept = invoke(*base, "--format", "text")
        assert kept.exit_code == 0 and "judge: not a bug (fake:j): the loop is fine" in kept.stdout
        bad = invoke(*base[:-2], "--judge", "gpt")
        assert bad.exit_code == 2 and "judge 'gpt'" in bad.output


def test_review_eval_with_the_judge_prints_its_table(tmp_path: Path) -> None:
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"id": "t/b", "files": {"b.py": NEW}, "reference": {"b.py": OLD},
                                 "bug_lines": {"b.py": [4]}}) + "\n")
    with FakeOpenAI(default=judge_says("bug")) as fake:
        result = invoke("review-eval", str(suite), "--config", str(write_config(tmp_path, fake)), "--reviewers",
                        "fake:r1", "--judge", "fake:j", "--min-score", "0.25", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "bug / not a bug / unsure / not judged" in result.stdout
    data = json.loads((tmp_path / "out" / "review_eval.json").read_text())
    assert data["settings"]["judge"] == "fake:j"
    assert data["summary"]["ensemble"]["verdicts"]["true"]["bug"] == 1


def test_samples_vote_over_real_http_and_every_format_says_how_many_answers_raised_it(tmp_path: Path) -> None:
    def two_of_three(request: dict[str, Any]) -> Reply:
        # The real bug in every answer; an imagined one in the answer with seed ≡ 0 (mod 3) only.
        reply = flag_first_added(request)
        if int(request["seed"]) % 3 != 0:
            return reply
        data = json.loads(reply.content or "{}")
        data["findings"].append({"line": 1, "severity": "minor", "category": "performance",
                                 "message": "slow loop", "suggestion": ""})
        return Reply.json_output(data, input_tokens=300, output_tokens=60)

    diff = tmp_path / "change.diff"
    diff.write_text(unified_diff("bitcount.py", OLD, NEW))
    with FakeOpenAI(default=two_of_three) as server:
        cfg = write_config(tmp_path, server, models='["fake:r1"]')
        result = invoke("review", "--diff", str(diff), "--config", str(cfg), "--format", "json", "--samples", "3")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert [(f["start_line"], f["votes"]) for f in data["findings"]] == [(4, 3)] and data["samples"] == 3
        seeds = sorted(int(r["seed"]) for r in server.requests)
        assert len(seeds) == 3 and seeds == list(range(seeds[0], seeds[0] + 3))
        text = invoke("review", "--diff", str(diff), "--config", str(cfg), "--samples", "3")
        assert "raised in 3 answers" in text.stdout and "slow loop" not in text.stdout
        sarif = json.loads(invoke("review", "--diff", str(diff), "--config", str(cfg), "--format", "sarif",
                                  "--samples", "3").stdout)
        assert sarif["runs"][0]["results"][0]["properties"]["votes"] == 3
        assert sarif["runs"][0]["properties"]["samples"] == 3
    assert invoke("review", "--diff", str(diff), "--config", str(cfg), "--samples", "0").exit_code == 2
