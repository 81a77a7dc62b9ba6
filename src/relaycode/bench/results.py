"""The results file of a bench: one JSON record per finished pair, written by the driver alone.

`DIR/results.jsonl` is appended one whole line at a time (one write, then
fsync), so a killed bench leaves whole lines and at most one torn tail, which
resume drops. A pair is (case, config, repeat); records older than repeats
have no `repeat` field and count as repeat 0.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relaycode.errors import UsageError

#: (case id, config name, repeat): what resume skips and what a record is unique by.
PairKey = tuple[str, str, int]

#: Files and dirs a bench creates in its output dir (the only ones `--force` removes).
BENCH_ARTEFACTS = (
    "results.jsonl", "bench.json", "work", "summary.json", "report.md", "pareto.png", "pareto.html",
    "summary-estimate.json", "report-estimate.md", "pareto-estimate.png", "pareto-estimate.html",
)  # fmt: skip


def pair_key(record: Mapping[str, Any]) -> PairKey:
    """The pair a record belongs to."""
    return (str(record["case"]), str(record["config"]), int(record.get("repeat") or 0))


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line, then flush and fsync: a kill leaves whole lines only."""
    line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = line.encode()
        while data:  # one write(2) for any sane record; loop in case of a short write
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a results.jsonl. A torn last line (a kill mid-write) is dropped (and cut off with `repair`)."""
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[dict[str, Any]] = []
    good_bytes = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "case" not in rec or "config" not in rec:
                raise ValueError("not a record")
        except ValueError:
            if i >= len(lines) - 2 and not raw.endswith(line + b"\n"):
                break  # torn tail
            raise UsageError(f"{path}:{i + 1}: not a bench record; fix or remove the line") from None
        records.append(rec)
        good_bytes += len(line) + 1
    if repair and good_bytes < len(raw):
        with path.open("r+b") as fh:
            fh.truncate(good_bytes)
    # A pair recorded twice (e.g. two concurrent benches on one dir): keep the latest.
    latest: dict[PairKey, dict[str, Any]] = {}
    for rec in records:
        latest[pair_key(rec)] = rec
    return list(latest.values())




def prepare_out_dir(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse a non-empty dir without --resume/--force; --force removes only bench artefacts."""
    if resume and force:
        raise UsageError("--resume and --force contradict each other: pick one")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not resume:
        if not force:
            raise UsageError(f"--out {out}: not empty; pass --resume to continue that bench or --force to replace it")
        foreign = [e for e in entries if e not in BENCH_ARTEFACTS]
        if foreign:
            raise UsageError(f"--out {out}: --force removes only bench files, but it also holds "
                             f"{', '.join(foreign[:5])}; pick another dir")
        for name in entries:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
