#!/usr/bin/env python3
"""Plant an induction (copy) circuit into a freshly initialised model, before training (docs/platform-notes.md,
"Training the bundled models").

Why: small models trained on code they end up memorising never grow a copy head (the first shipped draft saw ~1B
tokens and retrieved 0% of needles; neither shipped model copies a repeated chunk). A copy circuit set by hand at
initialisation is then tuned by ordinary training. Nothing is added to the architecture: the result is a plain
`llama` model that llama.cpp and the native engine run unchanged; only the starting weights differ.

The circuit (layers 0 and 1, KV head 0 of each and the two query heads that share it; everything else keeps its
normal random initialisation). The residual stream is split as

    A  = [0, d-96)        token identity (the embedding; trained)
    c  = d-96             a constant component of every embedding (gives attention a position-only key)
    B1 = [d-95, d-63)     written by layer 0, head 0: P·(token at i-1)
    B2 = [d-63, d-31)     written by layer 0, head 1: P·(token at i-2)
    the last 31 dims      free (zero at start)

with P a random 32×|A| matrix of orthonormal rows.

- Layer 0, heads 0 and 1 (previous-token heads): the key is the constant component on the highest RoPE frequencies;
  the query is the same vector rotated by -δ·θ_f, so q·k peaks at relative offset -δ (δ = 1, 2). The value reads
  P·(token identity); the output writes it into B1 / B2.
- Layer 1, heads 0 and 1 (induction heads): keys read B1 (16 dims) and B2 (16 dims) into the lowest RoPE
  frequencies (head dims 32..63; with base 1e8 they turn by < 0.5 rad over 4096 tokens, so matching is
  position-independent). Head 0's query is P·(current token) against B1: "find where the previous token was the
  token I am at"; head 1 also matches the token before the current one against B2 (a two-token match). The value
  reads P·(token identity at the key's position); the output adds P^T of it to A, which through the tied
  unembedding raises the logit of the token that followed the earlier occurrence.

Gains (`PlantGains`) were chosen with `python3 plant.py --calibrate [--seq-len 4096]`, which prints, on random tokens
with one run repeated, each head's attention on the token it should find and the loss on the run and its repeat.
Beyond match ≈ 10 the induction heads' softmax saturates on whichever key scores highest, right or wrong (32 dims
cannot keep 2,048 tokens apart); the copy gain only moves the loss a little at initialisation, because the random
embeddings' logits are small until training scales them.
"""
import argparse
import math
from dataclasses import dataclass

import torch

N_P = 32  # rows of P: dims of a token's identity carried by the circuit


@dataclass
class PlantGains:
    kappa: float = 0.2        # the constant embedding component
    position: float = 3.0     # layer-0 query gain (sharpness of the previous-token heads)
    write: float = 0.02       # layer-0 output gain into B1/B2 (the embedding's own scale)
    match: float = 10.0       # layer-1 query gain (sharpness of the match)
    copy: float = 1.0         # layer-1 output gain into A (logit boost of the copied token)


def layout(d):
    a = d - 96
    return range(0, a), a, range(a + 1, a + 33), range(a + 33, a + 65)


def plant_induction(model, seed=0, gains: PlantGains = PlantGains(), induction_layer=1):
    """Plant the circuit: previous-token heads in layer 0, induction heads in `induction_layer` (1 unless a
    deeper model leaves the layers between free, e.g. for a FIM hop that must run before the lookup)."""
    cfg = model.cfg
    hd = cfg.head_dim
    if not 1 <= induction_layer < cfg.n_layers or cfg.n_heads // cfg.n_kv_heads < 2 or hd != 64 or cfg.d_model < 192:
        raise ValueError("planting needs the induction layer in 1..n_layers-1, >= 2 query heads per KV head, "
                         "head_dim 64, d_model >= 192")
    A, c, B1, B2 = layout(cfg.d_model)
    a0, a1 = A.start, A.stop
    g = torch.Generator().manual_seed(seed)
    P = torch.linalg.qr(torch.randn(a1 - a0, N_P, generator=g))[0].t().contiguous()  # [32, |A|], orthonormal rows
    theta = [cfg.rope_base ** (-2 * f / hd) for f in range(hd // 2)]
    with torch.no_grad():
        E = model.embed.weight
        E[:, c] = gains.kappa
        E[:, c + 1:] = 0.0
        # Layer 0: previous-token heads 0 (δ=1) and 1 (δ=2) on KV head 0.
        at = model.blocks[0].attn
        at.wk.weight[0:hd] = 0.0
        at.wv.weight[0:hd] = 0.0
        weights = [1.0, 1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.2]  # high frequencies resolve the offset
        for f, w in enumerate(weights):
            at.wk.weight[2 * f, c] = w
        at.wv.weight[32:64, a0:a1] = P
        for h, (delta, B) in enumerate(((1, B1), (2, B2))):
            rows = slice(h * hd, (h + 1) * hd)
            at.wq.weight[rows] = 0.0
            for f, w in enumerate(weights):
                at.wq.weight[h * hd + 2 * f, c] = gains.position * w * math.cos(-delta * theta[f])
                at.wq.weight[h * hd + 2 * f + 1, c] = gains.position * w * math.sin(-delta * theta[f])
            at.wo.weight[:, rows] = 0.0
            for r in range(N_P):
                at.wo.weight[B[r], h * hd + 32 + r] = gains.write
        # Induction heads 0 (one-token match) and 1 (two-token match) on KV head 0.
        at = model.blocks[induction_layer].attn
        at.wk.weight[0:hd] = 0.0
        at.wv.weight[0:hd] = 0.0
        for r in range(16):
            at.wk.weight[32 + r, B1[r]] = 1.0
            at.wk.weight[48 + r, B2[16 + r]] = 1.0
        at.wv.weight[0:N_P, a0:a1] = P
        for h in (0, 1):
            rows = slice(h * hd, (h + 1) * hd)
            at.wq.weight[rows] = 0.0
            at.wq.weight[h * hd + 32:h * hd + 48, a0:a1] = gains.match * P[:16]
            if h == 1:
                for r in range(16):
                    # B1 at the query's position holds P·(token at i-1), the same scale as the key's B2.
                    at.wq.weight[h * hd + 48 + r, B1[16 + r]] = gains.match / max(gains.write / 0.02, 1e-6)
            at.wo.weight[:, rows] = 0.0
            at.wo.weight[a0:a1, h * hd:h * hd + N_P] = gains.copy * P.t()
    return P


def attention_probs(model, x):
    """Attention probabilities [layer][head, query, key] of one sequence (recomputed from the blocks' weights)."""
    from model import rope_tables
    T = x.shape[0]
    cos, sin = rope_tables(model.cfg, torch.arange(T))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    out, h = [], model.embed(x[None])
    for blk in model.blocks:
        q, k, _ = blk.attn.project(blk.attn_norm(h), cos, sin)
        s = (q @ k.transpose(-2, -1)) / math.sqrt(model.cfg.head_dim)
        out.append(s.masked_fill(mask, float("-inf")).softmax(-1)[0])
        h = blk(h, cos, sin)
    return out


def measure(model, seq_len=1024, run=128, n=4, seed=1, vocab_lo=256, vocab_hi=2043, induction_layer=1):
    """What the circuit does on random tokens with one run repeated: the previous-token heads' attention on the
    token δ back, the induction heads' attention on the token that followed the earlier occurrence, and the loss
    (nats/token) on the first run and on its repeat."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    acc = {"prev1": 0.0, "prev2": 0.0, "induction1": 0.0, "induction2": 0.0, "loss_first": 0.0, "loss_repeat": 0.0}
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            x = torch.randint(vocab_lo, vocab_hi, (seq_len,), generator=g)
            a = int(torch.randint(0, seq_len // 2 - run, (1,), generator=g))
            b = int(torch.randint(a + run, seq_len - run, (1,), generator=g))
            x[b:b + run] = x[a:a + run]
            probs = attention_probs(model, x)
            p0, p1 = probs[0], probs[induction_layer]
            i = torch.arange(8, seq_len)
            acc["prev1"] += p0[0, i, i - 1].mean().item()
            acc["prev2"] += p0[1, i, i - 2].mean().item()
            j = torch.arange(b + 1, b + run - 1)  # in the repeat; the earlier occurrence's successor is j - b + a + 1
            acc["induction1"] += p1[0, j, j - b + a + 1].mean().item()
            acc["induction2"] += p1[1, j, j - b + a + 1].mean().item()
            lp = F.cross_entropy(model(x[None, :-1])[0], x[1:], reduction="none")
            acc["loss_first"] += lp[a:a + run - 1].mean().item()
            acc["loss_repeat"] += lp[b:b + run - 1].mean().item()
    model.train()
    return {k: round(v / n, 3) for k, v in acc.items()}


def main():
    import itertools
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from model import PRESETS, Transformer
    ap = argparse.ArgumentParser(description="measure the planted circuit at initialisation (random repeated tokens)")
    ap.add_argument("--preset", default="draft2")
    ap.add_argument("--calibrate", action="store_true", help="a grid over the match and copy gains")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--induction-layer", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Transformer(PRESETS[args.preset])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    print("unplanted", measure(model, args.seq_len, induction_layer=args.induction_layer), flush=True)
    grid = itertools.product([2.0, 10.0, 40.0], [0.1, 1.0]) if args.calibrate else [None]
    for gs in grid:
        model.load_state_dict(state)
        gains = PlantGains() if gs is None else PlantGains(match=gs[0], copy=gs[1])
        plant_induction(model, 0, gains, args.induction_layer)
        print(gains, measure(model, args.seq_len, induction_layer=args.induction_layer), flush=True)


if __name__ == "__main__":
    main()
