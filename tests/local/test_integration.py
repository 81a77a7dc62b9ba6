"""The real thing: llama-server with SmolLM2-135M, over HTTP.

Needs `relay local setup --models smollm2-135m` first (CI does it); skips with
the reason otherwise. The installed runtime and model are shared through
symlinks, while state and logs go to a private relay home, so these tests never
touch servers a developer started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaycode import paths
from relaycode.errors import ProviderError
from relaycode.local.catalog import get
from relaycode.local.runtime import runtime_status
from relaycode.local.server import LocalServer, check_alive, process_rss, running_servers
from relaycode.local.weights import model_status

pytestmark = pytest.mark.local_model

MODEL = "smollm2-135m"


def _missing() -> str | None:
    if not runtime_status().present:
        return (
            f"local runtime not installed in {paths.relay_home()}: run `relay local setup --models {MODEL}`"
        )
    if not model_status(get(MODEL)).verified:
        return f"{MODEL} not installed in {paths.relay_home()}: run `relay local setup --models {MODEL}`"
    return None


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    shared = paths.relay_home()
    home = tmp_path / "home"
    home.mkdir()
    for sub in ("models", "runtime"):
        (home / sub).symlink_to(shared / sub, target_is_directory=True)
    monkeypatch.setenv("RELAY_HOME", str(home))
    yield home
    for handle in running_servers():  # whatever a failing test left behind
        subprocess.run([sys.executable, "-m", "relaycode", "local", "stop", handle.model], check=False)


def test_chat_completion_over_http(private_home: Path) -> None:
    from openai import OpenAI

    with LocalServer() as servers:
        handle = servers.ensure(MODEL)
        client = OpenAI(base_url=handle.base_url, api_key="local", max_retries=0)
        resp = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Reply with one word: hello"}],
            max_tokens=16,
            temperature=0,
        )
        assert resp.choices[0].message.content
        assert resp.usage is not None and resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
        assert [m.id for m in client.models.list().data] == [MODEL]
    assert running_servers() == []


def test_json_schema_constrained_output(private_home: Path) -> None:
    from openai import OpenAI

    schema = {
        "type": "object",
        "properties": {
            "language": {"type": "string", "enum": ["python", "rust"]},
            "lines": {"type": "integer"},
        },
        "required": ["language", "lines"],
        "additionalProperties": False,
    }
    with LocalServer() as servers:
        handle = servers.ensure(MODEL)
        client = OpenAI(base_url=handle.base_url, api_key="local", max_retries=0)
        resp = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Describe a 3-line Python script as JSON."}],
            max_tokens=64,
            temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "script", "schema": schema}},
        )
    data = json.loads(resp.choices[0].message.content or "")
    assert data["language"] in ("python", "rust") and isinstance(data["lines"], int)
    assert set(data) == {"language", "lines"}


def test_cli_start_status_stop(private_home: Path) -> None:
    env = {**os.environ, "RELAY_HOME": str(private_home)}

    def relay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "relaycode", "local", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    started = relay("start", MODEL)
    assert started.returncode == 0, started.stderr
    assert f"{MODEL}: http://127.0.0.1:" in started.stdout

    status = json.loads(relay("status", "--json").stdout)
    (server,) = status["servers"]
    assert server["model"] == MODEL and server["started_by"] == "cli"
    assert server["rss"] and server["rss"] > 50_000_000, "the model is loaded"
    assert status["runtime"]["present"] and "version" in status["runtime"]["version"]
    assert next(m for m in status["models"] if m["name"] == MODEL)["verified"]

    (handle,) = running_servers()  # the `relay local start` process is gone, the server is not
    check_alive(handle)
    assert process_rss(handle.pid)

    stopped = relay("stop", MODEL)
    assert stopped.returncode == 0 and f"{MODEL}: stopped" in stopped.stdout
    assert json.loads(relay("status", "--json").stdout)["servers"] == []
    with pytest.raises(ProviderError, match="died or stopped answering"):
        check_alive(handle)


def test_pydantic_ai_client_path(private_home: Path, allow_model_requests: None) -> None:
    """relay's own client path: pydantic-ai's OpenAIChatModel against the local server."""
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    with LocalServer() as servers:
        handle = servers.ensure(MODEL)
        model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=handle.base_url, api_key="local"))
        result = Agent(model).run_sync("Say hello.", model_settings={"max_tokens": 16, "temperature": 0})
    assert isinstance(result.output, str) and result.output
    assert result.usage.output_tokens > 0
