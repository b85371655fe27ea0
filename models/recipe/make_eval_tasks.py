#!/usr/bin/env python3
"""Write the model card's retrieval tasks as token ids, so they can be run through llama.cpp (eval_llama.mjs),
i.e. through the exact GGUF files that ship. Held-out corpus only, fixed seed (evaluate.EVAL_SEED).

  make_eval_tasks.py --work work --out work/eval-tasks.json [--n 50] [--lengths 1024,2048,4096,8192]
"""
import argparse
import json
import random

from bpe import Tokenizer
from data import Corpus, Generator
from evaluate import EVAL_SEED


def form_of(tail: str) -> str:
    if "declare function" in tail:
        return "signature"
    if tail.rstrip().endswith("//"):
        return "comment"
    if "expect(" in tail:
        return "expect"
    return "assert"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="work")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--lengths", default="1024,2048,4096,8192")
    ap.add_argument("--kinds", default="single,multi")
    args = ap.parse_args()
    tok = Tokenizer.load(f"{args.work}/tokenizer.json")
    gen = Generator(tok, Corpus.from_pretokenized(args.work, "heldout"), 4096)
    tasks = []
    for n_keys, kind in ((1, "single"), (8, "multi")):
        if kind not in args.kinds.split(","):
            continue
        for L in (int(x) for x in args.lengths.split(",")):
            rng = random.Random(EVAL_SEED + L * 7 + n_keys)
            for _ in range(args.n):
                prompt, answer, fim = gen.retrieval_task(rng, L, n_keys=n_keys, n_queries=1 if n_keys == 1 else 3)
                tail = tok.decode(prompt[-24:]).split("\n")[-1]
                tasks.append({"kind": kind, "length": L, "fim": fim, "form": form_of(tail.replace("<|fim_suffix|>", "")
                              if not fim else tok.decode(prompt).split("<|fim_suffix|>")[0].split("\n")[-1]),
                              "prompt": prompt, "expected": answer.split("\n")[0]})
    json.dump({"seed": EVAL_SEED, "tasks": tasks}, open(args.out, "w"))
    print(f"{len(tasks)} tasks -> {args.out}")


if __name__ == "__main__":
    main()
