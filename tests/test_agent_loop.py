"""The agentic implement loop: native tool calls and JSON actions, limits, path safety, malformed actions."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from relaycode import models
from relaycode.config import config_from_dict
from relaycode.errors import BudgetExceeded, ConfigError
from relaycode.models import resolve
from relaycode.pipeline import RunOptions, RunResult, run_task
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.session import ModelSession
from relaycode.stages.agent_loop import agent_implement, uses_agent
from relaycode.stages.implement import ImplementOutcome
from relaycode.testing.actions import ScriptedActions, scripted_actions
from relaycode.testing.sample_repos import PAGINATION_TASK, make_demo_repo
from relaycode.workspace import Worktree, open_repo

API = "google:gemini-2.5-flash"  # profile output mode "tool": native tool calls
LOCAL = "local:qwen2.5-coder-1.5b"  # profile output mode "native": JSON-schema-constrained actions
PATH = "shop/pagination.py"

READ = {"action": "read_file", "path": PATH}
FIX = {"action": "edit", "path": PATH, "search": "    start = page * per_page\n",
       "replace": "    start = (page - 1) * per_page\n"}
TESTS = {"action": "run", "command": "python -m pytest -q"}
FINISH = {"action": "finish", "summary": "pages start at 1"}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # The models are scripted; the key only satisfies the pre-flight check (the network is blocked anyway).
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")


def config(spec: str, **implement: Any):
    return config_from_dict({
        "stages": {"implement": {"model": spec, **implement},
                   "verify": {"commands": ["python -m pytest -q"], "timeout_s": 60}},
        "models": {spec: {"protocol": "agent"}},
    })


def run(repo: Path, spec: str, model: ScriptedActions, **implement: Any) -> RunResult:
    return run_task(RunOptions(repo=repo, task=PAGINATION_TASK, config=config(spec, **implement), yes=True,
                               model_overrides={spec: model}, history=False))


def branch_file(repo: Path, branch: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{branch}:{path}"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def events(result: RunResult) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (result.run_dir / "events.jsonl").read_text().splitlines()]


def worktree(tmp_path: Path) -> Worktree:
    return open_repo(make_demo_repo(tmp_path / "shop", bug="pagination")).create_worktree("t1")


def implement(wt: Worktree, spec: str, model: ScriptedActions, *, max_steps: int = 10,
              events: list[tuple[str, dict[str, Any]]] | None = None, **kw: Any) -> tuple[ImplementOutcome, ModelSession]:
    session = ModelSession(config(spec), model_overrides={spec: model})

    def sink(kind: str, **data: Any) -> None:
        if events is not None:
            events.append((kind, data))

    outcome = asyncio.run(agent_implement(
        session, spec, wt, task=PAGINATION_TASK, plan=None, files=[PATH], feedback=None, attempt=1,
        max_steps=max_steps, policy=SandboxPolicy(enabled=False), limits=Limits(wall_s=30), on_event=sink, **kw))
    return outcome, session


# ---------------------------------------------------------------- whole runs


@pytest.mark.parametrize("spec", [API, LOCAL])
def test_agent_fixes_the_bug_in_a_run(tmp_path: Path, spec: str) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    model = scripted_actions([READ, FIX, TESTS, FINISH], usage=(500, 50))
    result = run(repo, spec, model)
    assert result.status == "succeeded", result.error
    assert result.iterations == 1 and result.verify_passed is True and result.malformed_outputs == 0
    assert "start = (page - 1) * per_page" in branch_file(repo, result.branch, PATH)
    changed = subprocess.run(["git", "diff", "--name-only", f"main..{result.branch}"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.split()
    assert changed == [PATH]  # only the fix: the commands the model ran left nothing behind
    total = result.ledger.total()
    assert total.requests == 4 and total.tokens.input == 2000 and total.tokens.output == 200
    # what the model was told: the file it read, the edit applied, the tests passing in the sandbox
    assert "def paginate" in model.observations[1]
    assert f"Edited {PATH}." in model.observations[2]
    assert "exit code 0" in model.observations[3] and "passed" in model.observations[3]
    kinds = [e["kind"] for e in events(result)]
    calls = [e for e in events(result) if e["kind"] == "tool_call"]
    assert [c["tool"] for c in calls] == ["read_file", "edit", "run"] and calls[2]["exit_code"] == 0
    assert kinds.count("model_call") == 4 and kinds.count("agent_end") == 1
    transcript = (result.run_dir / "attempts" / "1-implement.md").read_text()
    assert "Finished: pages start at 1" in transcript


def test_json_actions_use_a_json_schema_response_format(tmp_path: Path) -> None:
    seen: list[str | None] = []
    model = scripted_actions([READ, FIX, FINISH])
    inner = model.function

    async def spy(messages: Any, info: Any) -> Any:
        seen.append(info.model_request_parameters.output_mode)
        assert not info.function_tools and info.model_request_parameters.output_object is not None
        return await inner(messages, info)  # type: ignore[misc]

    model.function = spy  # type: ignore[assignment]
    outcome, _ = implement(worktree(tmp_path), LOCAL, model)
    assert seen == ["native"] * 3  # llama-server gets `response_format: json_schema`: grammar-constrained
    assert outcome.changed == [PATH] and outcome.last_error is None and outcome.turns == 3


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize("spec", [API, LOCAL])
def test_step_limit_stops_the_loop(tmp_path: Path, spec: str) -> None:
    model = scripted_actions([READ])  # reads forever
    log: list[tuple[str, dict[str, Any]]] = []
    outcome, session = implement(worktree(tmp_path), spec, model, max_steps=3, events=log)
    assert outcome.last_error is not None and outcome.last_error.startswith("step limit: 3 model steps")
    assert "stages.implement.max_steps" in outcome.last_error
    assert len(model.observations) == 3 and session.ledger.total().requests == 3  # the 4th is never sent
    assert outcome.turns == 3 and outcome.changed == []
    assert log[-1] == ("agent_end", {"exit": "StepLimitExceeded", "message": outcome.last_error, "steps": 3,
                                     "malformed": 0, "changed": []})


@pytest.mark.parametrize("spec", [API, LOCAL])
def test_token_limit_stops_the_loop(tmp_path: Path, spec: str) -> None:
    model = scripted_actions([READ], usage=(500, 50))
    outcome, session = implement(worktree(tmp_path), spec, model, max_tokens=1200)
    # 550 tokens a step: the third response passes 1200, and no fourth request is sent
    assert outcome.last_error == ("token limit: 1650 tokens used, the limit is 1200 "
                                  "(stages.implement.max_tokens_per_attempt)")
    assert session.ledger.total().requests == 3


@pytest.mark.parametrize("spec", [API, LOCAL])
def test_wall_time_limit_stops_the_loop(tmp_path: Path, spec: str) -> None:
    model = scripted_actions([READ], delay=0.25)
    outcome, _ = implement(worktree(tmp_path), spec, model, max_steps=100, max_wall_s=0.6)
    assert outcome.last_error == "wall time limit: 0.6s used without finishing (stages.implement.max_wall_s)"
    assert 1 <= len(model.observations) <= 4  # ~0.25 s a step; fewer on a loaded machine


def test_a_limit_in_a_run_is_reported_and_the_run_fails(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    result = run(repo, API, scripted_actions([READ]), max_steps=2)
    assert result.status == "failed"
    ends = [e for e in events(result) if e["kind"] == "agent_end"]
    assert ends and all(e["exit"] == "StepLimitExceeded" and e["message"].startswith("step limit: 2 model steps")
               for e in ends)
    assert "step limit: 2 model steps" in (result.run_dir / "attempts" / "1-implement.md").read_text()
    assert "step limit: 2 model steps" in (result.error or "")  # the run's own error names the limit


# ---------------------------------------------------------------- path safety, malformed actions


@pytest.mark.parametrize("spec", [API, LOCAL])
def test_path_escapes_are_refused_not_crashes(tmp_path: Path, spec: str) -> None:
    wt = worktree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (wt.root / "link").symlink_to(outside)
    absolute = tmp_path / "absolute.txt"
    model = scripted_actions([
        {"action": "edit", "path": "../x", "search": "", "replace": "pwned"},
        {"action": "edit", "path": str(absolute), "search": "", "replace": "pwned"},
        {"action": "edit", "path": "link/y.py", "search": "", "replace": "pwned"},
        {"action": "read_file", "path": "../../../../etc/passwd"},
        {"action": "search", "pattern": "root", "path": "/etc"},
        FINISH,
    ])
    outcome, _ = implement(wt, spec, model)
    refusals = model.observations[1:6]
    assert all(obs.startswith("Refused: path ") for obs in refusals), refusals
    assert "uses '..' to leave the repository" in refusals[0] and "is absolute" in refusals[1]
    assert "outside the repository" in refusals[2]
    assert not (wt.root.parent / "x").exists() and not absolute.exists() and list(outside.iterdir()) == []
    assert "root:" not in "".join(model.observations)
    assert outcome.malformed == 5 and outcome.changed == [] and outcome.last_error is None


def test_a_malformed_json_action_is_counted_and_reported_back(tmp_path: Path) -> None:
    model = scripted_actions(["I would fix the pagination.", {"action": "delete", "path": PATH}, FIX, FINISH])
    outcome, session = implement(worktree(tmp_path), LOCAL, model)
    assert outcome.malformed == 2 and outcome.turns == 4 and session.ledger.total().requests == 4
    assert "not a valid action" in model.observations[1] and "not a valid action" in model.observations[2]
    assert outcome.changed == [PATH] and outcome.last_error is None


def test_malformed_tool_calls_are_counted_and_reported_back(tmp_path: Path) -> None:
    model = scripted_actions([
        {"action": "edit", "path": PATH},  # arguments missing
        "Done, I think.",  # text instead of a tool call
        {"action": "edit", "path": PATH, "search": "    begin = page\n", "replace": "x"},  # not in the file
        FIX, FINISH,
    ])
    outcome, _ = implement(worktree(tmp_path), API, model)
    assert outcome.malformed == 3 and outcome.turns == 5
    assert "search" in model.observations[1] and "Field required" in model.observations[1]
    assert "the SEARCH text was not found" in model.observations[3]
    assert outcome.changed == [PATH] and outcome.last_error is None


def test_an_edit_that_breaks_python_syntax_is_refused(tmp_path: Path) -> None:
    wt = worktree(tmp_path)
    before = wt.read_text(PATH)
    broken = {"action": "edit", "path": PATH, "search": "def paginate(items: list, page: int, per_page: int) -> list:\n",
              "replace": "def paginate(items: list, page: int, per_page: int) -> list\n"}
    model = scripted_actions([broken, FINISH])
    outcome, _ = implement(wt, API, model)
    assert "syntax errors" in model.observations[1] and wt.read_text(PATH) == before
    assert outcome.malformed == 1 and outcome.changed == []


def test_search_and_whole_file_create(tmp_path: Path) -> None:
    wt = worktree(tmp_path)
    model = scripted_actions([
        [{"action": "search", "pattern": r"def page_\w+"}, {"action": "search", "pattern": "paginate(", "path": "tests"}],
        {"action": "edit", "path": "shop/new.py", "search": "", "replace": "X = 1\n"},
        FINISH,
    ])
    outcome, _ = implement(wt, API, model)
    assert "shop/pagination.py:4: def page_count" in model.observations[1]
    assert "tests/test_pagination.py:" in model.observations[1]  # an invalid regex is searched as plain text
    assert "Created shop/new.py." in model.observations[2] and wt.read_text("shop/new.py") == "X = 1\n"
    assert outcome.changed == ["shop/new.py"]


# ---------------------------------------------------------------- choosing the protocol, config


def test_budget_limits_propagate_before_any_request(tmp_path: Path) -> None:
    cfg = config_from_dict({"stages": {"implement": {"model": API}}, "models": {API: {"protocol": "agent"}},
                            "budget": {"run_usd": 0.001}})  # flash's worst case per request is ~$0.01
    model = scripted_actions([READ])
    session = ModelSession(cfg, model_overrides={API: model})
    with pytest.raises(BudgetExceeded):
        asyncio.run(agent_implement(session, API, worktree(tmp_path), task=PAGINATION_TASK, plan=None, files=[PATH],
                                    feedback=None, attempt=1, max_steps=5, policy=SandboxPolicy(enabled=False),
                                    limits=Limits()))
    assert model.observations == [] and session.ledger.entries == []


def test_protocol_is_chosen_by_setting_then_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = config_from_dict({"stages": {"implement": {"model": API}}})
    assert not uses_agent(resolve(API, plain)) and not uses_agent(resolve(LOCAL, plain))  # built-in profiles: edit blocks
    assert uses_agent(resolve(API, config(API))) and uses_agent(resolve(LOCAL, config(LOCAL)))
    edit_blocks = config_from_dict({"stages": {"implement": {"model": API}},
                                    "models": {API: {"protocol": "edit-blocks"}}})
    monkeypatch.setattr(models, "PROFILES", (("google", "*", models.ModelProfile(protocol="agent")),
                                             ("*", "*", models.ModelProfile())))
    assert uses_agent(resolve(API, plain))  # "auto" is the profile's choice
    assert not uses_agent(resolve(API, edit_blocks))  # an explicit setting wins


def test_config_accepts_agent_and_rejects_unknown_protocols() -> None:
    cfg = config(API, max_tokens_per_attempt=20_000, max_wall_s=120)
    assert cfg.models[API].protocol == "agent"
    assert cfg.stages.implement.max_tokens_per_attempt == 20_000 and cfg.stages.implement.max_wall_s == 120
    with pytest.raises(ConfigError) as bad:
        config_from_dict({"stages": {"implement": {"model": API}}, "models": {API: {"protocol": "agentic"}}})
    message = str(bad.value)
    assert "\n" not in message and f"models.{API}.protocol" in message and "'agent'" in message
    with pytest.raises(ConfigError, match="max_wall_s"):
        config(API, max_wall_s=0)


def test_in_a_run_the_agent_is_told_the_pinned_checks_even_when_they_were_detected(tmp_path: Path) -> None:
    from relaycode.stages.verify import PYTEST_COMMAND

    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    model = scripted_actions([READ, FIX, FINISH])
    cfg = config_from_dict({"stages": {"implement": {"model": API}}, "models": {API: {"protocol": "agent"}}})
    result = run_task(RunOptions(repo=repo, task=PAGINATION_TASK, config=cfg, yes=True,
                                 model_overrides={API: model}, history=False))
    assert result.status == "succeeded", result.error
    assert f"the pipeline runs: {PYTEST_COMMAND}" in model.observations[0]


def test_the_strategy_table_picks_agent_then_sampling_then_edit_blocks() -> None:
    from relaycode.stages.strategies import STRATEGIES, samples_for, strategy_for

    cfg = config_from_dict({"stages": {"implement": {"model": API, "samples": 3}},
                            "models": {API: {"protocol": "agent"}, LOCAL: {"samples": 1}}})
    api, local, mini = (resolve(spec, cfg) for spec in (API, LOCAL, "openai:gpt-5-mini"))
    assert strategy_for(api, cfg) == "agent"
    assert strategy_for(local, cfg) == "edit-blocks" and samples_for(local, cfg) == 1
    assert strategy_for(mini, cfg) == "sampled" and samples_for(mini, cfg) == 3
    assert set(STRATEGIES) == {"edit-blocks", "agent", "sampled"}


@pytest.mark.parametrize("spec", [API, LOCAL])
def test_the_attempt_temperature_reaches_every_step(tmp_path: Path, spec: str) -> None:
    """A retry's sampling temperature travels with the agent's requests (it used to sit on the shared session)."""
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    script = scripted_actions([READ, FINISH])
    seen: list[object] = []

    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append((info.model_settings or {}).get("temperature"))
        return await script.function(messages, info)  # type: ignore[misc]

    session = ModelSession(config(spec), model_overrides={spec: FunctionModel(answer)})
    outcome = asyncio.run(agent_implement(
        session, spec, worktree(tmp_path), task=PAGINATION_TASK, plan=None, files=[PATH], feedback=None, attempt=2,
        max_steps=5, policy=SandboxPolicy(enabled=False), limits=Limits(wall_s=30), temperature=0.6))
    assert outcome.last_error is None and seen == [0.6, 0.6]
