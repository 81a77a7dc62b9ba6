"""Tiny fake model wheels and a fake package index for the local-model tests."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from relaycode.local.catalog import LocalModel, wheel_module


def make_wheel(
    directory: Path,
    package: str,
    version: str,
    inner_path: str,
    data: bytes,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A minimal wheel holding `data` at `inner_path` (plus the metadata files a real one has)."""
    module = wheel_module(package)
    path = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr(f"{module}/__init__.py", "")
        zf.writestr(inner_path, data)
        zf.writestr(f"{module}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


PART_DATA = (b"GGUF" + b"a" * 5000, b"b" * 7000 + b"tail-of-2", b"c" * 3001)


def fake_model(name: str = "fake-model", parts: tuple[bytes, ...] = PART_DATA) -> LocalModel:
    """A catalog entry whose size and sha256 are those of `parts` concatenated in order."""
    blob = b"".join(parts)
    return LocalModel(
        name=name,
        title="Fake model for tests",
        vendor="test",
        packages=tuple((f"{name}-part{i}", "1.0.0") for i in range(1, len(parts) + 1)),
        inner_path="{module}/data/part{index:02d}.bin",
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        context=512,
    )


@dataclass
class FakeIndex:
    """Stands in for the package registry: serves prebuilt wheels and records what was asked for."""

    directory: Path
    calls: list[str] = field(default_factory=list)
    fail_on: set[str] = field(default_factory=set)

    def add(self, model: LocalModel, parts: tuple[bytes, ...] = PART_DATA) -> None:
        for part, data in zip(model.parts(), parts, strict=True):
            make_wheel(self.directory, part.package, part.version, part.inner_path, data)

    def wheel(self, package: str) -> Path:
        return next(self.directory.glob(f"{wheel_module(package)}-*.whl"))

    def __call__(self, package: str, version: str, dest: Path) -> None:
        from relaycode.local import LocalModelError

        self.calls.append(package)
        if package in self.fail_on:
            raise LocalModelError(f"pip could not download {package}=={version}: simulated network error")
        for wheel in self.directory.glob(f"{wheel_module(package)}-{version}-*.whl"):
            (dest / wheel.name).write_bytes(wheel.read_bytes())
