"""Which repository configs the user trusts, recorded outside every repository.

A repository's `relay.toml` is the repository's say, not the user's: by default the settings
that weaken the sandbox, choose where requests and keys go, pass environment through or raise
a budget are ignored when they come from it (`config.RESTRICTED`). `relay trust` lifts that for
one file, as direnv's `allow` does: the file's resolved path and the sha256 of its bytes are
recorded in the user's config directory, so an edited file is untrusted again until the user
looks at it and trusts it anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from relaycode.errors import ConfigError

#: A repository config larger than this is not a config.
MAX_REPO_CONFIG_BYTES = 1 << 20


def store_path() -> Path:
    """`$XDG_CONFIG_HOME/relay/trusted.json` (default `~/.config/relay/trusted.json`)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "relay" / "trusted.json"


def read_repo_file(path: Path) -> bytes:
    """The bytes of a repository's config, read without following a symlink; ConfigError otherwise.

    Reads outside the sandbox follow the same rules as writes: a repository must not make relay
    read a file outside it (a `relay.toml` that links to another file) or block on a FIFO.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); relay does not follow links here") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if st.st_size > MAX_REPO_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_REPO_CONFIG_BYTES} bytes")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _load() -> dict[str, str]:
    path = store_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable as JSON ({exc}); remove it to trust nothing") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object; remove it to trust nothing")
    return {str(k): str(v) for k, v in data.items()}


def _save(entries: dict[str, str]) -> None:
    from relaycode.atomic import atomic_write

    atomic_write(store_path(), json.dumps(entries, indent=2, sort_keys=True) + "\n")  # private: mode 0600


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_trusted(path: Path, data: bytes) -> bool:
    """Whether the user trusted exactly these bytes at this path."""
    return _load().get(str(path.resolve())) == digest(data)


def trust(path: Path, data: bytes | None = None) -> str:
    """Record `data` (default: the file's current content) as trusted for `path`; returns its sha256.

    Pass the bytes the caller already read and showed: a second read could see a file rewritten
    in between, and that content would be trusted unseen."""
    data = read_repo_file(path) if data is None else data
    entries = _load()
    entries[str(path.resolve())] = digest(data)
    _save(entries)
    return entries[str(path.resolve())]


def revoke(path: Path) -> bool:
    """Forget the file; True if it was trusted."""
    entries = _load()
    found = entries.pop(str(path.resolve()), None) is not None
    if found:
        _save(entries)
    return found
