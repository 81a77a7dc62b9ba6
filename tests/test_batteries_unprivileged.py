"""The two attack batteries again, as an ordinary user, when the suite runs as root (CI containers).

bubblewrap works differently for the two: as root it builds the mount tree without a user namespace
and drops to uid 65534 inside; as an ordinary user it runs in a new user namespace as that user, and
relay lends nothing. Both paths must block every attack, so a root CI runs the batteries once more
under an unprivileged uid, with the system's Python 3.11 and this checkout's packages on the path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from relaycode import sandbox

ROOT = Path(__file__).resolve().parents[1]
UID = 4242
SYSTEM_PYTHON = Path("/usr/bin/python3.11")

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not sandbox.bwrap_available(), reason="bubblewrap (bwrap) is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="not root: the batteries already run as an ordinary user"),
]


def _site_packages() -> str:
    import pytest as pytest_module

    return str(Path(pytest_module.__file__).resolve().parents[1])


def test_batteries_pass_as_an_ordinary_user() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None or not SYSTEM_PYTHON.exists() or sys.version_info[:2] != (3, 11):
        pytest.skip("needs setpriv and the system's /usr/bin/python3.11 (the packages are built for 3.11)")
    for path in (ROOT, Path(_site_packages())):
        if not all(os.stat(p).st_mode & 0o005 == 0o005 for p in (path, *path.parents) if p != Path("/")):
            pytest.skip(f"{path} is not readable by other users, so an unprivileged run cannot import relay")
    # pytest's tmp_path sits under a root-only directory: the unprivileged run needs its own.
    base = Path(tempfile.mkdtemp(prefix="relay-unprivileged-"))
    home = base / "home"
    home.mkdir()
    os.chown(base, UID, UID)
    os.chown(home, UID, UID)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb",
        "PYTHONPATH": f"{ROOT / 'src'}:{_site_packages()}", "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(
        [setpriv, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", str(SYSTEM_PYTHON), "-m", "pytest",
         "-q", "-p", "no:cacheprovider", f"--basetemp={base / 'pytest'}", "-m", "sandbox",
         "tests/test_sandbox_attacks.py", "tests/test_untrusted_repo.py", "tests/test_untrusted_repo_redteam.py",
         "tests/test_untrusted_repo_redteam2.py", "tests/test_untrusted_repo_redteam3.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    shutil.rmtree(base, ignore_errors=True)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and not re.search(r"\b\d+ (failed|error)", tail), tail
