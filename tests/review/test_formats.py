"""Report formats: SARIF 2.1.0 validated against the official schema; cost in every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaycode.review.core import ReviewResult
from relaycode.review.findings import Finding
from relaycode.review.formats import render, to_sarif

#: The published OASIS schema, kept in the project (see tests/data/README.md) so validation never skips.
SCHEMA = Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json"


def sample() -> ReviewResult:
    findings = [
        Finding(path="src/a.py", start_line=3, end_line=5, severity="blocker", category="security",
                message="SQL built from | user input", suggestion="use parameters", models=["m1", "m2"], confidence=1.0),
        Finding(path="src/b.py", start_line=9, end_line=9, severity="minor", category="bug", message="off by one",
                models=["m1"], confidence=0.5),
        Finding(path="b.md", start_line=1, end_line=1, severity="nit", category="style", message="typo",
                models=["m2"], confidence=0.5),
    ]
    return ReviewResult(
        findings=findings, per_reviewer={"m1": findings[:2], "m2": [findings[0], findings[2]]},
        not_reviewed=["logo.png: binary file"], errors={"m3": "timeout"}, reviewers=["m1", "m2", "m3"],
        usage={"m1": {"requests": 2, "input_tokens": 1200, "output_tokens": 80, "usd": 0.0123, "wall_seconds": 4.2},
               "m2": {"requests": 2, "input_tokens": 1100, "output_tokens": 60, "usd": 0.0, "wall_seconds": 2.0},
               "m3": {"requests": 1, "input_tokens": 0, "output_tokens": 0, "usd": 0.0, "wall_seconds": 30.0}},
        seconds=30.1,
    )


def test_sarif_is_valid_against_the_schema() -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    sarif = json.loads(render(sample(), "sarif"))
    jsonschema.validators.validator_for(schema)(schema).validate(sarif)
    empty = to_sarif(ReviewResult(reviewers=["m1"]))
    jsonschema.validators.validator_for(schema)(schema).validate(empty)
    broken = json.loads(render(sample(), "sarif"))
    broken["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(broken)


def test_sarif_content() -> None:
    run = to_sarif(sample())["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules == ["relay/bug", "relay/security", "relay/performance", "relay/maintainability", "relay/style"]
    levels = [(r["ruleId"], r["level"]) for r in run["results"]]
    assert levels == [("relay/security", "error"), ("relay/bug", "warning"), ("relay/style", "note")]
    first = run["results"][0]
    assert rules[first["ruleIndex"]] == first["ruleId"]
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "src/a.py"
    assert location["region"] == {"startLine": 3, "endLine": 5}
    assert first["properties"] == {"models": ["m1", "m2"], "severity": "blocker", "confidence": 1.0, "score": None,
                                   "votes": None, "evidenceStatus": "unchecked", "evidenceCheck": "", "evidence": None,
                                   "judgeVerdict": None, "judgeReason": None, "judge": None}
    assert run["properties"]["reviewers"][0]["usd"] == 0.0123
    assert run["invocations"][0]["executionSuccessful"] is True
    notes = [n["message"]["text"] for n in run["invocations"][0]["toolExecutionNotifications"]]
    assert notes == ["not reviewed: logo.png: binary file", "reviewer m3 failed: timeout"]


@pytest.mark.parametrize("fmt", ["text", "md", "json", "sarif"])
def test_every_format_reports_cost_per_reviewer(fmt: str) -> None:
    out = render(sample(), fmt)
    assert "m1" in out and "m3" in out
    assert ("0.0123" in out) and ("1200" in out)


def test_text_and_markdown_are_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Colour on a terminal is rich's decision from the environment: give it a colour terminal whatever
    # the caller's TERM, NO_COLOR or FORCE_COLOR say, so the test means the same everywhere.
    monkeypatch.setenv("TERM", "xterm-256color")
    for var in ("NO_COLOR", "FORCE_COLOR", "COLORTERM"):
        monkeypatch.delenv(var, raising=False)
    text = render(sample(), "text")
    assert "BLOCKER" in text and "src/a.py:3-5" in text and "not reviewed: logo.png" in text
    assert "reviewer failed: m3: timeout" in text and "\x1b[" not in text  # no colour codes off a terminal
    assert "\x1b[" in render(sample(), "text", color=True)
    md = render(sample(), "md")
    assert "| blocker | `src/a.py:3-5` | security | SQL built from \\| user input" in md
    assert "**Not reviewed:**" in md and "| `m3` |" in md
    data = json.loads(render(sample(), "json"))
    assert data["findings"][0]["models"] == ["m1", "m2"] and data["usage"]["m1"]["usd"] == 0.0123


def test_unknown_cost_is_never_zero() -> None:
    result = sample()
    result.usage["m2"]["usd"] = None
    assert result.total_usage()["usd"] is None
    assert "unknown" in render(result, "text") and "unknown" in render(result, "md")


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(sample(), "xml")


def checked() -> ReviewResult:
    """A review whose findings were checked: one confirmed, one refuted (kept at min_score 0), one unchecked."""
    from relaycode.review.findings import Evidence

    result = sample()
    confirmed, refuted, unchecked = result.findings
    result.findings = [
        confirmed.model_copy(update={"status": "confirmed", "score": 0.95,
                                     "evidence": Evidence(call="quote(\"a'b\")", expected="\"'a''b'\""),
                                     "check": "fail on the change (returned 'a'b'), passes on the base"}),
        refuted.model_copy(update={"status": "refuted", "score": 0.05, "evidence": Evidence(test="assert f(1) == 2"),
                                   "check": "evidence passes on the change"}),
        unchecked.model_copy(update={"score": 0.4, "check": "no evidence given"}),
    ]
    result.evidence_checked, result.min_score = True, 0.0
    return result


@pytest.mark.parametrize("fmt", ["text", "md", "json", "sarif"])
def test_every_format_says_which_findings_were_confirmed_and_how(fmt: str) -> None:
    out = render(checked(), fmt, width=200)
    for words in ("confirmed", "refuted", "unchecked", "passes on the base", "evidence passes on the change",
                  "no evidence given"):
        assert words in out, (fmt, words)
    assert "quote(" in out


def test_evidence_properties_in_sarif_and_json() -> None:
    run = to_sarif(checked())["runs"][0]
    statuses = [r["properties"]["evidenceStatus"] for r in run["results"]]
    assert statuses == ["confirmed", "refuted", "unchecked"]
    assert run["results"][1]["properties"]["evidence"] == {"call": "", "expected": "", "test": "assert f(1) == 2"}
    assert run["results"][0]["properties"]["score"] == 0.95
    assert run["properties"]["evidenceCounts"] == {"confirmed": 1, "refuted": 1, "unchecked": 1}
    data = json.loads(render(checked(), "json"))
    assert [f["status"] for f in data["findings"]] == ["confirmed", "refuted", "unchecked"]
    assert data["evidence_checked"] is True


def test_markdown_marks_the_status_of_each_finding() -> None:
    md = render(checked(), "md")
    assert "| **confirmed**: `quote(\"a'b\") should be \"'a''b'\"`; fail on the change" in md
    assert "Evidence: 1 confirmed, 1 refuted, 1 unchecked (evidence run in the sandbox" in md
    unchecked_review = render(sample(), "md")
    assert "| **unchecked** |" in unchecked_review and "evidence not checked" in unchecked_review


def test_text_lists_evidence_per_finding_only_when_it_was_checked() -> None:
    plain = render(sample(), "text", width=200)
    assert "evidence: unchecked" not in plain and "evidence not checked" in plain
    assert render(checked(), "text", width=200).count("        evidence: ") == 3  # plus the summary line


#: A clipboard write (OSC 52) and a screen clear: what a model or a PR might put in any text of a review.
HOSTILE = "\x1b]52;c;Y3VybA==\x1b\\\x1b[2J"


def _hostile() -> ReviewResult:
    from relaycode.review.findings import Evidence, Judgement

    finding = Finding(path=f"src/a{HOSTILE}.py", start_line=1, end_line=1, severity="major", category="bug",
                      message=f"off by one{HOSTILE}", suggestion=f"add 1{HOSTILE}", models=["m1"],
                      status="confirmed", check=f"fail on the change{HOSTILE}",
                      evidence=Evidence(call=f"f(1){HOSTILE}", expected=f"2{HOSTILE}", test=f"assert f(1){HOSTILE}"),
                      judgement=Judgement(verdict="not_a_bug", why=f"fine{HOSTILE}", judge="j"))
    dropped = finding.model_copy(update={"message": f"dropped{HOSTILE}"})
    return ReviewResult(findings=[finding], judged_out=[dropped], reviewers=["m1", "m2"], evidence_checked=True,
                        not_reviewed=[f"img{HOSTILE}.png: binary"], errors={"m2": f"bad answer{HOSTILE}"},
                        judge="j", min_score=0.5)


@pytest.mark.parametrize(("fmt", "color"), [("text", True), ("text", False), ("md", False)])
def test_every_text_a_model_or_a_pr_wrote_reaches_the_terminal_without_its_controls(fmt: str, color: bool) -> None:
    import re

    out = render(_hostile(), fmt, color=color, width=400)
    assert "\x1b" not in re.sub(r"\x1b\[[0-9;]*m", "", out), "escape sequences in the review"
    for shown in ("src/a\\x1b]52", "off by one\\x1b", "add 1\\x1b", "fail on the change\\x1b", "f(1)\\x1b",
                  "fine\\x1b", "dropped\\x1b", "img\\x1b", "bad answer\\x1b"):
        assert shown in out, shown
