#!/usr/bin/env bash
# Third GPU phase (session 3): a new draft grown from a planted copy circuit, and the shipped target fine-tuned on
# dense retrieval. Both earlier phases left the draft at 0% retrieval and the target at 0.70-0.825 at 4K: the draft
# had no copy mechanism at all (models/README.md, CPU diagnosis), and a retrieval sample gave the lookup a gradient
# on ~5 of its 4,096 tokens. Trained side by side on one GPU:
#   - draft  : preset draft2 (d256, 2 layers, 4 heads / 2 KV heads), planted copy circuit (plant.py), from scratch;
#   - draftn : the same preset and data without planting (the control: does planting matter?);
#   - target : from the shipped target.gguf (gguf_import.py), dense-retrieval-heavy mix, low learning rate.
# Inputs (carried, not committed): $DATA with tokens-{train,heldout}.npy, docs-{train,heldout}.json, tokenizer.json.
# Outputs under $OUT (at most 8 files come back): fp16 checkpoint index + shards of the three models and one log,
# to which the evaluation JSON is appended.
#   DATA=.gpu TRAIN_SECONDS=400 bash models/recipe/gpu_plant.sh
set -uo pipefail
DATA=$(realpath "${DATA:-.gpu}")
TRAIN_SECONDS=${TRAIN_SECONDS:-400}
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PY=${PYTHON:-python3}
LOG="$OUT/train.log"
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name(0))"
"$PY" gguf_import.py ../target.gguf /tmp/target-shipped.pt || exit 1
DRAFT_MIX='{"code":0.25,"retrieval":0.15,"dense_retrieval":0.3,"fim":0.1,"random_repeat":0.2}'
TARGET_MIX='{"code":0.3,"retrieval":0.15,"dense_retrieval":0.3,"fim":0.15,"random_repeat":0.1}'
common=(--work "$DATA" --seq-len "${SEQ:-4096}" --batch "${BATCH:-32}" --time-budget "$TRAIN_SECONDS" --save-every 60
        --transport-dtype float16 --log "$LOG")
"$PY" train.py --preset target --finetune /tmp/target-shipped.pt --out "$OUT/target.pt" --lr 6e-4 --warmup 30 \
    --short-fraction 0 --mix "$TARGET_MIX" --workers 5 --seed 5353 "${common[@]}" &
t=$!
"$PY" train.py --preset draft2 --plant --out "$OUT/draft.pt" --lr 2e-3 --short-fraction 0.2 --mix "$DRAFT_MIX" \
    --workers 5 --seed 5454 "${common[@]}" &
d=$!
"$PY" train.py --preset draft2 --out "$OUT/draftn.pt" --lr 2e-3 --short-fraction 0.2 --mix "$DRAFT_MIX" \
    --workers 3 --seed 5454 "${common[@]}" &
n=$!
wait $t; wait $d; wait $n
L=${EVAL_LENGTHS:-1024,4096}
"$PY" evaluate.py --work "$DATA" --target "$OUT/target.pt" --draft "$OUT/draft.pt" --out /tmp/eval.json \
    --n "${EVAL_N:-40}" --lengths "$L" && { echo '{"eval": "target+draft"}'; cat /tmp/eval.json; } >> "$LOG"
"$PY" evaluate.py --work "$DATA" --target "$OUT/target.pt" --draft "$OUT/draftn.pt" --out /tmp/evaln.json \
    --n "${EVAL_N:-40}" --lengths "$L" --retrieval-roles draft --kinds single && { echo '{"eval": "draftn"}'; cat /tmp/evaln.json; } >> "$LOG"
grep -E '"heldout|"preset' "$LOG"
ls -la "$OUT"
