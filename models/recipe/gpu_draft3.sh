#!/usr/bin/env bash
# Proposed fifth GPU phase (written in session 4, which had no GPU; smoke-run on CPU only): the draft's FIM lookup.
# diagnose_retrieval.py showed the shipped 2-layer draft misses single-key needles from FIM-ordered usage files:
# llama.cpp, held-out, 4K: plain 0.75, FIM 0.20. From <|fim_middle|> its lookup head puts 0.15 of its attention on
# the definitions (0.73 from a plain usage line): the name sits before <|fim_suffix|>, and with two layers there is
# no layer left to fetch it before the lookup. Trained side by side on one GPU:
#   - draft3 : preset draft3 (d192, 3 layers, 3 heads / 1 KV head; about draft2's per-token compute at 4K), planted
#              copy circuit with the induction heads in layer 2, so layer 1 is free to learn the hop; from scratch;
#   - draft2f: the shipped draft2 continued on the same mix (does more FIM data alone fix the 2-layer draft?).
# The mix adds dense_fim_retrieval (data.py): many keys, the usage file FIM-ordered with the hole at a random query.
# Inputs (carried, not committed): $DATA with tokens-{train,heldout}.npy, docs-{train,heldout}.json, tokenizer.json.
# Outputs under $OUT: fp16 checkpoint index + shard of both drafts and one log with the evaluation appended.
#   DATA=.gpu TRAIN_SECONDS=420 bash models/recipe/gpu_draft3.sh
# Afterwards, here: gguf_export.py each, then eval_llama.mjs on the held-out tasks (it splits FIM / plain).
set -uo pipefail
DATA=$(realpath "${DATA:-.gpu}")
TRAIN_SECONDS=${TRAIN_SECONDS:-420}
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PY=${PYTHON:-python3}
LOG="$OUT/train.log"
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
"$PY" gguf_import.py ../draft.gguf /tmp/draft-shipped.pt || exit 1
MIX='{"code":0.2,"retrieval":0.15,"dense_retrieval":0.2,"dense_fim_retrieval":0.25,"fim":0.05,"random_repeat":0.15}'
common=(--work "$DATA" --seq-len "${SEQ:-4096}" --batch "${BATCH:-32}" --time-budget "$TRAIN_SECONDS" --save-every 60
        --transport-dtype float16 --log "$LOG" --mix "$MIX" --workers "${WORKERS:-6}")
"$PY" train.py --preset draft3 --plant --induction-layer 2 --out "$OUT/draft3.pt" --lr 2e-3 --short-fraction 0.2 \
    --seed 7474 "${common[@]}" &
a=$!
"$PY" train.py --preset draft2 --finetune /tmp/draft-shipped.pt --out "$OUT/draft2f.pt" --lr 1e-3 --warmup 20 \
    --short-fraction 0 --seed 7575 "${common[@]}" &
b=$!
wait $a; wait $b
# No target on the machine: each draft is evaluated as both roles, so its agreement figure there is meaningless.
for m in draft3 draft2f; do
  "$PY" evaluate.py --work "$DATA" --target "$OUT/$m.pt" --draft "$OUT/$m.pt" --out "/tmp/eval-$m.json" \
      --n "${EVAL_N:-40}" --lengths "${EVAL_LENGTHS:-1024,4096}" --retrieval-roles draft --kinds single \
      && { echo "{\"eval\": \"$m\"}"; cat "/tmp/eval-$m.json"; } >> "$LOG"
done
grep -E '"heldout|"preset|singleKey' "$LOG"
ls -la "$OUT"
