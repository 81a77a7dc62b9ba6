#!/usr/bin/env bash
# The shipped bench report: QuixBugs (all 40) and HumanEvalFix (first 30 cases, humanevalfix/0..29)
# × the local pipeline designs solo-local, local, local-noplan, local-cascade; then the same records
# re-priced as the `api` preset's models (labelled ESTIMATE).
#
# Takes hours on 2 cores. Safe to interrupt: re-running this script resumes where it stopped
# (results.jsonl is appended per finished case; finished (case, config) pairs are skipped).
#
#   RELAY=.venv/bin/relay OUT=bench-results benchmarks/run_bench.sh
set -euo pipefail

RELAY=${RELAY:-relay}
SUITES=${SUITES:-/work/shared/benchmarks}
OUT=${OUT:-bench-results}
CONFIGS=solo-local,local,local-noplan,local-cascade
PRICE_AS=plan=anthropic:claude-opus-4-5,implement=google:gemini-2.5-flash,review=openai:gpt-5-mini
# One job: the local model servers use both cores, and with one job each case's CPU seconds
# (relay + tests + the config's model servers) are exact rather than shared between cases.
JOBS=${JOBS:-1}

resume_flag() {  # --resume when a previous (partial) run left records, nothing on a fresh dir
    if [ -s "$1/results.jsonl" ]; then echo --resume; fi
}

"$RELAY" local setup --preset local   # qwen2.5-coder 1.5b + 0.5b and the llama-server runtime; idempotent

"$RELAY" bench "$SUITES/quixbugs.jsonl" --configs "$CONFIGS" --jobs "$JOBS" \
    --out "$OUT/quixbugs" $(resume_flag "$OUT/quixbugs")

"$RELAY" bench "$SUITES/humanevalfix.jsonl" --limit 30 --configs "$CONFIGS" --jobs "$JOBS" \
    --out "$OUT/humanevalfix-30" $(resume_flag "$OUT/humanevalfix-30")

# Re-render (cheap) and add the re-priced estimate beside the measured report.
for dir in "$OUT/quixbugs" "$OUT/humanevalfix-30"; do
    "$RELAY" bench-report "$dir"
    "$RELAY" bench-report "$dir" --price-as "$PRICE_AS"
done
