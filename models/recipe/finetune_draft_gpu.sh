#!/usr/bin/env bash
# Fourth GPU phase (session 3, run right after gpu_plant.sh on the same lent machine): the planted draft alone,
# continued on a retrieval-heavier mix. It lifted single-key retrieval from 0.55 / 0.325 to 0.60 / 0.45 at 1K / 4K
# (torch, n = 40) for +0.09 bits per byte of held-out code.
#   DATA=.gpu PREV=<dir with gpu_plant.sh's draft.pt> TRAIN_SECONDS=170 bash models/recipe/finetune_draft_gpu.sh
set -uo pipefail
DATA=$(realpath "${DATA:-.gpu}")
PREV=$(realpath "${PREV:-.gpu/d}")
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PY=${PYTHON:-python3}
MIX='{"code":0.15,"retrieval":0.25,"dense_retrieval":0.45,"fim":0.05,"random_repeat":0.1}'
"$PY" train.py --preset draft2 --finetune "$PREV/draft.pt" --out "$OUT/draft.pt" --work "$DATA" --seq-len 4096 \
    --batch 32 --time-budget "${TRAIN_SECONDS:-170}" --save-every 60 --transport-dtype float16 --log "$OUT/train.log" \
    --lr 1e-3 --warmup 20 --short-fraction 0 --mix "$MIX" --workers 12 --seed 6565
# The draft is evaluated as both roles (no target on the machine): its agreement figure there is meaningless.
"$PY" evaluate.py --work "$DATA" --target "$OUT/draft.pt" --draft "$OUT/draft.pt" --out "$OUT/eval.json" --n 40 \
    --lengths 1024,4096 --retrieval-roles draft --kinds single
