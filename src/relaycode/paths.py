"""Where relay keeps its own files (models, the llama-server runtime, logs, state).

Everything lives under one *relay home*: `$RELAY_HOME` when set, else
`~/.cache/relay`. Directories are created when first asked for, never at
import, so importing relay has no effect on the file system.
"""

from __future__ import annotations

import os
from pathlib import Path


def relay_home() -> Path:
    """The relay home: `$RELAY_HOME` or `~/.cache/relay` (not created here)."""
    env = os.environ.get("RELAY_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "relay"


def _subdir(name: str) -> Path:
    path = relay_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Verified model files (`<name>.gguf` + `<name>.gguf.sha256`)."""
    return _subdir("models")


def downloads_dir() -> Path:
    """Downloaded wheels and sources, kept until their content is installed so setup can resume."""
    return _subdir("downloads")


def runtime_dir() -> Path:
    """The `llama-server` binary and its build metadata."""
    return _subdir("runtime")


def logs_dir() -> Path:
    """Logs of local servers and of the runtime build."""
    return _subdir("logs")


def state_dir() -> Path:
    """Small state files, e.g. one per running local server."""
    return _subdir("state")
