#!/usr/bin/env bash
# CPU attempt (2026-11-27, no GPU lent) at teaching the draft long-range retrieval: grow the shipped 3-layer draft
# by a fourth block (zero output at start, so it computes exactly what the shipped draft does) and train a
# copy-pointer head in it with finetune_pointer.py, on one thread, from the shipped GGUF files. Step-based
# schedules, so the result does not depend on the machine's speed.
#
# RESULT: NOT SHIPPED. Neither stage retrieved a single needle (0/20 at 1K and 2K); stage B also cost 9% held-out
# bits per byte. Kept as the reproducible record of what was tried (models/README.md, "CPU attempt"), and as a
# starting point for a run with more compute.
#   bash models/recipe/finetune_cpu.sh            # WORK=models/recipe/work/cpu, DATA=models/recipe/work
set -euo pipefail
cd "$(dirname "$0")"
DATA=${DATA:-work}; WORK=${WORK:-work/cpu}
mkdir -p "$WORK"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
PY=${PYTHON:-/usr/bin/python3}
RUN=(nice -n 10 "$PY")
"${RUN[@]}" gguf_import.py ../draft.gguf "$WORK/draft-shipped.pt"
"${RUN[@]}" gguf_import.py ../target.gguf "$WORK/target-shipped.pt"
# Stage A (23.5 min here): 1,024-token sequences, mix code .2 / retrieval .5 / FIM .1 / repeat .2; the new block
# at lr 1.5e-3, the trained blocks at half of it; pointer loss weight 0.5.
"${RUN[@]}" finetune_pointer.py --init "$WORK/draft-shipped.pt" --add-layer --out "$WORK/d4-a.pt" --work "$DATA" \
  --seq-len 1024 --batch 8 --max-steps 240 --lr 1.5e-3 --other-lr-scale 0.5 --pointer-weight 0.5 \
  --seed 5151 --log "$WORK/d4-a.log"
# Stage B (13 min here): as A, plus a copy loss on the pointer head's OV circuit (weight 1.0).
"${RUN[@]}" finetune_pointer.py --init "$WORK/d4-a.pt" --out "$WORK/d4-b.pt" --work "$DATA" \
  --seq-len 1024 --batch 8 --max-steps 130 --lr 1.5e-3 --other-lr-scale 0.5 --pointer-weight 0.5 --copy-weight 1.0 \
  --warmup 5 --seed 5152 --log "$WORK/d4-b.log"
for s in a b; do
  "${RUN[@]}" evaluate.py --work "$DATA" --target "$WORK/target-shipped.pt" --draft "$WORK/d4-$s.pt" \
    --out "$WORK/eval-d4-$s.json" --retrieval-roles draft --kinds single --n 20 --lengths 1024,2048 --threads 1
done
# Only if a stage beats the shipped draft (retrieval up, held-out bpb within ~2%, agreement not lower):
#   "${RUN[@]}" gguf_export.py "$WORK/d4-X.pt" "$DATA/tokenizer.json" ../draft.gguf --name repokv-draft-2.0m
