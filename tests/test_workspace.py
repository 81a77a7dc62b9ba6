"""Tests for relaycode.workspace: worktrees that never disturb the user's checkout, and path safety."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relaycode import pathsafety
from relaycode.errors import PathEscape, UsageError
from relaycode.workspace import Identity, Repo, RunTree, Worktree, open_in_root, open_repo, safe_path


@pytest.fixture(autouse=True)
def _no_git_config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run as on a machine without any git config: relay must bring its own identity."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)


def git(cwd: Path, *args: str) -> str:
    """Git as the *user* would run it (with their own identity), for setting up fixtures."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    cmd = [
        "git",
        "-c",
        "user.name=User",
        "-c",
        "user.email=user@example.com",
        "-c",
        "init.defaultBranch=main",
    ]
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """A repository in the middle of someone's work: staged, unstaged, untracked, ignored, stashed."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "README.md").write_text("# project\n")
    (root / ".gitignore").write_text("*.log\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    git(root, "checkout", "-qb", "feature")
    (root / "src" / "feature.py").write_text("FEATURE = True\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "feature")
    git(root, "checkout", "-q", "main")
    # a stash entry
    (root / "README.md").write_text("# project\nstashed line\n")
    git(root, "stash", "-q")
    # staged, unstaged, untracked and ignored changes
    (root / "src" / "app.py").write_text("def add(a, b):\n    return a + b  # staged\n")
    git(root, "add", "src/app.py")
    (root / "src" / "app.py").write_text("def add(a, b):\n    return a + b  # staged then edited\n")
    (root / "README.md").write_text("# project, unstaged\n")
    (root / "notes.txt").write_text("untracked\n")
    (root / "debug.log").write_text("ignored\n")
    return root


def snapshot(root: Path) -> dict[str, object]:
    """Everything about the user's checkout that relay must leave byte-identical."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            p = Path(dirpath, name)
            files[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    return {
        "files": files,
        "status": git(root, "status", "--porcelain=v2", "--branch", "--untracked-files=all", "--ignored"),
        "index": hashlib.sha256((root / ".git" / "index").read_bytes()).hexdigest(),
        "stash": git(root, "stash", "list", "--format=%H %s"),
        "head": (root / ".git" / "HEAD").read_text(),
        # The run's own branch relay/* is the one ref relay adds; every other ref stays put.
        "refs": [
            line
            for line in git(root, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
            if not line.startswith("refs/heads/relay/")
        ],
    }


# --------------------------------------------------------------------------- open_repo


def test_open_repo_errors_are_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    cases = {
        tmp_path / "missing": "does not exist",
        plain: "is not a git repository",
        empty: "has no commits yet",
    }
    for path, expected in cases.items():
        with pytest.raises(UsageError) as err:
            open_repo(path)
        assert expected in str(err.value)
        assert "\n" not in str(err.value)


def test_open_repo_from_subdirectory(user_repo: Path) -> None:
    repo = open_repo(user_repo / "src")
    assert repo.root == user_repo.resolve()
    assert repo.git_dir == (user_repo / ".git").resolve()
    assert repo.head_sha() == git(user_repo, "rev-parse", "HEAD").strip()


def test_resolve(user_repo: Path) -> None:
    repo = open_repo(user_repo)
    assert repo.resolve("feature") == git(user_repo, "rev-parse", "feature").strip()
    for bad in ("nope", "--all", ""):
        with pytest.raises(UsageError, match=f"base branch/ref {bad} does not exist"):
            repo.resolve(bad)


# --------------------------------------------------------------------------- worktrees


def test_worktree_lifecycle_leaves_user_checkout_byte_identical(user_repo: Path) -> None:
    before = snapshot(user_repo)
    repo = open_repo(user_repo)
    wt = repo.create_worktree("run1")
    assert wt.root == user_repo.resolve() / ".git" / "relay" / "worktrees" / "run1"
    assert wt.branch == "relay/run1"
    assert wt.base == repo.head_sha()
    # The worktree holds the committed state, not the user's uncommitted edits.
    assert wt.read_text("src/app.py") == "def add(a, b):\n    return a + b\n"
    wt.write_text("src/app.py", "def add(a, b):\n    return a - b\n")
    wt.write_text("src/new/module.py", "X = 1\n")
    assert "+X = 1" in wt.diff()
    sha = wt.commit("relay: change add")
    assert sha and git(user_repo, "rev-parse", "relay/run1").strip() == sha
    wt.reset_hard(wt.base)
    assert git(user_repo, "rev-parse", "relay/run1").strip() == wt.base
    assert snapshot(user_repo) == before
    wt.write_text("kept.py", "K = 1\n")
    kept = wt.commit("keep")
    wt.remove()
    assert snapshot(user_repo) == before
    assert not wt.root.exists()
    assert git(user_repo, "rev-parse", "relay/run1").strip() == kept  # the branch outlives the checkout


def test_worktree_from_other_base_and_duplicates(user_repo: Path) -> None:
    repo = open_repo(user_repo)
    wt = repo.create_worktree("r-2", base="feature")
    assert wt.base == repo.resolve("feature")
    assert "src/feature.py" in wt.list_files()
    with pytest.raises(UsageError, match="already has a worktree"):
        repo.create_worktree("r-2")
    with pytest.raises(UsageError, match="base branch/ref nope does not exist"):
        repo.create_worktree("r-3", base="nope")
    for bad in ("../x", "a/b", "-x", "x.lock", ""):
        with pytest.raises(UsageError, match="invalid run id"):
            repo.create_worktree(bad)


def test_open_worktree_resumes_and_recreates_deleted_checkout(user_repo: Path) -> None:
    repo = open_repo(user_repo)
    wt = repo.create_worktree("resume", base="feature")
    wt.write_text("a.txt", "a\n")
    sha = wt.commit("add a")
    again = repo.open_worktree("resume")
    assert again.root == wt.root and again.base == wt.base and again.branch == wt.branch
    wt.remove(keep_branch=True)
    revived = repo.open_worktree("resume")
    assert revived.read_text("a.txt") == "a\n"
    assert revived.git("rev-parse", "HEAD").stdout.strip() == sha
    assert revived.base == repo.resolve("feature")
    with pytest.raises(UsageError, match="no relay run nothere"):
        repo.open_worktree("nothere")


def test_remove_can_delete_branch(user_repo: Path) -> None:
    repo = open_repo(user_repo)
    wt = repo.create_worktree("gone")
    wt.remove(keep_branch=False)
    assert "relay/gone" not in git(user_repo, "branch", "--list")


def test_list_files_tracked_and_untracked_not_ignored(user_repo: Path) -> None:
    wt = open_repo(user_repo).create_worktree("ls")
    wt.write_text("new.py", "")
    wt.write_text("trace.log", "ignored\n")
    (wt.root / "README.md").unlink()
    assert wt.list_files() == [".gitignore", "new.py", "run.sh", "src/app.py"]


def test_diff_includes_untracked_and_deletions_without_touching_index(user_repo: Path) -> None:
    wt = open_repo(user_repo).create_worktree("diff")
    wt.write_text("src/app.py", "def add(a, b):\n    return a * b\n")
    wt.write_text("brand_new.py", "NEW = 1\n")
    (wt.root / "README.md").unlink()
    index = Path(wt.git("rev-parse", "--git-path", "index").stdout.strip())
    index = index if index.is_absolute() else wt.root / index
    index_before = index.read_bytes()
    status_before = wt.git("status", "--porcelain").stdout
    d = wt.diff()
    assert "+++ b/brand_new.py" in d and "+NEW = 1" in d
    assert "-    return a + b" in d and "+    return a * b" in d
    assert "--- a/README.md" in d and "+++ /dev/null" in d
    assert wt.changed_files() == ["README.md", "brand_new.py", "src/app.py"]
    assert index.read_bytes() == index_before
    assert wt.git("status", "--porcelain").stdout == status_before
    assert "?? brand_new.py" in status_before  # still untracked: diff did not stage it
    # An explicit base: compared with `feature`, feature.py is missing in this worktree.
    assert "src/feature.py" in wt.changed_files(base="feature")


def test_commit_identity_noop_and_reset(user_repo: Path) -> None:
    wt = open_repo(user_repo).create_worktree("commit")
    assert wt.commit("nothing") is None
    wt.write_text("x.py", "x = 1\n")
    sha = wt.commit("add x")
    assert sha and len(sha) == 40
    author = wt.git("log", "-1", "--format=%an <%ae>|%cn <%ce>|%s").stdout.strip()
    assert author == "relay <relay@localhost>|relay <relay@localhost>|add x"
    assert wt.commit("again") is None
    wt.write_text("x.py", "x = 2\n")
    wt.write_text("junk/untracked.py", "junk\n")
    wt.reset_hard(sha)
    assert wt.read_text("x.py") == "x = 1\n"
    assert not (wt.root / "junk").exists()


def test_custom_identity(user_repo: Path) -> None:
    repo = open_repo(user_repo, identity=Identity("Bot", "bot@example.org"))
    wt = repo.create_worktree("ident")
    wt.write_text("y.py", "y\n")
    wt.commit("y")
    assert wt.git("log", "-1", "--format=%an <%ae>").stdout.strip() == "Bot <bot@example.org>"


def test_hooks_never_run(user_repo: Path) -> None:
    hooks = user_repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    marker = user_repo.parent / "hook-ran"
    for hook in ("pre-commit", "commit-msg", "post-commit", "post-checkout"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> '{marker}'\nexit 1\n")
        (hooks / hook).chmod(0o755)
    wt = open_repo(user_repo).create_worktree("hooks")
    wt.write_text("z.py", "z\n")
    assert wt.commit("z")
    assert not marker.exists()


def test_write_text_is_atomic_keeps_mode_and_line_endings(user_repo: Path) -> None:
    wt = open_repo(user_repo).create_worktree("write")
    wt.write_text("run.sh", "#!/bin/sh\r\necho bye\r\n")
    assert os.stat(wt.root / "run.sh").st_mode & 0o777 == 0o755
    assert wt.read_text("run.sh") == "#!/bin/sh\r\necho bye\r\n"
    assert [p.name for p in wt.root.iterdir() if "relay-" in p.name] == []  # no temp files left
    with pytest.raises(PathEscape):
        wt.write_text(".git", "x")
    with pytest.raises(PathEscape, match="is a directory"):
        wt.write_text("src", "x")


# --------------------------------------------------------------------------- path safety


@pytest.fixture
def jail(tmp_path: Path) -> tuple[Path, Path]:
    """A root with hostile symlinks, and a sentinel directory outside it."""
    root = tmp_path / "root"
    sentinel = tmp_path / "sentinel"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "sub" / "file.txt").write_text("inside\n")
    sentinel.mkdir()
    (sentinel / "secret.txt").write_text("secret\n")
    (sentinel / "sub").mkdir()
    (root / "out").symlink_to(sentinel)  # relative escape
    (root / "abs_out").symlink_to(sentinel.resolve())
    (root / "etc").symlink_to("/etc")
    (root / "secret_link").symlink_to(sentinel / "secret.txt")
    (root / "dangling_out").symlink_to(sentinel / "not-there.txt")
    (root / "sub" / "up").symlink_to("../../sentinel")
    (root / "inner").symlink_to("sub")  # stays inside: allowed
    (root / "dotgit").symlink_to(".git")
    (root / "loop").symlink_to("loop")
    return root, sentinel


def tree_state(path: Path) -> dict[str, tuple[int, bytes | None, int]]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st_ = p.lstat()
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            state[str(p.relative_to(path))] = (st_.st_mode, data, st_.st_mtime_ns)
    return state


@pytest.mark.parametrize(
    "rel",
    [
        "/etc/passwd",
        "../sentinel/secret.txt",
        "sub/../../sentinel/secret.txt",
        "a\x00b",
        ".git/config",
        "sub/.GIT/x",
        "dotgit/config",
        "out/secret.txt",
        "abs_out/new.txt",
        "etc/passwd",
        "secret_link",
        "dangling_out",
        "sub/up/secret.txt",
        "",
        ".",
        "sub/..",
    ],
)
def test_safe_path_rejects(jail: tuple[Path, Path], rel: str) -> None:
    with pytest.raises(PathEscape):
        safe_path(jail[0], rel)


def test_safe_path_accepts_inside(jail: tuple[Path, Path]) -> None:
    root = jail[0].resolve()
    assert safe_path(jail[0], "sub/../new.txt") == root / "new.txt"
    assert safe_path(jail[0], "./sub//file.txt") == root / "sub" / "file.txt"
    assert safe_path(jail[0], "inner/file.txt") == root / "sub" / "file.txt"
    assert safe_path(jail[0], "é/ünï.py") == root / "é" / "ünï.py"
    with open_in_root(jail[0], "inner/file.txt") as fh:
        assert fh.read() == "inside\n"


_COMPONENTS = st.sampled_from(
    ["..", ".", "", "sub", "out", "abs_out", "etc", "passwd", "secret_link", "dangling_out", "up",
     "inner", "dotgit", ".git", ".GIT", "loop", "secret.txt", "new.txt", "file.txt", "sentinel",
     "root", "é", "\u202e", "x\x00", "~", "..."]
)  # fmt: skip
_HOSTILE = st.tuples(
    st.sampled_from(["", "/", "//", "./"]),
    st.lists(_COMPONENTS | st.text(max_size=4), min_size=1, max_size=6),
).map(lambda t: t[0] + "/".join(t[1]))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rel=_HOSTILE)
def test_hostile_paths_never_reach_outside(jail: tuple[Path, Path], rel: str) -> None:
    root, sentinel = jail
    real_root = str(root.resolve()) + os.sep
    before = tree_state(sentinel)
    for mode in ("r", "a"):
        try:
            fh = open_in_root(root, rel, mode, make_parents=True)
        except (PathEscape, OSError, ValueError):
            continue
        with fh:
            # Wherever the open landed, it must be a file inside the root (and never in .git).
            landed = os.readlink(f"/proc/self/fd/{fh.fileno()}")
            assert landed.startswith(real_root), (rel, landed)
            assert "/.git/" not in landed[len(real_root) - 1 :]
    assert tree_state(sentinel) == before
    assert not Path("/etc/new.txt").exists()


def test_symlink_swapped_in_after_check_is_refused(
    jail: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic check-then-use race: the swap happens right after `safe_path` approved."""
    root, sentinel = jail
    (root / "d").mkdir()
    real_safe_path = pathsafety.safe_path

    def swapping_safe_path(r: Path, rel: str) -> Path:
        result = real_safe_path(r, rel)
        os.rename(root / "d", root / "d_moved")
        (root / "d").symlink_to(sentinel)
        return result

    monkeypatch.setattr(pathsafety, "safe_path", swapping_safe_path)
    before = tree_state(sentinel)
    with pytest.raises(PathEscape, match="changed while being opened"):
        open_in_root(root, "d/secret.txt", "w")
    assert tree_state(sentinel) == before


@pytest.fixture
def race_tree(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    root, sentinel = tmp_path / "root", tmp_path / "sentinel"
    (root / "d").mkdir(parents=True)
    sentinel.mkdir()
    (sentinel / "f.txt").write_text("sentinel\n")
    yield root, sentinel


def test_race_directory_swapped_for_symlink_during_writes(race_tree: tuple[Path, Path]) -> None:
    root, sentinel = race_tree
    before = tree_state(sentinel)
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            try:
                os.rename(root / "d", root / "d_real")
                os.symlink(sentinel, root / "d")
                time.sleep(0)
                os.unlink(root / "d")
                os.rename(root / "d_real", root / "d")
                swaps += 1
            except OSError:
                # A write re-created `d` while it was away; put things back and carry on.
                if (root / "d").is_symlink():
                    (root / "d").unlink()
                if (root / "d_real").exists() and not (root / "d").exists():
                    os.rename(root / "d_real", root / "d")

    # Only `root` matters to file access, so no git repository is needed here.
    wt = Worktree(repo=Repo(root=root, git_dir=root / ".git"), root=root, branch="relay/race", base="")
    thread = threading.Thread(target=swapper)
    thread.start()
    ok = refused = 0
    try:
        # Race for 3 s, and on a loaded machine longer (up to 60 s) until both sides have really run.
        start = time.monotonic()
        while time.monotonic() - start < 3 or ((swaps == 0 or ok == 0) and time.monotonic() - start < 60):
            try:
                wt.write_text("d/f.txt", "from relay\n")
                assert wt.read_text("d/f.txt") == "from relay\n"
                ok += 1
            except (PathEscape, FileNotFoundError):
                refused += 1
            time.sleep(0)  # let the swapper thread run even when the GIL is contended
    finally:
        stop.set()
        thread.join()
    assert tree_state(sentinel) == before
    assert ok > 0 and swaps > 0  # the race really ran, and writes still got through


def test_read_tree_puts_a_commits_files_in_the_tree_without_moving_the_branch(user_repo: Path) -> None:
    wt = open_repo(user_repo).create_worktree("fresh")
    original = wt.read_text("src/app.py")
    wt.write_text("src/app.py", "changed\n")
    wt.write_text("extra.py", "E = 1\n")
    attempt = wt.commit("attempt 1")
    assert attempt is not None
    wt.read_tree(wt.base)
    assert wt.read_text("src/app.py") == original and not (wt.root / "extra.py").exists()
    assert wt.git("rev-parse", "HEAD").stdout.strip() == attempt  # the attempt stays in the history
    wt.write_text("src/app.py", original + "# fresh\n")
    assert wt.diff(wt.base).count("diff --git") == 1
    fresh = wt.commit("attempt 2")
    assert fresh is not None and wt.git("rev-parse", "HEAD~1").stdout.strip() == attempt


def _tree_story(tree: RunTree) -> list[object]:
    """The loop's uses of a checkout, in order; what each step shows."""
    seen: list[object] = [tree.diff()]
    tree.write_text("src/app.py", "one\n")
    seen.append(sorted(line for line in tree.diff().splitlines() if line.startswith(("+", "-"))))
    first = tree.commit("attempt 1")
    seen += [first is not None, tree.commit("nothing changed"), tree.diff(first)]
    tree.write_text("src/app.py", "half an edit\n")
    tree.reset_hard(first or "")
    seen.append(tree.read_text("src/app.py"))
    tree.read_tree(tree.base)
    seen += [tree.diff(), tree.diff(first).count("diff --git")]
    tree.write_text("new.py", "N = 1\n")
    seen += ["new.py" in tree.list_files(), tree.commit("attempt 2") is not None]
    return seen


def test_the_loops_fake_checkout_behaves_like_a_worktree(user_repo: Path, tmp_path: Path) -> None:
    from relaycode.testing.loop import DirTree

    wt = open_repo(user_repo).create_worktree("contract")
    fake = DirTree(tmp_path / "fake", {rel: wt.read_text(rel) for rel in wt.list_files()})
    assert _tree_story(fake) == _tree_story(wt)
