"""GitHub: PR fetch and review posting against a fake API on 127.0.0.1."""

from __future__ import annotations

import pytest

from relaycode.errors import UsageError
from relaycode.review.core import ReviewResult
from relaycode.review.evaluate import unified_diff
from relaycode.review.findings import Finding
from relaycode.review.github import GitHubClient, GitHubError, parse_pr_ref, review_payload

from .fake_github import FakeGitHub

OLD = "".join(f"line {i}\n" for i in range(1, 41))
NEW = OLD.replace("line 5\n", "line five\n").replace("line 30\n", "line thirty\n")
DIFF = unified_diff("src/x.py", OLD, NEW)  # hunks cover new lines 2-8 and 27-33


def finding(start: int, end: int | None = None, path: str = "src/x.py") -> Finding:
    return Finding(path=path, start_line=start, end_line=end or start, severity="major", category="bug",
                   message=f"problem at {start}", suggestion="fix", models=["m1"], confidence=1.0)


def result(*findings: Finding) -> ReviewResult:
    return ReviewResult(findings=list(findings), reviewers=["m1"],
                        usage={"m1": {"requests": 1, "input_tokens": 10, "output_tokens": 2, "usd": 0.5}})


def test_parse_pr_ref() -> None:
    ref = parse_pr_ref("octo/widgets#7")
    assert (ref.owner, ref.repo, ref.number) == ("octo", "widgets", 7)
    for bad in ("octo/widgets", "widgets#7", "o/r#x", "o/r/extra#1"):
        with pytest.raises(UsageError, match="OWNER/REPO#NUMBER"):
            parse_pr_ref(bad)


def test_missing_token_names_the_variable() -> None:
    with pytest.raises(UsageError, match="GITHUB_TOKEN"):
        GitHubClient()


def test_fetch_and_post_one_review(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGitHub(DIFF) as gh:
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_test")
        monkeypatch.setenv("GITHUB_API_URL", gh.url + "/")
        with GitHubClient() as client:
            pull = client.fetch_pr(parse_pr_ref("octo/widgets#7"))
            payload = review_payload(result(finding(5), finding(28, 30), finding(15), finding(7, 29)), pull.diff,
                                     head_sha=pull.head_sha)
            answer = client.post_review(pull.ref, payload)
    assert (pull.title, pull.head_sha, pull.base_ref, pull.diff) == ("Fix bitcount", "abc123", "main", DIFF)
    assert answer["id"] == 1
    assert [(r["method"], r["path"]) for r in gh.requests] == [
        ("GET", "/repos/octo/widgets/pulls/7"), ("GET", "/repos/octo/widgets/pulls/7"),
        ("POST", "/repos/octo/widgets/pulls/7/reviews"),
    ]
    assert all(r["headers"]["authorization"] == "Bearer ghp_test" for r in gh.requests)
    assert gh.requests[1]["headers"]["accept"] == "application/vnd.github.v3.diff"
    body = gh.requests[2]["body"]
    assert body["event"] == "COMMENT" and body["commit_id"] == "abc123"
    comments = [{k: v for k, v in c.items() if k != "body"} for c in body["comments"]]
    assert comments == [
        {"path": "src/x.py", "side": "RIGHT", "line": 5},
        {"path": "src/x.py", "side": "RIGHT", "start_line": 28, "start_side": "RIGHT", "line": 30},
        {"path": "src/x.py", "side": "RIGHT", "line": 7},  # range across two hunks: its start line only
    ]
    assert "problem at 5" in body["comments"][0]["body"]
    # line 15 is outside every hunk: GitHub would reject it, so it is in the summary
    assert "problem at 15" in body["body"] and "`src/x.py:15`" in body["body"]
    assert "problem at 5" not in body["body"]
    assert "$0.5000" in body["body"]


def test_finding_on_a_file_not_in_the_diff_goes_to_the_summary() -> None:
    payload = review_payload(result(finding(3, path="other.py")), DIFF)
    assert payload["comments"] == [] and "other.py:3" in payload["body"] and "commit_id" not in payload


def test_no_findings_summary() -> None:
    payload = review_payload(result(), DIFF)
    assert payload["comments"] == [] and "No findings." in payload["body"]
    payload = review_payload(result(finding(5)), DIFF)
    assert "Every finding is an inline comment." in payload["body"]


def test_api_errors_are_typed_and_name_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGitHub(DIFF, review_status=422) as gh, GitHubClient(token="t", base_url=gh.url) as client:
        with pytest.raises(GitHubError, match="POST /repos/octo/widgets/pulls/7/reviews: HTTP 422"):
            client.post_review(parse_pr_ref("octo/widgets#7"), {"event": "COMMENT", "body": "x"})
        with pytest.raises(GitHubError, match="HTTP 404"):
            client.fetch_pr(parse_pr_ref("octo/widgets#8"))


def test_pr_comments_say_whether_a_finding_was_confirmed_and_how() -> None:
    from relaycode.review.findings import Evidence

    confirmed = finding(5).model_copy(update={"status": "confirmed", "evidence": Evidence(call="f(5)", expected="5"),
                                              "check": "fail on the change (f(5) returned 4), passes on the base"})
    checked = result(confirmed, finding(30)).model_copy(update={"evidence_checked": True})
    payload = review_payload(checked, DIFF)
    bodies = [c["body"] for c in payload["comments"]]
    assert "**Evidence:** confirmed: `f(5) should be 5`; fail on the change (f(5) returned 4), passes on the base" \
        in bodies[0]
    assert "**Evidence:** unchecked" in bodies[1]
    assert "1 confirmed, 0 refuted, 1 unchecked (evidence run in the sandbox)" in payload["body"]
