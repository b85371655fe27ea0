#!/usr/bin/env python3
"""Insert a new block into a trained model at index AT (AT = the number of blocks appends one), with its output
projections (attention wo, FFN down) zero, so the grown model computes exactly what the old one did; training then
decides what the new block does. Used by finetune_pointer.py --add-layer (a block appended for a pointer head,
session 2) and for the session-4 experiment on the draft's FIM lookup (models/README.md): a block between the
previous-token layer and the lookup layer is where the hop from <|fim_middle|> to the name would have to happen.

  grow.py IN.pt OUT.pt [--at 1] [--seed 0]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from model import Config, Transformer  # noqa: E402


def insert_block(ck, at):
    """A Transformer with the checkpoint's weights and a new, zero-output block at index `at`; the new block's
    other weights keep the normal random initialisation (seed torch beforehand for a reproducible one)."""
    old = Config(**ck["config"])
    if not 0 < at <= old.n_layers:
        raise ValueError(f"a block can be inserted at 1..{old.n_layers}, not {at}")
    model = Transformer(Config(**{**old.to_dict(), "n_layers": old.n_layers + 1}))
    state = {}
    for k, v in ck["model"].items():
        if k.startswith("blocks."):
            i = int(k.split(".")[1])
            k = f"blocks.{i + (i >= at)}." + k.split(".", 2)[2]
        state[k] = v
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(f"blocks.{at}.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        model.blocks[at].attn.wo.weight.zero_()
        model.blocks[at].ffn.down.weight.zero_()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--at", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    ck = load_checkpoint(args.src)
    model = insert_block(ck, args.at)
    meta = {**ck["meta"], "grown": {"from": args.src, "at": args.at}}
    save_checkpoint(args.out, model.state_dict(), model.cfg.to_dict(), meta, None)
    print(f"{args.src} -> {args.out} ({model.cfg.n_layers} blocks), new block {args.at}")


if __name__ == "__main__":
    main()
