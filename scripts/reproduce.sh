#!/usr/bin/env bash
# The learning run of docs/results.md: seeding (step 0, which also draws the held-out set), a
# short self-play run, then the base model and the final version on the run's held-out set (the
# in-distribution yardstick, paired bootstrap CI) and on CRUXEval-O/-I, with the same prompts.
#
#   make reproduce       # run 11 of docs/results.md: 74 min on 2 AVX-512 cores (bf16), ~2.5 h on AVX2
#   PROPOSE_BATCH=0 ROLLOUTS=8 SOLVER_MAX_NEW=0 SKIP_ECHO=false HELDOUT_FILE= HELDOUT=96 \
#     SEED_ROUNDS=36 STEPS=28 INDIST_EVERY=4 CRUX_LIMIT=100 make reproduce   # run 6 (89 min)
#   the same with PROPOSE_BATCH=32 ROLLOUTS=16                               # run 7 (75 min)
#   the same with PROPOSE_BATCH=32 ROLLOUTS=16 HELDOUT=192 SEED_ROUNDS=80    # run 8 (70 min)
#   STEPS=28 INDIST_EVERY=7 SAMPLES=8 SKIP_ECHO=false make reproduce        # run 9 (AVX2: ~2 h)
#   STEPS=28 INDIST_EVERY=7 SAMPLES=8 make reproduce                        # run 10 (AVX2: 1 h 47)
#   GPU=1 make reproduce                # the same run sized for one H100/H200 (docs/results.md)
#
# Every setting below can be overridden from the environment (e.g. STEPS=20 make reproduce).
# Everything goes to $AZR_DATA_DIR (default .azr-repro): checkpoints, the run (runs/<id>/, with
# heldout.jsonl), the report with the learning curves (reports/run-N/) and the evaluations (eval/).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
export AZR_DATA_DIR=${AZR_DATA_DIR:-.azr-repro}
if [ "${GPU:-0}" = 1 ]; then
    # one GPU, transformers engine (static KV cache on CUDA), bf16 autocast in the trainer
    ENGINE=${ENGINE:-transformers} STEPS=${STEPS:-30} BATCH=${BATCH:-64} ROLLOUTS=${ROLLOUTS:-8}
    SEED_TASKS=${SEED_TASKS:-256} HELDOUT=${HELDOUT:-128} SEED_BATCH=${SEED_BATCH:-256}
    CRUX_LIMIT=${CRUX_LIMIT:-800} SAMPLES=${SAMPLES:-8} INDIST_EVERY=${INDIST_EVERY:-4}
    # every step's proposals feed its solver batch, and the held-out set is drawn during seeding
    PROPOSE_BATCH=${PROPOSE_BATCH:-0} SOLVER_MAX_NEW=${SOLVER_MAX_NEW:-0} HELDOUT_FILE=${HELDOUT_FILE-}
    export AZR_TRAINER__AUTOCAST=${AZR_TRAINER__AUTOCAST:-bf16}
fi
TASK_TYPES=${TASK_TYPES:-deduction}
STEPS=${STEPS:-40}
BATCH=${BATCH:-8}
PROPOSE_BATCH=${PROPOSE_BATCH:-32}  # proposals per step; 0: BATCH
SOLVER_MAX_NEW=${SOLVER_MAX_NEW:-1}  # last step's tasks first in a solver batch, at most; 0: BATCH
SKIP_ECHO=${SKIP_ECHO:-true}  # true: tasks whose output is their input never enter a solver batch
SOLVER_SAMPLES=${SOLVER_SAMPLES:-8}
SOLVER_BASELINE=${SOLVER_BASELINE:-task}
SOLVER_REWARD=${SOLVER_REWARD:-binary}
LOSS_AGGREGATION=${LOSS_AGGREGATION:-group_token_mean}
TRAIN_ROLES=${TRAIN_ROLES:-solve}  # propose,solve: both roles (runs 3, 4a, 5c)
ROLLOUTS=${ROLLOUTS:-16}
MAX_TOKENS=${MAX_TOKENS:-160}
TEMPERATURE=${TEMPERATURE:-0.7}
LR=${LR:-1e-5}
K_REFS=${K_REFS:-0}
SEED_TASKS=${SEED_TASKS:-32}
HELDOUT=${HELDOUT:-96}
# another run's held-out set (its runs/1/heldout.jsonl, or docs/results-data/<run>/heldout.jsonl):
# held out again instead of drawn, so the two runs compare on one yardstick; HELDOUT is then unused.
# Default: the 192 tasks run 8's base model proposed (runs 9-11 were measured on them);
# HELDOUT_FILE= (empty) draws a new set of HELDOUT tasks during seeding.
HELDOUT_FILE=${HELDOUT_FILE-docs/results-data/cpu-run-8/heldout.jsonl}
SEED_BATCH=${SEED_BATCH:-32}
SEED_ROUNDS=${SEED_ROUNDS:-40}
INDIST_EVERY=${INDIST_EVERY:-10}
ENGINE=${ENGINE:-vllm}
SAMPLES=${SAMPLES:-16}
CRUX_LIMIT=${CRUX_LIMIT:-50}
EVAL_TOKENS=${EVAL_TOKENS:-128}
OUT=${OUT:-$AZR_DATA_DIR/eval}

# list of task types as the settings' JSON list
export AZR_LOOP__TASK_TYPES="[\"${TASK_TYPES//,/\",\"}\"]"
export AZR_INFERENCE__ENGINE=$ENGINE
export AZR_INFERENCE__VLLM_ENFORCE_EAGER=${AZR_INFERENCE__VLLM_ENFORCE_EAGER:-true}
export AZR_PROMPTS__PROPOSE_PROFILE=${AZR_PROMPTS__PROPOSE_PROFILE:-opener-think}
export AZR_PROMPTS__SOLVE_PROFILE=${AZR_PROMPTS__SOLVE_PROFILE:-opener-think}

echo "== settings: task_types=$TASK_TYPES steps=$STEPS batch=$BATCH propose_batch=$PROPOSE_BATCH solver_max_new=$SOLVER_MAX_NEW skip_echo=$SKIP_ECHO rollouts=$ROLLOUTS" \
    "solver_samples=$SOLVER_SAMPLES solver_baseline=$SOLVER_BASELINE solver_reward=$SOLVER_REWARD" \
    "loss_aggregation=$LOSS_AGGREGATION train_roles=$TRAIN_ROLES" \
    "max_tokens=$MAX_TOKENS temperature=$TEMPERATURE lr=$LR k_refs=$K_REFS" \
    "seed=$SEED_TASKS heldout=${HELDOUT_FILE:-$HELDOUT} engine=$ENGINE"
# the CPU decides a CPU run's speed: run 7's settings took 73 minutes on one 2-core machine and
# would have taken hours on another (docs/results.md, run 8), so every run records it
machine=$("$BIN/python" -m azr.common.hardware)
echo "== machine: $machine"
mkdir -p "$OUT" && echo "$machine" > "$OUT/machine.txt"
"$BIN/azr" model prepare

if [ "${PHASE:-all}" != eval ]; then
    echo "== seeding and self-play ($(date -u +%H:%M:%S))"
    reuse=()
    [ -z "$HELDOUT_FILE" ] || reuse=(--set heldout_file="$(realpath "$HELDOUT_FILE")")
    "$BIN/azr" up --run --steps "$STEPS" --batch-size "$BATCH" --n-rollouts "$ROLLOUTS" \
        --max-tokens "$MAX_TOKENS" --temperature "$TEMPERATURE" --k-references "$K_REFS" \
        --lr "$LR" --seed-tasks-per-type "$SEED_TASKS" --heldout-tasks-per-type "$HELDOUT" \
        --seed-batch-size "$SEED_BATCH" --seed-max-rounds "$SEED_ROUNDS" \
        --indist-eval-every "$INDIST_EVERY" --engine "$ENGINE" \
        --set solver_samples="$SOLVER_SAMPLES" --set solver_baseline="$SOLVER_BASELINE" \
        --set propose_batch_size="$PROPOSE_BATCH" --set solver_max_new="$SOLVER_MAX_NEW" \
        --set loss_aggregation="$LOSS_AGGREGATION" --set solver_reward="$SOLVER_REWARD" \
        --set solver_skip_echo="$SKIP_ECHO" \
        "${reuse[@]}" \
        --set train_roles="[\"${TRAIN_ROLES//,/\",\"}\"]"
fi

# PHASE=eval runs only what follows (e.g. after a run made with `azr up --run` and these flags)
echo "== evaluation: base and the final version, same prompts ($(date -u +%H:%M:%S))"
mkdir -p "$OUT"
indist=()  # the held-out set of each task type the run played
for t in ${TASK_TYPES//,/ }; do indist+=(--bench "indist-$t"); done
for model in base latest; do
    baseline=()
    [ "$model" = base ] || baseline=(--baseline base)
    # greedy pass@1: the whole held-out set (indist), then the first CRUX_LIMIT of CRUXEval-O/-I
    # (two calls: --limit cuts every bench of a call, and run 8's held-out set had 192 tasks)
    "$BIN/azr" eval "$model" --engine "$ENGINE" --out "$OUT/greedy" --max-tokens "$EVAL_TOKENS" \
        "${indist[@]}" "${baseline[@]}"
    "$BIN/azr" eval "$model" --engine "$ENGINE" --out "$OUT/greedy" --max-tokens "$EVAL_TOKENS" \
        --bench cruxeval-o --bench cruxeval-i --limit "$CRUX_LIMIT" "${baseline[@]}"
    # the held-out set again, SAMPLES answers per task at the run's temperature
    AZR_EVAL__TEMPERATURE=$TEMPERATURE AZR_EVAL__TOP_P=1.0 \
        "$BIN/azr" eval "$model" --engine "$ENGINE" --out "$OUT/sampled" \
        --max-tokens "$EVAL_TOKENS" "${indist[@]}" --samples "$SAMPLES" "${baseline[@]}"
done 2>&1 | tee "$OUT/evaluation.log"

report=$(ls -d "$AZR_DATA_DIR"/reports/run-* | sort -t- -k2 -n | tail -n 1)
"$BIN/python" -m services.evaluation.report curves "$report/metrics.json" "$report"
echo "== done ($(date -u +%H:%M:%S)): run report and curves in $report; evaluations in $OUT"
