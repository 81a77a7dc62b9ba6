"""The local runtime: llama.cpp's own `llama-server`, built from source on the user's machine.

Why build: the only llama.cpp on the package registry that we can pin is the
`llama-cpp-python` sdist, which vendors llama.cpp at `vendor/llama.cpp`. Its
own Python server loads one model at a time, rejects `tool_choice="required"`
and offers only `json_object`; `llama-server` serves the OpenAI API with
JSON-schema constrained output at native speed. So we download that sdist with
pip, build only the `llama-server` target, and copy the binary to
`runtime/llama-server` with a `llama-server.json` that records its version.

Users who already have a `llama-server` can install it instead
(`install_runtime_binary`, `relay local setup --llama-server PATH`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaycode import paths
from relaycode.atomic import atomic_write, replacing
from relaycode.local import LocalModelError, NullProgress, Progress

#: The sdist that vendors llama.cpp, and the sha256 of its tar.gz (checked before building).
SOURCE_PACKAGE = ("llama-cpp-python", "0.3.36")
SOURCE_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

#: CMake cache options. LLAMA_USE_PREBUILT_UI=OFF matters: the default downloads
#: a web UI at configure time, and relay fetches nothing but registry packages.
CMAKE_OPTIONS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary we can copy
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",  # no model downloads from inside the server
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DGGML_NATIVE=ON",  # tuned to this CPU; the binary stays on this machine
)

BINARY_NAME = "llama-server"


def binary_path() -> Path:
    """Where relay keeps its `llama-server` (it may not exist yet)."""
    return paths.runtime_dir() / BINARY_NAME


def _info_path() -> Path:
    return paths.runtime_dir() / f"{BINARY_NAME}.json"


def build_log_path() -> Path:
    return paths.logs_dir() / "llama-server-build.log"


@dataclass(frozen=True)
class BuildTools:
    """The programs a build needs."""

    cmake: str
    ninja: str
    cc: str
    cxx: str


@dataclass(frozen=True)
class RuntimeStatus:
    present: bool
    path: Path
    version: str = ""  # first line of `llama-server --version`
    source: str = ""  # how it got there
    installed_at: str = ""
    build_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def binary_version(binary: Path) -> str:
    """`llama-server --version`, e.g. "version: 0.5.0-dev (build 1, commit 0c1e570)"."""
    try:
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalModelError(f"{binary} does not run: {exc}") from None
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "version" not in out:
        flat = " ".join(out.split())[-300:]
        raise LocalModelError(f"{binary} is not a working llama-server: {flat or 'no output'}")
    return next(line for line in out.splitlines() if "version" in line).strip()


def install_runtime_binary(binary: Path, *, source: str, build_seconds: float | None = None) -> Path:
    """Copy a working `llama-server` into the runtime dir and record its version; return the new path."""
    binary = binary.expanduser().resolve()
    version = binary_version(binary)
    dest = binary_path()
    with replacing(dest, temp_suffix=".tmp") as tmp:  # a running server keeps its old inode
        shutil.copy2(binary, tmp)
        tmp.chmod(0o755)
    info = {
        "version": version,
        "source": source,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": build_seconds,
        "sha256": hashlib.sha256(dest.read_bytes()).hexdigest(),
    }
    atomic_write(_info_path(), json.dumps(info, indent=2) + "\n")
    return dest


def runtime_status() -> RuntimeStatus:
    """Whether relay's `llama-server` is installed, and what it is."""
    path = binary_path()
    if not path.is_file():
        return RuntimeStatus(present=False, path=path)
    try:
        info = json.loads(_info_path().read_text())
    except (OSError, ValueError):
        info = {}
    return RuntimeStatus(
        present=True,
        path=path,
        version=str(info.get("version", "")),
        source=str(info.get("source", "")),
        installed_at=str(info.get("installed_at", "")),
        build_seconds=info.get("build_seconds"),
        extra={k: v for k, v in info.items() if k == "sha256"},
    )


def installed_binary() -> Path:
    """relay's `llama-server`, or a `LocalModelError` telling how to install it."""
    path = binary_path()
    if not path.is_file():
        raise LocalModelError("the local runtime (llama-server) is not installed: run `relay local setup`")
    return path


# --- building -----------------------------------------------------------------------------------


def _private_build_tools(progress: Progress) -> tuple[str, str]:
    """cmake and ninja from the package registry, in a venv of their own (never the user's env)."""
    venv = paths.runtime_dir() / "build-tools"
    bindir = venv / "bin"
    cmake, ninja = bindir / "cmake", bindir / "ninja"
    if not (cmake.is_file() and ninja.is_file()):
        progress.note("cmake/ninja not found on PATH: installing them into a private build venv")
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(bindir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--only-binary", ":all:", "cmake", "ninja"],
        ]  # fmt: skip
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise LocalModelError(
                    f"could not install cmake and ninja for the build ({' '.join(cmd[:4])} …): "
                    f"{' '.join((proc.stderr or proc.stdout).split())[-300:]}; install cmake and ninja yourself"
                )
    return str(cmake), str(ninja)


def find_build_tools(progress: Progress | None = None) -> BuildTools:
    """System cmake/ninja when present (else a private copy from the registry) and a C/C++ compiler."""
    progress = progress or NullProgress()
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cc or not cxx:
        raise LocalModelError(
            "building the local runtime needs a C and C++ compiler, none found: install one "
            "(Debian/Ubuntu: `sudo apt-get install build-essential`) or pass an existing binary "
            "with `relay local setup --llama-server PATH`"
        )
    cmake, ninja = shutil.which("cmake"), shutil.which("ninja")
    if not cmake or not ninja:
        cmake, ninja = _private_build_tools(progress)
    return BuildTools(cmake=cmake, ninja=ninja, cc=cc, cxx=cxx)


def build_commands(source: Path, build: Path, tools: BuildTools, jobs: int) -> list[list[str]]:
    """The configure and build commands for `llama-server` from llama.cpp at `source`."""
    configure = [
        tools.cmake, "-S", str(source), "-B", str(build), "-G", "Ninja",
        f"-DCMAKE_MAKE_PROGRAM={tools.ninja}",
        f"-DCMAKE_C_COMPILER={tools.cc}", f"-DCMAKE_CXX_COMPILER={tools.cxx}",
        *CMAKE_OPTIONS,
    ]  # fmt: skip
    compile_ = [tools.cmake, "--build", str(build), "--target", BINARY_NAME, f"-j{jobs}"]
    return [configure, compile_]


def sdist_download_command(dest: Path) -> list[str]:
    name, version = SOURCE_PACKAGE
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--quiet", "-d", str(dest), f"{name}=={version}",
    ]  # fmt: skip


_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")


def _run_logged(cmd: list[str], log: Any, progress: Progress, what: str) -> None:
    """Run `cmd`, appending its output to `log`; ninja's `[n/m]` lines drive the progress bar."""
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    done = 0
    started = False
    for line in proc.stdout:
        log.write(line)
        step = _NINJA_STEP.match(line)
        if step:
            n, total = int(step.group(1)), int(step.group(2))
            if not started:
                progress.begin(f"build {BINARY_NAME}", total, unit="items")
                started = True
            progress.advance(n - done)
            done = n
    rc = proc.wait()
    log.flush()
    if started:
        progress.end()
    if rc != 0:
        raise LocalModelError(f"{what} failed (exit {rc}); see the build log {log.name}")


def _download_source(dest: Path, progress: Progress) -> Path:
    name, version = SOURCE_PACKAGE
    pattern = f"{name.replace('-', '_')}-{version}.tar.gz"
    found = dest / pattern
    if not found.is_file():
        progress.note(f"downloading {name}=={version} (the llama.cpp sources)")
        proc = subprocess.run(sdist_download_command(dest), capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not found.is_file():
            raise LocalModelError(
                f"pip could not download {name}=={version}: {' '.join((proc.stderr or proc.stdout).split())[-300:]}"
            )
    digest = hashlib.sha256(found.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        found.unlink()
        raise LocalModelError(
            f"sha256 mismatch for {found.name}: got {digest}, expected {SOURCE_SHA256}; deleted it"
        )
    return found


def build_runtime(*, progress: Progress | None = None, jobs: int | None = None) -> Path:
    """Download the llama.cpp sources with pip, build `llama-server`, install it; return its path."""
    progress = progress or NullProgress()
    tools = find_build_tools(progress)
    downloads = paths.downloads_dir() / "runtime"
    downloads.mkdir(parents=True, exist_ok=True)
    sdist = _download_source(downloads, progress)
    log_path = build_log_path()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="relay-build-") as tmp, log_path.open("w") as log:
        progress.note(f"building {BINARY_NAME} (several minutes; log: {log_path})")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        roots = [p for p in Path(tmp).iterdir() if p.is_dir()]
        source = roots[0] / "vendor" / "llama.cpp" if len(roots) == 1 else Path(tmp) / "missing"
        if not (source / "CMakeLists.txt").is_file():
            raise LocalModelError(f"{sdist.name} has no vendor/llama.cpp; cannot build the runtime")
        build = Path(tmp) / "build"
        for cmd, what in zip(
            build_commands(source, build, tools, jobs or os.cpu_count() or 2),
            ("cmake configure", "build"),
            strict=True,
        ):
            _run_logged(cmd, log, progress, what)
        seconds = round(time.monotonic() - started, 1)
        built = build / "bin" / BINARY_NAME
        if not built.is_file():
            raise LocalModelError(f"the build finished but {built} is missing; see {log_path}")
        name, version = SOURCE_PACKAGE
        path = install_runtime_binary(
            built, source=f"built from {name}=={version} vendor/llama.cpp", build_seconds=seconds
        )
    progress.note(f"{BINARY_NAME}: built in {seconds:.0f} s -> {path}")
    return path


def ensure_runtime(*, progress: Progress | None = None, builder: Callable[..., Path] | None = None) -> Path:
    """relay's `llama-server`, building it first if it is absent. Idempotent."""
    path = binary_path()
    if path.is_file():
        return path
    return (builder or build_runtime)(progress=progress)
