"""End-to-end runs with scripted models on throwaway repos: branch content, run files, ledger totals.

The loop's decisions (escalation, repeats, unchanged trees, statuses, the budget stop, review
feedback, resume) are tested without git or the sandbox in `tests/test_loop_logic.py`; this layer
checks that the real worktree, sandboxed verification and strategies carry them out.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from relaycode.config import config_from_dict
from relaycode.pipeline import RunOptions, RunResult, run_task
from relaycode.pricing import Tokens, price_request
from relaycode.testing.sample_repos import PAGINATION_FIX as GOOD_FIX
from relaycode.testing.sample_repos import PAGINATION_TASK as DEMO_TASK
from relaycode.testing.sample_repos import PAGINATION_WRONG_FIX as WRONG_FIX
from relaycode.testing.sample_repos import make_demo_repo
from relaycode.testing.sample_repos import snapshot_checkout as snapshot
from relaycode.testing.scripted import scripted_output, scripted_text

PLANNER = "anthropic:claude-opus-4-5"
CHEAP = "google:gemini-2.5-flash"
STRONG = "anthropic:claude-sonnet-4-5"

PLAN = {
    "goal": "Pages are 1-based: page 1 must start at the first item.",
    "files": ["shop/pagination.py"],
    "steps": ["In paginate, compute start as (page - 1) * per_page."],
    "acceptance": ["tests/test_pagination.py passes"],
}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # The models are scripted; keys only satisfy the pre-flight check (the network is blocked anyway).
    for var in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.setenv(var, "test-key")


def config(**extra: Any):
    data: dict[str, Any] = {
        "stages": {
            "plan": {"model": PLANNER},
            "implement": {"model": CHEAP},
            "verify": {"commands": ["python -m pytest -q"], "timeout_s": 60},
        },
    }
    for key, value in extra.items():
        if key == "stages":
            data["stages"].update(value)
        else:
            data[key] = value
    return config_from_dict(data)


def run(repo: Path, cfg, overrides, **kw: Any) -> RunResult:
    return run_task(RunOptions(repo=repo, task=kw.pop("task", DEMO_TASK), config=cfg, yes=True,
                               model_overrides=overrides, history=False, **kw))


def branch_file(repo: Path, branch: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{branch}:{path}"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def expected_usd(calls: list[tuple[str, tuple[int, int]]]) -> Decimal:
    return sum((price_request(spec, Tokens(*u)) or Decimal(0) for spec, u in calls), Decimal(0))


def test_succeeds_first_try(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    before = snapshot(repo)
    planner = scripted_output([PLAN], usage=(400, 60))
    implementer = scripted_text([GOOD_FIX], usage=(900, 40))
    result = run(repo, config(), {PLANNER: planner, CHEAP: implementer})
    assert result.status == "succeeded", result.error
    assert result.iterations == 1 and result.verify_passed is True
    assert "(page - 1) * per_page" in branch_file(repo, result.branch, "shop/pagination.py")
    assert snapshot(repo) == before  # the user's checkout is untouched
    for name in ("plan.md", "plan.json", "patch.diff", "verify.json", "ledger.json", "events.jsonl", "report.md",
                 "result.json", "state.json"):
        assert (result.run_dir / name).is_file(), name
    assert "(page - 1)" in (result.run_dir / "patch.diff").read_text()
    assert json.loads((result.run_dir / "plan.json").read_text())["files"] == ["shop/pagination.py"]
    total = result.ledger.total()
    assert total.requests == 2
    assert total.tokens == Tokens(1300, 100)
    assert total.usd == expected_usd([(PLANNER, (400, 60)), (CHEAP, (900, 40))])
    # the implementer saw the plan and the file the plan names
    assert "(page - 1) * per_page" in implementer.calls[0] and "def paginate" in implementer.calls[0]
    kinds = [e["kind"] for e in map(json.loads, (result.run_dir / "events.jsonl").read_text().splitlines())]
    assert kinds.count("model_call") == 2 and kinds[0] == "run_start" and kinds[-1] == "run_end"


SECOND_FIX = GOOD_FIX.replace("    start = page * per_page\n=", "    start = page * per_page - 1\n=")


def test_fix_loop_feeds_test_output_back(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    # The second attempt builds on the first: its SEARCH matches the first attempt's line.
    implementer = scripted_text([WRONG_FIX, SECOND_FIX], usage=(800, 30))
    cfg = config(stages={"plan": {"model": None}})
    result = run(repo, cfg, {CHEAP: implementer})
    assert result.status == "succeeded", result.error
    assert result.iterations == 2 and len(result.commits) == 2
    assert "test_first_page_starts_at_first_item" in implementer.calls[1]  # failing test fed back
    assert "(page - 1) * per_page" in branch_file(repo, result.branch, "shop/pagination.py")
    log = subprocess.run(["git", "log", "--format=%s", f"main..{result.branch}"], cwd=repo, capture_output=True,
                         text=True).stdout.splitlines()
    assert log == [f"relay: attempt 2 by {CHEAP}", f"relay: attempt 1 by {CHEAP}"]
    assert result.ledger.total().usd == expected_usd([(CHEAP, (800, 30))] * 2)


def test_a_repeated_failed_change_gets_one_more_try_with_that_said(tmp_path: Path) -> None:
    """The QuixBugs pattern: the escalated model first repeats the cheap model's failed edit."""
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    # The third attempt starts from the last commit, which holds the wrong fix.
    fix_the_fix = GOOD_FIX.replace("    start = page * per_page\n=", "    start = page * per_page - 1\n=")
    cheap, strong = scripted_text([WRONG_FIX]), scripted_text([WRONG_FIX, fix_the_fix])
    cfg = config(stages={"plan": {"model": None}, "implement": {"model": CHEAP, "escalate_to": [STRONG]}})
    result = run(repo, cfg, {CHEAP: cheap, STRONG: strong})
    assert result.status == "succeeded" and result.iterations == 3 and result.checks == ["python -m pytest -q"]
    # The escalated model started from the base tree: its edit is a change (verified, failing), not "nothing".
    assert "exactly the one of attempt 1, which already failed" in strong.calls[1]
    assert "Verification failed" in strong.calls[1] and "left every file exactly" not in strong.calls[1]
    assert "(page - 1) * per_page" in branch_file(repo, result.branch, "shop/pagination.py")


def test_malformed_edits_are_reported_back_and_counted(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    garbage = "I think the bug is in pagination, you should fix start."
    mismatched = GOOD_FIX.replace("    start = page * per_page\n=", "    begin = page * per_page\n=")
    implementer = scripted_text([garbage, mismatched, GOOD_FIX], usage=(500, 20))
    result = run(repo, config(stages={"plan": {"model": None}}), {CHEAP: implementer})
    assert result.status == "succeeded"
    assert result.malformed_outputs == 2 and result.iterations == 1
    assert "no edit blocks" in implementer.calls[1].lower()
    assert "start = page * per_page" in implementer.calls[2]  # closest lines quoted back
    assert result.ledger.total().requests == 3


def test_an_answer_cut_off_at_the_token_limit_ends_the_attempt_and_escalates(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    runaway = "shop/pagination.py\n```python\n" + "def paginate(items, page, per_page):\n" * 40
    cheap = scripted_text([runaway], usage=(800, 768), cut_off={0})  # would repeat for every turn it is asked
    strong = scripted_text([GOOD_FIX], usage=(800, 30))
    cfg = config(stages={"plan": {"model": None},
                         "implement": {"model": CHEAP, "escalate_to": [STRONG], "max_steps": 12}})
    result = run(repo, cfg, {CHEAP: cheap, STRONG: strong})
    assert result.status == "succeeded", result.error
    assert len(cheap.calls) == 1  # not 12 turns of a growing conversation
    assert result.escalations == [STRONG] and result.malformed_outputs == 1
    assert "cut off at the answer length limit" in strong.calls[0]


def test_an_answer_cut_off_after_complete_edits_is_still_applied(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    implementer = scripted_text([GOOD_FIX], usage=(800, 768), cut_off={0})
    result = run(repo, config(stages={"plan": {"model": None}}), {CHEAP: implementer})
    assert result.status == "succeeded" and len(implementer.calls) == 1 and result.malformed_outputs == 0


def test_an_edit_that_breaks_python_syntax_is_refused_and_explained(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    broken = GOOD_FIX.replace("(page - 1) * per_page", "(page - 1 * per_page")
    implementer = scripted_text([broken, GOOD_FIX], usage=(500, 20))
    result = run(repo, config(stages={"plan": {"model": None}}), {CHEAP: implementer})
    assert result.status == "succeeded"
    assert result.malformed_outputs == 1 and result.iterations == 1
    assert "syntax error" in implementer.calls[1].lower() and "shop/pagination.py line" in implementer.calls[1]
    assert "start = (page - 1) * per_page" in branch_file(repo, result.branch, "shop/pagination.py")


def test_plan_file_skips_the_planner(tmp_path: Path) -> None:
    from relaycode.stages.plan import Plan

    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    plan_file = tmp_path / "plan.md"
    plan_file.write_text(Plan.model_validate(PLAN).to_markdown())
    implementer = scripted_text([GOOD_FIX])
    result = run(repo, config(), {CHEAP: implementer}, plan_file=plan_file)
    assert result.status == "succeeded"
    assert {e.stage for e in result.ledger.entries} == {"implement"}


def test_plan_markdown_round_trips() -> None:
    from relaycode.stages.plan import Plan

    plan = Plan.model_validate(PLAN)
    assert Plan.from_markdown(plan.to_markdown()) == plan


@pytest.mark.parametrize(
    ("setup", "task", "needle"),
    [
        ("plain-dir", DEMO_TASK, "not a git repository"),
        ("no-commits", DEMO_TASK, "no commits"),
        ("ok", "   ", "task is empty"),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path: Path, setup: str, task: str, needle: str) -> None:
    from relaycode.errors import UsageError

    repo = tmp_path / "r"
    repo.mkdir()
    if setup == "no-commits":
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    elif setup == "ok":
        make_demo_repo(tmp_path / "ok", bug="pagination")
        repo = tmp_path / "ok"
    with pytest.raises(UsageError, match=needle):
        run(repo, config(), {}, task=task)


def test_checkout_is_byte_identical_with_staged_unstaged_and_untracked_changes(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    (repo / "shop" / "cart.py").write_text((repo / "shop" / "cart.py").read_text() + "\n# staged edit\n")
    subprocess.run(["git", "add", "shop/cart.py"], cwd=repo, check=True)
    (repo / "README.md").write_text("unstaged edit\n")
    (repo / "notes.txt").write_text("untracked file\n")
    before = snapshot(repo)
    result = run(repo, config(stages={"plan": {"model": None}}), {CHEAP: scripted_text([GOOD_FIX])})
    assert result.status == "succeeded"
    assert snapshot(repo) == before
    # the run started from HEAD, not from the user's uncommitted changes
    assert "staged edit" not in branch_file(repo, result.branch, "shop/cart.py")


def test_cli_run_json_has_the_promised_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import relaycode.pipeline as pipeline
    from relaycode.cli import _register, app

    _register()
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    (repo / "relay.toml").write_text(
        f'[stages.implement]\nmodel = "{CHEAP}"\n[stages.verify]\ncommands = ["python -m pytest -q"]\n')
    subprocess.run(["git", "add", "relay.toml"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "cfg"], cwd=repo, check=True)
    real = pipeline.run_task

    def with_doubles(options: RunOptions) -> RunResult:
        options.model_overrides = {CHEAP: scripted_text([GOOD_FIX], usage=(300, 30))}
        options.history = False
        return real(options)

    monkeypatch.setattr(pipeline, "run_task", with_doubles)
    result = CliRunner().invoke(app, ["run", DEMO_TASK, "--repo", str(repo), "--yes", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("run_id", "status", "branch", "run_dir", "cost", "verify", "review", "iterations"):
        assert key in data, key
    assert data["status"] == "succeeded" and data["verify"]["passed"] is True
    assert data["review"]["findings"] == 0 and data["iterations"] == 1
    assert data["cost"]["by_stage"]["implement"]["input_tokens"] == 300
    assert data["cost"]["by_model"][CHEAP]["output_tokens"] == 30
    assert data["cost"]["total"]["usd"] == float(expected_usd([(CHEAP, (300, 30))]))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "fix it", "--repo", "{plain}"], "not a git repository"),
        (["run", "", "--repo", "{repo}"], "task is empty"),
        (["run", "fix it", "--repo", "{repo}", "--plan", "{badplan}"], "plan does not parse"),
        (["run", "fix it", "--repo", "{repo}", "--base", "no-such-branch"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    from typer.testing import CliRunner

    from relaycode.cli import _register, app

    _register()
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    (tmp_path / "plain").mkdir()
    (tmp_path / "bad.md").write_text("no headings here\n")
    subst = {"{plain}": str(tmp_path / "plain"), "{repo}": str(repo), "{badplan}": str(tmp_path / "bad.md")}
    argv = [subst.get(a, a) for a in args] + ["--preset", "api", "--yes"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_implementer_path_without_directory_is_mapped_to_the_unique_file(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    result = run(repo, config(stages={"plan": {"model": None}}),
                 {CHEAP: scripted_text([GOOD_FIX.replace("shop/pagination.py", "pagination.py")])})
    assert result.status == "succeeded" and result.malformed_outputs == 0


def test_person_edits_the_plan_before_implementing(tmp_path: Path) -> None:
    from relaycode.stages.plan import Plan

    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    seen: list[Path] = []

    def approve(plan: Plan, path: Path) -> Plan | None:
        seen.append(path)
        return plan.model_copy(update={"steps": ["Edited by a person: use (page - 1) * per_page."]})

    implementer = scripted_text([GOOD_FIX])
    result = run_task(RunOptions(repo=repo, task=DEMO_TASK, config=config(), yes=False, approve=approve,
                                 history=False, model_overrides={PLANNER: scripted_output([PLAN]), CHEAP: implementer}))
    assert result.status == "succeeded"
    assert seen and seen[0].name == "plan.md"
    assert "Edited by a person" in implementer.calls[0]
    assert "Edited by a person" in (result.run_dir / "plan.md").read_text()


def test_declining_the_plan_aborts_before_implementing(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    implementer = scripted_text([GOOD_FIX])
    result = run_task(RunOptions(repo=repo, task=DEMO_TASK, config=config(), yes=False, approve=lambda p, f: None,
                                 history=False, model_overrides={PLANNER: scripted_output([PLAN]), CHEAP: implementer}))
    assert result.status == "aborted" and implementer.calls == []
    assert (result.run_dir / "report.md").is_file()


def test_missing_api_key_stops_run_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from relaycode.cli import _register, app

    _register()
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    result = CliRunner().invoke(app, ["run", "fix it", "--repo", str(repo), "--preset", "api", "--yes"])
    assert result.exit_code == 2
    assert "ANTHROPIC_API_KEY" in result.stderr
    assert not (repo / ".git" / "relay").exists()  # no run was created


def test_malformed_plan_falls_back_to_the_task(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    planner = scripted_output([{"goal": 3}])  # never validates: the agent's output retries run out
    implementer = scripted_text([GOOD_FIX])
    result = run(repo, config(), {PLANNER: planner, CHEAP: implementer})
    assert result.status == "succeeded"
    assert result.malformed_outputs == 1
    assert "# Plan" not in implementer.calls[0]
    assert not (result.run_dir / "plan.md").exists()


DROPS_PAGE_COUNT = """shop/pagination.py
<<<<<<< SEARCH
def page_count(total_items: int, per_page: int) -> int:
    \"\"\"How many pages `total_items` fill, at `per_page` items each.\"\"\"
    if per_page <= 0:
        raise ValueError("per_page must be positive")
    return (total_items + per_page - 1) // per_page
=======
>>>>>>> REPLACE
"""


PAGINATE_DEF = "def paginate(items: list, page: int, per_page: int) -> list:\n"


def test_basic_checks_fail_an_attempt_that_nothing_else_could(tmp_path: Path) -> None:
    """No test can fail a change here, but a change that drops a function the module defined is
    still refused by the basic checks, and the next attempt hears why."""
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    # The next attempt starts from the first one's commit: it puts the function back.
    restore = ("shop/pagination.py\n<<<<<<< SEARCH\n" + PAGINATE_DEF + "=======\n"
               + DROPS_PAGE_COUNT.split("<<<<<<< SEARCH\n")[1].split("=======")[0]
               + "\n\n" + PAGINATE_DEF + ">>>>>>> REPLACE\n")
    implementer = scripted_text([DROPS_PAGE_COUNT + GOOD_FIX, restore])
    stages = {"plan": {"model": None}, "verify": {"commands": []}}
    result = run(repo, config(stages=stages), {CHEAP: implementer})
    assert result.status == "unverified" and result.iterations == 2, result.error
    assert "no longer defines page_count" in implementer.calls[1]
    assert "def page_count" in branch_file(repo, result.branch, "shop/pagination.py")


def test_a_whole_file_answer_of_only_the_file_name_is_never_written(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    implementer = scripted_text(["shop/pagination.py\n```python\nshop/pagination.py\n```\n", GOOD_FIX])
    result = run(repo, config(stages={"plan": {"model": None}}), {CHEAP: implementer})
    assert result.status == "succeeded" and result.iterations == 1 and result.malformed_outputs == 1
    assert "holds only a file name" in implementer.calls[1] or "holds no code" in implementer.calls[1]


# --------------------------------------------------------------------------- sampled candidates


def test_candidates_are_verified_and_the_passing_one_most_agree_on_wins(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    implementer = scripted_text([WRONG_FIX, GOOD_FIX, "no edit blocks at all", GOOD_FIX], repeat_last=False)
    events: list[dict[str, Any]] = []
    cfg = config(stages={"plan": {"model": None}, "implement": {"model": CHEAP, "samples": 4}})
    result = run(repo, cfg, {CHEAP: implementer}, on_event=events.append)
    assert result.status == "succeeded" and result.iterations == 1, result.error
    assert len(implementer.calls) == 4 and result.malformed_outputs == 1
    [chosen] = [e for e in events if e["kind"] == "candidates"]
    assert chosen["drawn"] == 4 and chosen["unusable"] == 1
    # The two agreeing candidates are verified first and pass: the lone wrong one is never verified.
    assert chosen["distinct"][0]["verified"] is True and len(chosen["distinct"][0]["candidates"]) == 2
    assert chosen["distinct"][1]["verified"] is None
    assert "(page - 1) * per_page" in branch_file(repo, result.branch, "shop/pagination.py")
    assert "## answer 4" in (result.run_dir / "attempts" / "1-implement.md").read_text()


def test_when_no_candidate_passes_the_most_promising_is_judged_and_fed_back(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    also_wrong = WRONG_FIX.replace("page * per_page - 1", "page * per_page + 1")
    # Attempt 1: two wrong candidates (both fail); attempt 2 starts from the judged one and draws the fix,
    # as a whole file so it applies whichever wrong candidate was judged (concurrent requests are
    # answered in no fixed order).
    from relaycode.testing.sample_repos import DEMO_FILES

    whole_fix = "shop/pagination.py\n```python\n" + DEMO_FILES["shop/pagination.py"] + "```\n"
    implementer = scripted_text([WRONG_FIX, also_wrong, whole_fix, whole_fix], repeat_last=False)
    events: list[dict[str, Any]] = []
    cfg = config(stages={"plan": {"model": None}, "implement": {"model": CHEAP, "samples": 2}})
    result = run(repo, cfg, {CHEAP: implementer}, on_event=events.append)
    assert result.status == "succeeded" and result.iterations == 2, result.error
    first, second = [e for e in events if e["kind"] == "candidates"]
    assert first["winner"] is None and [d["verified"] for d in first["distinct"]] == [False, False]
    assert second["winner"] == [1, 2]
    assert "test_first_page_starts_at_first_item" in implementer.calls[2]  # the failing output fed back


def test_a_candidate_that_fails_after_its_retries_is_one_candidate_fewer(tmp_path: Path) -> None:
    from pydantic_ai.exceptions import ModelHTTPError
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    served = 0

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal served
        served += 1
        if served > 1:  # every request after the first: a server error, retries included
            raise ModelHTTPError(503, "m", "overloaded")
        return ModelResponse(parts=[TextPart(GOOD_FIX)])

    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    events: list[dict[str, Any]] = []
    cfg = config(stages={"plan": {"model": None}, "implement": {"model": CHEAP, "samples": 2}},
                 retry={"max_attempts": 2, "backoff_s": 0})
    result = run(repo, cfg, {CHEAP: FunctionModel(answer)}, on_event=events.append)
    assert result.status == "succeeded" and result.iterations == 1, result.error
    [failed] = [e for e in events if e["kind"] == "candidates_failed"]
    assert failed["failed"] == 1 and "server error" in failed["errors"][0]


def test_when_every_candidate_fails_the_attempt_fails_as_one_request_would(tmp_path: Path) -> None:
    from pydantic_ai.exceptions import ModelHTTPError
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(503, "m", "overloaded")

    repo = make_demo_repo(tmp_path / "shop", bug="pagination")
    cfg = config(stages={"plan": {"model": None}, "implement": {"model": CHEAP, "samples": 2}},
                 retry={"max_attempts": 1, "backoff_s": 0})
    result = run(repo, cfg, {CHEAP: FunctionModel(answer)})
    assert result.status == "error" and result.error_kind == "provider_server", result.error


def test_the_implementer_is_shown_the_code_the_named_failing_test_imports_not_every_matching_file(
        tmp_path: Path) -> None:
    from relaycode.testing.sample_repos import DEMO_TASK as CART_TASK

    repo = make_demo_repo(tmp_path / "shop")
    implementer = scripted_text(["shop/cart.py\n```python\nx = 1\n```\n"] * 3)
    stages = {"plan": {"model": None}, "implement": {"model": CHEAP}}
    run(repo, config(stages=stages, max_iterations=1), {CHEAP: implementer}, task=CART_TASK)
    prompt = implementer.calls[0]
    assert "shop/cart.py\n```" in prompt
    # Word overlap alone also showed the README and the pagination module (the task says "library").
    assert "README.md\n```" not in prompt and "shop/pagination.py\n```" not in prompt
