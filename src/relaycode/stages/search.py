"""The agent's `search` action: a model-written regex over the tree, bounded in time and memory.

The regex is the model's: Python's `re` backtracks, and a pattern like `^(a|a?)+$` on a 40-character
line runs for hours, in relay's own process, outside every limit the sandbox enforces. So the
search runs in a child process that relay kills after `SEARCH_WALL_S`, and reads each file through
the path-safety layer with a size cap (a file a test left may be hundreds of MiB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SEARCH_WALL_S = 10.0
MAX_FILE_BYTES = 1 << 20
MAX_LINE = 1000  # each line the regex sees is cut here: bounds backtracking per line

_CHILD = r"""
import json, re, sys
from pathlib import Path
from relaycode.pathsafety import read_text_in_root

job = json.loads(sys.stdin.read())
try:
    pattern = re.compile(job["pattern"])
except re.error:  # not a valid regex: search for the plain text
    pattern = re.compile(re.escape(job["pattern"]))
hits = []
for name in job["files"]:
    text = read_text_in_root(Path(job["root"]), name, max_bytes=job["max_bytes"])
    if text is None or "\0" in text[:8192]:
        continue
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line[:job["max_line"]]):
            hits.append(f"{name}:{number}: {line.strip()[:200]}")
            if len(hits) > job["max_hits"]:
                break
    if len(hits) > job["max_hits"]:
        break
print(json.dumps(hits))
"""


class SearchTimeout(Exception):
    """The pattern ran longer than SEARCH_WALL_S."""


def search(root: Path, files: list[str], pattern: str, *, max_hits: int, wall_s: float = SEARCH_WALL_S) -> list[str]:
    """`path:line: text` for lines of `files` (relative to `root`) matching `pattern`, at most max_hits + 1."""
    job = {"root": str(root), "files": files, "pattern": pattern, "max_hits": max_hits,
           "max_bytes": MAX_FILE_BYTES, "max_line": MAX_LINE}
    src = str(Path(__file__).resolve().parents[2])
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(job), capture_output=True, text=True,
                              timeout=wall_s, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}, check=False)
    except subprocess.TimeoutExpired:
        raise SearchTimeout(f"the search took longer than {wall_s:.0f} s; use a simpler pattern") from None
    if done.returncode != 0:
        return []
    hits: list[str] = json.loads(done.stdout or "[]")
    return hits
