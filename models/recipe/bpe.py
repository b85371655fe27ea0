#!/usr/bin/env python3
"""Byte-level BPE tokenizer (GPT-2 style), trained and applied exactly as llama.cpp's `gpt2` tokenizer does.

Standard library only, so the project's tests can run it on any Python 3. Pre-tokenization reproduces
llama.cpp's GPT-2 splitter (src/unicode.cpp, unicode_regex_split_custom_gpt2):

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

Python's `re` has no \\p{..} classes, so the letter, number and whitespace classes are built from
`unicodedata` once at import. Special tokens are matched as whole strings before pre-tokenization, like
llama.cpp does when a prompt is tokenized with special tokens enabled.

Usage:
  bpe.py train CORPUS.jsonl OUT.json [--vocab 2048] [--max-mb 16]
  bpe.py encode TOKENIZER.json < strings.json      # JSON list of strings -> JSON list of id lists
"""
import json
import re
import sys
import unicodedata
from collections import Counter, defaultdict

SPECIAL_TOKENS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_sep|>"]

# Unicode White_Space property (what llama.cpp's flag table marks as whitespace).
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _category_class(prefix: str) -> str:
    """A regex character class body listing every code point whose general category starts with prefix."""
    ranges = []
    start = None
    for cp in range(0x110000):
        inside = unicodedata.category(chr(cp)).startswith(prefix)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, 0x10FFFF))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


_L = _category_class("L")
_N = _category_class("N")
_PRETOKENIZE = re.compile(
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{_L}]+| ?[{_N}]+| ?[^{_WHITESPACE}{_L}{_N}]+|[{_WHITESPACE}]+(?![^{_WHITESPACE}])|[{_WHITESPACE}]+"
)


def bytes_to_unicode() -> dict:
    """GPT-2's reversible map from bytes to printable code points (how llama.cpp stores byte tokens)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}


def pretokenize(text: str):
    return _PRETOKENIZE.findall(text)


def to_symbols(word: str) -> str:
    return "".join(BYTE_ENCODER[b] for b in word.encode("utf-8"))


class Tokenizer:
    def __init__(self, tokens, merges):
        self.tokens = tokens  # id -> token text (byte-unicode form; special tokens verbatim)
        self.merges = merges  # list of (left, right) in rank order
        self.token_to_id = {t: i for i, t in enumerate(tokens)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.special = {t: self.token_to_id[t] for t in SPECIAL_TOKENS}
        self._special_re = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
        self._cache = {}

    @classmethod
    def load(cls, path):
        data = json.load(open(path, encoding="utf-8"))
        return cls(data["tokens"], [tuple(m.split(" ")) for m in data["merges"]])

    def save(self, path):
        json.dump({"type": "gpt2-byte-bpe", "pre": "gpt-2", "special": SPECIAL_TOKENS, "tokens": self.tokens,
                   "merges": [f"{a} {b}" for a, b in self.merges]}, open(path, "w", encoding="utf-8"), ensure_ascii=False)

    def _bpe(self, symbols: str):
        cached = self._cache.get(symbols)
        if cached is not None:
            return cached
        parts = list(symbols)
        while len(parts) > 1:
            best = None
            best_rank = None
            for i in range(len(parts) - 1):
                rank = self.ranks.get((parts[i], parts[i + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = i, rank
            if best is None:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        ids = [self.token_to_id[p] for p in parts]
        if len(self._cache) < 500_000:
            self._cache[symbols] = ids
        return ids

    def encode(self, text: str, special: bool = True):
        out = []
        pieces = self._special_re.split(text) if special else [text]
        for piece in pieces:
            if not piece:
                continue
            if special and piece in self.special:
                out.append(self.special[piece])
                continue
            for word in pretokenize(piece):
                out.extend(self._bpe(to_symbols(word)))
        return out

    def decode(self, ids) -> str:
        buf = bytearray()
        for i in ids:
            t = self.tokens[i]
            if t in self.special:
                buf.extend(t.encode("utf-8"))
            else:
                buf.extend(BYTE_DECODER[c] for c in t)
        return buf.decode("utf-8", errors="replace")


def train(word_counts: Counter, vocab_size: int) -> Tokenizer:
    """Classic BPE: repeatedly merge the most frequent adjacent pair, updating only the words that contain it."""
    tokens = [BYTE_ENCODER[b] for b in range(256)]
    n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
    words = [list(w) for w in word_counts]
    counts = list(word_counts.values())
    pair_counts = defaultdict(int)
    where = defaultdict(set)
    for wi, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_counts[(a, b)] += counts[wi]
            where[(a, b)].add(wi)
    merges = []
    for _ in range(n_merges):
        if not pair_counts:
            break
        # Ties broken by the pair itself so training is deterministic.
        pair = max(pair_counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(pair)
        merged = pair[0] + pair[1]
        tokens.append(merged)
        for wi in list(where[pair]):
            w = words[wi]
            c = counts[wi]
            for a, b in zip(w, w[1:]):
                pair_counts[(a, b)] -= c
                if pair_counts[(a, b)] <= 0:
                    del pair_counts[(a, b)]
                where[(a, b)].discard(wi)
            i = 0
            new = []
            while i < len(w):
                if i + 1 < len(w) and w[i] == pair[0] and w[i + 1] == pair[1]:
                    new.append(merged)
                    i += 2
                else:
                    new.append(w[i])
                    i += 1
            words[wi] = new
            for a, b in zip(new, new[1:]):
                pair_counts[(a, b)] += c
                where[(a, b)].add(wi)
        where.pop(pair, None)
    return Tokenizer(tokens + SPECIAL_TOKENS, merges)


def main(argv):
    if argv[0] == "train":
        corpus, out = argv[1], argv[2]
        vocab = int(argv[argv.index("--vocab") + 1]) if "--vocab" in argv else 2048
        max_bytes = int(float(argv[argv.index("--max-mb") + 1]) * 1e6) if "--max-mb" in argv else 16_000_000
        counts = Counter()
        used = 0
        for line in open(corpus, encoding="utf-8"):
            doc = json.loads(line)
            if doc["split"] != "train":
                continue
            for word in pretokenize(doc["path"] + "\n" + doc["text"]):
                counts[to_symbols(word)] += 1
            used += len(doc["text"])
            if used >= max_bytes:
                break
        tok = train(counts, vocab)
        tok.save(out)
        print(f"trained {len(tok.tokens)} tokens ({len(tok.merges)} merges) on {used / 1e6:.1f} MB, {len(counts)} distinct words",
              file=sys.stderr)
    elif argv[0] == "encode":
        tok = Tokenizer.load(argv[1])
        print(json.dumps([tok.encode(s) for s in json.load(sys.stdin)]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
