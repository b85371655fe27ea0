#!/usr/bin/env bash
# One prepared run on a lent GPU machine: train target and draft side by side on one GPU, then evaluate both.
# Inputs (carried, not committed): $DATA with tokens-{train,heldout}.npy, docs-{train,heldout}.json, tokenizer.json.
# Outputs under $OUT (at most 8 files come back): checkpoints in fp16 shards, a JSON-lines log, eval.json.
#   DATA=.gpu TRAIN_SECONDS=360 bash models/recipe/gpu_run.sh
set -uo pipefail
DATA=$(realpath "${DATA:-.gpu}")
TRAIN_SECONDS=${TRAIN_SECONDS:-360}
EVAL_N=${EVAL_N:-60}
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PY=${PYTHON:-python3}
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name(0))"
common=(--work "$DATA" --seq-len 4096 --batch 32 --time-budget "$TRAIN_SECONDS" --save-every 60
        --transport-dtype float16 --log "$OUT/train.log" --seed 1234)
"$PY" train.py --preset target --out "$OUT/target.pt" --lr 2e-3 --workers 6 "${common[@]}" &
t=$!
"$PY" train.py --preset draft --out "$OUT/draft.pt" --lr 3e-3 --workers 5 "${common[@]}" &
d=$!
wait $t; wait $d
"$PY" evaluate.py --work "$DATA" --target "$OUT/target.pt" --draft "$OUT/draft.pt" --out "$OUT/eval.json" --n "$EVAL_N" --lengths "${EVAL_LENGTHS:-1024,2048,4096,8192}"
grep -E '"heldout|"preset' "$OUT/train.log"
ls -la "$OUT"
