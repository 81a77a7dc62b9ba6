"""The run history: one SQLite file with every run and every model request, across repositories.

Location: `$RELAY_HISTORY_DB`, else `$RELAY_HOME/history.db` when RELAY_HOME
is set, else `~/.local/share/relay/history.db`.

Several relay processes (parallel runs, a bench) write at once, so the file
is in WAL mode with a busy timeout, and every write is one short transaction.
The schema evolves by numbered migrations: `PRAGMA user_version` is the
number applied; each step runs in the same transaction as the version bump.

Dollars are stored as exact decimal strings (NULL = price unknown) and summed
in Python with `Decimal`: SQLite would sum them as floats, and an unknown
price must never count as $0.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from relaycode.errors import HistoryError
from relaycode.ledger import Ledger, LedgerEntry, Totals
from relaycode.pricing import Tokens

__all__ = ["CostRow", "History", "HistoryError", "RunRecord", "attach", "default_path"]

log = logging.getLogger(__name__)

RunKind = Literal["run", "review", "bench"]
CostGroup = Literal["stage", "model", "day", "repo"]
BUSY_TIMEOUT_S = 30.0

#: Migration N (1-based) takes the schema from version N-1 to N. Append only; never edit a released step.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL DEFAULT 'run',
        repo TEXT,
        task TEXT,
        config_name TEXT,
        run_dir TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        started_at REAL NOT NULL,
        ended_at REAL,
        wall_s REAL,
        model_s REAL,
        usd TEXT,
        unpriced_requests INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_started ON runs (started_at);
    CREATE TABLE model_calls (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        run_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        usd TEXT,
        seconds REAL NOT NULL,
        outcome TEXT NOT NULL,
        finish_reason TEXT
    );
    CREATE INDEX model_calls_time ON model_calls (time);
    CREATE INDEX model_calls_run ON model_calls (run_id);
    """,
)


def default_path() -> Path:
    """Where the history lives (not created here)."""
    env = os.environ.get("RELAY_HISTORY_DB", "").strip()
    if env:
        return Path(env).expanduser()
    home = os.environ.get("RELAY_HOME", "").strip()
    if home:
        return Path(home).expanduser() / "history.db"
    return Path.home() / ".local" / "share" / "relay" / "history.db"


@dataclass
class RunRecord:
    """One row of `runs`."""

    run_id: str
    kind: str
    repo: str | None
    task: str | None
    config_name: str | None
    run_dir: str | None
    status: str
    started_at: float
    ended_at: float | None
    wall_s: float | None
    model_s: float | None
    usd: Decimal | None
    """Dollars of the run; None while unknown (running, or a request had no price)."""
    unpriced_requests: int
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usd"] = None if self.usd is None else str(self.usd)
        return data


@dataclass
class CostRow:
    """Sums of one group in `query_costs`."""

    key: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    usd_priced: Decimal = Decimal(0)
    """Dollars of the requests with a known price."""
    unpriced: int = 0
    """Requests with an unknown price: their dollars are not in `usd_priced`."""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usd(self) -> Decimal | None:
        """The group's dollars, or None when some were unknown."""
        return None if self.unpriced else self.usd_priced

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "requests": self.requests, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "usd": None if self.usd is None else str(self.usd), "usd_priced_part": str(self.usd_priced),
            "unpriced_requests": self.unpriced, "model_seconds": round(self.seconds, 3),
        }


class History:
    """A connection to the history file. Safe to share between threads of one process."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | None = None) -> History:
        """Open (creating and migrating as needed) the history at `path` or `default_path()`."""
        path = path or default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: relay opens its transactions itself (BEGIN IMMEDIATE takes the
        # write lock up front, so two writers wait on the busy timeout instead of deadlocking).
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.01
        while True:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL; fsync per commit is slow
                history = cls(conn, path)
                history._migrate()
                return history
            except sqlite3.DatabaseError as exc:
                conn.close()
                # Switching a fresh file to WAL while another process creates it can fail with
                # "database is locked" at once: SQLite skips the busy handler there to avoid a
                # deadlock. The race is only at creation, so a short bounded retry settles it.
                locked = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
                if locked and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                raise HistoryError(f"{path}: cannot use the run history: {exc}") from exc
            except BaseException:
                conn.close()
                raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            # Read inside the write transaction: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise HistoryError(
                    f"{self.path}: history schema version {version} is newer than this relay "
                    f"understands ({len(MIGRATIONS)}): upgrade relay or set RELAY_HISTORY_DB"
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                for statement in _statements(MIGRATIONS[number - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------ writing

    def record_call(self, entry: LedgerEntry) -> None:
        """Add one ledger entry as a `model_calls` row."""
        t = entry.tokens
        with self._write() as conn:
            conn.execute(
                "INSERT INTO model_calls (time, run_id, stage, attempt, provider, model, input_tokens,"
                " output_tokens, cache_read_tokens, cache_write_tokens, usd, seconds, outcome, finish_reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.started_at, entry.run_id, entry.stage, entry.attempt, entry.provider, entry.model,
                 t.input, t.output, t.cache_read, t.cache_write, None if entry.usd is None else str(entry.usd),
                 entry.seconds, entry.outcome, entry.finish_reason),
            )

    def start_run(
        self,
        run_id: str,
        *,
        kind: RunKind = "run",
        repo: str | Path | None = None,
        task: str | None = None,
        config_name: str | None = None,
        run_dir: str | Path | None = None,
        started_at: float | None = None,
    ) -> None:
        """Add a run as `running` (a resumed run keeps its row and is marked running again)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, kind, repo, task, config_name, run_dir, status, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?)"
                " ON CONFLICT (run_id) DO UPDATE SET status = 'running', ended_at = NULL",
                (run_id, kind, None if repo is None else str(repo), task, config_name,
                 None if run_dir is None else str(run_dir), time.time() if started_at is None else started_at),
            )

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        ended_at: float | None = None,
        wall_s: float | None = None,
        model_s: float | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """Close a run: status and times, plus its totals (from `ledger`, else from its `model_calls`)."""
        ended = time.time() if ended_at is None else ended_at
        totals = ledger.total() if ledger is not None else self._run_totals(run_id)
        usd = None if totals.unpriced else str(totals.usd)
        t = totals.tokens
        with self._write() as conn:
            row = conn.execute("SELECT started_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise HistoryError(f"no run {run_id} in {self.path}: start_run was not called")
            conn.execute(
                "UPDATE runs SET status = ?, ended_at = ?, wall_s = ?, model_s = ?, usd = ?,"
                " unpriced_requests = ?, requests = ?, input_tokens = ?, output_tokens = ?,"
                " cache_read_tokens = ?, cache_write_tokens = ? WHERE run_id = ?",
                (status, ended, ended - row[0] if wall_s is None else wall_s,
                 round(totals.seconds, 3) if model_s is None else model_s, usd, totals.unpriced,
                 totals.requests, t.input, t.output, t.cache_read, t.cache_write, run_id),
            )

    def _run_totals(self, run_id: str) -> Totals:
        return Ledger(self.calls(run_id)).total()

    # ------------------------------------------------------------------ reading

    def calls(self, run_id: str) -> list[LedgerEntry]:
        """The run's model requests as ledger entries, oldest first."""
        rows = self._conn.execute(
            "SELECT run_id, stage, attempt, model, provider, input_tokens, output_tokens, cache_read_tokens,"
            " cache_write_tokens, usd, seconds, time, outcome, finish_reason FROM model_calls"
            " WHERE run_id = ? ORDER BY time, id", (run_id,),
        ).fetchall()
        return [
            LedgerEntry(run_id=r[0], stage=r[1], attempt=r[2], model=r[3], provider=r[4],
                        tokens=Tokens(r[5], r[6], r[7], r[8]), usd=None if r[9] is None else Decimal(r[9]),
                        seconds=r[10], started_at=r[11], outcome=r[12], finish_reason=r[13])
            for r in rows
        ]

    def query_costs(self, since: datetime | None = None, by: CostGroup = "stage") -> list[CostRow]:
        """Sums of model requests since `since`, grouped; the most expensive group first."""
        if by not in ("stage", "model", "day", "repo"):
            raise ValueError(f"cannot group costs by {by!r}: use stage, model, day or repo")
        query = (
            "SELECT c.stage, c.model, c.time, r.repo, c.input_tokens, c.output_tokens, c.cache_read_tokens,"
            " c.cache_write_tokens, c.usd, c.seconds FROM model_calls c LEFT JOIN runs r ON r.run_id = c.run_id"
        )
        params: tuple[Any, ...] = ()
        if since is not None:
            query += " WHERE c.time >= ?"
            params = (since.timestamp(),)
        groups: dict[str, CostRow] = {}
        for stage, model, when, repo, inp, out, c_read, c_write, usd, seconds in self._conn.execute(query, params):
            if by == "stage":
                key = stage
            elif by == "model":
                key = model
            elif by == "day":
                key = datetime.fromtimestamp(when).date().isoformat()  # the user's local calendar day
            else:
                key = repo or "(no run record)"
            row = groups.get(key)
            if row is None:
                row = groups[key] = CostRow(key)
            row.requests += 1
            row.input_tokens += inp
            row.output_tokens += out
            row.cache_read_tokens += c_read
            row.cache_write_tokens += c_write
            row.seconds += seconds
            if usd is None:
                row.unpriced += 1
            else:
                row.usd_priced += Decimal(usd)
        rows = list(groups.values())
        if by == "day":
            rows.sort(key=lambda r: r.key)
        else:
            rows.sort(key=lambda r: (-r.usd_priced, -r.tokens, r.key))
        return rows

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recent runs first."""
        rows = self._conn.execute(f"{_RUN_SELECT} ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return [_run_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord | None:
        """A run by id, or by a unique prefix of its id."""
        row = self._conn.execute(f"{_RUN_SELECT} WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self._conn.execute(
                f"{_RUN_SELECT} WHERE run_id LIKE ? ESCAPE '\\' LIMIT 2", (escaped + "%",)
            ).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return None if row is None else _run_record(row)


_RUN_COLUMNS = (
    "run_id, kind, repo, task, config_name, run_dir, status, started_at, ended_at, wall_s, model_s, usd,"
    " unpriced_requests, requests, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
)
_RUN_SELECT = f"SELECT {_RUN_COLUMNS} FROM runs"


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    values = list(row)
    values[11] = None if values[11] is None else Decimal(values[11])
    return RunRecord(*values)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT the migration transaction; run the statements one by one instead.
    return [s.strip() for s in script.split(";") if s.strip()]


def attach(ledger: Ledger, history: History) -> None:
    """Write each new ledger entry to the history as it is added.

    The history is a record, not the run: if writing fails (disk full, the
    file locked longer than the busy timeout), the run goes on and a warning
    is logged once.
    """
    warned = False

    def listener(entry: LedgerEntry) -> None:
        nonlocal warned
        try:
            history.record_call(entry)
        except sqlite3.Error as exc:
            if not warned:
                warned = True
                log.warning("relay: run history %s not updated: %s", history.path, exc)

    ledger.subscribe(listener)
