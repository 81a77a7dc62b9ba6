"""Run commands on model-written code inside a bubblewrap sandbox.

Everything relay executes in a worktree (tests, linters, build scripts) was
written or changed by a model, so it is treated as hostile: it gets the
worktree (writable), the system and Python installation (read-only), a
private /tmp, and nothing else: no home directory, no other repositories, no
network, no secrets in its environment, no way to signal relay, and bounded
time, memory, file size and process count. docs/security.md ("Sandbox") has
the threat model and the attack table the test battery proves.

How the uid drop works (measured on bubblewrap 0.8, kernel 6.x, as root):

* When relay runs as an ordinary user, bwrap runs unprivileged in a new user
  namespace as that user; the kernel already denies root-only files.
* When relay runs as root (CI, containers), a read-only /etc is not enough:
  uid 0 can still read /etc/shadow. Mapping uid 65534 inside a user namespace
  would not help either (bwrap started by root maps the sandbox uid onto real
  uid 0). Starting bwrap *as* 65534 (setpriv before bwrap) does not work here:
  the Python installation lives under /root (mode 700), and an unprivileged
  bwrap cannot even resolve the bind source (`--ro-bind-fd` with an fd opened
  by root fails too: "Can't find source path /proc/self/fd/N: Permission
  denied"). So bwrap runs as root *without* a user namespace, builds the mount
  tree (it can read /root), and the last thing inside the sandbox is
  `setpriv --reuid=65534 --regid=65534 --clear-groups` with every capability
  set (including the bounding set) cleared and no_new_privs, which execs the
  command as kernel-level uid/gid 65534.
* uid 65534 must be able to write the worktree, so in root mode the worktree
  is lent to 65534 for the duration of the command (lchown of every entry but
  `.git`) and given back afterwards: each entry gets its recorded owner back,
  new entries get the worktree root's owner, set-uid/set-gid bits are cleared.
  Only `lchown` is used and symlinks are never followed, so a planted symlink
  cannot redirect the chown. (An id-mapped mount would avoid the chown; it
  needs mount_setattr(2) and a host-side mount, which is more machinery than
  the cost justifies: the walk is a few ms for a typical repository.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaycode import cgroup, gitguard
from relaycode.errors import SandboxRefused, SandboxUnavailable
from relaycode.pathsafety import walk

if TYPE_CHECKING:
    from relaycode.config import Config

#: The unprivileged uid/gid ("nobody"/"nogroup") a root-run relay drops to.
SANDBOX_UID = 65534
SANDBOX_GID = 65534

#: Bytes of combined stdout+stderr kept: the end of the output is where failures are.
OUTPUT_TAIL_BYTES = 8192

#: Variables that are always passed through (if set) unless they look like a secret.
BASE_ENV_ALLOW: tuple[str, ...] = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TERM",
    "TZ",
    "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE",
)

#: A name containing any of these words is never passed, even when allow-listed.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)

#: Provider credentials by exact name or prefix. Most already match _SECRET_NAME;
#: listing them keeps them blocked even if someone narrows the pattern.
_KNOWN_SECRETS = frozenset(
    {
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "OPENROUTER_API_KEY",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "NPM_TOKEN",
        "PYPI_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "DATABASE_URL",
    }
)
_KNOWN_SECRET_PREFIXES = ("AWS_", "AZURE_", "GCP_", "GOOGLE_CLOUD_", "RELAY_API", "ANTHROPIC_", "OPENAI_")

#: Top-level system directories made visible read-only (or re-created as the same symlink).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")

_BWRAP_MISSING = (
    "bubblewrap (bwrap) is not installed: install it (apt-get install bubblewrap) "
    "or pass --no-sandbox to run model-written code unsandboxed"
)


@dataclass
class Limits:
    """Resource bounds for one command. Sizes in MiB; `max_procs` is per uid (RLIMIT_NPROC)."""

    wall_s: float = 300
    memory_mb: int = 4096
    file_size_mb: int = 512
    max_procs: int = 256


@dataclass
class SandboxPolicy:
    """What a sandboxed command may see. `enabled=False` is the user's `--no-sandbox`."""

    enabled: bool = True
    env_allow: tuple[str, ...] = ()
    readonly_paths: tuple[Path, ...] = ()
    network: bool = False


@dataclass
class CompletedCommand:
    """Outcome of one command. `output_tail` is the end of stdout and stderr, interleaved."""

    command: str
    exit_code: int
    seconds: float
    output_tail: str
    timed_out: bool
    sandboxed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- environment


def is_secret_name(name: str) -> bool:
    """True if a variable of this name may hold a credential and must not reach model code."""
    upper = name.upper()
    return (
        bool(_SECRET_NAME.search(upper))
        or upper in _KNOWN_SECRETS
        or upper.startswith(_KNOWN_SECRET_PREFIXES)
    )


def scrub_env(env: Mapping[str, str], allow: Sequence[str] = ()) -> dict[str, str]:
    """Keep only allow-listed variables (BASE_ENV_ALLOW + `allow`) whose names are not secret-like."""
    allowed = set(BASE_ENV_ALLOW) | set(allow)
    return {k: v for k, v in env.items() if k in allowed and not is_secret_name(k)}


def _command_env(policy: SandboxPolicy, extra_env: Mapping[str, str] | None) -> dict[str, str]:
    env = scrub_env(os.environ, policy.env_allow)
    # extra_env comes from relay itself, but the secret rule is absolute.
    env.update({k: v for k, v in (extra_env or {}).items() if not is_secret_name(k)})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["HOME"] = "/tmp"  # inside the sandbox a private tmpfs, never the user's home
    env["TMPDIR"] = "/tmp"
    return env


def settings_from_config(config: Config, *, no_sandbox: bool = False) -> tuple[SandboxPolicy, Limits]:
    """The policy and limits every command of a run gets: the one home of that rule (verify, the agent
    loop's `run`, `relay verify`, the bench's hidden tests)."""
    policy = SandboxPolicy(enabled=config.sandbox.enabled and not no_sandbox, env_allow=tuple(config.sandbox.env_allow))
    limits = Limits(wall_s=config.stages.verify.timeout_s, memory_mb=config.sandbox.memory_mb,
                    max_procs=config.sandbox.max_procs)
    return policy, limits


# --------------------------------------------------------------------------- availability


def bwrap_available() -> bool:
    """True if the bubblewrap binary is on PATH."""
    return shutil.which("bwrap") is not None


def require_sandbox(policy: SandboxPolicy) -> None:
    """Raise SandboxUnavailable if the policy wants a sandbox and bwrap is missing."""
    if policy.enabled and not bwrap_available():
        raise SandboxUnavailable(_BWRAP_MISSING)


# --------------------------------------------------------------------------- mounts


@dataclass(frozen=True)
class _Mount:
    """One bwrap mount operation: `tmpfs` (empty), `bind`, `ro-bind` or `ro-file` (a host file relay wrote)."""

    path: Path
    kind: str
    source: Path | None = None


_ORDER = {"tmpfs": 0, "bind": 1, "ro-bind": 2, "ro-file": 3}


def _refuse_exposure(path: Path, worktree: Path, git: gitguard.GitLayout | None) -> None:
    """A read-only mount must never show `/`, the tree's ancestors (siblings, home) or the whole git dir."""
    too_wide = path == Path("/") or worktree.is_relative_to(path) or Path.home().is_relative_to(path)
    if git is not None:
        too_wide = too_wide or git.common.is_relative_to(path)
    if too_wide:
        raise SandboxRefused(
            f"refusing to mount {path} in the sandbox: it would expose {'the whole host' if path == Path('/') else 'the directories around the worktree'}"
            " (check stages.verify.python and the project environment's interpreter)"
        )


def git_mounts(git: gitguard.GitLayout, config_file: Path) -> list[_Mount]:
    """What a sandboxed command sees of the git directories: the readable parts, a scrubbed config."""
    mounts = [_Mount(git.common, "tmpfs")]
    mounts += [_Mount(git.common / part, "ro-bind") for part in gitguard.READABLE_PARTS
               if os.path.lexists(git.common / part)]
    mounts.append(_Mount(git.common / "config", "ro-file", config_file))
    if git.linked:
        mounts.append(_Mount(git.admin, "ro-bind"))
        mounts.append(_Mount(git.root / ".git", "ro-bind"))
    return mounts


def nested_git_mounts(worktree: Path) -> list[_Mount]:
    """Every nested `.git` (submodules, vendored repositories) read-only, even under the writable tree.

    A symlink named `.git` is not bound (bwrap would follow it); the check after the command sees
    any change to it.
    """
    mounts = []
    for rel in gitguard.git_entries(worktree):
        if rel == ".git":
            continue
        path = worktree / rel
        if not path.is_symlink():
            mounts.append(_Mount(path, "ro-bind"))
    return mounts


#: Above this many hard-linked files, their top-level directories are bound read-only instead.
_MAX_HARDLINK_BINDS = 2000


def hardlink_mounts(worktree: Path) -> list[_Mount]:
    """Files in the tree with more than one link, and Python environments in it, read-only.

    Package managers (pnpm, uv's default link mode) hard-link installed files from a store shared by
    every project: writing such a file in the tree writes the store, outside the tree. Many of them
    (a whole `node_modules`) are covered by binding their top-level directory instead. A virtualenv
    or tox env in the tree (a directory holding `pyvenv.cfg`) is the user's: a `.pth` file a test
    drops into it would run in the user's next `python`, outside the sandbox.
    """
    linked: list[Path] = []
    envs: list[_Mount] = []
    for dirpath, dirnames, filenames in walk(worktree):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        if "pyvenv.cfg" in filenames and Path(dirpath) != worktree:
            envs.append(_Mount(Path(dirpath), "ro-bind"))
            dirnames[:] = []
            continue
        for name in filenames:
            path = Path(dirpath) / name
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    linked.append(path)
    if len(linked) > _MAX_HARDLINK_BINDS:
        tops = sorted({worktree / p.relative_to(worktree).parts[0] for p in linked})
        return envs + [_Mount(top, "ro-bind") for top in tops if top.is_dir() and not top.is_symlink()] + \
               [_Mount(p, "ro-bind") for p in linked if p.parent == worktree]
    return envs + [_Mount(p, "ro-bind") for p in linked]


def _bytecode(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every `.pyc` in the tree: (inode, mtime, size)."""
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            if name.endswith(".pyc"):
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    found[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return found


def _drop_new_bytecode(root: Path, before: Mapping[str, tuple[int, int, int]]) -> None:
    """Delete bytecode a command wrote: Python trusts a `.pyc` whose recorded size and mtime match the
    source, so one compiled from other code would run in the user's next import, outside the sandbox."""
    for path, seen in _bytecode(root).items():
        if before.get(path) != seen:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _bwrap_args(
    worktree: Path, policy: SandboxPolicy, limits: Limits, as_root: bool, extra_mounts: Sequence[_Mount],
    git: gitguard.GitLayout | None = None,
) -> list[str]:
    args = ["bwrap", "--die-with-parent", "--new-session"]
    if as_root:
        # No user namespace: it would map the sandbox uid onto real root (see module docstring).
        args += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if not policy.network:
            args.append("--unshare-net")
    else:
        args.append("--unshare-all")
        if policy.network:
            args.append("--share-net")

    # Device nodes, a fresh /proc for the new PID namespace, and a private, size-bounded /tmp
    # (tmpfs is RAM, so it is capped like a file). /tmp first: the worktree may live under it.
    tmp_bytes = max(limits.file_size_mb, 1) * 1024 * 1024
    args += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    # POSIX semaphores and shared memory (multiprocessing, pytest-xdist) need a writable /dev/shm.
    args += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/dev/shm"]

    mounts: list[_Mount] = []
    for top in _SYSTEM_DIRS:
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            mounts.append(_Mount(path, "ro-bind"))
    # The interpreter and the venv, so `python -m pytest` works; they may live under /root.
    for extra in (Path(sys.base_prefix), Path(sys.prefix), *policy.readonly_paths):
        if extra.exists():
            resolved = extra.resolve()
            _refuse_exposure(resolved, worktree, git)
            mounts.append(_Mount(resolved, "ro-bind"))
    mounts.append(_Mount(worktree, "bind"))
    mounts += extra_mounts

    # Parents before children, and at one path an empty tmpfs before what is bound into it,
    # so a read-only `.git` always lands on top of the writable tree that contains it.
    mounts.sort(key=lambda m: (len(m.path.parts), _ORDER[m.kind]))
    done: list[_Mount] = []
    created: set[Path] = {Path("/"), Path("/tmp")}
    for mount in mounts:
        covering = max((d for d in done if mount.path.is_relative_to(d.path)),
                       key=lambda d: len(d.path.parts), default=None)
        if mount.kind == "ro-bind" and covering is not None and covering.kind == "ro-bind":
            continue  # already read-only through a parent, with nothing writable in between
        # Directories that do not exist in the mount tree yet (outside any bind, or inside a tmpfs)
        # are created 0755: bwrap would copy the host's 0700 of /root, which uid 65534 cannot traverse.
        for parent in reversed(mount.path.parents):
            if parent in created:
                continue
            inner = max((d for d in done if parent.is_relative_to(d.path)),
                        key=lambda d: len(d.path.parts), default=None)
            if inner is None or inner.kind == "tmpfs":
                args += ["--perms", "0755", "--dir", str(parent)]
                created.add(parent)
        if mount.kind == "tmpfs":
            args += ["--perms", "0755", "--tmpfs", str(mount.path)]
        elif mount.kind == "ro-file":
            args += ["--ro-bind", str(mount.source), str(mount.path)]
        else:
            args += [f"--{mount.kind}", str(mount.path), str(mount.path)]
        done.append(mount)
        created.add(mount.path)
    args += ["--chdir", str(worktree)]

    if as_root:
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        args += [
            setpriv,
            f"--reuid={SANDBOX_UID}",
            f"--regid={SANDBOX_GID}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    return args


def _limit_args(limits: Limits) -> tuple[list[str], Callable[[], None] | None]:
    """A `prlimit` prefix (thread-safe, unlike preexec_fn), or a preexec_fn if prlimit is missing."""
    mem = limits.memory_mb * 1024 * 1024
    fsize = limits.file_size_mb * 1024 * 1024
    prlimit = shutil.which("prlimit")
    if prlimit:
        return [prlimit, f"--as={mem}", f"--fsize={fsize}", f"--nproc={limits.max_procs}", "--"], None

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_procs, limits.max_procs))

    return [], preexec


# --------------------------------------------------------------------------- worktree ownership


def _walk_worktree(root: Path) -> Iterator[str]:
    """Every path under root except `.git` entries at any depth (and what is in them), not following links.

    git metadata is never lent to the sandbox uid and never re-owned afterwards: re-owning a `.git`
    the sandbox planted would make git trust it.
    """
    yield str(root)
    for dirpath, dirnames, filenames in walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in (*dirnames, *filenames):
            if name != ".git":
                yield os.path.join(dirpath, name)


def _lend_worktree(root: Path, owners: dict[str, tuple[int, int]]) -> None:
    """Chown the worktree to the sandbox uid, recording original owners as it goes (so a failure
    half-way can still be undone)."""
    for path in _walk_worktree(root):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            continue  # its inode is shared with a file outside the tree: never lent
        owners[path] = (st.st_uid, st.st_gid)
        os.lchown(path, SANDBOX_UID, SANDBOX_GID)


def _reclaim_worktree(root: Path, owners: Mapping[str, tuple[int, int]]) -> None:
    """Give every entry back its owner; new ones get the root's. Runs when no sandboxed process is left."""
    if str(root) not in owners:
        return  # nothing was lent
    default = owners[str(root)]
    for path in _walk_worktree(root):
        try:
            st = os.lstat(path)
            os.lchown(path, *owners.get(path, default))
            # A file the sandbox made set-uid must not become a set-uid-root file.
            if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
        except OSError:  # gone, or out of reach (a name longer than PATH_MAX): the rest is still given back
            continue


# --------------------------------------------------------------------------- process handling


class _Tail:
    """The last `limit` bytes of a stream."""

    def __init__(self, limit: int = OUTPUT_TAIL_BYTES) -> None:
        self.limit = limit
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > 2 * self.limit:
            del self.buf[: -self.limit]

    def text(self) -> str:
        return bytes(self.buf[-self.limit :]).decode("utf-8", errors="replace")


def _has_exited(pid: int) -> bool:
    # WNOWAIT: do not reap, so the pid (our process-group id) cannot be reused before killpg.
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


_PIPE_INPUT_BYTES = 1 << 15
"""Inputs up to this size go through a pipe (an empty pipe holds 64 KiB, so writing it cannot block)."""


def _input_fd(data: bytes) -> int:
    """A descriptor to read `data` from, as a command's stdin, that the command cannot write.

    The one way relay hands a sandboxed command more than a few bytes: not as an argument (exec fails
    with E2BIG past 128 KiB per argument, and /proc shows arguments to the code the command runs), not
    as a file in the tree (the tree is the command's to change). Small data goes through a pipe: once
    read it is gone, so a process that still holds the pipe (a shell waiting for its child) cannot
    show it again; that is what keeps the bench's secret (bench/hidden.py) from the code under test.
    Larger data goes in a sealed memfd: in memory, read-only.
    """
    if len(data) <= _PIPE_INPUT_BYTES:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        return read_end
    fd = os.memfd_create("relay-input", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _execute(
    argv: list[str], cwd: Path, env: Mapping[str, str], wall_s: float, preexec: Callable[[], None] | None,
    stdin: bytes | None = None,
) -> tuple[int, str, bool]:
    """Run argv in its own session, reading `stdin` (else nothing); return (exit code, output tail, timed out)."""
    deadline = time.monotonic() + wall_s
    input_fd = _input_fd(stdin) if stdin is not None else None
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL if input_fd is None else input_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
    finally:
        if input_fd is not None:
            os.close(input_fd)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    tail = _Tail()
    timed_out = eof = False
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if eof:
                if _has_exited(proc.pid):
                    break
                time.sleep(min(remaining, 0.002))
            elif sel.select(timeout=min(remaining, 0.1)):
                chunk = os.read(fd, 65536)
                if chunk:
                    tail.feed(chunk)
                else:
                    eof = True
            elif _has_exited(proc.pid):
                break  # exited, but something it left behind still holds the pipe open
    # Always: nothing the command started may outlive it (in the sandbox the PID namespace
    # dies with bwrap; without it, this reaches everything still in the process group).
    _kill_group(proc.pid)
    code = proc.wait()
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65536):
            tail.feed(chunk)
    proc.stdout.close()
    return (128 - code if code < 0 else code), tail.text(), timed_out


def run(
    command: str | Sequence[str],
    cwd: Path,
    *,
    policy: SandboxPolicy,
    limits: Limits,
    extra_env: Mapping[str, str] | None = None,
    git: gitguard.GitLayout | None = None,
    stdin: bytes | None = None,
) -> CompletedCommand:
    """Run `command` in `cwd` (a string goes through `/bin/sh -c`) under the policy and limits.

    `stdin` is data the command reads on its standard input, then EOF (none: /dev/null): how relay
    passes it anything large (see `_input_fd`), and a secret that no argv, environment variable or
    file of the tree shows (the bench's hidden tests: bench/hidden.py).

    `git` is the checkout's git layout as relay knows it; unset, it is discovered from `cwd` and
    validated (`gitguard.discover`). Raises SandboxUnavailable if the policy wants a sandbox and bwrap
    is missing, SandboxRefused if a mount would expose too much, and SandboxViolation if the command
    changed any `.git` entry in the tree. An exit by signal N is reported as 128+N; a timeout as
    timed_out=True.
    """
    require_sandbox(policy)
    text = command if isinstance(command, str) else shlex.join(command)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    worktree = Path(cwd).resolve()
    env = _command_env(policy, extra_env)
    prefix, preexec = _limit_args(limits)
    owners: dict[str, tuple[int, int]] = {}
    lend = False
    before: dict[str, str] | None = None
    bytecode_before: dict[str, tuple[int, int, int]] = {}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="relay-sandbox-") as scratch, \
            cgroup.memory_cap(limits.memory_mb * 1024 * 1024) as cgroup_procs:
        if cgroup_procs is not None:  # the whole command tree shares one memory cap
            prefix = cgroup.join_prefix(cgroup_procs) + prefix
        if policy.enabled:
            as_root = os.geteuid() == 0
            layout = git if git is not None else gitguard.discover(worktree)
            mounts = nested_git_mounts(worktree) + hardlink_mounts(worktree)
            if layout is not None:
                config_file = Path(scratch) / "config"
                config_file.write_text(gitguard.scrubbed_config(layout.common), encoding="utf-8")
                config_file.chmod(0o644)
                Path(scratch).chmod(0o755)
                mounts += git_mounts(layout, config_file)
            argv = prefix + _bwrap_args(worktree, policy, limits, as_root, mounts, layout) + argv
            # In root mode the tree's git metadata is root's while the command runs as 65534, which
            # git refuses as dubious ownership. Inside the sandbox nothing git could run reaches the
            # host, and the config it reads is the scrubbed one.
            env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
            lend = as_root
            before = gitguard.snapshot(worktree)
            bytecode_before = _bytecode(worktree)
        else:
            argv = prefix + argv
        try:
            if lend:
                _lend_worktree(worktree, owners)
            code, tail, timed_out = _execute(argv, worktree, env, limits.wall_s, preexec, stdin)
        finally:
            try:
                if lend:
                    _reclaim_worktree(worktree, owners)
            finally:
                # Whatever happened above, the checks run: a give-back that fails on a tree the command
                # made hostile (a chain deeper than PATH_MAX) must not switch them off.
                if before is not None:
                    _drop_new_bytecode(worktree, bytecode_before)
                    gitguard.check_unchanged(worktree, before, text)
    return CompletedCommand(
        command=text,
        exit_code=code,
        seconds=round(time.monotonic() - start, 3),
        output_tail=tail,
        timed_out=timed_out,
        sandboxed=policy.enabled,
    )
