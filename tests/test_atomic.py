"""atomic.py: relay's own files are replaced in one step, or not at all."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from relaycode.atomic import atomic_write, replacing


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_replaces_the_file_privately_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    atomic_write(path, "one")  # the directory is made
    assert path.read_text() == "one" and _mode(path) == 0o600
    atomic_write(path, b"two", mode=0o644)
    assert path.read_bytes() == b"two" and _mode(path) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no temporary file left


def test_a_failure_keeps_the_old_content_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    atomic_write(path, "old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_fixed_temporary_name_is_reused_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    (tmp_path / "model.gguf.partial").write_text("left by a killed process")
    with pytest.raises(ValueError), replacing(path, temp_suffix=".partial") as tmp:
        assert tmp.name == "model.gguf.partial"
        raise ValueError("hash mismatch")
    assert list(tmp_path.iterdir()) == []  # the stale copy went with the failed one
    with replacing(path, temp_suffix=".partial") as tmp:
        tmp.write_text("verified")
    assert path.read_text() == "verified" and [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_no_other_module_renames_files_into_place_itself() -> None:
    """One home: os.replace / rename-over only in atomic.py (and pathsafety's in-repository variant)."""
    import relaycode

    package = Path(relaycode.__file__).parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if p.name not in ("atomic.py", "pathsafety.py")
                 and any(s in p.read_text(encoding="utf-8") for s in ("os.replace(", ".replace(path)", "os.rename("))]
    moves_not_writes = {"gitguard.py",  # moves a directory aside, not a file written
                        "local/weights.py"}  # moves a finished download from its scratch directory
    assert set(offenders) <= moves_not_writes, offenders
