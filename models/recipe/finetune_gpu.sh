#!/usr/bin/env bash
# Second GPU phase: continue both models from the first run's weights with a retrieval-heavy mix
# (the first run left the target at ~65% single-key retrieval and the draft at 0%).
#   DATA=.gpu PREV=.gpu/prev TRAIN_SECONDS=150 bash models/recipe/finetune_gpu.sh
set -uo pipefail
DATA=$(realpath "${DATA:-.gpu}"); PREV=$(realpath "${PREV:-.gpu/prev}")
TRAIN_SECONDS=${TRAIN_SECONDS:-150}
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PY=${PYTHON:-python3}
MIX='{"code":0.15,"retrieval":0.6,"fim":0.15,"repeat":0.1}'
common=(--work "$DATA" --seq-len 4096 --batch 32 --time-budget "$TRAIN_SECONDS" --save-every 45 --warmup 30
        --short-fraction 0 --mix "$MIX" --transport-dtype float16 --log "$OUT/train.log" --seed 4321)
"$PY" train.py --preset target --finetune "$PREV/target.pt" --out "$OUT/target.pt" --lr 1e-3 --workers 6 "${common[@]}" &
t=$!
"$PY" train.py --preset draft --finetune "$PREV/draft.pt" --out "$OUT/draft.pt" --lr 2e-3 --workers 5 "${common[@]}" &
d=$!
wait $t; wait $d
"$PY" evaluate.py --work "$DATA" --target "$OUT/target.pt" --draft "$OUT/draft.pt" --out "$OUT/eval.json" --n "${EVAL_N:-40}" --lengths "${EVAL_LENGTHS:-1024,4096}"
grep -E '"heldout|"preset' "$OUT/train.log"
