"""The sandbox runner: env scrubbing, output capture, limits, uid drop, worktree ownership.

Escape attempts live in test_sandbox_attacks.py; this file checks the runner's contract.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relaycode import gitguard, sandbox
from relaycode.errors import SandboxUnavailable
from relaycode.sandbox import Limits, SandboxPolicy, run, scrub_env

needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop only happens when relay runs as root")
PY = shlex.quote(sys.executable)
OFF = SandboxPolicy(enabled=False)
ON = SandboxPolicy()


@pytest.fixture
def wt(tmp_path: Path) -> Path:
    path = tmp_path / "wt"
    path.mkdir()
    (path / "a.txt").write_text("a\n")
    return path


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "my_service_token",
        "DB_PASSWORD",
        "GITHUB_TOKEN",
        "AWS_REGION",
        "SSH_AUTH_SOCK",
        "HTTP_COOKIE",
        "XDG_SESSION_ID",
        "ANTHROPIC_BASE_URL",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "PASSWD_FILE",
    ],
)
def test_secret_names_never_pass_even_if_allowed(name: str) -> None:
    assert sandbox.is_secret_name(name)
    assert scrub_env({name: "v", "PATH": "/bin"}, allow=(name,)) == {"PATH": "/bin"}


def test_scrub_env_keeps_only_the_allow_list() -> None:
    env = {"PATH": "/bin", "LANG": "C", "HOME": "/root", "EDITOR": "vi", "MY_FLAG": "1", "TZ": "UTC"}
    assert scrub_env(env) == {"PATH": "/bin", "LANG": "C", "TZ": "UTC"}
    assert scrub_env(env, allow=("MY_FLAG",)) == {"PATH": "/bin", "LANG": "C", "TZ": "UTC", "MY_FLAG": "1"}


def test_command_env_sets_home_and_drops_secret_extra_env(wt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITOR", "vi")
    result = run("env", wt, policy=OFF, limits=Limits(), extra_env={"FOO": "1", "X_TOKEN": "t"})
    lines = set(result.output_tail.splitlines())
    assert {"HOME=/tmp", "TMPDIR=/tmp", "FOO=1"} <= lines
    assert not any(line.startswith(("EDITOR=", "X_TOKEN=")) for line in lines)


# --------------------------------------------------------------------------- availability


def test_require_sandbox_when_bwrap_is_missing(wt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    assert not sandbox.bwrap_available()
    with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*--no-sandbox"):
        run("true", wt, policy=ON, limits=Limits())
    sandbox.require_sandbox(OFF)  # --no-sandbox: no bwrap needed
    assert run("echo hi", wt, policy=OFF, limits=Limits()).output_tail == "hi\n"


# --------------------------------------------------------------------------- running


@pytest.mark.parametrize("policy", [OFF, pytest.param(ON, marks=needs_bwrap)], ids=["direct", "sandboxed"])
def test_output_exit_code_and_record(wt: Path, policy: SandboxPolicy) -> None:
    result = run("echo out; echo err >&2; echo out2; exit 3", wt, policy=policy, limits=Limits())
    assert result.output_tail == "out\nerr\nout2\n"  # interleaved in order
    assert result.exit_code == 3 and not result.timed_out
    assert result.sandboxed is policy.enabled
    assert result.to_dict() == {
        "command": "echo out; echo err >&2; echo out2; exit 3",
        "exit_code": 3,
        "seconds": result.seconds,
        "output_tail": result.output_tail,
        "timed_out": False,
        "sandboxed": policy.enabled,
    }
    argv = run(["printf", "%s|", "a b", "c"], wt, policy=policy, limits=Limits())
    assert argv.output_tail == "a b|c|" and argv.command == "printf '%s|' 'a b' c"


@pytest.mark.parametrize("policy", [OFF, pytest.param(ON, marks=needs_bwrap)], ids=["direct", "sandboxed"])
def test_stdin_is_what_relay_hands_over_then_eof(wt: Path, policy: SandboxPolicy) -> None:
    # The bench hands its hidden-test wrapper a secret this way: it must reach the command whole, then EOF.
    given = run("cat; echo '<eof>'", wt, policy=policy, limits=Limits(), stdin=b"s3cret\n")
    assert given.output_tail == "s3cret\n<eof>\n"
    assert run("cat; echo '<eof>'", wt, policy=policy, limits=Limits()).output_tail == "<eof>\n"  # /dev/null
    # Once read, a small input is gone: nothing that still holds the descriptor (a waiting shell) shows it again.
    # (In the sandbox reopening it is refused outright.)
    again = run("cat >/dev/null; cat /proc/self/fd/0 2>/dev/null | wc -c", wt, policy=policy, limits=Limits(),
                stdin=b"s3cret\n")
    assert again.output_tail.strip() == "0", again.output_tail


@pytest.mark.parametrize("policy", [OFF, pytest.param(ON, marks=needs_bwrap)], ids=["direct", "sandboxed"])
def test_stdin_carries_data_too_large_for_an_argument_and_is_read_only(wt: Path, policy: SandboxPolicy) -> None:
    data = b"x" * 300_000  # one argument this size fails exec with E2BIG (MAX_ARG_STRLEN is 128 KiB)
    result = run(f"{PY} -c 'import sys; print(len(sys.stdin.buffer.read()))'; printf y >&0 2>/dev/null || echo refused",
                 wt, policy=policy, limits=Limits(), stdin=data)
    assert result.output_tail.split() == ["300000", "refused"], result.output_tail  # sealed: not writable
    assert run("wc -c", wt, policy=policy, limits=Limits()).output_tail.strip() == "0"  # none given: /dev/null


def test_output_keeps_only_the_tail(wt: Path) -> None:
    result = run(f"{PY} -c \"print('x' * 100_000); print('THE END')\"", wt, policy=OFF, limits=Limits())
    assert result.output_tail.endswith("THE END\n")
    assert len(result.output_tail) == sandbox.OUTPUT_TAIL_BYTES


def test_exit_by_signal_is_128_plus_signal(wt: Path) -> None:
    assert run("kill -TERM $$", wt, policy=OFF, limits=Limits()).exit_code == 128 + 15


def test_closing_stdout_early_still_waits_for_exit(wt: Path) -> None:
    result = run("exec >&- 2>&-; sleep 0.3; exit 4", wt, policy=OFF, limits=Limits(wall_s=5))
    assert result.exit_code == 4 and result.seconds >= 0.3


def test_timeout_kills_even_with_closed_stdout(wt: Path) -> None:
    result = run("exec >&- 2>&-; sleep 30", wt, policy=OFF, limits=Limits(wall_s=0.5))
    assert result.timed_out and result.exit_code == 128 + 9 and result.seconds < 3


# --------------------------------------------------------------------------- inside the sandbox


@needs_bwrap
def test_python_and_pytest_work_inside(wt: Path) -> None:
    result = run(f"{PY} -m pytest --version", wt, policy=ON, limits=Limits())
    assert result.exit_code == 0, result.output_tail
    assert "pytest" in result.output_tail


@needs_bwrap
def test_private_tmp_and_home(wt: Path) -> None:
    marker = Path("/tmp") / f"relay-sbx-test-{os.getpid()}"
    marker.write_text("host")
    try:
        result = run(
            f"ls -A /tmp; echo $HOME; touch $HOME/x && echo wrote; test -e {marker} || echo hidden",
            wt,
            policy=ON,
            limits=Limits(),
        )
    finally:
        marker.unlink()
    lines = result.output_tail.splitlines()
    assert "/tmp" in lines and "wrote" in lines and "hidden" in lines


@needs_bwrap
def test_only_expected_top_level_dirs(wt: Path) -> None:
    result = run("ls -A /", wt, policy=ON, limits=Limits())
    visible = set(result.output_tail.split())
    # /root exists inside only to hold the Python installation (pyenv) bound at its own path.
    bound = {Path(p).parts[2] for p in (sys.base_prefix, sys.prefix) if Path(p).is_relative_to("/root")}
    in_root = run("ls -A /root 2>/dev/null", wt, policy=ON, limits=Limits()).output_tail.split()
    assert set(in_root) <= bound
    assert not visible & {"home", "srv", "var", "mnt", "sys", "run", "boot"}
    assert {"usr", "etc", "tmp", "proc", "dev"} <= visible


@needs_bwrap
@root_only
def test_root_drops_to_nobody_for_real(wt: Path) -> None:
    result = run(
        "id -u; id -g; id -G; grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs)' /proc/self/status; cat /etc/shadow",
        wt,
        policy=ON,
        limits=Limits(),
    )
    out = result.output_tail
    assert out.splitlines()[:3] == ["65534", "65534", "65534"]
    assert "Uid:\t65534\t65534\t65534\t65534" in out
    assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out
    assert "NoNewPrivs:\t1" in out
    assert "Permission denied" in out


@needs_bwrap
@root_only
def test_worktree_is_lent_and_given_back(tmp_path: Path, wt: Path) -> None:
    (wt / "sub").mkdir()
    (wt / "sub" / "owned").write_text("x")
    os.chown(wt / "sub" / "owned", 1234, 4321)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    outside.chmod(0o600)
    (wt / "link").symlink_to(outside)  # relay must never chown through this
    result = run(
        "stat -c '%u' a.txt; echo more >> a.txt && mkdir -p new/deep && echo n > new/deep/f && "
        "cp /bin/true suid && chmod 6755 suid && echo done",
        wt,
        policy=ON,
        limits=Limits(),
    )
    assert result.output_tail.splitlines() == ["65534", "done"], result.output_tail
    assert (wt / "a.txt").read_text() == "a\nmore\n"
    for path in [wt, wt / "a.txt", wt / "new", wt / "new" / "deep" / "f", wt / "suid"]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0), path
    assert (wt / "sub" / "owned").stat().st_uid == 1234 and (wt / "sub" / "owned").stat().st_gid == 4321
    assert not (wt / "suid").stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    st = outside.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)


@needs_bwrap
def test_git_worktree_metadata_is_read_only(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], cwd=repo, check=True)
    subprocess.run([*git, "worktree", "add", "-q", str(tmp_path / "wt")], cwd=repo, check=True)
    wt = tmp_path / "wt"
    layout = gitguard.discover(wt)
    assert layout is not None and layout.linked
    assert layout.common == (repo / ".git").resolve() and layout.admin.parent == layout.common / "worktrees"
    (repo / ".git" / "config").write_text(
        (repo / ".git" / "config").read_text() + '[http]\n\textraheader = AUTHORIZATION: basic c2VjcmV0\n'
    )
    result = run(
        f"cat {repo}/.git/HEAD && touch {repo}/.git/x || echo blocked; echo > .git || echo blocked2; "
        f"cat {repo}/.git/config; ls {repo}/.git/hooks || echo nohooks; git status --short && echo gitok",
        wt,
        policy=ON,
        limits=Limits(),
    )
    out = result.output_tail
    assert "ref: refs/heads/" in out and "gitok" in out  # git metadata readable, git works ...
    assert "blocked" in out and "blocked2" in out  # ... not writable
    assert "extraheader" not in out and "c2VjcmV0" not in out and "nohooks" in out  # ... and scrubbed
    assert not (repo / ".git" / "x").exists()


@needs_bwrap
def test_network_opt_in(wt: Path) -> None:
    host_ns = os.readlink("/proc/self/ns/net")
    isolated = run("readlink /proc/self/ns/net", wt, policy=ON, limits=Limits())
    shared = run("readlink /proc/self/ns/net", wt, policy=SandboxPolicy(network=True), limits=Limits())
    assert isolated.output_tail.strip() not in {"", host_ns}
    assert shared.output_tail.strip() == host_ns


@needs_bwrap
def test_sandbox_dies_with_relay(wt: Path) -> None:
    """If relay itself is SIGKILLed mid-command, --die-with-parent and the PID namespace end the command."""
    duration = f"29.{os.getpid()}7"  # unique, to find it in the host's /proc
    script = (
        "import sys; from pathlib import Path; from relaycode import sandbox as s; "
        f"s.run('sleep {duration}', Path(sys.argv[1]), policy=s.SandboxPolicy(), limits=s.Limits())"
    )
    relay = subprocess.Popen([sys.executable, "-c", script, str(wt)])
    wanted = f"sleep\0{duration}\0".encode()

    def running() -> bool:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if (proc / "cmdline").read_bytes() == wanted and "State:\tZ" not in (
                    proc / "status"
                ).read_text():
                    return True
            except OSError:
                continue
        return False

    deadline = time.monotonic() + 10
    while not running():
        assert time.monotonic() < deadline, "the sandboxed command never started"
        time.sleep(0.05)
    relay.kill()
    relay.wait()
    deadline = time.monotonic() + 3
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running()
