#!/usr/bin/env python3
"""Evaluate bundled models on held-out data only (seeded; no training item is reused):

- held-out bits per byte on real code;
- single-key and multi-key retrieval accuracy by context length (1K, 2K, 4K, 8K tokens; needle depth uniform);
- draft-target top-1 agreement (teacher-forced, held-out code) when both are given;
- a few FIM examples from held-out files.

  evaluate.py --target work/target.pt [--draft work/draft.pt] --out work/eval.json [--n 100]
"""
import argparse
import json
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import Tokenizer  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from data import Corpus, Generator  # noqa: E402
from model import Config, Transformer  # noqa: E402
from train import heldout_loss  # noqa: E402

EVAL_SEED = 987654321  # disjoint from training seeds; corpus is the held-out split


def load_model(path, dev):
    ck = load_checkpoint(path)
    m = Transformer(Config(**ck["config"]))
    m.load_state_dict(ck["model"])
    return m.to(dev).eval()


@torch.no_grad()
def greedy(model, prompt, max_new, stop_ids, dev):
    ids = torch.tensor(prompt, device=dev)[None]
    out = []
    for _ in range(max_new):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            nxt = int(model(ids)[0, -1].float().argmax())
        if nxt in stop_ids:
            break
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]], device=dev)], 1)
    return out


def retrieval_accuracy(model, tok, gen, lengths, n, n_keys, dev):
    res = {}
    newline_ids = {i for i, t in enumerate(tok.tokens) if "Ċ" in t} | set(tok.special.values())
    for L in lengths:
        rng = random.Random(EVAL_SEED + L * 7 + n_keys)
        ok = 0
        for _ in range(n):
            prompt, answer, _ = gen.retrieval_task(rng, L, n_keys=n_keys, n_queries=1 if n_keys == 1 else 3)
            expected = answer.split("\n")[0]
            out = tok.decode(greedy(model, prompt, len(tok.encode(expected)) + 2, newline_ids, dev))
            ok += out.startswith(expected)
        res[str(L)] = round(ok / n, 3)
    return res


@torch.no_grad()
def agreement(target, draft, dev, work, seq_len=1024, n_seqs=16):
    import numpy as np
    flat = np.load(os.path.join(work, "tokens-heldout.npy"))
    step = (len(flat) - seq_len - 1) // n_seqs
    same = total = 0
    for s in range(0, step * n_seqs, step):
        x = torch.tensor(flat[s:s + seq_len].astype("int64"), device=dev)[None]
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            a, b = target(x).argmax(-1), draft(x).argmax(-1)
        same += int((a == b).sum())
        total += a.numel()
    return round(same / total, 3)


def fim_examples(model, tok, corpus, dev, n=4):
    rng = random.Random(EVAL_SEED)
    out = []
    stop = {tok.special["<|endoftext|>"], tok.special["<|file_sep|>"]}
    for _ in range(n):
        i = rng.randrange(len(corpus.docs))
        doc = corpus.docs[i]
        text = tok.decode(corpus.tokens[i])
        body = text.split("\n", 1)[1]
        lines = body.split("\n")
        if len(lines) < 8:
            continue
        li = rng.randrange(2, len(lines) - 2)
        prefix = "\n".join(lines[:li]) + "\n"
        middle = lines[li] + "\n"
        suffix = "\n".join(lines[li + 1:])
        p = tok.encode(f"<|file_sep|>{doc['path']}\n<|fim_prefix|>") + tok.encode(prefix, special=False)[-1500:]
        p += [tok.special["<|fim_suffix|>"]] + tok.encode(suffix, special=False)[:500] + [tok.special["<|fim_middle|>"]]
        got = tok.decode(greedy(model, p, 48, stop, dev))
        out.append({"path": doc["path"], "prefix_tail": prefix[-160:], "expected": middle, "generated": got[:200]})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft")
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--lengths", default="1024,2048,4096,8192")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--retrieval-roles", default="target,draft",
                    help="roles whose retrieval and FIM are measured (others: held-out loss only)")
    ap.add_argument("--kinds", default="single,multi", help="retrieval kinds to measure")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    tok = Tokenizer.load(os.path.join(args.work, "tokenizer.json"))
    corpus = Corpus.from_pretokenized(args.work, "heldout")
    gen = Generator(tok, corpus, 4096)
    lengths = [int(x) for x in args.lengths.split(",")]
    report = {"evalSeed": EVAL_SEED, "n": args.n, "device": str(dev)}
    models = {"target": args.target, "draft": args.draft}
    loaded = {}
    for role, path in models.items():
        if not path:
            continue
        t0 = time.time()
        m = loaded[role] = load_model(path, dev)
        nats, bpb = heldout_loss(m, args.work, 2048, 64, dev)
        report[role] = {"params": m.n_params(), "heldoutNatsPerToken": round(nats, 4), "heldoutBitsPerByte": round(bpb, 4)}
        if role in args.retrieval_roles.split(","):
            kinds = args.kinds.split(",")
            if "single" in kinds:
                report[role]["singleKeyRetrieval"] = retrieval_accuracy(m, tok, gen, lengths, args.n, 1, dev)
            if "multi" in kinds:
                report[role]["multiKeyRetrieval"] = retrieval_accuracy(m, tok, gen, lengths, args.n, 8, dev)
            report[role]["fimExamples"] = fim_examples(m, tok, corpus, dev)
        report[role]["evalSeconds"] = round(time.time() - t0, 1)
        print(json.dumps({role: {k: v for k, v in report[role].items() if k != "fimExamples"}}), flush=True)
    if "draft" in loaded:
        report["draftTargetTop1Agreement"] = agreement(loaded["target"], loaded["draft"], dev, args.work)
        print(json.dumps({"draftTargetTop1Agreement": report["draftTargetTop1Agreement"]}), flush=True)
    json.dump(report, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
