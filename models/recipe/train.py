#!/usr/bin/env python3
"""Train a bundled model (target or draft) from the pretokenized corpus. Resumable and seeded.

  train.py --preset target --work work --out work/target.pt --time-budget 600 [--resume work/target.pt]

The schedule is a function of the fraction of the time budget (or of --max-steps) spent, so the same script
serves a 10-minute CPU smoke run and a GPU run: warm-up, then cosine decay to 10% of the peak rate; the first
25% trains on 1024-token windows (each 4096-token sequence split in four), the rest on full 4096-token sequences.
Checkpoints (index + shards, see checkpoint.py) are written every --save-every seconds and at the end, so a run
that is stopped early still leaves its latest state; --resume continues from one (optimizer state included when
the .opt file is present).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import Tokenizer  # noqa: E402
from checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from data import Corpus, Generator  # noqa: E402
from model import PRESETS, Config, Transformer  # noqa: E402
from plant import plant_induction  # noqa: E402


class Batches(torch.utils.data.IterableDataset):
    """Endless batches from the generator. Each worker has its own seeded stream. While the run is in its first
    `short_fraction` of the time budget, a batch holds four times as many 1024-token sequences (same tokens per
    step): local structure is learned faster on short windows; retrieval across 4K is learned afterwards."""

    def __init__(self, work, seq_len, batch_size, seed, t_start, time_budget, short_fraction, mix=None):
        self.work, self.seq_len, self.batch_size, self.seed, self.mix = work, seq_len, batch_size, seed, mix
        self.t_start, self.time_budget, self.short_fraction = t_start, time_budget, short_fraction

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        tok = Tokenizer.load(os.path.join(self.work, "tokenizer.json"))
        gen = Generator(tok, Corpus.from_pretokenized(self.work, "train"), self.seq_len, self.mix)
        rng = random.Random(self.seed * 1000 + wid)
        while True:
            short = (time.time() - self.t_start) < self.short_fraction * self.time_budget and self.seq_len > 1024
            gen.seq_len = 1024 if short else self.seq_len
            n = self.batch_size * (self.seq_len // 1024) if short else self.batch_size
            yield torch.tensor([gen.sample(rng) for _ in range(n)], dtype=torch.long)


def fim_middle_mask(x, special):
    """True where the next token belongs to a FIM middle: the input is <|fim_middle|> or follows it, and no
    <|endoftext|>, file separator or <|fim_prefix|> came in between (so the closing <|endoftext|> is included)."""
    idx = torch.arange(x.shape[1], device=x.device).expand_as(x)
    none = torch.full_like(x, -1)
    last_middle = torch.where(x == special["<|fim_middle|>"], idx, none).cummax(1).values
    resets = (x == special["<|endoftext|>"]) | (x == special["<|file_sep|>"]) | (x == special["<|fim_prefix|>"])
    last_reset = torch.where(resets, idx, none).cummax(1).values
    return last_middle > last_reset


def heldout_loss(model, work, seq_len, n_seqs, device):
    """Mean loss in nats per token and bits per byte on contiguous held-out code (no synthetic data)."""
    import numpy as np
    flat = np.load(os.path.join(work, "tokens-heldout.npy"))
    meta = json.load(open(os.path.join(work, "docs-heldout.json")))
    n_bytes_total, n_tok_total = sum(m["bytes"] for m in meta), len(flat)
    step = max(seq_len + 1, (len(flat) - seq_len - 1) // n_seqs)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for s in range(0, len(flat) - seq_len - 1, step)[:n_seqs]:
            x = torch.tensor(flat[s:s + seq_len + 1].astype("int64"), device=device)[None]
            logits = model(x[:, :-1]).float()
            total += F.cross_entropy(logits.view(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum").item()
            count += seq_len
    model.train()
    nats = total / count
    # Bits per byte: the held-out set's own bytes per token converts per-token loss to per-byte.
    return nats, nats / math.log(2) / (n_bytes_total / n_tok_total)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="target", choices=sorted(PRESETS))
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", help="continue a run: weights, optimizer, step and schedule position")
    ap.add_argument("--finetune", help="start a new schedule from these weights (previous runs kept in meta.phases)")
    ap.add_argument("--mix", help='JSON weights of sequence kinds, e.g. {"code":0.3,"retrieval":0.35,"fim":0.25,"repeat":0.1}')
    ap.add_argument("--plant", action="store_true", help="start from a planted copy circuit (plant.py); new runs only")
    ap.add_argument("--induction-layer", type=int, default=1, help="the planted induction heads' layer (plant.py)")
    ap.add_argument("--middle-weight", type=float, default=1.0,
                    help="loss weight of the tokens a FIM middle holds (after <|fim_middle|>, up to <|endoftext|>): "
                         "one answer per sequence against ~1,000 context tokens otherwise gets almost no gradient")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=16, help="sequences of --seq-len per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--time-budget", type=float, default=600, help="seconds of training (schedule follows it)")
    ap.add_argument("--max-steps", type=int, default=0, help="if set, the schedule follows steps instead of time")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--short-fraction", type=float, default=0.25)
    ap.add_argument("--save-every", type=float, default=120)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--transport-dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--log", default=None, help="append JSON lines of progress here")
    ap.add_argument("--summary", default=None, help="write the final summary JSON here")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # A resumed or fine-tuned model takes its shape from its checkpoint (e.g. one with an inserted block), read once here.
    ck = load_checkpoint(args.resume or args.finetune) if args.resume or args.finetune else None
    cfg = Config(**ck["config"]) if ck else PRESETS[args.preset]
    step, spent, history = 0, 0.0, []
    model = Transformer(cfg)
    if args.plant and not (args.resume or args.finetune):
        plant_induction(model, args.seed, induction_layer=args.induction_layer)
    model = model.to(dev)
    opt_kwargs = {"lr": args.lr, "betas": (0.9, 0.95), "weight_decay": 0.1}
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, fused=dev.type == "cuda", **opt_kwargs)
    except (TypeError, RuntimeError):  # torch 1.13 has no fused AdamW
        opt = torch.optim.AdamW(groups, **opt_kwargs)
    if args.resume:
        model.load_state_dict(ck["model"])
        if ck["optimizer"] is not None:
            opt.load_state_dict(ck["optimizer"])
        step, spent, history = ck["meta"]["step"], ck["meta"].get("seconds", 0.0), ck["meta"].get("history", [])
        print(f"resumed {args.resume} at step {step} ({spent:.0f}s)", flush=True)
    phases = []
    if args.finetune:
        model.load_state_dict(ck["model"])
        phases = ck["meta"].get("phases", []) + [{k: ck["meta"].get(k) for k in ("step", "seconds", "tokens", "args")}]
        print(f"fine-tuning from {args.finetune} ({len(phases)} earlier phase(s))", flush=True)
    log = open(args.log, "a") if args.log else None
    print(f"{args.preset}: {model.n_params() / 1e6:.2f}M params, device {dev}, config {cfg.to_dict()}", flush=True)

    t_start = time.time() - spent
    loader = torch.utils.data.DataLoader(Batches(args.work, args.seq_len, args.batch, args.seed + step, t_start,
                                                 args.time_budget, args.short_fraction,
                                                 json.loads(args.mix) if args.mix else None),
                                         batch_size=None, num_workers=args.workers,
                                         # torch 1.13 rejects any prefetch_factor (even None) without workers
                                         **({"prefetch_factor": 4} if args.workers else {}),
                                         persistent_workers=bool(args.workers))
    special = Tokenizer.load(os.path.join(args.work, "tokenizer.json")).special
    use_bf16 = dev.type == "cuda"
    last_save = time.time()
    tokens_seen = sum(h.get("tokens", 0) for h in history[-1:]) if history else 0

    def progress():
        if args.max_steps:
            return step / args.max_steps
        return (time.time() - t_start) / args.time_budget

    def save(final=False):
        meta = {"step": step, "seconds": time.time() - t_start, "history": history, "tokens": tokens_seen,
                "args": vars(args), "final": final, "phases": phases}
        dtype = getattr(torch, args.transport_dtype)
        save_checkpoint(args.out, model.state_dict(), cfg.to_dict(), meta,
                        None if args.transport_dtype == "float16" else opt.state_dict(), dtype)

    it = iter(loader)
    t_log = time.time()
    tok_log = 0
    while progress() < 1.0:
        frac = progress()
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = next(it).to(dev, non_blocking=True)
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x)
        if args.middle_weight == 1.0:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1))
        else:
            w = 1.0 + (args.middle_weight - 1.0) * fim_middle_mask(x, special).float()
            per_token = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
            loss = (per_token * w.view(-1)).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        tok_log += x.numel()
        if step % 25 == 0 or step == 1:
            now = time.time()
            rate = tok_log / (now - t_log)
            t_log, tok_log = now, 0
            rec = {"model": args.preset, "step": step, "loss": round(loss.item(), 4), "lr": lr, "seconds": round(now - t_start, 1),
                   "tokens": tokens_seen, "tok_per_s": round(rate), "seq": x.shape[1]}
            history.append(rec)
            line = json.dumps(rec)
            print(line, flush=True)
            if log:
                log.write(line + "\n")
                log.flush()
        if time.time() - last_save > args.save_every:
            save()
            last_save = time.time()
    save(final=True)
    nats, bpb = heldout_loss(model, args.work, min(args.seq_len, 2048), 64, dev)
    summary = {"preset": args.preset, "params": model.n_params(), "steps": step, "tokens": tokens_seen,
               "seconds": round(time.time() - t_start, 1), "heldout_nats_per_token": round(nats, 4),
               "heldout_bits_per_byte": round(bpb, 4), "device": str(dev)}
    print(json.dumps(summary), flush=True)
    if log:
        log.write(json.dumps(summary) + "\n")
    if args.summary:
        json.dump(summary, open(args.summary, "w"), indent=1)


if __name__ == "__main__":
    main()
