#!/usr/bin/env python3
"""Tokenize the corpus once: work/tokens-{split}.npy (uint16, all files concatenated), work/docs-{split}.json
(path, package and [start, end) token range of each file). The training machine loads these instead of text."""
import json
import sys
import time

import numpy as np

from bpe import Tokenizer
from data import load_docs, tokenize_docs


def main(corpus, tokenizer, out_dir):
    tok = Tokenizer.load(tokenizer)
    for split in ("train", "heldout"):
        t0 = time.time()
        docs = load_docs(corpus, split)
        toks = tokenize_docs(tok, docs)
        flat = np.concatenate([np.asarray(t, dtype=np.uint16) for t in toks])
        starts = np.cumsum([0] + [len(t) for t in toks])
        meta = [{"path": d["path"], "package": d["package"], "start": int(starts[i]), "end": int(starts[i + 1]),
                 "bytes": len(d["text"].encode("utf-8"))} for i, d in enumerate(docs)]
        np.save(f"{out_dir}/tokens-{split}.npy", flat)
        json.dump(meta, open(f"{out_dir}/docs-{split}.json", "w"))
        nbytes = sum(m["bytes"] for m in meta)
        print(f"{split}: {len(docs)} files, {len(flat)} tokens, {nbytes / len(flat):.2f} bytes/token, {time.time() - t0:.0f}s",
              file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:4])
