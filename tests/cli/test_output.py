"""What relay prints for a person: one error style, and tables that fit 80 columns without cutting a name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from relaycode.history import History
from relaycode.ledger import LedgerEntry
from relaycode.pricing import Tokens

from .helpers import Relay

SRC = Path(__file__).resolve().parents[2] / "src"
RUN_ID = "20261201-101500-a1b2c3"
LONG_MODEL = "local:qwen2.5-coder-1.5b"
OTHER_MODEL = "openrouter:z-ai/glm-4.6"


def relay_process(*args: str) -> subprocess.CompletedProcess[str]:
    """`relay` as a person runs it (its real entry point), in a dumb 80-column terminal."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "TERM": "dumb", "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "relaycode", *args], capture_output=True, text=True, env=env,
                          timeout=60)


@pytest.mark.parametrize(("args", "needle"), [
    (["run", "--no-such-flag"], "relay: error: No such option: --no-such-flag (see `relay run --help`)"),
    (["costs", "--by", "week"], "relay: error: Invalid value for --by: 'week': use one of stage, model, day, repo"),
    (["run", "fix it", "--trace", "bogus"], "relay: error: --trace 'bogus': choose one of otlp, file, off"),
])
def test_usage_errors_are_one_line_in_relays_style_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    result = relay_process(*args, *(["--repo", str(tmp_path)] if args[0] == "run" else []))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(needle), result.stderr
    assert "╭" not in result.stderr and "Usage:" not in result.stderr


#: Any C0 control byte but tab and newline, and DEL/C1: what a terminal acts on.
TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: A clipboard write (OSC 52), then a screen clear.
OSC52 = "\x1b]52;c;Y3VybA==\x1b\\\x1b[2J"


def test_an_error_relays_entry_point_prints_shows_terminal_controls_as_text(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A RelayError no command caught (a path a repository's test planted) is printed by `relay.cli.main`.
    import relaycode.cli as cli
    from relaycode.errors import SandboxViolation

    def command(**_kwargs: object) -> None:
        raise SandboxViolation(f"verify: a test created git metadata at v{OSC52}/.git")

    cli._register()  # the command modules add themselves to the real app first
    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as exited:
        cli.main(["verify"])
    err = capsys.readouterr().err
    assert exited.value.code == SandboxViolation.exit_code and err.startswith("relay: error: verify: a test"), err
    assert TERMINAL_CONTROL.findall(err) == [] and "v\\x1b]52;c;Y3VybA==" in err


@pytest.mark.parametrize("line", ["die", "error", "warning"])
def test_relays_error_and_warning_lines_show_terminal_controls_as_text(capsys: pytest.CaptureFixture[str],
                                                                        line: str) -> None:
    from relaycode.cli._common import die, print_error, print_warning
    from relaycode.errors import SandboxViolation

    message = f"verify: a test created git metadata at v{OSC52}/.git"  # a path a repository's test chose
    if line == "die":
        assert die(SandboxViolation(message)).exit_code == SandboxViolation.exit_code
    else:
        (print_error if line == "error" else print_warning)(message)
    err = capsys.readouterr().err
    assert err.startswith(f"relay: {'warning' if line == 'warning' else 'error'}: verify: a test created"), err
    assert TERMINAL_CONTROL.findall(err) == [] and "v\\x1b]52;c;Y3VybA==" in err


def test_a_newline_in_a_quoted_name_cannot_start_a_line_of_relays_own(capsys: pytest.CaptureFixture[str]) -> None:
    from relaycode.cli._common import print_error

    print_error("verify: a test created git metadata at v\nrelay: all checks passed/.git")
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("relay:")] == [
        "relay: error: verify: a test created git metadata at v"]
    assert "\n  relay: all checks passed/.git" in err


def _history_with_long_names() -> None:
    with History.open() as h:
        h.start_run(RUN_ID, repo="/home/dev/a-repository-with-a-long-name", config_name="local-cascade",
                    task="The test suite fails: tests/test_pagination.py::test_first_page_starts_at_first_item. "
                         "Find the bug in the library code and fix it. Do not change the tests.")
        for i, model in enumerate((LONG_MODEL, OTHER_MODEL)):
            h.record_call(LedgerEntry(run_id=RUN_ID, stage="implement", attempt=1, model=model, provider="x",
                                      tokens=Tokens(123_456, 12_345, cache_read=100_000), usd=None if i else Decimal(0),
                                      seconds=33.3, started_at=1_700_000_000.0 + i))
        h.finish_run(RUN_ID, status="budget_exceeded", wall_s=4000.0)


@pytest.mark.parametrize("args", [["runs"], ["costs", "--by", "model"]])
def test_tables_fit_80_columns_and_never_cut_the_name_of_a_row(args: list[str]) -> None:
    _history_with_long_names()
    result = relay_process(*args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    names = [RUN_ID] if args == ["runs"] else [LONG_MODEL, OTHER_MODEL]
    for name in names:
        assert any(name in line for line in lines), result.stdout
    if args == ["runs"]:
        assert "budget_exceeded" in result.stdout and "The test suit" in result.stdout


def test_runs_show_json(relay: Relay) -> None:
    _history_with_long_names()
    result = relay("runs", "show", RUN_ID[:15], "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run_id"] == RUN_ID and data["status"] == "budget_exceeded"
    assert data["ledger"]["total"]["requests"] == 2


@pytest.mark.usefixtures("allow_model_requests")
def test_no_pydantic_ai_banner_in_relays_output(tmp_path: Path) -> None:
    from relaycode.review.evaluate import unified_diff
    from relaycode.testing.fake_openai import FakeOpenAI, Reply

    diff = tmp_path / "change.diff"
    diff.write_text(unified_diff("a.py", "x = 1\n", "x = 2\n"))
    with FakeOpenAI(default=lambda _r: Reply.json_output({"findings": []})) as server:
        config = tmp_path / "relay.toml"
        config.write_text(f'diversity = "off"\n[endpoints.fake]\nbase_url = "{server.base_url}"\n'
                          '[stages.implement]\nmodel = "fake:impl"\n[stages.review]\nmodels = ["fake:r1"]\n'
                          '[models."fake:r1".price]\ninput_per_mtok = 0\noutput_per_mtok = 0\n')
        # pydantic-ai shows its first-run banner to a terminal or to a coding agent that says it is one;
        # it stays quiet in CI and under pytest, which this process is not to be.
        env = {k: v for k, v in os.environ.items()
               if k not in ("CI", "PYTEST_VERSION", "PYTEST_CURRENT_TEST", "PYDANTIC_AI_NO_BANNER")}
        env.update(PYTHONPATH=str(SRC), TERM="dumb", AI_AGENT="1")
        result = subprocess.run([sys.executable, "-m", "relaycode", "review", "--diff", str(diff), "--config",
                                 str(config)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "relay: reviewing" in result.stderr
    for foreign in ("Logfire", "logfire", "observability: off", "openai:r1"):
        assert foreign not in result.stderr + result.stdout, result.stderr
