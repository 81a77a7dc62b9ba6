"""GitHub pull requests: fetch metadata and diff, post one review with inline comments.

Talks to the REST API with httpx. (githubkit 0.16.1, which the project
depends on, cannot be imported next to hishel 2.0.0 — its own allowed range —
and three REST calls do not need an SDK.) The token comes from `GITHUB_TOKEN`;
the API root from `GITHUB_API_URL` (GitHub Enterprise Server, and tests).

GitHub rejects review comments on lines outside the diff, so only findings
whose lines are in a hunk on the new side become inline comments (a range only
when both ends are in the same hunk); every other finding goes into the
review's summary body.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from relaycode.errors import RelayError, UsageError
from relaycode.review.core import ReviewResult
from relaycode.review.diff import FileDiff, parse_diff
from relaycode.review.findings import Finding
from relaycode.review.formats import evidence_text, status_summary, to_markdown

DEFAULT_API_URL = "https://api.github.com"
_PR_RE = re.compile(r"^(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)#(?P<number>\d+)$")
_SEVERITY_BADGE = {"blocker": "🛑 blocker", "major": "🔴 major", "minor": "🟡 minor", "nit": "⚪ nit"}


class GitHubError(RelayError):
    """The GitHub API refused a request; the message has the method, path, status and GitHub's reason."""


@dataclass(frozen=True)
class PrRef:
    owner: str
    repo: str
    number: int

    def __str__(self) -> str:
        return f"{self.owner}/{self.repo}#{self.number}"


@dataclass(frozen=True)
class PullRequest:
    ref: PrRef
    title: str
    url: str
    head_sha: str
    base_ref: str
    head_ref: str
    diff: str


def parse_pr_ref(text: str) -> PrRef:
    match = _PR_RE.match(text.strip())
    if not match:
        raise UsageError(f"--pr {text!r}: expected OWNER/REPO#NUMBER, e.g. octo/widgets#42")
    return PrRef(match["owner"], match["repo"], int(match["number"]))


class GitHubClient:
    """A minimal GitHub REST client (sync). Use as a context manager."""

    def __init__(self, token: str | None = None, base_url: str | None = None, *, timeout_s: float = 30.0) -> None:
        import httpx

        token = token or os.environ.get("GITHUB_TOKEN")
        if not token:
            raise UsageError("GitHub access needs a token: set the environment variable GITHUB_TOKEN")
        self.base_url = (base_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "relay-review",
            },
        )

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, accept: str | None = None, body: Any = None) -> Any:
        import httpx

        headers = {"Accept": accept} if accept else None
        try:
            response = self._http.request(method, path, headers=headers, json=body)
        except httpx.HTTPError as exc:
            raise GitHubError(f"GitHub {method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                reason = response.json().get("message", response.text)
            except ValueError:
                reason = response.text
            hint = " (check GITHUB_TOKEN and its permissions)" if response.status_code in (401, 403) else ""
            raise GitHubError(f"GitHub {method} {path}: HTTP {response.status_code}: {str(reason)[:300]}{hint}")
        return response

    def fetch_pr(self, ref: PrRef) -> PullRequest:
        path = f"/repos/{ref.owner}/{ref.repo}/pulls/{ref.number}"
        meta = self._call("GET", path).json()
        diff = self._call("GET", path, accept="application/vnd.github.v3.diff").text
        return PullRequest(
            ref=ref,
            title=str(meta.get("title", "")),
            url=str(meta.get("html_url", "")),
            head_sha=str(meta["head"]["sha"]),
            base_ref=str(meta["base"]["ref"]),
            head_ref=str(meta["head"]["ref"]),
            diff=diff,
        )

    def post_review(self, ref: PrRef, payload: dict[str, Any]) -> dict[str, Any]:
        """Create one review (with its comments) on the pull request; returns GitHub's answer."""
        answer: dict[str, Any] = self._call(
            "POST", f"/repos/{ref.owner}/{ref.repo}/pulls/{ref.number}/reviews", body=payload
        ).json()
        return answer


def _hunk_of(fd: FileDiff, line: int) -> int | None:
    for i, hunk in enumerate(fd.hunks):
        if any(ln.new_no == line for ln in hunk.lines):
            return i
    return None


def inline_comment(finding: Finding, files: dict[str, FileDiff]) -> dict[str, Any] | None:
    """The review comment for `finding`, or None when its lines are not in the diff."""
    fd = files.get(finding.path)
    if fd is None:
        return None
    end_hunk = _hunk_of(fd, finding.end_line)
    start_hunk = _hunk_of(fd, finding.start_line)
    body = f"**{_SEVERITY_BADGE[finding.severity]}** · {finding.category} · {', '.join(finding.models)}\n\n"
    body += finding.message + (f"\n\n**Suggestion:** {finding.suggestion}" if finding.suggestion else "")
    body += f"\n\n**Evidence:** {evidence_text(finding)}"
    if finding.judgement is not None:
        body += f"\n\n**Judge:** {finding.judgement.describe()}"
    comment: dict[str, Any] = {"path": finding.path, "side": "RIGHT", "body": body}
    if end_hunk is not None and end_hunk == start_hunk and finding.end_line > finding.start_line:
        comment.update(start_line=finding.start_line, start_side="RIGHT", line=finding.end_line)
    elif start_hunk is not None:
        comment["line"] = finding.start_line
    elif end_hunk is not None:
        comment["line"] = finding.end_line
    else:
        return None
    return comment


def review_payload(result: ReviewResult, diff: str, *, head_sha: str | None = None) -> dict[str, Any]:
    """One review: inline comments where GitHub accepts them, everything else and the cost in the body."""
    files = {fd.path: fd for fd in parse_diff(diff)}
    comments: list[dict[str, Any]] = []
    elsewhere: list[Finding] = []
    for finding in result.findings:
        comment = inline_comment(finding, files)
        if comment is None:
            elsewhere.append(finding)
        else:
            comments.append(comment)
    summary = result.model_copy(update={"findings": elsewhere})
    lines = [f"relay reviewed this change with {', '.join(f'`{r}`' for r in result.reviewers)}: "
             f"{len(result.findings)} finding(s), {len(comments)} inline; {status_summary(result)}."]
    if elsewhere:
        lines.append("Findings on lines outside the diff are listed below.")
    body = "\n".join(lines) + "\n\n" + to_markdown(
        summary, title="relay review", empty="Every finding is an inline comment." if comments else "No findings."
    )
    payload: dict[str, Any] = {"event": "COMMENT", "body": body, "comments": comments}
    if head_sha:
        payload["commit_id"] = head_sha
    return payload
