"""The llama-server build: command construction, tool discovery, and the whole flow with a fake cmake."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from relaycode.local import LineProgress, LocalModelError, runtime
from relaycode.local.runtime import (
    BuildTools,
    build_commands,
    ensure_runtime,
    find_build_tools,
    install_runtime_binary,
    runtime_status,
    sdist_download_command,
)

TOOLS = BuildTools(cmake="/x/cmake", ninja="/x/ninja", cc="/x/cc", cxx="/x/c++")


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def _fake_server_binary(path: Path, version: str = "version: 9.9.9 (build 1, commit abc1234)") -> Path:
    return _script(path, f"import sys\nprint({version!r}, file=sys.stderr)\n")


def test_build_commands_build_only_llama_server_without_downloads() -> None:
    configure, build = build_commands(Path("/src"), Path("/b"), TOOLS, jobs=2)
    assert configure[:7] == ["/x/cmake", "-S", "/src", "-B", "/b", "-G", "Ninja"]
    for flag in (
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_USE_PREBUILT_UI=OFF",  # the default would download a web UI
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_BUILD_UI=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DGGML_NATIVE=ON",
        "-DCMAKE_MAKE_PROGRAM=/x/ninja",
        "-DCMAKE_CXX_COMPILER=/x/c++",
    ):
        assert flag in configure
    assert build == ["/x/cmake", "--build", "/b", "--target", "llama-server", "-j2"]


def test_sdist_download_command_pins_the_source_and_never_takes_wheels(tmp_path: Path) -> None:
    cmd = sdist_download_command(tmp_path)
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--no-binary", ":all:"} <= set(cmd)
    assert cmd[-1] == "llama-cpp-python==0.3.36"


def test_missing_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    with pytest.raises(LocalModelError, match=r"needs a C and C\+\+ compiler.*build-essential"):
        find_build_tools()


def test_missing_cmake_installs_a_private_copy(relay_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        runtime.shutil, "which", lambda name: None if name in ("cmake", "ninja") else f"/usr/bin/{name}"
    )
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "no network")

    monkeypatch.setattr(runtime.subprocess, "run", fake_run)
    with pytest.raises(LocalModelError, match=r"could not install cmake and ninja.*no network"):
        find_build_tools()
    assert seen[0][1:3] == ["-m", "venv"] and seen[0][3].startswith(str(relay_home))


def test_install_runtime_binary_records_the_version(relay_home: Path, tmp_path: Path) -> None:
    binary = _fake_server_binary(tmp_path / "llama-server")
    path = install_runtime_binary(binary, source="test")
    status = runtime_status()
    assert path == relay_home / "runtime" / "llama-server"
    assert status.present and status.version == "version: 9.9.9 (build 1, commit abc1234)"
    assert status.source == "test"


def test_install_rejects_a_binary_that_is_not_llama_server(relay_home: Path, tmp_path: Path) -> None:
    bogus = _script(tmp_path / "bogus", "import sys\nsys.exit(3)\n")
    with pytest.raises(LocalModelError, match="not a working llama-server"):
        install_runtime_binary(bogus, source="test")
    assert not runtime_status().present


def test_ensure_runtime_builds_only_when_absent(relay_home: Path, tmp_path: Path) -> None:
    calls: list[object] = []

    def builder(**kwargs: object) -> Path:
        calls.append(kwargs)
        return install_runtime_binary(_fake_server_binary(tmp_path / "llama-server"), source="stub")

    first = ensure_runtime(builder=builder)
    second = ensure_runtime(builder=builder)
    assert first == second and len(calls) == 1


def _fake_sdist(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = b"project(llama.cpp)\n"
        info = tarfile.TarInfo("llama_cpp_python-0.3.36/vendor/llama.cpp/CMakeLists.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_build_runtime_end_to_end_with_a_fake_cmake(
    relay_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdist = _fake_sdist(relay_home / "downloads" / "runtime")
    monkeypatch.setattr(runtime, "SOURCE_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    record = tmp_path / "cmake-calls.json"
    cmake = _script(
        tmp_path / "cmake",
        f"""
        import json, os, sys
        from pathlib import Path
        with open({str(record)!r}, "a") as f:
            f.write(json.dumps(sys.argv[1:]) + "\\n")
        if "-S" in sys.argv:
            assert Path(sys.argv[sys.argv.index("-S") + 1], "CMakeLists.txt").is_file()
            print("-- Configuring done")
        else:
            out = Path(sys.argv[sys.argv.index("--build") + 1], "bin")
            out.mkdir(parents=True)
            for i in (1, 2, 3):
                print(f"[{{i}}/3] Building step {{i}}", flush=True)
            server = out / "llama-server"
            server.write_text("#!{sys.executable}\\nimport sys\\nprint('version: 1.2.3 (build 7, commit feed)', file=sys.stderr)\\n")
            server.chmod(0o755)
        """,
    )
    monkeypatch.setattr(
        runtime, "find_build_tools", lambda progress=None: BuildTools(str(cmake), "ninja", "cc", "c++")
    )
    out = io.StringIO()

    path = runtime.build_runtime(progress=LineProgress(out), jobs=2)

    assert path == relay_home / "runtime" / "llama-server"
    status = runtime_status()
    assert status.version == "version: 1.2.3 (build 7, commit feed)"
    assert status.source.startswith("built from llama-cpp-python==0.3.36")
    assert status.build_seconds is not None
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls[0][0] == "-S" and "-DLLAMA_USE_PREBUILT_UI=OFF" in calls[0]
    assert calls[1][-3:] == ["--target", "llama-server", "-j2"]
    log = (relay_home / "logs" / "llama-server-build.log").read_text()
    assert "-- Configuring done" in log and "[3/3] Building step 3" in log
    assert "build llama-server (3 in all)" in out.getvalue()


def test_build_refuses_a_source_with_the_wrong_hash(
    relay_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdist = _fake_sdist(relay_home / "downloads" / "runtime")
    monkeypatch.setattr(runtime, "find_build_tools", lambda progress=None: TOOLS)
    with pytest.raises(LocalModelError, match=r"sha256 mismatch for llama_cpp_python-0\.3\.36\.tar\.gz"):
        runtime.build_runtime()
    assert not sdist.exists()
