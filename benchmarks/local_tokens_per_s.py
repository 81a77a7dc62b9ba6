"""Tokens per second of each installed local model, through relay's client path.

For every local model that `relay local setup` installed: start (or reuse) its
llama-server, send a fixed coding prompt a few times through pydantic-ai's
`OpenAIChatModel` + `OpenAIProvider(base_url=handle.base_url)`, and print

- prompt and generation tok/s as llama-server measures them (`timings` in the
  response, kept by `openai_include_unmapped_response_data`), and
- end-to-end generation tok/s: completion tokens from `usage` / wall time of
  the request (includes prompt processing and HTTP).

The prompt cache is disabled (`cache_prompt: false`) so every run processes the
whole prompt. Usage:

    .venv/bin/python benchmarks/local_tokens_per_s.py [--runs 3] [--max-tokens 128] [--models a,b] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

PROMPT = (
    "Write a Python function `merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]` "
    "that merges overlapping closed intervals and returns them sorted. Include a docstring and type hints. "
    "Reply with the code only."
)


def _timings(response: Any) -> dict[str, float]:
    details = response.provider_details or {}
    unmapped = details.get("unmapped", {})
    return dict(unmapped.get("response", {}).get("timings", {}))


def bench_model(name: str, runs: int, max_tokens: int) -> dict[str, Any]:
    from pydantic_ai import ModelRequest
    from pydantic_ai.direct import model_request_sync
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIChatModelSettings
    from pydantic_ai.providers.openai import OpenAIProvider

    from relaycode.local.server import LocalServer, process_rss

    with LocalServer() as servers:
        t0 = time.monotonic()
        handle = servers.ensure(name)
        start_s = time.monotonic() - t0
        rss_loaded = process_rss(handle.pid)
        model = OpenAIChatModel(name, provider=OpenAIProvider(base_url=handle.base_url, api_key="local"))
        settings = OpenAIChatModelSettings(
            max_tokens=max_tokens,
            temperature=0,
            openai_include_unmapped_response_data=True,
            extra_body={"cache_prompt": False},
        )
        rows = []
        for _ in range(runs):
            t = time.monotonic()
            resp = model_request_sync(model, [ModelRequest.user_text_prompt(PROMPT)], model_settings=settings)
            wall = time.monotonic() - t
            tm = _timings(resp)
            rows.append(
                {
                    "wall_s": wall,
                    "prompt_tokens": resp.usage.input_tokens,
                    "completion_tokens": resp.usage.output_tokens,
                    "prompt_tps": tm.get("prompt_per_second"),
                    "gen_tps": tm.get("predicted_per_second"),
                    "e2e_gen_tps": resp.usage.output_tokens / wall if wall else None,
                }
            )
        rss_after = process_rss(handle.pid)

    def median(key: str) -> float | None:
        values = [v for r in rows if (v := r[key]) is not None]
        return statistics.median(values) if values else None

    return {
        "model": name,
        "start_s": start_s,
        "rss_loaded_mb": (rss_loaded or 0) / 1e6,
        "rss_after_mb": (rss_after or 0) / 1e6,
        "prompt_tokens": rows[0]["prompt_tokens"],
        "completion_tokens": median("completion_tokens"),
        "prompt_tps": median("prompt_tps"),
        "gen_tps": median("gen_tps"),
        "e2e_gen_tps": median("e2e_gen_tps"),
        "wall_s": median("wall_s"),
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--models", default="", help="comma-separated (default: every installed model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from relaycode.local.catalog import CATALOG, get
    from relaycode.local.runtime import runtime_status
    from relaycode.local.weights import model_status

    runtime = runtime_status()
    if not runtime.present:
        raise SystemExit("no local runtime: run `relay local setup` first")
    names = [n for n in args.models.split(",") if n] or [
        m.name for m in CATALOG.values() if model_status(m).verified
    ]
    results = [bench_model(get(n).name, args.runs, args.max_tokens) for n in names]

    if args.json:
        print(json.dumps({"runtime": runtime.version, "results": results}, indent=2))
        return
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {runtime.version}; {args.runs} runs, max_tokens={args.max_tokens}, medians"
    )
    print(
        "| model | start s | RSS loaded MB | RSS after MB | prompt tok | prompt tok/s | gen tok | gen tok/s | "
        "e2e gen tok/s | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:

        def f(v: float | None, d: int = 1) -> str:
            return "?" if v is None else f"{v:.{d}f}"

        print(
            f"| {r['model']} | {f(r['start_s'])} | {f(r['rss_loaded_mb'], 0)} | {f(r['rss_after_mb'], 0)} | "
            f"{r['prompt_tokens']} | {f(r['prompt_tps'])} | {f(r['completion_tokens'], 0)} | {f(r['gen_tps'])} | "
            f"{f(r['e2e_gen_tps'])} | {f(r['wall_s'])} |"
        )


if __name__ == "__main__":
    main()
