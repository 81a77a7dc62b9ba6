"""Shared by the repository-side attack batteries: throwaway git repositories made the same way."""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-c", "init.defaultBranch=main",
       "-c", "protocol.file.allow=always"]


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True)


def make_repo(path: Path, files: dict[str, str]) -> Path:
    """A new repository at `path` with `files` committed."""
    path.mkdir(parents=True)
    git("init", "-q", cwd=path)
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git("add", "-A", cwd=path)
    git("commit", "-qm", "init", cwd=path)
    return path
