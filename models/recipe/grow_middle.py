#!/usr/bin/env python3
"""Insert a new block into a trained model at index AT, with its output projections (attention wo, FFN down) zero,
so the grown model computes exactly what the old one did; training then decides what the new block does.
An experiment on the draft's FIM lookup (models/README.md, session 4): a block between the previous-token layer and
the lookup layer is where the hop from <|fim_middle|> to the name before <|fim_suffix|> would have to happen.

  grow_middle.py IN.pt OUT.pt [--at 1] [--seed 0]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from model import Config, Transformer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--at", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    ck = load_checkpoint(args.src)
    old = Config(**ck["config"])
    if not 0 < args.at <= old.n_layers:
        raise SystemExit(f"--at must be in 1..{old.n_layers}")
    cfg = Config(**{**old.to_dict(), "n_layers": old.n_layers + 1})
    model = Transformer(cfg)
    state = {}
    for k, v in ck["model"].items():
        if k.startswith("blocks."):
            i = int(k.split(".")[1])
            k = f"blocks.{i + (i >= args.at)}." + k.split(".", 2)[2]
        state[k] = v
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(f"blocks.{args.at}.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        model.blocks[args.at].attn.wo.weight.zero_()
        model.blocks[args.at].ffn.down.weight.zero_()
    meta = {**ck["meta"], "grown": {"from": args.src, "at": args.at}}
    save_checkpoint(args.out, model.state_dict(), cfg.to_dict(), meta, None)
    print(f"{args.src} ({old.n_layers} blocks) -> {args.out} ({cfg.n_layers}), new block {args.at}")


if __name__ == "__main__":
    main()
