"""Checks a model writes where the repository has none: parsing, the sandboxed runner, CodeT ranking, the run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from relaycode import sandbox
from relaycode.config import config_from_dict, load_config
from relaycode.errors import ProviderError
from relaycode.pipeline import RunOptions, RunResult, run_task
from relaycode.presets import PRESETS
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.session import ModelSession
from relaycode.stages import candidates as candidates_module
from relaycode.stages import generated_checks as gc
from relaycode.stages.attempt import Attempt
from relaycode.stages.generated_checks import (
    REPORT_MARKER,
    GeneratedCheck,
    GeneratedChecks,
    ProposedCheck,
    Scored,
    dual_agreement,
    parse_report,
    run_checks,
    select,
)
from relaycode.stages.verify import CommandResult, VerifyResult
from relaycode.testing.sample_repos import make_repo
from relaycode.workspace import open_repo

API = "google:gemini-2.5-flash"
STRONG = "anthropic:claude-sonnet-4-5"

needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed")
sandboxes = [False, pytest.param(True, marks=[pytest.mark.sandbox, needs_bwrap])]

# A repository with no tests and no `>>>` examples: nothing pinned can fail a wrong change.
CLAMP = '''def clamp(x, lo, hi):
    """x limited to the range [lo, hi]."""
    return max(lo, min(x, lo))
'''
TASK = "clamp in clampx.py returns wrong results for values inside the range. Fix it."
WRONG = "clampx.py\n<<<<<<< SEARCH\n    return max(lo, min(x, lo))\n=======\n    return max(lo, min(x, hi + 1))\n>>>>>>> REPLACE\n"
RIGHT = WRONG.replace("hi + 1", "hi")
CHECKS = [
    {"call": "clamp(5, 0, 10)", "expected": "5"},     # fails on the buggy tree; both candidates pass it
    {"call": "clamp(-3, 0, 10)", "expected": "0"},    # passes on the buggy tree: no weight
    {"call": "clamp(20, 0, 10)", "expected": "10"},   # only the right fix passes
    {"call": "clamp(11, 0, 10)", "expected": "10"},   # only the right fix passes
    {"call": "clamp(1, 0, 10)", "expected": "[1"},    # not a literal: dropped
    {"call": "clamp(5, 0, 10)", "expected": "6"},     # the same call again: dropped
]


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # The models are scripted; keys only satisfy the pre-flight check (the network is blocked anyway).
    for var in ("GEMINI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(var, "test-key")


def pinned(checks: list[tuple[str, str]], baseline: list[str], task_names: tuple[str, ...] = ()) -> GeneratedChecks:
    return GeneratedChecks(model=API, files=("clampx.py",), modules=(("clampx", "."),),
                           checks=tuple(GeneratedCheck(c, e) for c, e in checks), baseline=tuple(baseline),
                           task_names=task_names)


# --------------------------------------------------------------------------- pure logic


def test_dual_agreement_multiplies_agreement_by_weighted_checks_passed() -> None:
    # Two answers agree on a result passing checks 0 and 2, one more result passes the same ones
    # (functionally the same), one passes 0, 2 and 3 alone; check 1 passed on the unchanged tree.
    scored = [Scored(2, ["pass", "pass", "pass", "fail"]), Scored(1, ["pass", "pass", "pass", "error"]),
              Scored(1, ["pass", "fail", "pass", "pass"])]
    assert dual_agreement(scored, weighted=(0, 2, 3)) == [3 * 2, 3 * 2, 1 * 3]
    # Nothing weighted: no evidence, every score 0 (the strategy's preference order decides).
    assert dual_agreement(scored, weighted=()) == [0, 0, 0]
    assert dual_agreement([], weighted=(0,)) == []


def test_only_a_well_formed_last_report_line_is_believed() -> None:
    good = f"noise\n{REPORT_MARKER}" + json.dumps(["pass", "timeout"]) + "\n"
    assert parse_report(good, 2) == ["pass", "timeout"]
    # The last report line wins over an earlier (forged) one.
    assert parse_report(f"{REPORT_MARKER}[\"pass\", \"pass\"]\n" + good, 2) == ["pass", "timeout"]
    for bad in ("", "no report at all", f"{REPORT_MARKER}[\"pass\"]", f"{REPORT_MARKER}[\"pass\", \"great\"]",
                f"{REPORT_MARKER}{{\"a\": 1}}", f"{REPORT_MARKER}[\"pass\", ", REPORT_MARKER + "[" * 100_000,
                f"{REPORT_MARKER}[\"pass\", 1]", "x" * 10**6):
        assert parse_report(bad, 2) == ["error", "error"], bad[:80]


def test_select_keeps_one_check_per_call_and_drops_empty_ones() -> None:
    proposed = [ProposedCheck(call=" f(1) ", expected="1"), ProposedCheck(call="f(1)", expected="2"),
                ProposedCheck(call="", expected="1"), ProposedCheck(call="f(2)", expected=" "),
                ProposedCheck(call="f(3)", expected="3"), ProposedCheck(call="f(4)", expected="[" + "4, " * 100 + "]")]
    kept, dropped = select(proposed)
    assert kept == [GeneratedCheck("f(1)", "1"), GeneratedCheck("f(3)", "3")] and dropped == 4


def test_pinned_checks_survive_state_json_and_weigh_only_what_failed_unchanged() -> None:
    checks = pinned([("clamp(5, 0, 10)", "5"), ("clamp(-3, 0, 10)", "0")], ["fail", "pass"], ("clamp", "x"))
    again = gc.from_state(json.loads(json.dumps(checks.to_dict())))
    assert again == checks and again.weighted == (0,)
    assert gc.from_state(None) is None


def _config(**implement: Any):
    return config_from_dict({"stages": {"implement": {"model": API, **implement}}})


def test_checks_are_wanted_only_without_checks_with_the_setting_and_with_sampling() -> None:
    on = _config(samples=3, generate_checks=True)
    assert gc.wanted(on, has_checks=False)
    assert not gc.wanted(on, has_checks=True)
    assert not gc.wanted(_config(samples=3), has_checks=False)  # off by default
    assert not gc.wanted(_config(generate_checks=True), has_checks=False)  # one answer: nothing to choose
    assert not gc.wanted(_config(escalate_to=[STRONG], generate_checks=True), has_checks=False)
    assert gc.wanted(config_from_dict({"stages": {"implement": {"model": API, "escalate_to": [STRONG],
                                                                "generate_checks": True}},
                                       "models": {STRONG: {"samples": 2}}}), has_checks=False)
    assert gc.checks_model(_config(escalate_to=[STRONG])) == STRONG  # the run starts with the strongest
    assert gc.checks_model(_config(escalate_to=[STRONG], start_strong_without_checks=False)) == API
    sampled = PRESETS["local-sampled"]["stages"]["implement"]
    assert sampled["generate_checks"] is True and sampled["samples"] > 1


def test_a_repository_may_turn_generated_checks_off_but_not_on(tmp_path: Path) -> None:
    def resolved(preset: str, repo_toml: str) -> tuple[bool, list[str]]:
        repo = tmp_path / preset
        repo.mkdir()
        (repo / "relay.toml").write_text("[stages.implement]\n" + repo_toml)
        cfg = load_config(preset=preset, repo=repo)
        return cfg.stages.implement.generate_checks, cfg.notices

    assert resolved("local-sampled", "generate_checks = false\n") == (False, [])
    on, notices = resolved("local", "generate_checks = true\n")
    assert on is False and "may only turn this off" in notices[0] and "generate_checks" in notices[0]


def test_the_model_is_asked_once_with_a_bounded_schema_and_a_failed_answer_is_no_check() -> None:
    seen: list[AgentInfo] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info)
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"checks": CHECKS[:2]})])

    cfg = _config(samples=3, generate_checks=True)
    session = ModelSession(cfg, model_overrides={API: FunctionModel(answer)})
    got = asyncio.run(gc.propose(session, API, TASK, {"clampx.py": CLAMP}, seed=7))
    assert [c.call for c in got] == ["clamp(5, 0, 10)", "clamp(-3, 0, 10)"] and len(seen) == 1
    schema = seen[0].output_tools[0].parameters_json_schema
    assert schema["properties"]["checks"]["maxItems"] == gc.MAX_CHECKS
    # No string length bound: llama-server's grammar for it slowed every token (see ProposedCheck).
    assert '"maxLength":' not in json.dumps(schema)  # as a key (the docstring may name it)
    assert [e.stage for e in session.ledger.entries] == ["implement"]

    def broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ProviderError("m: bad", kind="bad_response", model=API)

    session = ModelSession(cfg, model_overrides={API: FunctionModel(broken)})
    assert asyncio.run(gc.propose(session, API, TASK, {"clampx.py": CLAMP}, seed=None)) == []

    def invalid(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info)
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"checks": "not a list"})])

    seen.clear()
    session = ModelSession(cfg, model_overrides={API: FunctionModel(invalid)})
    assert asyncio.run(gc.propose(session, API, TASK, {"clampx.py": CLAMP}, seed=None)) == []
    assert len(seen) == 1  # asked once: an unusable answer is not asked for again


# --------------------------------------------------------------------------- the sandboxed runner


@pytest.mark.parametrize("enabled", sandboxes)
def test_the_runner_reports_each_check_on_its_own(tmp_path: Path, enabled: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "clampx.py").write_text(CLAMP + "\n\ndef forever():\n    while True:\n        pass\n\n\n"
                                        "def upto(n):\n    yield from range(n)\n\n\ndef back(w):\n    return w[::-1]\n")
    monkeypatch.setattr(gc, "CHECK_TIMEOUT_S", 2.0)
    checks = pinned([("clamp(-3, 0, 10)", "0"), ("clamp(5, 0, 10)", "5"), ("clamp(5, 0, 10", "5"),
                     ("1 + 1", "2"), ("clamp(1, 0, 10)", "[1"), ("missing(1)", "1"), ("forever()", "None"),
                     ("upto(3)", "[0, 1, 2]"), ("print('x' * 10**6) or clamp(0, 0, 1)", "0"),
                     ("__import__('os')._exit(0)", "1"),
                     # Not self-contained: a variable the check never defines.
                     ("clamp(value, 0, 10)", "5"),
                     # Names bound inside the expression (the buggy clamp gives 0 for 5), and a name the task asks for that does not exist yet.
                     ("[clamp(v, 0, 1) for v in (5, -5)] + list(map(lambda w: w, [2]))", "[0, 0, 2]"),
                     ("widen(1)", "2"),
                     # A tuple literal for a returned sequence (the 1.5B wrote `2, 3, 5` for sieve's list).
                     ("upto(3)", "0, 1, 2"), ("[clamp(0, 0, 1)]", "(0,)"), ("upto(2)", "{0, 1}"),
                     # A returned string written bare (the 1.5B's habit) is that string; an exception
                     # written as a call, or an unclosed literal, is not a value.
                     ("back('ybty')", "ytby"), ("back('ab')", "ab"), ("back('x')", "ValueError('no')"),
                     ("back('x')", "'x")],
                    ["error"] * 20, task_names=("widen",))
    statuses = run_checks(tmp_path, checks, policy=SandboxPolicy(enabled=enabled), limits=Limits(wall_s=120))
    assert statuses == ["pass", "fail", "invalid", "invalid", "invalid", "invalid", "timeout", "pass", "pass",
                        "error", "invalid", "pass", "error", "pass", "pass", "fail",
                        "pass", "fail", "invalid", "invalid"]
    (tmp_path / "clampx.py").write_text("raise ImportError('broken')\n")
    assert run_checks(tmp_path, checks, policy=SandboxPolicy(enabled=enabled),
                      limits=Limits(wall_s=120))[:2] == ["import", "import"]


# --------------------------------------------------------------------------- ranking, with fake verification


def _attempt(generated: GeneratedChecks | None, events: list[tuple[str, dict[str, Any]]]) -> Attempt:
    return Attempt(task=TASK, plan=None, files=("clampx.py",), feedback=None, number=1, checks=(), examples=None,
                   venv=None, policy=SandboxPolicy(enabled=False), limits=Limits(), max_steps=1, max_tokens=None,
                   max_wall_s=60, samples=3, on_event=lambda kind, **data: events.append((kind, data)),
                   generated=generated)


def _rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generated: GeneratedChecks | None,
          answers: list[str], results: dict[str, tuple[bool, list[str]]]) -> tuple[str, dict[str, Any]]:
    """Run the sampling strategy with verification faked: `results` maps a marker in the candidate's
    clampx.py to (passes verification, generated-check statuses)."""
    from relaycode.stages.candidates import sampled_implement
    from relaycode.testing.scripted import scripted_text

    worktree = open_repo(make_repo(tmp_path / "repo", {"clampx.py": CLAMP})).create_worktree("t1")

    def fake_verify(worktree: Any, candidate: Any, current: Any, attempt: Attempt,
                    evidence: GeneratedChecks | None) -> tuple[VerifyResult, list[str] | None]:
        text = candidate.files["clampx.py"]
        passed, statuses = next(v for marker, v in results.items() if marker in text)
        result = VerifyResult([CommandResult("relay:python-sanity", 0 if passed else 1, 0.0, "", False)])
        return result, statuses if passed and evidence is not None else None

    monkeypatch.setattr(candidates_module, "_verify", fake_verify)
    events: list[tuple[str, dict[str, Any]]] = []
    cfg = _config(samples=3, generate_checks=True)
    session = ModelSession(cfg, model_overrides={API: scripted_text(answers, repeat_last=False)})
    asyncio.run(sampled_implement(session, API, worktree, _attempt(generated, events)))
    [(_, event)] = [e for e in events if e[0] == "candidates"]
    return worktree.read_text("clampx.py"), event


GENERATED = pinned([(c["call"], c["expected"]) for c in CHECKS[:4]], ["fail", "pass", "fail", "fail"])
RESULTS = {"hi + 1": (True, ["pass", "pass", "fail", "fail"]), "min(x, hi))": (True, ["pass"] * 4)}


def test_generated_checks_overrule_a_more_common_wrong_answer(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    text, event = _rank(tmp_path, monkeypatch, GENERATED, [WRONG, WRONG, RIGHT], RESULTS)
    assert "min(x, hi))" in text
    # wrong: 2 answers x 1 weighted check; right: 1 answer x 3 weighted checks. (Concurrent requests are
    # answered in no fixed order: which numbers drew which answer varies.)
    assert [(len(d["candidates"]), d["score"]) for d in event["distinct"]] == [(2, 2), (1, 3)]
    assert len(event["winner"]) == 1 and event["generated_checks"] == {"checks": 4, "weighted": [0, 2, 3]}
    assert len(event["preferred"]) == 2  # what the preference order alone would have chosen


def test_without_generated_checks_the_common_answer_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text, event = _rank(tmp_path, monkeypatch, None, [WRONG, WRONG, RIGHT], RESULTS)
    assert "hi + 1" in text and len(event["winner"]) == 2 and "generated_checks" not in event
    # Checks that all passed on the unchanged tree carry no weight: the same as having none.
    unweighted = pinned([("clamp(-3, 0, 10)", "0")], ["pass"])
    text, event = _rank(tmp_path / "b", monkeypatch, unweighted, [WRONG, WRONG, RIGHT], RESULTS)
    assert "hi + 1" in text and len(event["winner"]) == 2


def test_generated_checks_never_make_a_failing_candidate_win(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    results = {"hi + 1": (True, ["pass", "pass", "fail", "fail"]), "min(x, hi))": (False, ["pass"] * 4)}
    text, event = _rank(tmp_path, monkeypatch, GENERATED, [WRONG, WRONG, RIGHT], results)
    assert "hi + 1" in text and len(event["winner"]) == 2
    assert event["distinct"][1]["generated"] is None and event["distinct"][1]["verified"] is False


# --------------------------------------------------------------------------- a whole run


def _model(checks: list[dict[str, str]], answers: list[str]) -> tuple[FunctionModel, list[str]]:
    """The implementer: structured requests (the check request) get `checks`, text requests the next answer."""
    queue = list(answers)
    asked: list[str] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if info.output_tools:
            asked.append("checks")
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {"checks": checks})])
        asked.append("answer")
        return ModelResponse(parts=[TextPart(queue.pop(0))])

    return FunctionModel(answer), asked


def _run(repo: Path, model: FunctionModel, **implement: Any) -> tuple[RunResult, list[dict[str, Any]]]:
    cfg = config_from_dict({"stages": {"implement": {"model": API, "samples": 3, **implement},
                                       "verify": {"timeout_s": 60}}, "max_iterations": 1})
    events: list[dict[str, Any]] = []
    result = run_task(RunOptions(repo=repo, task=TASK, config=cfg, yes=True, model_overrides={API: model},
                                 history=False, on_event=events.append))
    return result, events


@pytest.mark.sandbox
@needs_bwrap
def test_a_run_without_tests_ranks_candidates_by_generated_checks_and_stays_unverified(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"clampx.py": CLAMP, "README.md": "clamp\n"})
    model, asked = _model(CHECKS, [WRONG, WRONG, RIGHT])
    result, events = _run(repo, model, generate_checks=True)
    assert result.status == "unverified", result.error  # generated checks never make a run verified
    assert asked == ["checks", "answer", "answer", "answer"]  # asked once, before the candidates
    worktree_file = (result.worktree / "clampx.py").read_text()
    assert "min(x, hi))" in worktree_file
    [pinned_event] = [e for e in events if e["kind"] == "generated_checks"]
    assert [(c["call"], c["baseline"], c["weighted"]) for c in pinned_event["checks"]] == [
        ("clamp(5, 0, 10)", "fail", True), ("clamp(-3, 0, 10)", "pass", False),
        ("clamp(20, 0, 10)", "fail", True), ("clamp(11, 0, 10)", "fail", True)]
    assert pinned_event["dropped"] == 2
    # What the runner refused is shown as the model wrote it (the duplicate call never reached it).
    assert pinned_event["invalid"] == [{"call": "clamp(1, 0, 10)", "expected": "[1"}]
    [chosen] = [e for e in events if e["kind"] == "candidates"]
    assert len(chosen["winner"]) == 1 and [d["score"] for d in chosen["distinct"]] == [2, 3]
    # The run's files and --json say which checks were generated and how the candidates did.
    data = result.to_dict()
    assert data["status"] == "unverified" and data["verify"]["generated_checks"][0] == "clamp(5, 0, 10) == 5"
    saved = json.loads((result.run_dir / "generated-checks.json").read_text())
    assert saved["model"] == API and len(saved["checks"]) == 4
    report = (result.run_dir / "report.md").read_text()
    assert "## Generated checks" in report and "never as verification" in report
    assert "passed 3 of 3 weighted checks, score 3 (chosen)" in report
    assert "passed 1 of 3 weighted checks, score 2\n" in report


@pytest.mark.sandbox
@needs_bwrap
def test_no_check_is_asked_for_when_off_or_when_the_repository_has_tests(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"clampx.py": CLAMP})
    model, asked = _model(CHECKS, [RIGHT] * 3)
    result, _ = _run(repo, model)
    assert "checks" not in asked and not (result.run_dir / "generated-checks.json").exists()
    tested = make_repo(tmp_path / "tested", {"clampx.py": CLAMP, "test_clampx.py":
                                             "from clampx import clamp\n\ndef test_in_range():\n"
                                             "    assert clamp(5, 0, 10) == 5\n"})
    model, asked = _model(CHECKS, [RIGHT] * 3)
    result, _ = _run(tested, model, generate_checks=True)
    assert result.status == "succeeded" and "checks" not in asked, result.error
    assert result.to_dict()["verify"]["generated_checks"] == []
