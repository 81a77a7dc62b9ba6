"""Start-up time of `relay --help` and `relay --version` (median of several warm runs).

    .venv/bin/python benchmarks/startup.py [--runs 15]

Heavy imports (pydantic-ai, provider SDKs, OpenTelemetry) are lazy, so these
commands must stay under 0.5 s. Also prints which heavy modules `--help`
imported (none is the goal).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("pydantic_ai", "openai", "anthropic", "google.genai", "opentelemetry", "genai_prices", "matplotlib")


def time_command(argv: list[str], runs: int) -> list[float]:
    subprocess.run(argv, capture_output=True, check=True)  # warm the cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def heavy_imports() -> list[str]:
    code = ("import contextlib, io, sys\nfrom relaycode.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        main(['--help'])\n"
            "    except SystemExit:\n        pass\n"
            f"print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [m for m in out.strip().splitlines()[-1].removeprefix("heavy:").split(",") if m]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    relay = str(Path(sys.executable).parent / "relay")
    ok = True
    for argv in ([relay, "--help"], [relay, "--version"]):
        times = time_command(argv, args.runs)
        median = statistics.median(times)
        ok &= median < 0.5
        print(f"{' '.join(['relay', *argv[1:]]):16} median {median * 1000:6.0f} ms  "
              f"min {min(times) * 1000:4.0f} ms  max {max(times) * 1000:4.0f} ms  ({args.runs} runs)")
    heavy = heavy_imports()
    print("heavy modules imported by --help:", ", ".join(heavy) or "none")
    return 0 if ok and not heavy else 1


if __name__ == "__main__":
    raise SystemExit(main())
