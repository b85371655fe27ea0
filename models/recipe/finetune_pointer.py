#!/usr/bin/env python3
"""Fine-tune a bundled model with a *copy-pointer* attention loss, so that a small model learns the long-range
lookup that plain language-model training never made it learn (the shipped draft retrieved 0% of needles after
~1B GPU tokens; neither model has an induction head on repeated code).

One chosen attention head (default: the last layer's last query head) gets an extra loss on its attention
distribution, only at positions where the data generator knows which earlier token must be copied:

- retrieval samples: at the last prompt token and at each answer token, the head should attend to the matching
  token of the value (or signature) in the definitions file (`export const NAME = VALUE;`), i.e. to the token it is
  about to emit (the first one is the def's ` 4` for an answer `4`: the copy also has to drop the space);
- repeat samples: in the second copy of a chunk, the head should attend to the next token of the first copy
  (a plain induction pointer), at up to --repeat-points positions per sequence.

Loss = LM cross-entropy + --pointer-weight * mean(-log attention[target]). The architecture is unchanged (plain
llama: nothing is added at inference, llama.cpp runs the result as before); the pointer loss only shapes which
head does the lookup. Seeded; stages of a curriculum are separate invocations (--init from the previous stage).

  finetune_pointer.py --init work/cpu/draft-shipped.pt --out work/cpu/draft-s1.pt --seq-len 1024 --batch 8 \
      --time-budget 1800 --lr 5e-4 --seed 5151
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
import model as M  # noqa: E402
from bpe import Tokenizer  # noqa: E402
from checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from data import Corpus, Generator  # noqa: E402
from grow import insert_block  # noqa: E402
from train import heldout_loss  # noqa: E402


class PointerGenerator(Generator):
    """Generator whose retrieval and repeat samples also return (query position, source position) pairs."""

    def __init__(self, *a, repeat_points=32, **kw):
        super().__init__(*a, **kw)
        self.repeat_points = repeat_points
        self._last_files = None
        self.enc = lambda s: self.tok.encode(s, special=False)

    def retrieval_files(self, rng, n_keys):
        out = super().retrieval_files(rng, n_keys)
        self._last_files = out
        return out

    def retrieval_pointed(self, rng):
        prompt, answer, fim = self.retrieval_task(rng, self.seq_len - 24)
        tail = self.enc(answer) + ([self.eot] if fim else [])
        seq = prompt + tail
        _, _, queries = self._last_files
        q = next((q for q in queries if q[1] == answer), None)
        pairs = []
        if q is not None:
            name = q[2]
            head = f"export function {name}" if "declare function" in q[0] else f"export const {name} ="
            h = self.enc(head)
            a = len(prompt)
            v = _find(seq[:a], h)
            if v >= 0:
                v += len(h)
                for k in range(min(len(tail), 48)):
                    if v + k >= a:
                        break
                    src, dst = self.tok.decode([seq[v + k]]), self.tok.decode([seq[a + k]])
                    if (src.lstrip(" ") != dst.lstrip(" ")) if k == 0 else (src != dst):
                        break
                    pairs.append((a - 1 + k, v + k))
        return seq, pairs

    def repeat_pointed(self, rng):
        seq, start, chunk, at = self.repeat_placed(rng)
        ks = list(range(2, len(chunk)))
        rng.shuffle(ks)
        # input position at+k-1 predicts chunk[k]; the first copy of chunk[k] is at start+k
        pairs = [(at + k - 1, start + k) for k in ks[: self.repeat_points] if at + k - 1 < self.seq_len]
        return seq, pairs

    def sample_pointed(self, rng):
        kind = rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        if kind == "retrieval":
            seq, pairs = self.retrieval_pointed(rng)
        elif kind == "repeat":
            seq, pairs = self.repeat_pointed(rng)
        else:
            seq, pairs = getattr(self, kind)(rng), []
        seq = seq[: self.seq_len + 1]
        if len(seq) < self.seq_len + 1:
            seq = seq + [self.eot] * (self.seq_len + 1 - len(seq))
        return seq, [(i, j) for i, j in pairs if i < self.seq_len and j < i], kind


def _find(seq, pat):
    """Last occurrence of pat in seq, -1 if none."""
    n = len(pat)
    first = pat[0]
    for i in range(len(seq) - n, -1, -1):
        if seq[i] == first and seq[i:i + n] == pat:
            return i
    return -1


def attention_with_capture(self, x, cos, sin):
    """model.Attention.forward, keeping the attention probabilities of this layer when self.capture is set."""
    B, T, _ = x.shape
    q, k, v = self.project(x, cos, sin)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(self.cfg.head_dim)
    mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
    att = att.masked_fill(mask, float("-inf")).softmax(-1)
    if getattr(self, "capture", False):
        self.captured, self.captured_v = att, v
    y = att @ v
    return self.wo(y.transpose(1, 2).reshape(B, T, -1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", required=True, help="checkpoint to start from (e.g. gguf_import.py output)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work"))
    ap.add_argument("--mix", default='{"code":0.2,"retrieval":0.5,"fim":0.1,"repeat":0.2}')
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--time-budget", type=float, default=1800)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--layer", type=int, default=-1, help="layer of the pointer head (default: last)")
    ap.add_argument("--head", type=int, default=-1, help="query head of the pointer head (default: last)")
    ap.add_argument("--pointer-weight", type=float, default=1.0)
    ap.add_argument("--copy-weight", type=float, default=0.0, help="weight of the pointer head's OV copy loss")
    ap.add_argument("--add-layer", action="store_true", help="append a new block (zero output) for the pointer head")
    ap.add_argument("--other-lr-scale", type=float, default=1.0, help="lr scale for weights outside the pointer layer")
    ap.add_argument("--repeat-points", type=int, default=32)
    ap.add_argument("--save-every", type=float, default=300)
    ap.add_argument("--seed", type=int, default=5151)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log", default=None)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    ck = load_checkpoint(args.init)
    cfg = M.Config(**ck["config"])
    if args.add_layer:
        # Grow by one block appended after the existing ones (grow.py: zero output projections, so the grown model
        # computes exactly what the old one did); its attention is free to become the pointer head without
        # disturbing the trained heads.
        model = insert_block(ck, cfg.n_layers)
        cfg = model.cfg
    else:
        model = M.Transformer(cfg)
        model.load_state_dict(ck["model"])
    M.Attention.forward = attention_with_capture
    layer = args.layer % cfg.n_layers
    head = args.head % cfg.n_heads
    model.blocks[layer].attn.capture = True
    phases = ck["meta"].get("phases", []) + [{k: ck["meta"].get(k) for k in ("step", "seconds", "tokens", "args")}]

    # The pointer layer learns at --lr; every other weight at --lr * --other-lr-scale (protects the trained LM).
    groups = []
    for new in (True, False):
        ps = [(n, p) for n, p in model.named_parameters() if n.startswith(f"blocks.{layer}.") == new]
        scale = 1.0 if new else args.other_lr_scale
        groups.append({"params": [p for n, p in ps if p.dim() >= 2], "scale": scale})
        groups.append({"params": [p for n, p in ps if p.dim() < 2], "scale": scale, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    tok = Tokenizer.load(os.path.join(args.work, "tokenizer.json"))
    gen = PointerGenerator(tok, Corpus.from_pretokenized(args.work, "train"), args.seq_len, json.loads(args.mix),
                           repeat_points=args.repeat_points)
    log = open(args.log, "a") if args.log else None
    print(f"pointer fine-tune: {model.n_params() / 1e6:.2f}M params, layer {layer} head {head}, {vars(args)}", flush=True)

    t0 = time.time()
    step = tokens = 0
    last_save = time.time()
    acc = {"lm": 0.0, "ptr": 0.0, "hit": 0.0, "n": 0, "np": 0, "tok": 0, "t": time.time()}

    def progress():
        return step / args.max_steps if args.max_steps else (time.time() - t0) / args.time_budget

    def save(final=False):
        meta = {"step": step, "seconds": time.time() - t0, "tokens": tokens, "args": vars(args), "final": final,
                "phases": phases, "history": []}
        save_checkpoint(args.out, model.state_dict(), cfg.to_dict(), meta)

    while progress() < 1.0:
        frac = progress()
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"]
        seqs, bi, qi, si = [], [], [], []
        for b in range(args.batch):
            seq, pairs, _ = gen.sample_pointed(rng)
            seqs.append(seq)
            for i, j in pairs:
                bi.append(b)
                qi.append(i)
                si.append(j)
        batch = torch.tensor(seqs, dtype=torch.long)
        x, y = batch[:, :-1], batch[:, 1:]
        logits = model(x)
        lm = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1))
        loss = lm
        if bi:
            att = model.blocks[layer].attn.captured[:, head]
            p = att[torch.tensor(bi), torch.tensor(qi), torch.tensor(si)]
            ptr = -torch.log(p + 1e-6).mean()
            loss = lm + args.pointer_weight * ptr
            if args.copy_weight:
                # What the pointer head writes for a source token, alone through the final norm and the tied
                # unembedding, should be the token to emit (its OV circuit copies; the first one drops the space).
                hd = cfg.head_dim
                vsel = model.blocks[layer].attn.captured_v[torch.tensor(bi), head, torch.tensor(si)]
                contrib = vsel @ model.blocks[layer].attn.wo.weight[:, head * hd:(head + 1) * hd].t()
                # (final norm and embedding detached: this loss only trains the head, not the shared unembedding)
                cn = contrib * torch.rsqrt(contrib.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)
                clog = (cn * model.norm.weight.detach()) @ model.embed.weight.detach().t()
                copy = F.cross_entropy(clog, y[torch.tensor(bi), torch.tensor(qi)])
                loss = loss + args.copy_weight * copy
                acc["copy"] = acc.get("copy", 0.0) + copy.item()
            acc["ptr"] += ptr.item()
            acc["hit"] += p.mean().item()
            acc["np"] += 1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.blocks[layer].attn.captured = model.blocks[layer].attn.captured_v = None
        step += 1
        tokens += x.numel()
        acc["lm"] += lm.item()
        acc["n"] += 1
        acc["tok"] += x.numel()
        if step % 10 == 0 or step == 1:
            now = time.time()
            rec = {"step": step, "lm": round(acc["lm"] / acc["n"], 4),
                   "ptr": round(acc["ptr"] / max(1, acc["np"]), 4), "copy": round(acc.get("copy", 0.0) / max(1, acc["np"]), 4), "ptr_attn": round(acc["hit"] / max(1, acc["np"]), 4),
                   "lr": round(lr, 6), "seconds": round(now - t0, 1), "tokens": tokens,
                   "tok_per_s": round(acc["tok"] / (now - acc["t"])), "seq": args.seq_len}
            print(json.dumps(rec), flush=True)
            if log:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            acc = {"lm": 0.0, "ptr": 0.0, "hit": 0.0, "n": 0, "np": 0, "tok": 0, "t": now}
        if time.time() - last_save > args.save_every:
            save()
            last_save = time.time()
    save(final=True)
    model.blocks[layer].attn.capture = False
    nats, bpb = heldout_loss(model, args.work, 2048, 64, torch.device("cpu"))
    summary = {"steps": step, "tokens": tokens, "seconds": round(time.time() - t0, 1),
               "heldout_nats_per_token": round(nats, 4), "heldout_bits_per_byte": round(bpb, 4)}
    print(json.dumps(summary), flush=True)
    if log:
        log.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
