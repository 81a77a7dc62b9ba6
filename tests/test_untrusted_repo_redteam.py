"""Attack battery, part three: what an outside red team found against the first protections.

A helper attacked relay as a hostile repository, suite, patch or model would, after
test_untrusted_repo.py was green, and wrote each escape as a test asserting the safe behaviour
(all failed then, as root and as an ordinary user). Where it matters the attack is first shown
to work unprotected. They now pass; they stay as the battery's regression layer.

Tried and blocked (candidates for the battery):
* nested user namespace in the sandbox, umount2()/remount of the read-only `lib/.git` bind: EINVAL (locked);
* reading a key from the user's kernel keyring (KEYCTL_SEARCH @u): not found, root and user mode;
* `git diff --no-index /dev/null <fifo>` in `relay review`'s working-tree diff: git refuses, no hang;
* untracked symlink to a host file in `relay review`'s working-tree diff: only the link target text;
* a suite case file under a nested `.git` (`vendor/x/.git`): write_in_root refuses it;
* a symlinked directory (`link -> ../outside`, `loop -> .`) for doc-example discovery: rglob does not follow;
* ReDoS in parse_pytest_failures on an 8 KiB tail (`a::` * 2730): 0.2 s;
* a deeply nested file in the repo map: no crash (unlike verify detection).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaycode import sandbox
from relaycode.cli import _register, app
from relaycode.config import load_config
from relaycode.errors import RelayError
from relaycode.sandbox import Limits, SandboxPolicy, settings_from_config
from relaycode.stages.verify import run_verify
from repo_attacks import git, make_repo

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed"),
]

_register()
runner = CliRunner()
CANARY = "canary-" + uuid.uuid4().hex
OFF = SandboxPolicy(enabled=False)
LIMITS = Limits(wall_s=30, memory_mb=1024)




def user_config(text: str) -> None:
    """The user's own ~/.config/relay/config.toml (conftest points XDG_CONFIG_HOME at a temp dir)."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "relay" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def verify_cli(repo: Path, *extra: str) -> object:
    return runner.invoke(app, ["verify", "--repo", str(repo), *extra])


# --------------------------------------------------------------------------- budgets and limits


@pytest.mark.parametrize("repo_toml", ["budget = {}\n", "[budget]\nstage_usd = {}\n"])
def test_repository_cannot_erase_the_users_budget_with_an_empty_table(tmp_path: Path, repo_toml: str) -> None:
    # An empty table in relay.toml replaces the user's [budget] (or its stage_usd) wholesale: no ceiling left.
    user_config("[budget]\nrun_usd = 1.0\n[budget.stage_usd]\nreview = 0.1\n")
    repo = make_repo(tmp_path / "repo", {"relay.toml": repo_toml})
    cfg = load_config(repo=repo)
    assert cfg.budget.run_usd == 1.0
    assert cfg.budget.stage_usd == {"review": 0.1}


def test_repository_cannot_lift_the_verify_timeout(tmp_path: Path) -> None:
    # `[stages.verify] timeout_s = inf` from the repository: its tests may then hang relay forever.
    repo = make_repo(tmp_path / "repo", {"relay.toml": "[stages.verify]\ntimeout_s = inf\n"})
    _, limits = settings_from_config(load_config(repo=repo))
    assert math.isfinite(limits.wall_s) and limits.wall_s <= 300


def test_repository_cannot_lift_the_verify_timeout_above_the_users(tmp_path: Path) -> None:
    # A finite but huge timeout from the repository still raises the user's ceiling (1e9 s: relay hangs).
    user_config("[stages.verify]\ntimeout_s = 60\n")
    repo = make_repo(tmp_path / "repo", {"relay.toml": "[stages.verify]\ntimeout_s = 1e9\n"})
    _, limits = settings_from_config(load_config(repo=repo))
    assert limits.wall_s <= 60


@pytest.mark.parametrize("repo_toml", [
    "[retry]\nbackoff_s = 1e12\nmax_backoff_s = 1e12\n",  # one 429 and relay sleeps for ~30,000 years
    'max_iterations = 100000\n',  # rounds of spend the user never chose
    '[models."local:qwen2.5-coder-1.5b"]\ntimeout_s = inf\n',  # a request that may never time out
    "[stages.implement]\nmax_wall_s = inf\n",  # an agent attempt without a wall-clock bound
])
def test_repository_cannot_lift_time_and_round_limits(tmp_path: Path, repo_toml: str) -> None:
    # Limits that bound how long relay runs (outside the sandbox) are not in RESTRICTED: the repository lifts them.
    repo = make_repo(tmp_path / "repo", {"relay.toml": repo_toml})
    cfg = load_config(repo=repo)
    default = load_config(repo=make_repo(tmp_path / "plain", {"a.py": "x = 1\n"}))
    assert cfg.retry.backoff_s <= default.retry.backoff_s
    assert cfg.retry.max_backoff_s <= default.retry.max_backoff_s
    assert cfg.max_iterations <= default.max_iterations
    assert cfg.stages.implement.max_wall_s <= default.stages.implement.max_wall_s
    for name, settings in cfg.models.items():
        assert settings.timeout_s <= default.settings_for(name).timeout_s


# --------------------------------------------------------------------------- mounts chosen by the sandbox


def test_a_venv_planted_by_a_test_chooses_the_next_sandboxs_mount(tmp_path: Path) -> None:
    # A test creates an untracked `.venv/bin/python` symlink to any host executable; the next
    # `relay verify` treats it as the project env and mounts the executable's grandparent (here a
    # directory inside a 0700 one, e.g. ~/.cargo with credentials.toml) read-only into the sandbox.
    private = tmp_path / "home"
    tool = private / ".cargo" / "bin" / "cargo"
    tool.parent.mkdir(parents=True)
    private.chmod(0o700)
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    (private / ".cargo" / "credentials.toml").write_text(f'token = "{CANARY}"\n')
    plant = (f"mkdir -p .venv/bin && ln -sf {tool} .venv/bin/python; "
             f"cat {private}/.cargo/credentials.toml || true")
    repo = make_repo(tmp_path / "repo", {"plant.sh": plant,
                                         "relay.toml": '[stages.verify]\ncommands = ["sh plant.sh"]\n'})
    unprotected = run_verify(repo, ["sh plant.sh"], policy=OFF, limits=LIMITS)
    assert CANARY in unprotected.results[0].output_tail  # the secret is there to take
    shutil.rmtree(repo / ".venv")
    first = verify_cli(repo, "--json")
    assert CANARY not in first.stdout  # the first verify only plants the link
    assert (repo / ".venv" / "bin" / "python").is_symlink()
    second = verify_cli(repo, "--json")
    assert CANARY not in second.stdout, "a file the sandbox wrote chose a host directory to mount"


# --------------------------------------------------------------------------- the quarantine


def test_a_planted_submodule_pointer_that_cannot_be_quarantined_stays_live(tmp_path: Path) -> None:
    # The after-check renames a planted `lib/.git` to `.git.quarantined-by-relay-<second>`; a test that
    # pre-creates those names (and, as a user, makes `lib` read-only) makes every rename fail. As root,
    # `lib/.git` is a hard link to a committed file, so giving that file back to root re-owns the planted
    # pointer too (git then trusts it). The user's next `git status` runs the planted fsmonitor.
    marker = tmp_path / "pwned"
    evil = ".evilsub"
    attack = (
        f"mkdir -p {evil}/objects {evil}/refs; echo 'ref: refs/heads/main' > {evil}/HEAD; "
        f"printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = \"touch {marker}\"\\n' > {evil}/config; "
        "mv lib lib_old && mkdir lib && ln pointer.txt lib/.git; "
        "now=$(date +%s); i=0; while [ $i -lt 300 ]; do "
        "  s=$(date -d @$((now + i)) +%Y%m%d%H%M%S); "
        "  for d in lib lib_old; do mkdir -p $d/.git.quarantined-by-relay-$s/keep; done; i=$((i + 1)); done; "
        "chmod 555 lib lib_old\n"
    )
    lib = make_repo(tmp_path / "libsrc", {"lib.py": "y = 2\n"})
    repo = make_repo(tmp_path / "repo", {"attack.sh": attack, "pointer.txt": f"gitdir: ../{evil}\n",
                                         "relay.toml": '[stages.verify]\ncommands = ["sh attack.sh"]\n'})
    git("submodule", "add", "-q", str(lib), "lib", cwd=repo)
    git("commit", "-qm", "submodule", cwd=repo)
    result = verify_cli(repo)
    assert result.exit_code != 0  # relay noticed and stopped ...
    try:
        subprocess.run(["git", "status"], cwd=repo, capture_output=True, check=False, timeout=30)
    finally:
        for d in ("lib", "lib_old"):
            if (repo / d).exists():
                (repo / d).chmod(0o755)
    # ... but the planted pointer is still live in the user's checkout.
    assert not marker.exists(), f"the user's git status ran the planted fsmonitor: {result.stderr[-300:]}"



# --------------------------------------------------------------------------- git drivers chosen by attributes


def _user_git_config(text: str) -> None:
    """The user's own global git config ($XDG_CONFIG_HOME/git/config: conftest isolates it)."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "git" / "config"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("driver", ["textconv", "clean"])
def test_repository_attributes_cannot_run_commands_through_relays_git_calls(tmp_path: Path, driver: str) -> None:
    # The user's global config defines a driver (as `git lfs install`, exiftool or sops recipes do); the
    # repository's .gitattributes sends a file through it: relay's own diff/commit (outside the sandbox)
    # runs the command on repository-controlled content. Here the driver only touches a marker.
    from relaycode.workspace import open_repo

    marker = tmp_path / "ran"
    if driver == "textconv":
        _user_git_config(f'[diff "probe"]\n\ttextconv = "touch {marker}; cat"\n')
    else:
        _user_git_config(f'[filter "probe"]\n\tclean = "touch {marker}; cat"\n\tsmudge = cat\n')
    attr = "diff" if driver == "textconv" else "filter"
    repo = make_repo(tmp_path / "repo", {".gitattributes": f"*.dat {attr}=probe\n", "a.py": "x = 1\n"})
    marker.unlink(missing_ok=True)  # make_repo's own `git add` ran the clean filter: that is the attack working
    wt = open_repo(repo).create_worktree("attrs")
    marker.unlink(missing_ok=True)
    (wt.root / "payload.dat").write_text("written by the repository's tests or a model\n")
    wt.diff()
    wt.commit("attempt")
    assert not marker.exists(), f"relay's git call ran the user's {driver} driver, chosen by .gitattributes"


# --------------------------------------------------------------------------- bench suites


def test_a_suite_case_cannot_set_an_unbounded_hidden_test_timeout(tmp_path: Path) -> None:
    # JSON `Infinity` (Python's json accepts it) passes `timeout_s > 0`: the hidden tests may then run forever.
    from relaycode.bench.suite import load_suite

    suite = tmp_path / "suite.jsonl"
    suite.write_text('{"id": "c1", "suite": "s", "kind": "bugfix", "instruction": "fix", "files": {"a.py": "x = 1\\n"},'
                     ' "hidden_files": {"test_a.py": "def test_a():\\n    pass\\n"}, "test_command": "sleep 1000000",'
                     ' "timeout_s": Infinity}\n')
    try:
        cases = load_suite(suite)
    except RelayError:  # refused with a message: the safe outcome
        return
    assert all(math.isfinite(c.timeout_s) for c in cases)


# --------------------------------------------------------------------------- crashing relay outside the sandbox


DEEP = '"""Example.\n\n>>> 1\n1\n"""\nx = ' + "-" * 100_000 + "1\n"


def test_a_deeply_nested_file_does_not_crash_verify_detection(tmp_path: Path) -> None:
    # ast.parse raises MemoryError ("parser stack overflowed") on deep nesting; only SyntaxError is caught:
    # a committed file stops `relay verify` / `relay run` with a traceback before anything is sandboxed.
    from relaycode.stages.verify import detect_commands

    repo = make_repo(tmp_path / "repo", {"deep.py": DEEP})
    assert detect_commands(repo) == []


def test_verify_output_from_the_repository_is_not_rich_markup(tmp_path: Path) -> None:
    # The command (from relay.toml) and failing test names are printed as rich markup: `[/x]` crashes
    # `relay verify` (MarkupError traceback) and `[green]ok[/green]` could fake a result line.
    repo = make_repo(tmp_path / "repo", {"relay.toml": '[stages.verify]\ncommands = ["echo [/nope] && false"]\n'})
    result = verify_cli(repo)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "[/nope]" in result.stdout


# --------------------------------------------------------------------------- model-written input, outside the sandbox


_SEARCH_PROBE = """
import sys, time
from pathlib import Path
from relaycode.sandbox import Limits, SandboxPolicy
from relaycode.stages.agent_loop import Actions, Search
from relaycode.stages.implement import ImplementOutcome
from relaycode.workspace import open_repo

wt = open_repo(Path(sys.argv[1])).create_worktree("regex")
wt.write_text("data.txt", "a" * 40 + "!\\n")  # what the model's own edit action writes first
actions = Actions(wt, SandboxPolicy(), Limits(), ImplementOutcome(model="m"), time.monotonic() + 5)
print(actions._search(Search(action="search", pattern=r"^(a|a?)+$"), {}))
"""


def test_a_model_regex_cannot_hang_relay_outside_the_sandbox(tmp_path: Path) -> None:
    # The agent's `search` runs the model's regex in relay's own process; cutting lines at 1,000 chars
    # does not bound exponential backtracking (`^(a|a?)+$` on 40 chars), and the attempt's wall time
    # is only checked between actions: relay hangs, outside every limit.
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[1] / "src"),
                                                                   os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run([sys.executable, "-c", _SEARCH_PROBE, str(repo)], env=env, capture_output=True,
                              text=True, timeout=90)
    except subprocess.TimeoutExpired:
        # The regex needs about 2^40 steps: unbounded, it runs for hours. 90 s leaves room for a loaded
        # machine's interpreter start-up and imports (20 s did not, with 2 busy cores).
        pytest.fail("the model's search regex was still running after 90 s (the attempt's wall time was 5 s)")
    assert done.returncode == 0, done.stderr[-500:]


@pytest.mark.parametrize("text", ["x = a" + ".b" * 200_000 + "\n", "x = " + "-" * 100_000 + "1\n"])
def test_a_model_edit_with_deep_nesting_is_refused_not_a_crash(text: str) -> None:
    # compile() raises RecursionError / MemoryError on deep nesting; check_syntax catches only SyntaxError
    # and ValueError, so one model answer ends the run with a traceback instead of feedback to the model.
    from relaycode.errors import EditError
    from relaycode.stages.implement import check_syntax

    with contextlib.suppress(EditError):
        check_syntax({}, {"deep.py": text})


def test_a_suite_case_cannot_configure_the_bench_git(tmp_path: Path) -> None:
    # materialise() runs git with HOME set to the case's own directory, so a case file `.gitconfig`
    # (allowed by path_problem) is git's global config: its core.fsmonitor / filter.clean run outside
    # the sandbox during `git add` (with an absolute --out, e.g. `relay bench --out /abs/dir`).
    from relaycode.bench.suite import Case, materialise

    marker = tmp_path / "pwned"
    files = {"a.py": "x = 1\n", ".gitattributes": "*.py filter=x\n",
             ".gitconfig": f'[core]\n\tfsmonitor = "touch {marker}; false"\n[filter "x"]\n\tclean = "touch {marker}; cat"\n'}
    case = Case(id="c1", suite="s", kind="bugfix", instruction="fix", files=files,
                hidden_files={"test_a.py": "def test_a():\n    pass\n"}, test_command="true", timeout_s=10,
                reference={}, bug_lines={}, source="suite.jsonl")
    with contextlib.suppress(RelayError):  # refusing the case is a safe outcome too
        materialise(case, (tmp_path / "work" / "repo").resolve())
    assert not marker.exists(), "a suite case's .gitconfig ran a command outside the sandbox"


# --------------------------------------------------------------------------- hard links into the tree


def test_a_test_cannot_write_through_a_hard_link_to_a_file_outside_the_tree(tmp_path: Path) -> None:
    # pnpm (and uv's default link mode) hard-link installed files from a global store into the project:
    # node_modules/pkg/index.js IS the store's file. The repository's tests rewrite it in the writable tree,
    # poisoning the store every other project loads, outside the sandbox. (As root, the lend even chowns
    # the store's inode to the sandbox uid.)
    store = tmp_path / "pnpm-store" / "pkg-1.0.0" / "index.js"
    store.parent.mkdir(parents=True)
    store.write_text("module.exports = 1;\n")
    repo = make_repo(tmp_path / "repo", {"package.json": "{}\n", ".gitignore": "node_modules/\n"})
    (repo / "node_modules" / "pkg").mkdir(parents=True)
    os.link(store, repo / "node_modules" / "pkg" / "index.js")  # what `pnpm install` does
    attack = "echo 'require(\"child_process\").execSync(\"id\");' >> node_modules/pkg/index.js"
    run_verify(repo, [attack], policy=SandboxPolicy(), limits=LIMITS)
    assert store.read_text() == "module.exports = 1;\n", "the sandbox wrote a file outside the tree"


def test_a_deeply_nested_package_json_does_not_crash_verify_detection(tmp_path: Path) -> None:
    # json.loads raises RecursionError on deep nesting; _has_npm_test catches only JSONDecodeError.
    from relaycode.stages.verify import detect_commands

    repo = make_repo(tmp_path / "repo", {"package.json": "[" * 100_000 + "]" * 100_000})
    assert detect_commands(repo) == []


# --------------------------------------------------------------------------- the trust store


def test_the_trusted_bytes_are_the_bytes_that_are_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # config_layers hashes one read of relay.toml (trust check) and parses a second read: a process still
    # writing the checkout (a sandboxed test of a `relay verify` running there) swaps the file in between,
    # and the swapped, never-trusted content is applied as trusted. The swap is made deterministic here.
    from relaycode import trust

    trusted = '[stages.verify]\ncommands = ["true"]\n'
    evil = '[sandbox]\nenabled = false\n'
    repo = make_repo(tmp_path / "repo", {"relay.toml": trusted})
    assert runner.invoke(app, ["trust", "--repo", str(repo)]).exit_code == 0
    real_read = trust.read_repo_file
    calls: list[Path] = []

    def read_then_swap(path: Path) -> bytes:
        data = real_read(path)
        if not calls:
            (repo / "relay.toml").write_text(evil)  # the race, won
        calls.append(path)
        return data

    monkeypatch.setattr(trust, "read_repo_file", read_then_swap)
    cfg = load_config(repo=repo)
    assert cfg.sandbox.enabled, "content that was never trusted turned the sandbox off"


def test_repository_preset_does_not_override_the_users_offline_choice(tmp_path: Path) -> None:
    # The user's config says `preset = "local"` (offline, no keys); a repository's `preset = "api"` wins
    # silently (the highest layer naming a preset picks it): the code goes to three API providers on the
    # user's keys. Issue 13 lists "choose where requests and keys go" as restricted; docs/security.md
    # carves out "may choose models". Design call for the lead: at least a notice, or the user's preset wins.
    user_config('preset = "local"\n')
    repo = make_repo(tmp_path / "repo", {"relay.toml": 'preset = "api"\n'})
    cfg = load_config(repo=repo)
    assert cfg.preset == "local" or any("preset" in n for n in cfg.notices), (cfg.preset, cfg.all_models())


def test_a_deeply_nested_relay_toml_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    # tomllib recurses: a 100 KB relay.toml raises RecursionError, which read_toml does not turn into a
    # ConfigError, so every relay command in that checkout dies with a traceback (exit 1, not 2).
    repo = make_repo(tmp_path / "repo", {"relay.toml": "a = " + "[" * 50_000 + "]" * 50_000 + "\n"})
    result = runner.invoke(app, ["config", "check", "--repo", str(repo)])
    assert result.exit_code == 2 and "relay.toml" in result.stderr, (result.exit_code, repr(result.exception))


def test_a_planted_pointer_in_an_unlistable_directory_is_not_quarantined(tmp_path: Path) -> None:
    # As an ordinary user: `chmod 111 lib` after planting lib/.git. The after-check's os.walk cannot list
    # `lib` (errors are silently skipped), so lib/.git counts as "removed: nothing to neutralise", while git
    # (which needs only search permission to open lib/.git by name) still uses the planted pointer.
    if os.geteuid() == 0:
        pytest.skip("root lists any directory; test_a_planted_submodule_pointer_that_cannot_be_quarantined covers root")
    marker = tmp_path / "pwned"
    evil = ".evilsub"
    attack = (
        f"mkdir -p {evil}/objects {evil}/refs; echo 'ref: refs/heads/main' > {evil}/HEAD; "
        f"printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = \"touch {marker}\"\\n' > {evil}/config; "
        f"mv lib lib_old && mkdir lib && printf 'gitdir: ../{evil}\\n' > lib/.git && chmod 111 lib\n"
    )
    lib = make_repo(tmp_path / "libsrc", {"lib.py": "y = 2\n"})
    repo = make_repo(tmp_path / "repo", {"attack.sh": attack,
                                         "relay.toml": '[stages.verify]\ncommands = ["sh attack.sh"]\n'})
    git("submodule", "add", "-q", str(lib), "lib", cwd=repo)
    git("commit", "-qm", "submodule", cwd=repo)
    result = verify_cli(repo)
    assert result.exit_code != 0
    subprocess.run(["git", "status"], cwd=repo, capture_output=True, check=False, timeout=30)
    (repo / "lib").chmod(0o755)
    assert not marker.exists(), f"the user's git status ran the planted fsmonitor: {result.stderr[-300:]}"


# --------------------------------------------------------------------------- the review path


def test_a_review_diff_cannot_pull_an_ignored_secret_file_into_the_prompt(tmp_path: Path) -> None:
    # `relay review --diff pr.diff` (a stranger's patch) in a checkout that holds an untracked, ignored
    # `.env`: the patch "adds" one blank line to .env where the file has one, so source_matches() accepts
    # the file on disk and ±8 of its lines (the secret) go into the reviewer's prompt, to the provider,
    # and into findings a GitHub integration may post back on the stranger's PR.
    from relaycode.cli.review_cmd import collect_diff
    from relaycode.review.context import plan_chunks
    from relaycode.review.diff import parse_diff

    repo = make_repo(tmp_path / "repo", {"app.py": "print(1)\n", ".gitignore": ".env\n"})
    (repo / ".env").write_text(f"DB_HOST=db\n\nAWS_SECRET_ACCESS_KEY={CANARY}\n")
    patch = tmp_path / "pr.diff"
    patch.write_text("diff --git a/.env b/.env\n--- a/.env\n+++ b/.env\n@@ -1,0 +2,1 @@\n+\n")
    text, reader, _ = collect_diff(repo, base=None, head=None, staged=False, diff_file=str(patch))
    chunks, _ = plan_chunks(parse_diff(text), 20_000, reader)
    assert chunks, "the patch was not reviewed at all"
    assert all(CANARY not in chunk.text for chunk in chunks), "an ignored secret file went into the prompt"
