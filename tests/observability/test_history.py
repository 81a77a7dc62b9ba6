"""The run history: location, migrations, runs and calls, cost queries, parallel writers."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from relaycode import history as history_mod
from relaycode.config import config_from_dict
from relaycode.history import MIGRATIONS, History, HistoryError, attach, default_path
from relaycode.ledger import Ledger, LedgerEntry
from relaycode.pricing import Tokens
from relaycode.session import ModelSession


def entry(run_id: str = "r1", stage: str = "implement", model: str = "openai:gpt-5", *,
          usd: Decimal | None = Decimal("0.001"), tokens: Tokens = Tokens(100, 10, 20, 0),
          when: float = 1_750_000_000.0, seconds: float = 1.5, outcome: str = "ok") -> LedgerEntry:
    return LedgerEntry(run_id=run_id, stage=stage, attempt=1, model=model, provider=model.split(":")[0],
                       tokens=tokens, usd=usd, seconds=seconds, started_at=when, outcome=outcome,
                       finish_reason="stop" if outcome == "ok" else None)


def test_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RELAY_HISTORY_DB", str(tmp_path / "h.db"))
    assert default_path() == tmp_path / "h.db"
    monkeypatch.delenv("RELAY_HISTORY_DB")
    monkeypatch.setenv("RELAY_HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / "history.db"
    monkeypatch.delenv("RELAY_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path() == tmp_path / ".local" / "share" / "relay" / "history.db"


def test_open_creates_migrates_once_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.db"
    with History.open(path) as h:
        assert h.schema_version == len(MIGRATIONS)
    with History.open(path) as h:  # reopening applies nothing twice
        assert h.schema_version == len(MIGRATIONS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "model_calls"} <= tables


def test_a_new_migration_is_applied_to_an_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.db"
    with History.open(path) as h:
        h.record_call(entry())
    monkeypatch.setattr(history_mod, "MIGRATIONS", (*MIGRATIONS, "ALTER TABLE runs ADD COLUMN note TEXT"))
    with History.open(path) as h:
        assert h.schema_version == len(MIGRATIONS) + 1
        assert len(h.calls("r1")) == 1
    conn = sqlite3.connect(path)
    assert "note" in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.db"
    History.open(path).close()
    monkeypatch.setattr(history_mod, "MIGRATIONS", (*MIGRATIONS, "CREATE TABLE extra (x); CREATE TABLE runs (y)"))
    with pytest.raises(HistoryError):
        History.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0] == 0


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    History.open(path).close()
    sqlite3.connect(path).execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(HistoryError, match="newer"):
        History.open(path)


def test_runs_start_finish_and_totals_from_calls(tmp_path: Path) -> None:
    with History.open(tmp_path / "h.db") as h:
        h.start_run("20250101-000000-abc", repo="/src/app", task="fix the bug", config_name="api",
                    run_dir=tmp_path / "run", started_at=100.0)
        h.record_call(entry("20250101-000000-abc", usd=Decimal("0.25"), tokens=Tokens(1000, 100, 0, 0)))
        h.record_call(entry("20250101-000000-abc", usd=Decimal("0.125"), tokens=Tokens(10, 1, 5, 2)))
        h.finish_run("20250101-000000-abc", status="done", ended_at=160.0)
        run = h.get_run("20250101-000000-abc")
        assert run is not None
        assert (run.status, run.wall_s, run.requests, run.usd) == ("done", 60.0, 2, Decimal("0.375"))
        assert (run.input_tokens, run.output_tokens, run.cache_read_tokens, run.cache_write_tokens) == (1010, 101, 5, 2)
        assert run.model_s == 3.0 and run.run_dir == str(tmp_path / "run") and run.repo == "/src/app"
        assert h.get_run("20250101") is not None  # a unique prefix is enough
        assert h.get_run("nope") is None
        with pytest.raises(HistoryError):
            h.finish_run("never-started", status="done")


def test_an_unpriced_request_makes_the_run_cost_unknown(tmp_path: Path) -> None:
    with History.open(tmp_path / "h.db") as h:
        h.start_run("r1")
        ledger = Ledger([entry(usd=Decimal("0.5")), entry(usd=None)])
        h.finish_run("r1", status="done", ledger=ledger)
        run = h.get_run("r1")
        assert run is not None and run.usd is None and run.unpriced_requests == 1


def test_list_runs_newest_first_with_limit(tmp_path: Path) -> None:
    with History.open(tmp_path / "h.db") as h:
        for i in range(5):
            h.start_run(f"r{i}", started_at=1000.0 + i)
        assert [r.run_id for r in h.list_runs(3)] == ["r4", "r3", "r2"]


def test_query_costs_groups_sums_and_keeps_unknown_apart(tmp_path: Path) -> None:
    day1 = datetime(2025, 3, 1, 12).timestamp()
    day2 = datetime(2025, 3, 2, 12).timestamp()
    with History.open(tmp_path / "h.db") as h:
        h.start_run("a", repo="/repo/one")
        h.record_call(entry("a", "plan", "openai:gpt-5", usd=Decimal("0.10"), when=day1))
        h.record_call(entry("a", "implement", "anthropic:claude", usd=Decimal("0.30"), when=day1))
        h.record_call(entry("b", "implement", "fake:m", usd=None, when=day2))
        h.record_call(entry("b", "review", "openai:gpt-5", usd=Decimal("0.05"), when=day2))

        by_stage = {r.key: r for r in h.query_costs(by="stage")}
        assert by_stage["implement"].requests == 2
        assert by_stage["implement"].usd is None and by_stage["implement"].usd_priced == Decimal("0.30")
        assert by_stage["plan"].usd == Decimal("0.10")
        by_model = h.query_costs(by="model")
        assert next(r.key for r in by_model) == "anthropic:claude"  # most expensive first
        assert {r.key: r.usd for r in by_model}["openai:gpt-5"] == Decimal("0.15")
        by_day = h.query_costs(by="day")
        assert [(r.key, r.requests) for r in by_day] == [("2025-03-01", 2), ("2025-03-02", 2)]
        by_repo = {r.key: r.requests for r in h.query_costs(by="repo")}
        assert by_repo == {"/repo/one": 2, "(no run record)": 2}
        since = h.query_costs(since=datetime.fromtimestamp(day2) - timedelta(hours=1), by="stage")
        assert sorted(r.key for r in since) == ["implement", "review"]
        with pytest.raises(ValueError):
            h.query_costs(by="week")  # type: ignore[arg-type]


def test_attach_records_each_request_of_a_real_session(tmp_path: Path, allow_model_requests: None) -> None:
    def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("ok")], usage=RequestUsage(input_tokens=100, output_tokens=20))

    config = config_from_dict({"endpoints": {"fake": {"base_url": "http://127.0.0.1:9/v1"}},
                               "stages": {"implement": {"model": "fake:m"}},
                               "models": {"fake:m": {"price": {"input_per_mtok": 1, "output_per_mtok": 2}}}})
    session = ModelSession(config, run_id="run-x", model_overrides={"fake:m": FunctionModel(fn)})
    with History.open() as h:  # $RELAY_HISTORY_DB from the suite's conftest
        attach(session.ledger, h)
        asyncio.run(session.ask("plan", "fake:m", "hi", instructions="x"))
        asyncio.run(session.ask("implement", "fake:m", "hi", instructions="x"))
        [stored_plan, stored_impl] = h.calls("run-x")
    assert [stored_plan, stored_impl] == session.ledger.entries
    assert stored_impl.usd == Decimal(100 * 1 + 20 * 2) / 1_000_000


def test_attach_never_breaks_a_run_when_the_history_fails(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = History.open(tmp_path / "h.db")
    ledger = Ledger()
    attach(ledger, h)
    h.close()  # every write now fails
    ledger.add(entry())
    ledger.add(entry())
    assert len(ledger.entries) == 2
    assert sum("not updated" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------ parallel writers

WRITERS = 4
CALLS_PER_WRITER = 300


def _writer(path: str, worker: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    with History.open(Path(path)) as h:  # every process opens (and may migrate) at once
        h.start_run(f"w{worker}", kind="bench", started_at=float(worker))
        for i in range(CALLS_PER_WRITER):
            h.record_call(entry(f"w{worker}", stage=f"s{i % 3}", usd=Decimal(f"0.00000{worker}{i % 10}"),
                                tokens=Tokens(i, worker, 0, 0), when=1_750_000_000.0 + i))
        h.finish_run(f"w{worker}", status="done")


def test_parallel_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"  # not yet created: the processes race to create and migrate it
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(path), w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM model_calls").fetchone()[0] == WRITERS * CALLS_PER_WRITER
    with History.open(path) as h:
        expected_usd = sum(Decimal(f"0.00000{w}{i % 10}") for w in range(WRITERS) for i in range(CALLS_PER_WRITER))
        rows = h.query_costs(by="stage")
        assert sum(r.requests for r in rows) == WRITERS * CALLS_PER_WRITER
        assert sum((r.usd_priced for r in rows), Decimal(0)) == expected_usd
        assert sum(r.input_tokens for r in rows) == WRITERS * sum(range(CALLS_PER_WRITER))
        for w in range(WRITERS):
            run = h.get_run(f"w{w}")
            assert run is not None and run.status == "done" and run.requests == CALLS_PER_WRITER
            assert run.output_tokens == w * CALLS_PER_WRITER
            assert run.usd == sum(Decimal(f"0.00000{w}{i % 10}") for i in range(CALLS_PER_WRITER))
