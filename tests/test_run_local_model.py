"""`relay run` with a real local model over HTTP (SmolLM2-135M through llama-server), end to end.

Success is not expected of a 135M model; a complete, well-formed run is: every stage reached the
real server through relay's normal provider path, the ledger holds real token counts, and the run
files are written. Needs `relay local setup --models smollm2-135m` (scripts/dev test does it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaycode.config import config_from_dict, load_config
from relaycode.local.catalog import get
from relaycode.local.runtime import runtime_status
from relaycode.local.weights import model_status
from relaycode.pipeline import RunOptions, run_task
from relaycode.testing.sample_repos import DEMO_TASK, make_demo_repo

pytestmark = pytest.mark.local_model

AGENT_SEED = 20261201


def test_relay_run_with_a_real_local_model(tmp_path: Path, allow_model_requests: None) -> None:
    if not runtime_status().present or not model_status(get("smollm2-135m")).verified:
        pytest.skip("local runtime or smollm2-135m not installed: run `relay local setup --models smollm2-135m`")
    repo = make_demo_repo(tmp_path / "shop")
    config = load_config(preset="smoke")
    result = run_task(RunOptions(repo=repo, task=DEMO_TASK, config=config, yes=True, history=False))
    assert result.status in {"succeeded", "failed"}, result.error
    assert result.error_kind in {None, "stuck"}, result.error
    stages = {e.stage for e in result.ledger.entries}
    assert {"plan", "implement"} <= stages
    for entry in result.ledger.entries:
        assert entry.model == "local:smollm2-135m" and entry.provider == "local"
        assert entry.outcome == "ok" and entry.tokens.input > 0 and entry.tokens.output > 0
        assert entry.usd == 0
    # plan.md exists only when the 135M planner managed valid JSON; a run without it is still complete.
    for name in ("ledger.json", "events.jsonl", "report.md", "result.json", "verify-baseline.json",
                 "patch.diff", "state.json"):
        assert (result.run_dir / name).is_file(), name
    data = json.loads((result.run_dir / "result.json").read_text())
    assert data["cost"]["total"]["usd"] == 0.0 and data["cost"]["total"]["input_tokens"] > 0
    assert "## " in (result.run_dir / "report.md").read_text()


def test_agent_loop_with_a_real_local_model_speaks_json_actions(tmp_path: Path, allow_model_requests: None) -> None:
    """The agent protocol's local path (one JSON-schema-constrained action per step) against the real server."""
    if not runtime_status().present or not model_status(get("smollm2-135m")).verified:
        pytest.skip("local runtime or smollm2-135m not installed: run `relay local setup --models smollm2-135m`")
    from relaycode.presets import PRESETS

    data = json.loads(json.dumps(PRESETS["smoke"]))
    data["models"]["local:smollm2-135m"]["protocol"] = "agent"
    data["stages"]["plan"] = {"model": None}
    data["stages"]["review"] = {"models": []}
    data["stages"]["implement"]["max_steps"] = 3
    # Seeded: at the server's own randomness the 135M sometimes spends all three steps on answers
    # the loop counts as malformed, and the test would depend on the draw.
    data["seed"] = AGENT_SEED
    config = config_from_dict(data)
    repo = make_demo_repo(tmp_path / "shop")
    result = run_task(RunOptions(repo=repo, task=DEMO_TASK, config=config, yes=True, history=False))
    assert result.error_kind in {None, "stuck"}, result.error
    implement = [e for e in result.ledger.entries if e.stage == "implement"]
    assert implement and all(e.outcome == "ok" and e.tokens.output > 0 for e in implement)
    events = [json.loads(line) for line in (result.run_dir / "events.jsonl").read_text().splitlines()]
    # Grammar-constrained output: a 135M model's answers parse as actions. Every model step is
    # accounted for: a tool call, the finish, or a malformed answer the loop counted (a 135M model
    # can still produce a schema-valid answer pydantic rejects, e.g. cut off at the token limit).
    tools = [e["tool"] for e in events if e["kind"] == "tool_call"]
    assert tools and set(tools) <= {"read_file", "search", "edit", "run", "finish"}
    ends = [e for e in events if e["kind"] == "agent_end"]
    assert ends and sum(e["steps"] for e in ends) == len(implement)
    finished = sum(e["exit"] == "Finished" for e in ends)
    malformed = sum(e["malformed"] for e in ends)
    assert len(tools) <= len(implement) <= len(tools) + finished + malformed


def test_a_grammar_constrained_answer_names_a_shown_file_and_closes_its_fence(allow_model_requests: None) -> None:
    """llama-server takes relay's whole-file grammar: even a 135M model's answer has the form relay parses."""
    import asyncio

    from relaycode.edits import parse_edits
    from relaycode.grammar import whole_file_grammar
    from relaycode.session import ModelSession, RequestOptions
    from relaycode.stages.implement import WHOLE_FILE_INSTRUCTIONS, cut_off, implement_prompt

    if not runtime_status().present or not model_status(get("smollm2-135m")).verified:
        pytest.skip("local runtime or smollm2-135m not installed: run `relay local setup --models smollm2-135m`")
    spec = "local:smollm2-135m"
    config = config_from_dict({"stages": {"implement": {"model": spec}}, "models": {spec: {"max_tokens": 200}}})
    files = {"calc.py": "def add(a, b):\n    return a - b\n", "notes.md": "# calc\n\nAdds numbers.\n"}
    prompt = implement_prompt("add must return the sum of a and b.", None, files, None, whole_file=True)
    answer = asyncio.run(ModelSession(config).ask(
        "implement", spec, prompt, instructions=WHOLE_FILE_INSTRUCTIONS,
        options=RequestOptions(temperature=0.8, seed=1, extra_body={"grammar": whole_file_grammar(list(files))})))
    assert answer.output.startswith(("calc.py\n```", "notes.md\n```"))
    if not cut_off(answer.messages):
        # Each shown file at most once, in the order shown.
        assert [edit.path for edit in parse_edits(answer.output)] in (["calc.py"], ["notes.md"],
                                                                       ["calc.py", "notes.md"])


def test_candidates_asked_at_once_are_the_answers_each_seed_gives_alone(allow_model_requests: None,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent candidates go out as one request with `n` (local/coalesce.py); llama-server seeds its
    answer j with seed + j, so they must equal the answers of the same seeds asked one at a time."""
    import asyncio

    from relaycode.session import ModelSession, RequestOptions

    if not runtime_status().present or not model_status(get("smollm2-135m")).verified:
        pytest.skip("local runtime or smollm2-135m not installed: run `relay local setup --models smollm2-135m`")
    from relaycode.local.coalesce import CoalescingTransport

    spec = "local:smollm2-135m"
    config = config_from_dict({"stages": {"implement": {"model": spec}}, "models": {spec: {"max_tokens": 12}}})
    sent: list[int] = []  # answers per request that reached the server
    send_run = CoalescingTransport._send_run

    async def spy(self: CoalescingTransport, run: list) -> None:
        sent.append(len(run))
        await send_run(self, run)

    monkeypatch.setattr(CoalescingTransport, "_send_run", spy)

    def ask(session: ModelSession, seed: int):
        return session.ask("implement", spec, "Name a fruit and a colour.", instructions="Answer briefly.",
                           options=RequestOptions(temperature=0.9, seed=seed))

    async def together() -> list[str]:
        session = ModelSession(config)
        return [a.output for a in await asyncio.gather(*(ask(session, s) for s in (40, 41, 42)))]

    async def apart() -> list[str]:
        session = ModelSession(config)
        return [(await ask(session, s)).output for s in (40, 41, 42)]

    first = asyncio.run(together())
    assert sent == [3]
    second = asyncio.run(apart())
    assert sent == [3, 1, 1, 1]
    assert first == second
    assert len(set(first)) > 1  # three seeds, not one answer three times
