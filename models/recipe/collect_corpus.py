#!/usr/bin/env python3
"""Collect the real-code part of the training corpus from pinned npm packages.

Installs the packages listed in corpus-packages.json (and their dependencies) into
work/npm with npm (scripts disabled), walks every package, keeps JavaScript and
TypeScript sources, removes generated/minified files and exact duplicates, and writes

  work/corpus.jsonl           one {"path", "package", "split", "text"} per file
  work/corpus-manifest.json   packages, versions, licences, file and byte counts

The held-out split is chosen by a hash of the file's content (5%), so it is stable
across runs and independent of file order; benchmarks draw their real-source items
only from split == "heldout".
"""
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work")
EXTS = (".ts", ".tsx", ".mts", ".cts", ".js", ".mjs", ".cjs", ".jsx")
MAX_FILE_BYTES = 200_000
MIN_FILE_BYTES = 200
HELDOUT_PERCENT = 5


def looks_minified(text: str) -> bool:
    lines = text.split("\n")
    if not lines:
        return True
    longest = max(len(line) for line in lines)
    mean = len(text) / len(lines)
    # Bundlers and minifiers produce very long lines; hand-written code rarely averages over 120 columns.
    return longest > 1000 or mean > 120


def looks_generated(path: str, text: str) -> bool:
    name = os.path.basename(path)
    if ".min." in name or name.endswith(".map"):
        return True
    head = text[:400]
    return "@generated" in head or "DO NOT EDIT" in head or "sourceMappingURL=data:" in text[-2000:]


EXT_PREFERENCE = [".ts", ".tsx", ".mts", ".cts", ".jsx", ".mjs", ".js", ".cjs"]
BUILD_DIRS = {"src", "dist", "build", "lib", "cjs", "esm", "es", "es6", "mjs", "umd", "module", "modules", "fesm2022", "_cjs", "_esm", "_esm5", "_esm2015"}


def module_key(relpath: str) -> str:
    """Path of a module with build-output folders and the extension removed (dist/cjs/a/b.cjs -> a/b)."""
    parts = [p for p in os.path.splitext(relpath)[0].split(os.sep) if p not in BUILD_DIRS]
    return "/".join(parts)


def normalise_for_dedup(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def split_of(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "heldout" if digest[0] * 100 // 256 < HELDOUT_PERCENT else "train"


def install(packages: dict) -> str:
    prefix = os.path.join(WORK, "npm")
    os.makedirs(prefix, exist_ok=True)
    marker = os.path.join(prefix, "installed.json")
    if os.path.exists(marker) and json.load(open(marker)) == packages:
        return os.path.join(prefix, "node_modules")
    with open(os.path.join(prefix, "package.json"), "w") as f:
        json.dump({"name": "repokv-corpus", "private": True, "dependencies": packages}, f, indent=1)
    subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--legacy-peer-deps"],
                   cwd=prefix, check=True)
    json.dump(packages, open(marker, "w"))
    return os.path.join(prefix, "node_modules")


def package_roots(node_modules: str):
    for entry in sorted(os.listdir(node_modules)):
        if entry.startswith("."):
            continue
        full = os.path.join(node_modules, entry)
        if entry.startswith("@"):
            for sub in sorted(os.listdir(full)):
                yield os.path.join(full, sub)
        else:
            yield full


def main() -> None:
    spec = json.load(open(os.path.join(HERE, "corpus-packages.json")))["packages"]
    node_modules = install(spec)
    seen = set()
    manifest = {}
    out_path = os.path.join(WORK, "corpus.jsonl")
    kept = dropped_min = dropped_dup = 0
    with open(out_path, "w") as out:
        for root in package_roots(node_modules):
            try:
                meta = json.load(open(os.path.join(root, "package.json")))
            except (OSError, ValueError):
                continue
            name = meta.get("name", os.path.basename(root))
            licence = meta.get("license") or meta.get("licenses") or "UNKNOWN"
            if isinstance(licence, (dict, list)):
                licence = json.dumps(licence)
            stats = manifest.setdefault(name, {"version": meta.get("version"), "license": licence, "files": 0, "bytes": 0})
            # Packages ship the same module several times (src/*.ts, dist/esm/*.js, dist/cjs/*.cjs): keep one
            # copy per module, preferring the hand-written TypeScript source.
            best = {}
            for dirpath, dirnames, filenames in os.walk(root):
                # Nested node_modules are other packages; they are visited as their own roots when hoisted.
                dirnames[:] = sorted(d for d in dirnames if d != "node_modules" and not d.startswith("."))
                for fname in sorted(filenames):
                    if not fname.endswith(EXTS) or fname.endswith(".d.ts") and "src" not in dirpath:
                        continue
                    path = os.path.join(dirpath, fname)
                    key = module_key(os.path.relpath(path, root))
                    rank = EXT_PREFERENCE.index(os.path.splitext(fname)[1])
                    if key not in best or rank < best[key][0]:
                        best[key] = (rank, path)
            for _, path in sorted(best.values(), key=lambda rp: rp[1]):
                size = os.path.getsize(path)
                if size < MIN_FILE_BYTES or size > MAX_FILE_BYTES:
                    continue
                try:
                    text = open(path, encoding="utf-8").read()
                except (UnicodeDecodeError, OSError):
                    continue
                if looks_minified(text) or looks_generated(path, text):
                    dropped_min += 1
                    continue
                digest = hashlib.sha256(normalise_for_dedup(text).encode()).hexdigest()
                if digest in seen:
                    dropped_dup += 1
                    continue
                seen.add(digest)
                rel = os.path.relpath(path, node_modules)
                out.write(json.dumps({"path": rel, "package": name, "split": split_of(text), "text": text}) + "\n")
                stats["files"] += 1
                stats["bytes"] += len(text.encode("utf-8"))
                kept += 1
    manifest = {k: v for k, v in manifest.items() if v["files"]}
    summary = {
        "files": kept,
        "bytes": sum(v["bytes"] for v in manifest.values()),
        "droppedMinifiedOrGenerated": dropped_min,
        "droppedDuplicates": dropped_dup,
        "heldoutPercent": HELDOUT_PERCENT,
        "packages": manifest,
    }
    json.dump(summary, open(os.path.join(WORK, "corpus-manifest.json"), "w"), indent=1)
    print(f"kept {kept} files, {summary['bytes'] / 1e6:.1f} MB; dropped {dropped_min} minified/generated, {dropped_dup} duplicates",
          file=sys.stderr)


if __name__ == "__main__":
    main()
