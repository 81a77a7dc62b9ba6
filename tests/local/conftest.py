"""Fixtures for the local-model tests: a private relay home and a fake package index."""

from __future__ import annotations

from pathlib import Path

import pytest

from .fakes import FakeIndex


@pytest.fixture
def relay_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty relay home for tests that must not touch the shared one."""
    home = tmp_path / "relay-home"
    monkeypatch.setenv("RELAY_HOME", str(home))
    return home


@pytest.fixture
def fake_index(tmp_path: Path) -> FakeIndex:
    directory = tmp_path / "index"
    directory.mkdir()
    return FakeIndex(directory)
