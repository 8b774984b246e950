#!/usr/bin/env bash
# Replay the self-play run and the before/after evaluation of docs/results.md.
#
#   make reproduce                      # the CPU settings of docs/results.md
#   STEPS=40 BATCH=64 ROLLOUTS=8 MAX_TOKENS=512 ENGINE=transformers CRUX_LIMIT=800 \
#     EVAL_TOKENS=512 EVAL_EVERY=5 MONITOR_LIMIT=64 make reproduce                  # GPU
#
# Everything goes to $AZR_DATA_DIR (default .azr-repro): checkpoints, the run report with the
# learning curves (reports/run-N/), and the evaluation files (eval/).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
export AZR_DATA_DIR=${AZR_DATA_DIR:-.azr-repro}
STEPS=${STEPS:-10}
BATCH=${BATCH:-4}
ROLLOUTS=${ROLLOUTS:-4}
MAX_TOKENS=${MAX_TOKENS:-200}
TEMPERATURE=${TEMPERATURE:-0.7}
K_REFS=${K_REFS:-2}
INDUCTION_INPUTS=${INDUCTION_INPUTS:-6}
ENGINE=${ENGINE:-vllm}
EVAL_EVERY=${EVAL_EVERY:-5}
MONITOR_LIMIT=${MONITOR_LIMIT:-16}
CRUX_LIMIT=${CRUX_LIMIT:-200}
HE_LIMIT=${HE_LIMIT:-164}
EVAL_TOKENS=${EVAL_TOKENS:-256}
OUT=${OUT:-$AZR_DATA_DIR/eval}

export AZR_LOOP__EVAL_EVERY=$EVAL_EVERY
export AZR_EVAL__MONITOR_LIMIT=$MONITOR_LIMIT
export AZR_INFERENCE__ENGINE=$ENGINE
# The cold-start model needs its answer opened for it (model-notes.md); base and final are
# evaluated with the same prompts, prefill and answer closing as the run used.
export AZR_INFERENCE__ANSWER_PREFILL=${AZR_INFERENCE__ANSWER_PREFILL:-true}
export AZR_INFERENCE__VLLM_ENFORCE_EAGER=${AZR_INFERENCE__VLLM_ENFORCE_EAGER:-true}

echo "== settings: steps=$STEPS batch=$BATCH rollouts=$ROLLOUTS max_tokens=$MAX_TOKENS" \
    "temperature=$TEMPERATURE k_refs=$K_REFS induction_inputs=$INDUCTION_INPUTS engine=$ENGINE"
"$BIN/azr" model prepare

echo "== self-play run"
"$BIN/azr" up --run --steps "$STEPS" --batch-size "$BATCH" --n-rollouts "$ROLLOUTS" \
    --max-tokens "$MAX_TOKENS" --temperature "$TEMPERATURE" --k-references "$K_REFS" \
    --induction-inputs "$INDUCTION_INPUTS" --engine "$ENGINE"

echo "== evaluation: base and the final version, same settings"
for model in base latest; do
    "$BIN/azr" eval "$model" --engine "$ENGINE" --out "$OUT" --max-tokens "$EVAL_TOKENS" \
        --bench cruxeval-o --bench cruxeval-i --limit "$CRUX_LIMIT"
    "$BIN/azr" eval "$model" --engine "$ENGINE" --out "$OUT" --max-tokens "$EVAL_TOKENS" \
        --bench humaneval --limit "$HE_LIMIT"
done

final=$(ls -d "$AZR_DATA_DIR"/checkpoints/v* | sort | tail -n 1 | xargs basename)
echo "== before/after (final = $final)"
"$BIN/python" -m services.evaluation.report compare \
    "$OUT/base.cruxeval-o.jsonl" "$OUT/$final.cruxeval-o.jsonl" \
    "$OUT/base.cruxeval-i.jsonl" "$OUT/$final.cruxeval-i.jsonl" \
    "$OUT/base.humaneval.jsonl" "$OUT/$final.humaneval.jsonl" | tee "$OUT/comparison.md"

report=$(ls -d "$AZR_DATA_DIR"/reports/run-* | sort -t- -k2 -n | tail -n 1)
"$BIN/python" -m services.evaluation.report curves "$report/metrics.json" "$report"
echo "== learning curves and run report in $report; evaluation files in $OUT"
