#!/usr/bin/env python3
"""Write a trained checkpoint as a GGUF file that llama.cpp (node-llama-cpp) and repokv's native engine load.

Architecture `llama`, tokenizer `gpt2` (byte-level BPE with merges), FIM and file-separator token ids, no BOS.
The format (version 3) is written by hand with struct + numpy: header, key/values, tensor infos, then tensor
data aligned to 32 bytes, each tensor padded so offsets are the running padded sum (docs/platform-notes.md).

Usage: gguf_export.py CHECKPOINT TOKENIZER.json OUT.gguf [--name NAME] [--type f16|f32]
"""
import struct
import sys

import numpy as np

from bpe import SPECIAL_TOKENS, Tokenizer

ALIGN = 32
# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
GGML_F32, GGML_F16 = 0, 1


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v) -> bytes:
    if vtype == STRING:
        return _str(v)
    if vtype == BOOL:
        return struct.pack("<?", bool(v))
    fmt = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", U64: "Q", I64: "q", F64: "d"}[vtype]
    return struct.pack("<" + fmt, v)


def _kv(key, vtype, v, elem_type=None) -> bytes:
    out = _str(key) + struct.pack("<I", vtype)
    if vtype == ARRAY:
        out += struct.pack("<IQ", elem_type, len(v))
        out += b"".join(_value(elem_type, e) for e in v)
    else:
        out += _value(vtype, v)
    return out


def gguf_tensors(state: dict, n_layers: int):
    """Map the torch state dict (names from model.py) to llama.cpp tensor names; torch [out, in] == ggml ne [in, out]."""
    yield "token_embd.weight", state["embed.weight"]
    yield "output_norm.weight", state["norm.weight"]
    for i in range(n_layers):
        p = f"blocks.{i}."
        yield f"blk.{i}.attn_norm.weight", state[p + "attn_norm.weight"]
        yield f"blk.{i}.attn_q.weight", state[p + "attn.wq.weight"]
        yield f"blk.{i}.attn_k.weight", state[p + "attn.wk.weight"]
        yield f"blk.{i}.attn_v.weight", state[p + "attn.wv.weight"]
        yield f"blk.{i}.attn_output.weight", state[p + "attn.wo.weight"]
        yield f"blk.{i}.ffn_norm.weight", state[p + "ffn_norm.weight"]
        yield f"blk.{i}.ffn_gate.weight", state[p + "ffn.gate.weight"]
        yield f"blk.{i}.ffn_up.weight", state[p + "ffn.up.weight"]
        yield f"blk.{i}.ffn_down.weight", state[p + "ffn.down.weight"]


def write_gguf(path, cfg: dict, state: dict, tok: Tokenizer, name: str, dtype: str = "f16"):
    arch = "llama"
    kvs = [
        _kv("general.architecture", STRING, arch),
        _kv("general.name", STRING, name),
        _kv("general.alignment", U32, ALIGN),
        _kv("general.license", STRING, "MIT"),
        _kv(f"{arch}.context_length", U32, cfg["context_length"]),
        _kv(f"{arch}.embedding_length", U32, cfg["d_model"]),
        _kv(f"{arch}.block_count", U32, cfg["n_layers"]),
        _kv(f"{arch}.feed_forward_length", U32, cfg["ffn_dim"]),
        _kv(f"{arch}.attention.head_count", U32, cfg["n_heads"]),
        _kv(f"{arch}.attention.head_count_kv", U32, cfg["n_kv_heads"]),
        _kv(f"{arch}.attention.layer_norm_rms_epsilon", F32, cfg["norm_eps"]),
        _kv(f"{arch}.rope.freq_base", F32, cfg["rope_base"]),
        _kv(f"{arch}.rope.dimension_count", U32, cfg["head_dim"]),
        _kv(f"{arch}.vocab_size", U32, cfg["vocab_size"]),
        _kv("tokenizer.ggml.model", STRING, "gpt2"),
        # llama.cpp's "trillion" pre-tokenizer is byte-for-byte GPT-2's splitter (same regex, same custom split
        # function) but, unlike "gpt-2", it turns off clean_up_tokenization_spaces on detokenize, which would
        # delete the space in " ?", " !", " .", " ," and around "'" — corrupting code such as `a ? b : c`.
        _kv("tokenizer.ggml.pre", STRING, "trillion"),
        _kv("tokenizer.ggml.tokens", ARRAY, tok.tokens, STRING),
        _kv("tokenizer.ggml.token_type", ARRAY, [3 if t in SPECIAL_TOKENS else 1 for t in tok.tokens], I32),
        _kv("tokenizer.ggml.merges", ARRAY, [f"{a} {b}" for a, b in tok.merges], STRING),
        _kv("tokenizer.ggml.bos_token_id", U32, tok.special["<|endoftext|>"]),
        _kv("tokenizer.ggml.eos_token_id", U32, tok.special["<|endoftext|>"]),
        _kv("tokenizer.ggml.eot_token_id", U32, tok.special["<|endoftext|>"]),
        _kv("tokenizer.ggml.padding_token_id", U32, tok.special["<|endoftext|>"]),
        _kv("tokenizer.ggml.fim_pre_token_id", U32, tok.special["<|fim_prefix|>"]),
        _kv("tokenizer.ggml.fim_suf_token_id", U32, tok.special["<|fim_suffix|>"]),
        _kv("tokenizer.ggml.fim_mid_token_id", U32, tok.special["<|fim_middle|>"]),
        _kv("tokenizer.ggml.fim_sep_token_id", U32, tok.special["<|file_sep|>"]),
        _kv("tokenizer.ggml.add_bos_token", BOOL, False),
        _kv("tokenizer.ggml.add_eos_token", BOOL, False),
    ]
    infos, blobs, offset = [], [], 0
    for tname, t in gguf_tensors(state, cfg["n_layers"]):
        arr = np.ascontiguousarray(t.detach().float().cpu().numpy())
        is_norm = arr.ndim == 1
        gtype = GGML_F32 if (is_norm or dtype == "f32") else GGML_F16
        arr = arr.astype(np.float32 if gtype == GGML_F32 else np.float16)
        ne = list(reversed(arr.shape))
        info = _str(tname) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", n) for n in ne)
        info += struct.pack("<IQ", gtype, offset)
        infos.append(info)
        data = arr.tobytes()
        pad = (-len(data)) % ALIGN
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    header = b"GGUF" + struct.pack("<Iqq", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    header += b"\0" * ((-len(header)) % ALIGN)
    with open(path, "wb") as f:
        f.write(header)
        for b in blobs:
            f.write(b)


def main(argv):
    import torch
    ckpt_path, tok_path, out = argv[0], argv[1], argv[2]
    name = argv[argv.index("--name") + 1] if "--name" in argv else "repokv"
    dtype = argv[argv.index("--type") + 1] if "--type" in argv else "f16"
    from checkpoint import load_checkpoint
    ckpt = load_checkpoint(ckpt_path)
    write_gguf(out, ckpt["config"], ckpt["model"], Tokenizer.load(tok_path), name, dtype)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
