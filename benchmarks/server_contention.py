"""Two local model servers answering at the same time, against one after the other.

    PYTHONPATH=src .venv/bin/python benchmarks/server_contention.py PORT_A PORT_B [MAX_TOKENS] [ROUNDS]

PORT_A and PORT_B are two running llama-servers (e.g. the 0.5B's and the 1.5B's, as `relay local
status` lists them; each started by relay with `--threads` = all cores). Each round asks both the
same short coding question (temperature 0.8, fixed seed, MAX_TOKENS answer tokens, default 64):
first A then B ("sequential"), then both at once ("concurrent"). Prints one JSON line per round
and mode with the wall seconds and each server's generation speed; the question is whether two
servers that each use every core slow each other down by more than sharing would (a review
ensemble of two local models runs exactly so).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import sys
import time
import urllib.request
from typing import Any

QUESTION = "Write a Python function that returns the n-th Fibonacci number, with a docstring and a doctest."


def ask(port: int, max_tokens: int) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": max_tokens,
            "temperature": 0.8, "seed": 7, "cache_prompt": False}
    t = time.perf_counter()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=1800) as response:
        data: dict[str, Any] = json.load(response)
    return {"port": port, "s": round(time.perf_counter() - t, 2), "tokens": data["usage"]["completion_tokens"],
            "tok_per_s": round(data.get("timings", {}).get("predicted_per_second", 0.0), 2)}


def main() -> int:
    port_a, port_b = int(sys.argv[1]), int(sys.argv[2])
    max_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    ask(port_a, 4)  # load both models' weights into the page cache before timing
    ask(port_b, 4)
    for r in range(rounds):
        t = time.perf_counter()
        answers = [ask(port_a, max_tokens), ask(port_b, max_tokens)]
        print(json.dumps({"round": r, "mode": "sequential", "wall_s": round(time.perf_counter() - t, 2),
                          "answers": answers}), flush=True)
        t = time.perf_counter()
        with cf.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda p: ask(p, max_tokens), [port_a, port_b]))
        print(json.dumps({"round": r, "mode": "concurrent", "wall_s": round(time.perf_counter() - t, 2),
                          "answers": answers}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
