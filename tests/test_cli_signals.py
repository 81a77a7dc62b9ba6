"""`relay` ends on SIGTERM like on Ctrl-C: exit 130, and atexit hooks (which stop the local model
servers relay started) run. Python's default SIGTERM action skips them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import atexit, sys, time
from pathlib import Path
import relaycode.cli as cli

marker = Path(sys.argv[1])

def _register():
    @cli.app.command("wait")
    def wait() -> None:
        atexit.register(lambda: marker.write_text("cleaned up"))
        marker.with_suffix(".ready").write_text("")
        time.sleep(60)

cli._register = _register
cli.main(["wait"])
"""


def test_sigterm_ends_relay_like_ctrl_c_and_runs_atexit(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not marker.with_suffix(".ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert marker.read_text() == "cleaned up"
