"""Built-in presets, as plain data (a preset is a config file that ships with relay).

`local` runs offline on the embedded models; `api` is the multi-vendor design
(frontier planner, cheap implementer of another vendor, reviewers of other
vendors); `solo*` are one-model baselines to compare against, with the
diversity rule turned off on purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaycode.config import Config

#: The 0.5B's review is advisory in the local presets: measured in review-eval it finds few bugs and
#: flags correct changes (F1 0.11 on HumanEvalFix, docs/benchmarks.md), and in the demo a false
#: "major" of it blocked a fix the tests had verified until the run gave up (2026-12-01). Its
#: findings are still shown; verification decides.
#: The judge (`relay review`) is "another reviewer of the same review": with `--reviewers` naming both
#: local models each judges the other's findings; with the 0.5B alone there is no one to judge.
ADVISORY_LOCAL_REVIEW: dict[str, Any] = {"models": ["local:qwen2.5-coder-0.5b"], "block_on": "none",
                                         "judge": "reviewers"}

QWEN_15 = "local:qwen2.5-coder-1.5b"
QWEN_05 = "local:qwen2.5-coder-0.5b"
SMOLLM = "local:smollm2-135m"

# Output caps for the local models: on 2 CPU cores a runaway answer of 4096 tokens costs minutes.
# Long timeouts: a local request that times out would only redo the same work on the same CPU.
# Plans, edit blocks and reviews of small changes fit well within these (measured on the suites).
LOCAL_MODELS: dict[str, dict[str, Any]] = {
    QWEN_15: {"max_tokens": 1024, "timeout_s": 900},
    QWEN_05: {"max_tokens": 768, "timeout_s": 900},
    SMOLLM: {"max_tokens": 256, "timeout_s": 900},
}

PRESETS: dict[str, dict[str, Any]] = {
    "local": {
        "models": LOCAL_MODELS,
        # Only one capable local vendor exists (Qwen), so diversity is by model:
        # the 1.5B implements (the only local model that fixes non-trivial bugs),
        # the 0.5B reviews, so no model reviews its own work.
        "diversity": "model",
        "stages": {
            "plan": {"model": QWEN_15},
            "implement": {"model": QWEN_15},
            "review": dict(ADVISORY_LOCAL_REVIEW),
        },
    },
    "local-noplan": {
        "models": LOCAL_MODELS,
        "diversity": "model",
        "stages": {
            "implement": {"model": QWEN_15},
            "review": dict(ADVISORY_LOCAL_REVIEW),
        },
    },
    "local-cascade": {
        "models": LOCAL_MODELS,
        # Cheap implementer first; only what fails verification escalates to the 1.5B.
        "diversity": "off",
        "stages": {
            "implement": {"model": QWEN_05, "escalate_to": [QWEN_15], "escalate_after": 1},
        },
    },
    "local-sampled": {
        "models": LOCAL_MODELS,
        # Verified sampling, cheap first: the 0.5B draws 3 grammar-constrained candidates per attempt,
        # verification chooses; the 1.5B (3 candidates too) only for what none of them verified. No
        # planner (it did not pay on one-function bugs) and no reviewer: both local models implement,
        # and a reviewer may never be an implementer.
        "diversity": "off",
        "stages": {
            # With nothing pinned that can fail a change, candidates are ranked by checks the model writes.
            "implement": {"model": QWEN_05, "escalate_to": [QWEN_15], "escalate_after": 1, "samples": 3,
                          "generate_checks": True},
        },
    },
    "local-1.5b-sampled": {
        "models": LOCAL_MODELS,
        # The best local design measured on QuixBugs (docs/benchmarks.md): the 1.5B alone draws 3
        # grammar-constrained candidates per attempt and verification chooses. No planner (it did not
        # pay on one-function bugs) and no reviewer (the 0.5B's review was measured useless as a gate;
        # add one with [stages.review] if you want its opinion).
        "diversity": "model",
        "stages": {
            "implement": {"model": QWEN_15, "samples": 3},
        },
    },
    "solo-local": {
        "models": LOCAL_MODELS,
        "diversity": "off",
        "stages": {
            "plan": {"model": QWEN_15},
            "implement": {"model": QWEN_15},
            "review": {"models": [QWEN_15]},
        },
    },
    "smoke": {
        "models": LOCAL_MODELS,
        # The smallest model everywhere: exercises the whole real path fast (CI), solves little.
        "diversity": "off",
        "max_iterations": 1,
        "stages": {
            "plan": {"model": SMOLLM},
            "implement": {"model": SMOLLM, "max_steps": 2},
            "review": {"models": [SMOLLM]},
        },
    },
    "api": {
        "stages": {
            "plan": {"model": "anthropic:claude-opus-4-5"},
            "implement": {
                "model": "google:gemini-2.5-flash",
                # Sonnet 4.5 reaches end of life on 2026-11-30 (the SDK warns): its successor escalates.
                "escalate_to": ["anthropic:claude-sonnet-4-6"],
            },
            "review": {"models": ["openai:gpt-5-mini", "openrouter:z-ai/glm-4.6"]},
        },
        "budget": {"run_usd": 2.0},
    },
    "solo": {
        "diversity": "off",
        "stages": {
            "plan": {"model": "anthropic:claude-opus-4-5"},
            "implement": {"model": "anthropic:claude-opus-4-5"},
            "review": {"models": ["anthropic:claude-opus-4-5"]},
        },
        "budget": {"run_usd": 5.0},
    },
}


DEMO_SEED = 20261201
"""The demo's base seed: a rerun of `relay demo` draws the same answers."""
DEMO_SAMPLES = 3
"""Candidates per implement attempt in the demo: verification chooses among them."""


def demo_config(config: Config) -> Config:
    """`relay demo`'s config: the preset's, seeded (unless a seed is set) and sampled (at least `DEMO_SAMPLES`).

    The demo is the first thing a newcomer runs: a single sampled answer made it a coin toss (a 1.5B
    answering with only a file name, or echoing the files unchanged), so it draws several
    grammar-constrained candidates per attempt and lets its tests choose."""
    implement = config.stages.implement
    implement = implement.model_copy(update={"samples": max(implement.samples, DEMO_SAMPLES)})
    return config.model_copy(update={"seed": DEMO_SEED if config.seed is None else config.seed,
                                     "stages": config.stages.model_copy(update={"implement": implement})})
