"""One `llama-server` process per local model, on 127.0.0.1 and a free port.

A server is described by a state file `state/server-<model>.json` (pid, port,
who started it), so any relay process can find, reuse and stop it:

- `relay local start` starts servers with ``started_by="cli"``; they keep
  running after relay exits until `relay local stop`.
- a run that needs a model calls `ensure_server`; a server it has to start is
  ``started_by="run"``. Every relay process using it is listed in the state
  file, and the last one to exit stops it (`LocalServer.close`, registered
  with atexit), so runs can share a server without pulling it from under
  each other. `relay local start` on a run's server makes it permanent.

Starting is serialised per model with a file lock, so two relay processes
never start the same model twice.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from relaycode import paths
from relaycode.atomic import atomic_write
from relaycode.errors import ProviderError
from relaycode.local import LocalModelError
from relaycode.local.catalog import LocalModel, get
from relaycode.local.runtime import installed_binary
from relaycode.local.weights import installed_model_path

HOST = "127.0.0.1"
StartedBy = Literal["cli", "run"]

#: Prompt-cache budget per server (MiB). llama-server defaults to 8 GiB, which
#: with several models loaded could take most of the machine's memory.
CACHE_RAM_MIB = 1024


@dataclass(frozen=True)
class ServerHandle:
    """A running local server. `base_url` is what an OpenAI-compatible client needs."""

    model: str
    port: int
    pid: int
    started_by: StartedBy
    log_path: str
    started_at: float
    # Managers ("<pid>-<id>") using a run-started server; it stops when the last live one closes.
    users: tuple[str, ...] = ()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}"


DEFAULT_SLOTS = 4
"""Parallel slots per server (`RELAY_LOCAL_SLOTS` overrides): as many as sampled candidates usually are."""


def slot_count() -> int:
    """Parallel slots of the servers relay starts: also the most answers one request may ask for (`n`)."""
    try:
        return max(1, int(os.environ.get("RELAY_LOCAL_SLOTS") or DEFAULT_SLOTS))
    except ValueError:
        return DEFAULT_SLOTS


def server_command(binary: Path, model_file: Path, model: LocalModel, port: int) -> list[str]:
    """The `llama-server` command line for `model` (see docs/local-models.md for why each flag)."""
    threads = os.environ.get("RELAY_LOCAL_THREADS") or str(os.cpu_count() or 2)
    slots = str(slot_count())
    return [
        str(binary),
        "--host", HOST, "--port", str(port),
        "-m", str(model_file),
        "--alias", model.name,  # the name clients send and /v1/models lists
        "-c", str(model.context),  # default would be the training context: 32k KV for Qwen
        "--threads", threads,
        # Slots batch concurrent requests (sampled candidates): on 2 busy cores 4 requests took 47 s
        # together against 143 s one after another (docs/benchmarks.md). The KV cache is one unified
        # pool, so a lone request still gets the whole context.
        "--parallel", str(slots),
        "--jinja",  # the model's own chat template (tools, system prompts)
        "--cache-ram", str(CACHE_RAM_MIB),
        "--no-webui",
        "--kv-unified",
        *_repack_args(),
    ]  # fmt: skip


def _repack_args() -> list[str]:
    """`--no-repack` on CPUs with AMX: llama.cpp's AMX weight repacking crashed llama-server at start-up
    (SIGSEGV in ggml_backend_amx_mul_mat, llama-cpp-python 0.3.36, Xeon with amx_int8, 2026-12-01);
    without repacking it serves normally. Other CPUs keep the faster repacked weights."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return []
    return ["--no-repack"] if " amx" in flags else []


# --- state files -------------------------------------------------------------------------------


def _state_file(model: str) -> Path:
    return paths.state_dir() / f"server-{model}.json"


def _log_file(model: str) -> Path:
    return paths.logs_dir() / f"llama-server-{model}.log"


def _read_state(model: str) -> ServerHandle | None:
    try:
        data = json.loads(_state_file(model).read_text())
        # Ignore unknown keys: a state file from another relay version must still be found and stopped.
        known = {k: v for k, v in data.items() if k in ServerHandle.__dataclass_fields__}
        known["users"] = tuple(known.get("users", ()))
        return ServerHandle(**known)
    except (OSError, ValueError, TypeError):
        return None


def _live_users(users: tuple[str, ...]) -> tuple[str, ...]:
    """The user tokens whose relay process is still alive."""
    live = []
    for user in users:
        with contextlib.suppress(ValueError):
            if _pid_alive(int(user.split("-", 1)[0])):
                live.append(user)
    return tuple(live)


def _write_state(handle: ServerHandle) -> None:
    atomic_write(_state_file(handle.model), json.dumps(asdict(handle), indent=2) + "\n")


def _remove_state(model: str) -> None:
    _state_file(model).unlink(missing_ok=True)


@contextlib.contextmanager
def _model_lock(model: str) -> Iterator[None]:
    with (paths.state_dir() / f"server-{model}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- processes ---------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(handle: ServerHandle) -> bool:
    """The pid is alive and still our llama-server (pids get reused; zombies have no cmdline)."""
    if not _pid_alive(handle.pid):
        return False
    cmdline = Path(f"/proc/{handle.pid}/cmdline")
    if not cmdline.parent.exists():  # no procfs (macOS): trust the pid
        return True
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    # args[1] too: a script run through its interpreter (tests use a fake server) shows up that way.
    named = any(arg.endswith(b"llama-server") for arg in args[:2])
    return named and str(handle.port).encode() in args


def process_rss(pid: int) -> int | None:
    """Resident memory of `pid` in bytes (Linux), None when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _health(handle: ServerHandle, timeout: float = 2.0) -> int | None:
    """HTTP status of GET /health (200 ready, 503 loading), None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{handle.root_url}/health", timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def log_tail(path: str | Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


def _last_error_line(path: str | Path) -> str:
    """The most telling log line for a one-line error: the last one mentioning an error, else the last."""
    tail = [line.strip() for line in log_tail(path, 40).splitlines() if line.strip()]
    errors = [line for line in tail if "error" in line.lower() or "failed" in line.lower()]
    return (errors or tail or ["(empty log)"])[-1][:300]


def _exited(pid: int) -> bool:
    """True when `pid` is gone; reaps it when it is our child, since a zombie still answers kill(0)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # not our child: its parent reaps it
    return not _pid_alive(pid)


def _terminate(pid: int, proc: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and _exited(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=5)


# --- the manager -------------------------------------------------------------------------------


class LocalServer:
    """Finds or starts local servers; on `close` releases them, stopping run servers nobody uses any more.

    Every manager that uses a run-started server adds a token to the state
    file's `users`; the server stops when the last live user releases it, so a
    run never pulls a server from under another run that reuses it. Use as a
    context manager, or through `ensure_server`, whose process-wide instance is
    closed at exit.
    """

    def __init__(self, *, startup_timeout_s: float = 180.0) -> None:
        self.startup_timeout_s = startup_timeout_s
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._using: dict[str, int] = {}  # model -> pid of the server this manager uses
        self._children: dict[str, subprocess.Popen[bytes]] = {}  # servers this manager spawned

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure(self, model_name: str, *, persistent: bool = False) -> ServerHandle:
        """A healthy server for `model_name`, reusing a running one. `persistent` = `relay local start`."""
        model = get(model_name)
        with _model_lock(model.name):
            handle = _read_state(model.name)
            if handle is not None and _is_our_server(handle):
                self._wait_healthy(handle, None)
                handle = self._claim(handle, persistent)
            else:
                _remove_state(model.name)
                handle = self._start(model, persistent)
            if handle.started_by == "run":
                self._using[model.name] = handle.pid
            return handle

    def _claim(self, handle: ServerHandle, persistent: bool) -> ServerHandle:
        if persistent:
            # `relay local start` on a run's server makes it permanent.
            handle = replace(handle, started_by="cli", users=())
        elif handle.started_by == "run":
            handle = replace(handle, users=(*_live_users(handle.users), self.token))
        else:
            return handle
        _write_state(handle)
        return handle

    def _start(self, model: LocalModel, persistent: bool) -> ServerHandle:
        binary = installed_binary()
        model_file = installed_model_path(model)
        log_path = _log_file(model.name)
        last_error: LocalModelError | None = None
        for _attempt in range(3):  # a free port can be taken between our probe and the server's bind
            port = _free_port()
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    server_command(binary, model_file, model, port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in relay must not kill `relay local start` servers
                )
            handle = ServerHandle(
                model=model.name,
                port=port,
                pid=proc.pid,
                started_by="cli" if persistent else "run",
                log_path=str(log_path),
                started_at=time.time(),
                users=() if persistent else (self.token,),
            )
            _write_state(handle)  # before waiting: a crash of relay now still leaves a findable server
            try:
                self._wait_healthy(handle, proc)
            except LocalModelError as exc:
                _terminate(proc.pid, proc)
                _remove_state(model.name)
                last_error = exc
                if "bind" in log_tail(log_path, 30).lower():
                    continue
                raise
            self._children[model.name] = proc
            return handle
        assert last_error is not None
        raise last_error

    def _wait_healthy(self, handle: ServerHandle, proc: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            died = proc.poll() is not None if proc is not None else not _is_our_server(handle)
            if died:
                raise LocalModelError(
                    f"llama-server for {handle.model} exited during start-up: "
                    f"{_last_error_line(handle.log_path)!r} (full log: {handle.log_path})"
                )
            if _health(handle) == 200:
                return
            if time.monotonic() > deadline:
                raise LocalModelError(
                    f"llama-server for {handle.model} not ready after {self.startup_timeout_s:.0f} s: "
                    f"{_last_error_line(handle.log_path)!r} (full log: {handle.log_path})"
                )
            time.sleep(0.1)

    def close(self) -> None:
        """Release every server this manager used; stop run-started ones left without a live user."""
        for name, pid in list(self._using.items()):
            with _model_lock(name):
                handle = _read_state(name)
                if handle is not None and handle.pid == pid and handle.started_by == "run":
                    users = tuple(u for u in _live_users(handle.users) if u != self.token)
                    if users:
                        _write_state(replace(handle, users=users))
                    else:
                        _terminate(pid, self._children.get(name))
                        _remove_state(name)
            del self._using[name]
        for proc in self._children.values():
            proc.poll()  # reap the ones that exited; the others now belong to someone else
        self._children.clear()


_default: LocalServer | None = None


def _default_manager() -> LocalServer:
    global _default
    if _default is None:
        _default = LocalServer()
        atexit.register(_default.close)
    return _default


def ensure_server(model_name: str, *, persistent: bool = False) -> ServerHandle:
    """A healthy server for `model_name`; one started here is stopped when this relay process exits."""
    return _default_manager().ensure(model_name, persistent=persistent)


def running_servers() -> list[ServerHandle]:
    """Servers with a state file whose process is alive; stale state files are removed."""
    handles = []
    for path in sorted(paths.state_dir().glob("server-*.json")):
        name = path.stem.removeprefix("server-")
        handle = _read_state(name)
        if handle is not None and _is_our_server(handle):
            handles.append(handle)
        else:
            path.unlink(missing_ok=True)
    return handles


def stop_server(model_name: str) -> bool:
    """Stop the server of `model_name`, whoever started it. False when none was running."""
    with _model_lock(model_name):
        handle = _read_state(model_name)
        _remove_state(model_name)
        if handle is None or not _is_our_server(handle):
            return False
        proc = _default._children.pop(model_name, None) if _default is not None else None
        _terminate(handle.pid, proc)
        return True


def check_alive(handle: ServerHandle) -> None:
    """Raise `ProviderError(kind="connection")` when the server of `handle` is gone, naming its log."""
    if _is_our_server(handle) and _health(handle) is not None:
        return
    raise ProviderError(
        f"the local model server for {handle.model} (pid {handle.pid}, port {handle.port}) died or stopped "
        f"answering: {_last_error_line(handle.log_path)!r} (full log: {handle.log_path})",
        kind="connection",
        model=handle.model,
    )
