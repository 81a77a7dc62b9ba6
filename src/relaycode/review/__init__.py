"""Code review of any diff by several models at once.

Used alone (`relay review`, SARIF, GitHub pull requests) and by the pipeline's
review stage. The public API:

    result = await review_diff(session, diff, reviewers=["local:qwen2.5-coder-0.5b"], repo_root=root)
    result.findings        # merged Finding list
    result.per_reviewer    # spec -> its own findings
    result.not_reviewed    # what was skipped, and why
    result.errors          # spec -> error, for reviewers that failed
"""

from __future__ import annotations

from relaycode.review.core import ReviewResult, review_diff
from relaycode.review.diff import DiffLine, DiffParseError, FileDiff, Hunk, parse_diff
from relaycode.review.findings import CATEGORIES, Category, Finding, at_or_above, merge_findings

__all__ = [
    "CATEGORIES",
    "Category",
    "DiffLine",
    "DiffParseError",
    "FileDiff",
    "Finding",
    "Hunk",
    "ReviewResult",
    "at_or_above",
    "merge_findings",
    "parse_diff",
    "review_diff",
]
