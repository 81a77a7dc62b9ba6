"""The server manager, driven against a fake `llama-server` (a tiny Python HTTP server).

The fake speaks just enough of llama-server (`--version`, `--port`, `GET /health`)
to exercise start-up, reuse, ownership, stopping and failure reporting without
a real model. The real server is covered by test_integration.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaycode import paths
from relaycode.errors import ProviderError
from relaycode.local import LocalModelError, catalog
from relaycode.local.runtime import install_runtime_binary
from relaycode.local.server import (
    LocalServer,
    ServerHandle,
    check_alive,
    running_servers,
    server_command,
    stop_server,
)
from relaycode.local.weights import ensure_model

from .fakes import FakeIndex, fake_model

FAKE_SERVER = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
args = sys.argv[1:]
if "--version" in args:
    print("version: 0.0.1 (build 1, commit fake)", file=sys.stderr)
    sys.exit(0)
mode = os.environ.get("FAKE_LLAMA_MODE", "ok")
print("fake llama-server starting", flush=True)
if mode == "crash":
    print("llama_model_load: error: failed to load model 'x.gguf'", flush=True)
    sys.exit(1)
port = int(args[args.index("--port") + 1])

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if mode == "loading" else 200
        self.send_response(code if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def _pid_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and not cmdline.read_bytes():
            return True  # a zombie: exited, waiting for its parent to reap it
        time.sleep(0.05)
    return False


@pytest.fixture
def fake_setup(
    relay_home: Path, tmp_path: Path, fake_index: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A relay home with the fake server as runtime and an installed fake model; yields the model name."""
    script = tmp_path / "llama-server"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_SERVER))
    script.chmod(0o755)
    install_runtime_binary(script, source="test")
    model = fake_model()
    monkeypatch.setitem(catalog.CATALOG, model.name, model)
    fake_index.add(model)
    ensure_model(model, downloader=fake_index)
    yield model.name
    for handle in running_servers():
        stop_server(handle.model)


def test_server_command_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_LOCAL_THREADS", raising=False)
    monkeypatch.delenv("RELAY_LOCAL_SLOTS", raising=False)
    model = catalog.get("qwen2.5-coder-0.5b")
    cmd = server_command(Path("/rt/llama-server"), Path("/m/q.gguf"), model, 4321)
    assert cmd[0] == "/rt/llama-server"
    pairs = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "4321"
    assert pairs["-m"] == "/m/q.gguf" and pairs["-c"] == str(model.context)
    assert pairs["--parallel"] == "4" and pairs["--alias"] == "qwen2.5-coder-0.5b"
    assert "--jinja" in cmd and "--kv-unified" in cmd  # one KV pool: a lone request keeps the whole context
    monkeypatch.setenv("RELAY_LOCAL_SLOTS", "2")
    cmd = server_command(Path("/rt/llama-server"), Path("/m/q.gguf"), model, 4321)
    assert dict(zip(cmd[1::2], cmd[2::2], strict=False))["--parallel"] == "2"


def test_run_started_server_is_reused_and_stopped_on_close(fake_setup: str, relay_home: Path) -> None:
    with LocalServer() as servers:
        first = servers.ensure(fake_setup)
        again = servers.ensure(fake_setup)
        assert again.pid == first.pid and again.port == first.port
        assert first.base_url == f"http://127.0.0.1:{first.port}/v1"
        assert first.started_by == "run"
        assert [h.pid for h in running_servers()] == [first.pid]
        check_alive(first)
        state = json.loads((relay_home / "state" / f"server-{fake_setup}.json").read_text())
        assert state["pid"] == first.pid and state["started_by"] == "run"
    assert _pid_gone(first.pid)
    assert running_servers() == []


def test_cli_started_server_outlives_the_manager_until_stopped(fake_setup: str) -> None:
    with LocalServer() as servers:
        handle = servers.ensure(fake_setup, persistent=True)
    assert [h.pid for h in running_servers()] == [handle.pid], "a `relay local start` server keeps running"
    assert stop_server(fake_setup) is True
    assert _pid_gone(handle.pid)
    assert stop_server(fake_setup) is False
    with pytest.raises(ProviderError) as info:
        check_alive(handle)
    assert info.value.kind == "connection" and info.value.retryable
    assert "died" in str(info.value) and handle.log_path in str(info.value)


def test_local_start_promotes_a_run_server(fake_setup: str) -> None:
    run = LocalServer()
    handle = run.ensure(fake_setup)
    promoted = LocalServer().ensure(fake_setup, persistent=True)
    assert promoted.pid == handle.pid and promoted.started_by == "cli"
    run.close()
    assert [h.pid for h in running_servers()] == [handle.pid], "the run no longer owns it"


def test_a_run_server_stops_only_when_its_last_user_closes(fake_setup: str) -> None:
    first, second = LocalServer(), LocalServer()
    handle = first.ensure(fake_setup)
    assert second.ensure(fake_setup).pid == handle.pid
    first.close()  # the run that started it ends while another still uses it
    assert [h.pid for h in running_servers()] == [handle.pid]
    check_alive(handle)
    second.close()
    assert _pid_gone(handle.pid)
    assert running_servers() == []


def test_users_whose_process_died_do_not_keep_a_server_alive(fake_setup: str, relay_home: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    manager = LocalServer()
    handle = manager.ensure(fake_setup)
    state = paths.state_dir() / f"server-{fake_setup}.json"
    data = json.loads(state.read_text())
    data["users"].append(f"{dead.pid}-deadbeef")
    state.write_text(json.dumps(data))
    manager.close()
    assert _pid_gone(handle.pid)


def test_server_dying_at_start_up_reports_the_log(
    fake_setup: str, monkeypatch: pytest.MonkeyPatch, relay_home: Path
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "crash")
    with LocalServer() as servers, pytest.raises(LocalModelError) as info:
        servers.ensure(fake_setup)
    message = str(info.value)
    assert "exited during start-up" in message and "failed to load model" in message
    assert str(relay_home / "logs" / f"llama-server-{fake_setup}.log") in message
    assert "\n" not in message, "CLI errors are one line"
    assert running_servers() == []


def test_server_that_never_gets_ready_times_out(fake_setup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "loading")
    with (
        LocalServer(startup_timeout_s=1.0) as servers,
        pytest.raises(LocalModelError, match="not ready after 1 s"),
    ):
        servers.ensure(fake_setup)
    assert running_servers() == []


def test_stale_state_file_is_cleaned_up(fake_setup: str, relay_home: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = ServerHandle(fake_setup, 1, dead.pid, "cli", "/nonexistent.log", 0.0)
    (paths.state_dir() / f"server-{fake_setup}.json").write_text(json.dumps(stale.__dict__))
    assert running_servers() == []
    assert not (relay_home / "state" / f"server-{fake_setup}.json").exists()


def test_missing_model_says_how_to_install(
    relay_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "llama-server"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_SERVER))
    script.chmod(0o755)
    install_runtime_binary(script, source="test")
    with (
        LocalServer() as servers,
        pytest.raises(LocalModelError, match="relay local setup --models smollm2-135m"),
    ):
        servers.ensure("smollm2-135m")


def test_missing_runtime_says_how_to_install(relay_home: Path) -> None:
    with (
        LocalServer() as servers,
        pytest.raises(LocalModelError, match=r"runtime .* not installed.*relay local setup"),
    ):
        servers.ensure("smollm2-135m")


def test_on_demand_server_stops_when_relay_exits(fake_setup: str, relay_home: Path) -> None:
    # A separate relay process: the atexit hook, not the test, must stop the server.
    code = textwrap.dedent(
        f"""
        from relaycode.local import catalog
        from relaycode.local.server import ensure_server
        import sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from local.fakes import fake_model
        m = fake_model()
        catalog.CATALOG[m.name] = m
        print(ensure_server(m.name).pid)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        check=True,
    )
    pid = int(out.stdout.strip())
    assert _pid_gone(pid)
    assert running_servers() == []


def test_no_repack_exactly_on_cpus_with_amx() -> None:
    """llama.cpp's AMX repacking crashed llama-server at start-up on an AMX Xeon (measured): off there only."""
    from relaycode.local.server import server_command

    model = catalog.get("qwen2.5-coder-0.5b")
    cmd = server_command(Path("/rt/llama-server"), Path("/m/q.gguf"), model, 4321)
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    assert ("--no-repack" in cmd) == (" amx" in flags)
