"""Checkpoints that travel in pieces: the GPU machine returns files of at most 16 MiB, so a checkpoint is a
small index file plus shards of the state dict (fp32 by default, fp16 when shrinking for transport)."""
import glob
import os

import torch

SHARD_BYTES = 15 * 1024 * 1024


def save_checkpoint(path, model_state, config, meta, optimizer_state=None, dtype=torch.float32):
    """Write PATH (index: config, meta, shard names) and PATH.shardN files; optimizer state goes to PATH.opt."""
    for old in glob.glob(path + ".shard*"):
        os.remove(old)
    shards, cur, size = [], {}, 0
    for k, v in model_state.items():
        v = v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).clone()
        nbytes = v.numel() * v.element_size()
        if cur and size + nbytes > SHARD_BYTES:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += nbytes
    shards.append(cur)
    names = []
    for i, s in enumerate(shards):
        name = f"{os.path.basename(path)}.shard{i}"
        torch.save(s, os.path.join(os.path.dirname(path) or ".", name))
        names.append(name)
    if optimizer_state is not None:
        torch.save(optimizer_state, path + ".opt")
    torch.save({"config": config, "meta": meta, "shards": names}, path)


def _load(path, map_location):
    try:  # recent torch defaults to weights_only=True; these files are our own
        return torch.load(path, map_location=map_location, weights_only=False)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(path, map_location=map_location)


def load_checkpoint(path, map_location="cpu"):
    index = _load(path, map_location)
    state = {}
    for name in index["shards"]:
        part = _load(os.path.join(os.path.dirname(path) or ".", name), map_location)
        state.update({k: v.float() for k, v in part.items()})
    opt_path = path + ".opt"
    optimizer = _load(opt_path, map_location) if os.path.exists(opt_path) else None
    return {"config": index["config"], "meta": index["meta"], "model": state, "optimizer": optimizer}
