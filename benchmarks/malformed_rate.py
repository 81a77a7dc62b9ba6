"""Malformed implement answers of a local model, with and without the whole-file grammar.

    RELAY_HOME=... PYTHONPATH=src .venv/bin/python benchmarks/malformed_rate.py \\
        /work/shared/benchmarks/quixbugs.jsonl --model local:qwen2.5-coder-0.5b --limit 10 --samples 2

For each of the first `--limit` cases: the prompt relay's first implement attempt sends (the task
and the case's files, whole-file format), asked `--samples` times per condition (grammar off, then
on) at `--temperature` with seeds `--seed + sample`. Each answer is classified as relay would
treat it (`implement.answer_to_files`): `ok` (files to write), `unchanged` (applies, changes
nothing), `cut_off` (stopped at the token limit without a usable edit) or `malformed` (any other
refusal: no block, a path that was not shown, only a file name, broken syntax). One JSON line per
answer, then one summary line per condition with the counts and the median seconds per answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


class _Files:
    """The case's files, read-only: what `answer_to_files` reads when an answer edits an unshown file."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read_text(self, rel: str) -> str:
        if rel not in self.files:
            raise FileNotFoundError(rel)
        return self.files[rel]


async def ask(config: Any, spec: str, case: Any, seed: int, temperature: float) -> dict[str, Any]:
    from relaycode.errors import EditError, PathEscape
    from relaycode.session import ModelSession, RequestOptions
    from relaycode.stages.implement import (
        answer_format,
        answer_options,
        answer_to_files,
        cut_off,
        implement_prompt,
    )

    session = ModelSession(config)
    contents = dict(case.files)
    profile = session.models.get(spec).profile
    whole, instructions = answer_format(profile, contents)
    base = answer_options(profile, whole, list(contents))
    options = RequestOptions(temperature=temperature, seed=seed, extra_body=base.extra_body)
    prompt = implement_prompt(case.instruction, None, contents, None, whole_file=whole)
    t0 = time.perf_counter()
    answer = await session.ask("implement", spec, prompt, instructions=instructions, options=options)
    seconds = time.perf_counter() - t0
    try:
        files = answer_to_files(answer.output, contents, list(contents), whole, _Files(contents))  # type: ignore[arg-type]
        verdict, why = ("ok" if files else "unchanged"), ""
    except (EditError, PathEscape) as exc:
        verdict = "cut_off" if cut_off(answer.messages) else "malformed"
        why = exc.message.splitlines()[0][:160]
    return {"case": case.id, "grammar": base.extra_body is not None, "seed": seed, "verdict": verdict,
            "why": why, "seconds": round(seconds, 1), "output_tokens": session.ledger.total().tokens.output}


def main(argv: list[str] | None = None) -> int:
    from relaycode.bench.suite import load_suite
    from relaycode.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--model", default="local:qwen2.5-coder-0.5b")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--conditions", default="off,on", help="grammar conditions, in order")
    args = parser.parse_args(argv)
    cases = load_suite(args.suite)[: args.limit]
    rows: dict[str, list[dict[str, Any]]] = {}
    for condition in args.conditions.split(","):
        config = load_config(preset="local-noplan")
        models = dict(config.models)
        models[args.model] = models[args.model].model_copy(update={"answer_grammar": condition == "on"})
        config = config.model_copy(update={"models": models})
        for case in cases:
            for sample in range(args.samples):
                row = asyncio.run(ask(config, args.model, case, args.seed + sample, args.temperature))
                rows.setdefault(condition, []).append(row)
                print(json.dumps(row), flush=True)
    for condition, got in rows.items():
        verdicts = [r["verdict"] for r in got]
        print(json.dumps({"summary": {"grammar": condition, "model": args.model, "answers": len(got),
                                      **{v: verdicts.count(v) for v in ("ok", "unchanged", "cut_off", "malformed")},
                                      "median_s": statistics.median(r["seconds"] for r in got)}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
