#!/usr/bin/env python3
"""Read a bundled GGUF (F32/F16 tensors, as gguf_export.py writes them) back into a training checkpoint, so a
later, longer or GPU-backed run can continue from the shipped models without the original checkpoint files:

  gguf_import.py ../target.gguf work/target-from-gguf.pt
  train.py --preset target --finetune work/target-from-gguf.pt --out work/target.pt ...
"""
import struct
import sys

import numpy as np

from gguf_export import ALIGN, ARRAY, BOOL, F32, F64, I8, I16, I32, I64, STRING, U8, U16, U32, U64

_SCALAR = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", U64: "Q", I64: "q", F64: "d", BOOL: "?"}


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        return self.take(_SCALAR[vtype])


def read_gguf(path):
    data = open(path, "rb").read()
    r = Reader(data)
    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    r.pos = 4
    version, n_tensors, n_kv = r.take("I"), r.take("q"), r.take("q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        ne = [r.take("q") for _ in range(r.take("I"))]
        infos.append((name, ne, r.take("I"), r.take("Q")))
    base = r.pos + (-r.pos) % meta.get("general.alignment", ALIGN)
    tensors = {}
    for name, ne, gtype, off in infos:
        dtype = {0: np.float32, 1: np.float16}.get(gtype)
        if dtype is None:
            raise ValueError(f"{name}: ggml type {gtype} is not F32/F16")
        count = int(np.prod(ne))
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=base + off)
        tensors[name] = arr.reshape(list(reversed(ne))).astype(np.float32)
    return version, meta, tensors


def main(src, dst):
    import torch
    from checkpoint import save_checkpoint
    from gguf_export import gguf_tensors
    _, meta, tensors = read_gguf(src)
    a = meta["general.architecture"]
    cfg = {"vocab_size": len(meta["tokenizer.ggml.tokens"]), "d_model": meta[f"{a}.embedding_length"],
           "n_layers": meta[f"{a}.block_count"], "n_heads": meta[f"{a}.attention.head_count"],
           "n_kv_heads": meta[f"{a}.attention.head_count_kv"], "head_dim": meta[f"{a}.rope.dimension_count"],
           "ffn_dim": meta[f"{a}.feed_forward_length"], "rope_base": meta[f"{a}.rope.freq_base"],
           "norm_eps": meta[f"{a}.attention.layer_norm_rms_epsilon"], "context_length": meta[f"{a}.context_length"]}
    # Invert the export's name mapping by running it over a dict of torch names.
    from model import Config, Transformer
    names = list(Transformer(Config(**cfg)).state_dict())
    mapping = {gguf: torch_name for (gguf, torch_name) in gguf_tensors({n: n for n in names}, cfg["n_layers"])}
    state = {mapping[k]: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    save_checkpoint(dst, state, cfg, {"step": 0, "seconds": 0.0, "history": [], "imported_from": src})
    print(f"{src} -> {dst}: {sum(v.numel() for v in state.values())} parameters", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:3])
