"""`relay local setup --preset NAME` installs the local models of any preset that has them."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Relay


@pytest.fixture
def installs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Record what setup would install instead of building and downloading it."""
    import relaycode.local.runtime as runtime
    import relaycode.local.weights as weights

    done: list[str] = []
    monkeypatch.setenv("RELAY_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(runtime, "ensure_runtime", lambda progress=None: done.append("runtime") or tmp_path / "bin")
    monkeypatch.setattr(weights, "ensure_model", lambda model, progress=None: done.append(model.name) or tmp_path)
    return done


@pytest.mark.parametrize(("preset", "models"), [
    ("smoke", ["smollm2-135m"]),
    ("local-cascade", ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]),
    ("local", ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]),
])
def test_setup_accepts_every_preset_with_local_models(relay: Relay, installs: list[str], preset: str,
                                                     models: list[str]) -> None:
    result = relay("local", "setup", "--preset", preset)
    assert result.exit_code == 0, result.output
    assert installs == ["runtime", *models]


def test_setup_of_a_preset_without_local_models_is_a_usage_error(relay: Relay, installs: list[str]) -> None:
    result = relay("local", "setup", "--preset", "api")
    assert result.exit_code == 2 and installs == []
    assert result.stderr.strip() == "relay: error: --preset api: uses no local model; nothing to set up"
