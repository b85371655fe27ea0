"""Training and evaluation sequences: real code, synthetic long-range retrieval in code form, FIM, repeats.

Everything is generated from a seeded random.Random, so a (seed, index) pair always gives the same sequence.
Documents use the layout the sidecar builds at inference time (docs/architecture.md, "Prompt layout"):

    <|file_sep|>{path}\\n{text}  ...  <|file_sep|>{active path}\\n<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>{middle}<|endoftext|>

Retrieval tasks (the bundled models' long-context skill) define constants and function signatures early in a
multi-file context and use them in the last file, in the forms a completion model meets in real code:
`assert.equal(NAME, VALUE)`, `expect(NAME).toBe(VALUE)`, `const x = NAME; // VALUE`, and restated signatures
`export declare function name(args): Ret;`. The usage file is plain or FIM-ordered (middle = the value).
"""
import json
import random

from bpe import Tokenizer

WORDS = ("retry limit timeout max min count size buffer cache index offset window budget layer head token file path "
         "user session request response config option value key table column row node edge graph tree queue stack "
         "parser lexer scanner writer reader stream channel socket port host server client worker job task batch "
         "frame pixel color shader texture mesh vertex camera scene light shadow model tensor vector matrix scale "
         "delay interval deadline quota rate level depth width height length weight score rank seed hash salt nonce "
         "version build release stage deploy region zone cluster shard replica leader follower lock mutex signal "
         "event handler listener callback promise future result error warning debug trace span metric counter gauge "
         "account invoice order payment price amount currency tax discount coupon cart item product store vendor").split()
TYPES = ["number", "string", "boolean", "Promise<void>", "Buffer", "Uint8Array", "Date", "RegExp", "bigint", "unknown",
         "Record<string, number>", "string[]", "number[]", "Map<string, string>", "Set<number>", "Error"]


def make_name(rng, style):
    n = rng.randint(2, 4)
    parts = rng.sample(WORDS, n)
    if style == "const":
        return "_".join(p.upper() for p in parts)
    return parts[0] + "".join(p.capitalize() for p in parts[1:])


def make_value(rng):
    kind = rng.random()
    if kind < 0.45:
        return str(rng.randint(10, 999999))
    if kind < 0.6:
        return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(4, 8)))
    if kind < 0.9:
        return "'" + "-".join(rng.sample(WORDS, rng.randint(1, 3))) + "'"
    return f"{rng.randint(0, 99)}.{rng.randint(1, 999)}"


def make_signature(rng):
    name = make_name(rng, "fn")
    args = ", ".join(f"{make_name(rng, 'fn')}{'?' if rng.random() < 0.2 else ''}: {rng.choice(TYPES)}"
                     for _ in range(rng.randint(1, 3)))
    return name, f"({args}): {rng.choice(TYPES)}"


def make_path(rng, ext=".ts"):
    depth = rng.randint(1, 3)
    return "src/" + "/".join(make_name(rng, "fn") for _ in range(depth)) + ext


class Corpus:
    """Tokenized real source files, grouped by package so a context looks like one repository."""

    @classmethod
    def from_pretokenized(cls, work_dir, split):
        import numpy as np
        flat = np.load(f"{work_dir}/tokens-{split}.npy")
        meta = json.load(open(f"{work_dir}/docs-{split}.json"))
        return cls(meta, [flat[m["start"]:m["end"]].tolist() for m in meta])

    def __init__(self, docs, tokens_by_doc):
        self.docs = docs
        self.tokens = tokens_by_doc
        self.by_package = {}
        for i, d in enumerate(docs):
            self.by_package.setdefault(d["package"], []).append(i)
        # Weight packages by their size so big repositories are sampled proportionally.
        self.packages = sorted(self.by_package)
        self.package_weights = [sum(len(self.tokens[i]) for i in self.by_package[p]) for p in self.packages]


def load_docs(corpus_path, split):
    docs = []
    for line in open(corpus_path, encoding="utf-8"):
        d = json.loads(line)
        if d["split"] == split:
            d["path"] = d["path"].replace("\\", "/")
            docs.append(d)
    return docs


def file_header(tok, path):
    return [tok.special["<|file_sep|>"]] + tok.encode(path + "\n", special=False)


def tokenize_docs(tok: Tokenizer, docs):
    return [file_header(tok, d["path"]) + tok.encode(d["text"], special=False) for d in docs]


class Generator:
    def __init__(self, tok: Tokenizer, corpus: Corpus, seq_len: int, mix=None):
        self.tok = tok
        self.corpus = corpus
        self.seq_len = seq_len
        self.mix = mix or {"code": 0.30, "retrieval": 0.35, "fim": 0.25, "repeat": 0.10}
        self.sep = tok.special["<|file_sep|>"]
        self.eot = tok.special["<|endoftext|>"]

    # -- context filler -------------------------------------------------------------------------------
    def repo_files(self, rng, budget):
        """Files from one package (a long file may be cut), in random order, until `budget` tokens; small packages
        are topped up from another package."""
        c = self.corpus
        out, used = [], 0
        while used < budget:
            pkg = rng.choices(c.packages, weights=c.package_weights)[0]
            ids = c.by_package[pkg][:]
            rng.shuffle(ids)
            for i in ids:
                if used >= budget:
                    break
                t = c.tokens[i][: budget - used]
                out.append(t)
                used += len(t)
        return out

    # -- sequence kinds -------------------------------------------------------------------------------
    def code(self, rng):
        return [t for f in self.repo_files(rng, self.seq_len + 1) for t in f]

    def repeat_placed(self, rng):
        """Real code with a chunk of it (64-512 tokens from its first half) copied in again later; returns
        (sequence, start of the chunk's first copy, the chunk, start of its second copy)."""
        flat = self.code(rng)
        n = rng.randint(64, min(512, self.seq_len // 4))
        start = rng.randint(0, max(0, len(flat) // 2 - n))
        chunk = flat[start:start + n]
        at = rng.randint(start + n + 16, max(start + n + 16, len(flat) - n))
        return flat[:at] + chunk + flat[at:], start, chunk, at

    def repeat(self, rng):
        return self.repeat_placed(rng)[0]

    def retrieval_files(self, rng, n_keys):
        """A definitions file and a usage file; returns (defs_tokens, usage_prefix_tokens, queries)."""
        names, lines, queries = set(), [], []
        for _ in range(n_keys):
            if rng.random() < 0.75:
                name = make_name(rng, "const")
                if name in names:
                    continue
                names.add(name)
                value = make_value(rng)
                lines.append(f"export const {name} = {value};\n")
                form = rng.random()
                if form < 0.45:
                    queries.append((f"  assert.equal({name}, ", f"{value});\n", name))
                elif form < 0.75:
                    queries.append((f"  expect({name}).toBe(", f"{value});\n", name))
                else:
                    var = make_name(rng, "fn")
                    queries.append((f"  const {var} = {name}; // ", f"{value}\n", name))
            else:
                fname, sig = make_signature(rng)
                if fname in names:
                    continue
                names.add(fname)
                lines.append(f"export function {fname}{sig} {{\n  return undefined as never;\n}}\n")
                queries.append((f"export declare function {fname}", f"{sig};\n", fname))
        rng.shuffle(lines)
        # Interleave definitions with some ordinary filler lines so they are not a bare list.
        body = "".join(lines[i] + ("\n" if rng.random() < 0.3 else "") for i in range(len(lines)))
        defs_path = make_path(rng)
        defs = file_header(self.tok, defs_path) + self.tok.encode(body, special=False)
        return defs, defs_path, queries

    def retrieval_task(self, rng, length, n_keys=None, n_queries=None, fim_probability=0.5):
        """A context of `length` tokens ending in a query; returns (prompt_tokens, answer_text, fim)."""
        return self.retrieval_task_placed(rng, length, n_keys, n_queries, fim_probability)[:3]

    def retrieval_task_placed(self, rng, length, n_keys=None, n_queries=None, fim_probability=0.5):
        """retrieval_task, plus where the definitions file landed: (prompt, answer, fim, defs_start, defs_len), so a
        diagnosis can measure attention on it (diagnose_retrieval.py).

        A definitions file sits at a uniformly random file boundary of real code from one package, so the
        distance between definition and use covers the whole context; the last file uses some of them."""
        n_keys = n_keys or rng.randint(2, 12)
        defs, defs_path, queries = self.retrieval_files(rng, n_keys)
        rng.shuffle(queries)
        queries = queries[: n_queries or rng.randint(1, min(6, len(queries)))]
        use_path = make_path(rng, ".test.ts")
        imported = ", ".join(q[2] for q in queries)
        head = (f"import assert from 'node:assert';\nimport {{ {imported} }} from './{defs_path[4:-3]}';\n\n"
                f"describe('{make_name(rng, 'fn')}', () => {{\n")
        enc = lambda s: self.tok.encode(s, special=False)
        k = rng.randrange(len(queries)) if rng.random() < fim_probability else len(queries) - 1
        before = head + "".join(q[0] + q[1] for q in queries[:k]) + queries[k][0]
        answer = queries[k][1]
        if k < len(queries) - 1 or rng.random() < 0.5:
            after = "".join(q[0] + q[1] for q in queries[k + 1:]) + "});\n"
            usage = (file_header(self.tok, use_path) + [self.tok.special["<|fim_prefix|>"]] + enc(before)
                     + [self.tok.special["<|fim_suffix|>"]] + enc(after) + [self.tok.special["<|fim_middle|>"]])
            fim = True
        else:
            usage = file_header(self.tok, use_path) + enc(before)
            fim = False
        budget = length - len(defs) - len(usage)
        filler = self.repo_files(rng, max(0, budget))
        at = rng.randint(0, len(filler))
        files = filler[:at] + [defs] + filler[at:]
        context = [t for f in files for t in f][: max(0, length - len(usage))]
        defs_start = sum(len(f) for f in filler[:at])
        return context + usage, answer, fim, defs_start, max(0, min(len(defs), len(context) - defs_start))

    def dense_retrieval(self, rng, fim_probability=0.0):
        """One definitions file of many keys, every one of them asked in the usage file: ~10-30 answers per
        sequence instead of one, so the lookup gets a gradient on every key rather than on ~0.1% of the tokens."""
        prompt, answer, fim = self.retrieval_task(rng, self.seq_len - 24, n_keys=rng.randint(8, 24), n_queries=64,
                                                  fim_probability=fim_probability)
        return prompt + self.tok.encode(answer, special=False) + ([self.eot] if fim else [])

    def dense_fim_retrieval(self, rng):
        """dense_retrieval with the usage file FIM-ordered, the hole at a random query. At inference the cursor's
        file is FIM (docs/architecture.md, "Prompt layout"), so the lookup must also work from <|fim_middle|>, where the name sits before
        <|fim_suffix|> and the other queries. dense_retrieval never trains that (fim_probability 0), and the shipped
        draft fails there: held-out, 4K, 0.20 from FIM against 0.75 from plain usage files (models/README.md)."""
        return self.dense_retrieval(rng, fim_probability=1.0)

    def random_repeat(self, rng):
        """Code with a run of random tokens inserted, then the same run again later (1-3 times). Repeated real code
        does not teach copying to a model that has memorised its training code; random tokens can only be
        predicted by looking back, which is the induction skill the long-range lookup is built from."""
        flat = self.code(rng)
        n = rng.randint(8, min(256, self.seq_len // 8))
        run = [rng.randrange(256, self.eot) for _ in range(n)]
        for _ in range(rng.randint(2, 4)):
            at = rng.randint(0, max(0, self.seq_len - n))
            flat = flat[:at] + run + flat[at:]
        return flat

    def retrieval(self, rng):
        prompt, answer, fim = self.retrieval_task(rng, self.seq_len - 24)
        tail = self.tok.encode(answer, special=False) + ([self.eot] if fim else [])
        return prompt + tail

    def fim(self, rng):
        c = self.corpus
        doc_i = rng.randrange(len(c.docs))
        doc = c.docs[doc_i]
        header = file_header(self.tok, doc["path"])
        text = doc["text"] if "text" in doc else self.tok.decode(c.tokens[doc_i][len(header):])
        lines = text.split("\n")
        if len(lines) < 3:
            return self.code(rng)
        # Cursor: mostly at a line start or mid-line; middle is the rest of the line, a line, or a few lines.
        li = rng.randrange(len(lines))
        line_start = sum(len(l) + 1 for l in lines[:li])
        col = 0 if rng.random() < 0.4 else rng.randint(0, len(lines[li]))
        start = line_start + col
        n_lines = 1 if rng.random() < 0.6 else rng.randint(2, 6)
        end_line = min(len(lines), li + n_lines)
        end = sum(len(l) + 1 for l in lines[:end_line])
        end = min(end, len(text))
        prefix, middle, suffix = text[:start], text[start:end], text[end:]
        enc = lambda s: self.tok.encode(s, special=False)
        p, m, s = enc(prefix), enc(middle)[:256], enc(suffix)
        s = s[: max(0, min(len(s), self.seq_len // 4))]
        fim = (header + [self.tok.special["<|fim_prefix|>"]] + p[-(self.seq_len // 2):]
               + [self.tok.special["<|fim_suffix|>"]] + s + [self.tok.special["<|fim_middle|>"]] + m + [self.eot])
        budget = self.seq_len + 1 - len(fim)
        out = [t for f in self.repo_files(rng, max(0, budget)) for t in f] if budget > 0 else []
        return (out[:budget] + fim)[-(self.seq_len + 1):]

    def sample(self, rng):
        kind = rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        seq = getattr(self, kind)(rng)
        seq = seq[: self.seq_len + 1]
        if len(seq) < self.seq_len + 1:
            seq = seq + [self.eot] * (self.seq_len + 1 - len(seq))
        return seq
