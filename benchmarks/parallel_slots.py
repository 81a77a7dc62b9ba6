"""N implement answers from one llama-server: all at once (parallel slots) against one after another.

    python benchmarks/parallel_slots.py PORT N par|seq [MAX_TOKENS]

PORT is a running llama-server (start it with `--parallel N --kv-unified` to compare); the prompt is
the demo's first implement attempt (whole-file, grammar-constrained), temperature 0.8, seeds 100..
Prints the wall time, the tokens of each answer and how each ended.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import sys
import time
import urllib.request
from typing import Any

from relaycode.grammar import whole_file_grammar
from relaycode.stages.implement import WHOLE_FILE_INSTRUCTIONS, implement_prompt
from relaycode.testing.sample_repos import DEMO_FILES, DEMO_TASK


def ask(port: int, i: int, max_tokens: int) -> tuple[float, int, str, str]:
    files = {"shop/cart.py": DEMO_FILES["shop/cart.py"]}
    prompt = implement_prompt(DEMO_TASK, None, files, None, whole_file=True)
    body = {"model": "m", "messages": [{"role": "system", "content": WHOLE_FILE_INSTRUCTIONS},
                                       {"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0.8, "seed": 100 + i, "grammar": whole_file_grammar(list(files))}
    t = time.time()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=1800) as response:
        data: dict[str, Any] = json.load(response)
    choice = data["choices"][0]
    return time.time() - t, data["usage"]["completion_tokens"], choice["message"]["content"], choice["finish_reason"]


def main() -> int:
    port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 768
    t0 = time.time()
    if mode == "par":
        with cf.ThreadPoolExecutor(n) as pool:
            out = list(pool.map(lambda i: ask(port, i, max_tokens), range(n)))
    else:
        out = [ask(port, i, max_tokens) for i in range(n)]
    print(json.dumps({"mode": mode, "n": n, "wall_s": round(time.time() - t0, 1), "tokens": [o[1] for o in out],
                      "finish": [o[3] for o in out]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
