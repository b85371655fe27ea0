#!/usr/bin/env python3
"""Why does a model miss a single-key needle? Runs retrieval tasks and reports, separately for FIM-ordered and plain
usage files: exact match (teacher-forced: every answer token is the argmax), whether the first answer token was
right, and where each attention head of the last layer looks from the last prompt position (its attention mass on
the definitions file, and the two tokens at its most-attended position).

Tasks come from the TRAINING split with their own seed (424242 + length) by default, so a model can be examined,
and a recipe tuned, without looking at the model card's held-out tasks (evaluate.EVAL_SEED, held-out split).

  diagnose_retrieval.py CHECKPOINT [--lengths 1024,4096] [--n 40] [--heads] [--split train]
"""
import argparse
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import Tokenizer  # noqa: E402
from data import Corpus, Generator  # noqa: E402
from evaluate import load_model  # noqa: E402
from plant import attention_probs  # noqa: E402

TUNE_SEED = 424242


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work"))
    ap.add_argument("--split", default="train", choices=["train", "heldout"])
    ap.add_argument("--lengths", default="1024,4096")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--heads", action="store_true", help="print each task's last-layer attention (slower)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = Tokenizer.load(os.path.join(args.work, "tokenizer.json"))
    gen = Generator(tok, Corpus.from_pretokenized(args.work, args.split), 4096)
    model = load_model(args.checkpoint, torch.device("cpu"))
    last = model.cfg.n_layers - 1
    report = {"checkpoint": args.checkpoint, "split": args.split, "seed": TUNE_SEED, "n": args.n, "results": {}}
    started = time.time()
    for length in (int(v) for v in args.lengths.split(",")):
        counts = {layout: {"exact": 0, "firstToken": 0, "n": 0, "defsAttention": 0.0} for layout in ("fim", "plain")}
        rng = random.Random(TUNE_SEED + length)
        for _ in range(args.n):
            prompt, answer, fim, start, n_defs = gen.retrieval_task_placed(rng, length, n_keys=1, n_queries=1)
            expected = answer.split("\n")[0]
            expected_ids = tok.encode(expected, special=False)
            x = torch.tensor(prompt + expected_ids)
            with torch.no_grad():
                logits = model(x[None])[0, len(prompt) - 1:len(prompt) - 1 + len(expected_ids)]
            predicted = logits.argmax(-1).tolist()
            c = counts["fim" if fim else "plain"]
            c["n"] += 1
            c["exact"] += predicted == expected_ids
            c["firstToken"] += predicted[0] == expected_ids[0]
            if args.heads:
                with torch.no_grad():
                    probs = attention_probs(model, x[:len(prompt)])[last][:, -1]  # [heads, keys] from the last query
                defs_mass = probs[:, start:start + n_defs].sum(-1)
                c["defsAttention"] += float(defs_mass.max())
                looks = " ".join(f"h{h}:{float(defs_mass[h]):.2f}@{tok.decode(prompt[int(p.argmax()) - 1:int(p.argmax()) + 1])!r}"
                                 for h, p in enumerate(probs))
                print(f"{length} {'FIM  ' if fim else 'plain'} {'ok ' if predicted == expected_ids else 'MISS'} "
                      f"first={'y' if predicted[0] == expected_ids[0] else 'n'} L{last} {looks}", flush=True)
        for c in counts.values():
            c["defsAttention"] = round(c["defsAttention"] / max(1, c["n"]), 3) if args.heads else None
        report["results"][str(length)] = counts
    report["seconds"] = round(time.time() - started, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
