"""The scratch copy a candidate or the generated checks run in (relaycode.scratch)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from relaycode import scratch
from relaycode.errors import RelayError, ScratchCopyError


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "wt"
    (root / "pkg" / ".git").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "pkg" / ".git" / "HEAD").write_text("ref\n")
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_copies_files_directories_and_modes_but_not_git_metadata(tmp_path: Path) -> None:
    copy = scratch.scratch_copy(_tree(tmp_path), tmp_path / "copy")
    assert (copy / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert stat.S_IMODE((copy / "run.sh").stat().st_mode) == 0o755
    assert not (copy / ".git").exists() and not (copy / "pkg" / ".git").exists()


def test_symlinks_are_copied_as_links_never_followed(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s\n")
    (root / "out").symlink_to(outside)
    (root / "dangling").symlink_to("nowhere")
    copy = scratch.scratch_copy(root, tmp_path / "copy")
    assert os.readlink(copy / "out") == str(outside)
    assert os.readlink(copy / "dangling") == "nowhere"


def test_special_files_are_skipped(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    os.mkfifo(root / "pkg" / "pipe")
    copy = scratch.scratch_copy(root, tmp_path / "copy")
    assert not (copy / "pkg" / "pipe").exists() and (copy / "pkg" / "mod.py").exists()


def test_holes_stay_holes(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    with open(root / "sparse.bin", "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
        fh.seek(1024 * 1024)
        fh.write(b"data")
    copy = scratch.scratch_copy(root, tmp_path / "copy")
    st = (copy / "sparse.bin").stat()
    assert st.st_size == 64 * 1024 * 1024
    assert st.st_blocks * 512 <= (root / "sparse.bin").stat().st_blocks * 512 + 64 * 1024
    with open(copy / "sparse.bin", "rb") as fh:
        fh.seek(1024 * 1024)
        assert fh.read(4) == b"data"


def test_hard_links_are_linked_within_the_copy_never_to_the_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "blob").write_bytes(b"x" * 4096)
    os.link(root / "blob", root / "pkg" / "again")
    copy = scratch.scratch_copy(root, tmp_path / "copy")
    assert (copy / "blob").stat().st_ino == (copy / "pkg" / "again").stat().st_ino
    assert (copy / "blob").stat().st_ino != (root / "blob").stat().st_ino
    (copy / "blob").write_bytes(b"changed in the copy")
    assert (root / "blob").read_bytes() == b"x" * 4096


def test_a_deep_chain_is_cut_at_max_depth_without_recursion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scratch, "MAX_DEPTH", 8)
    root = _tree(tmp_path)
    os.makedirs(root / "/".join(["d"] * 20))
    copy = scratch.scratch_copy(root, tmp_path / "copy")
    assert (copy / "/".join(["d"] * 8)).is_dir()
    assert not (copy / "/".join(["d"] * 9)).exists()


def test_set_uid_bits_are_not_copied(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "run.sh").chmod(0o4755)
    copy = scratch.scratch_copy(root, tmp_path / "copy")
    assert stat.S_IMODE((copy / "run.sh").stat().st_mode) == 0o755


@pytest.mark.parametrize("bound", ["MAX_BYTES", "MAX_ENTRIES"])
def test_a_tree_past_the_bounds_is_refused_with_a_relay_error(
        tmp_path: Path, bound: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scratch, bound, 3)
    root = _tree(tmp_path)
    (root / "data.bin").write_bytes(b"0123456789")
    with pytest.raises(ScratchCopyError) as caught:
        scratch.scratch_copy(root, tmp_path / "copy")
    assert isinstance(caught.value, RelayError) and str(root) in str(caught.value)


def test_a_copy_that_cannot_be_written_is_a_relay_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "copy_file_range", full)
    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(ScratchCopyError, match="No space left"):
        scratch.scratch_copy(_tree(tmp_path), tmp_path / "copy")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a directory of mode 000")
def test_what_cannot_be_read_is_skipped(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "closed").mkdir()
    (root / "closed").chmod(0)
    try:
        copy = scratch.scratch_copy(root, tmp_path / "copy")
    finally:
        (root / "closed").chmod(0o755)
    assert not (copy / "closed").exists() and (copy / "pkg" / "mod.py").exists()
