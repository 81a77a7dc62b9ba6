"""Suite-wide guards: no test can reach a model provider or any non-loopback host.

- pydantic-ai's ALLOW_MODEL_REQUESTS is False for every test; tests that talk
  to a loopback server (the fake OpenAI server, the real local llama-server)
  opt in with the `allow_model_requests` fixture.
- Sockets may connect only to loopback addresses (and Unix sockets), so even
  an opted-in test cannot reach a provider.
- Provider keys are removed from the environment, and relay's home is a temp dir.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest

_PROVIDER_KEYS = (
    "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENROUTER_API_KEY",
    "GITHUB_TOKEN", "OPENAI_BASE_URL",
)
_real_connect = socket.socket.connect


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # Unix socket path
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"test suite: network access to {address!r} is blocked")
    _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> Iterator[None]:
    import pydantic_ai.models

    pydantic_ai.models.ALLOW_MODEL_REQUESTS = False
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for key in _PROVIDER_KEYS:
        monkeypatch.delenv(key, raising=False)
    # RELAY_HOME stays as it is: the local runtime and weights installed by
    # `scripts/dev test` are shared. The run history goes to a per-test file.
    monkeypatch.setenv("RELAY_HISTORY_DB", str(tmp_path_factory.mktemp("history") / "history.db"))
    # The user's own config and trusted repositories must not shape a test (nor a test write them).
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))


@pytest.fixture
def allow_model_requests() -> Iterator[None]:
    """Opt in to model requests: only loopback servers are reachable anyway."""
    from pydantic_ai.models import override_allow_model_requests

    with override_allow_model_requests(True):
        yield


@pytest.fixture
def resolved_specs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model names `models.resolve` is called with during the test, in order (it still resolves them)."""
    from relaycode import models

    calls: list[str] = []
    real = models.resolve

    def counting(spec: str, config: object = None) -> models.ResolvedModel:
        calls.append(spec)
        return real(spec, config)  # type: ignore[arg-type]

    monkeypatch.setattr(models, "resolve", counting)
    return calls
