#!/usr/bin/env node
// How far llama.cpp's own logits move between ggml CPU variants: the parity reference (native/build/llama-ref) run
// on the same prompt under each variant (REPOKV_GGML_CPU_VARIANT), compared with the first. The spread is the floor
// for any fixed bound on |native − llama.cpp| that is meant to hold on every CPU.
//
// usage: node native/tools/ref-across-variants.mjs [model.gguf] [--tokens 512] [--greedy 64] [variant...]
//   default model: models/target.gguf; default variants: every one this CPU runs. Tokens: the code prompt of
//   test/native/parity.test.mjs (native sources, tokenized by node-llama-cpp).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { llamaReference, tempDir } from '../../test/native/helpers.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
	const i = args.indexOf(name);
	if (i < 0) return def;
	const v = args[i + 1];
	args.splice(i, 2);
	return v;
};
const nTokens = Number(opt('--tokens', 512));
const greedy = Number(opt('--greedy', 64));
const model = args[0]?.endsWith('.gguf') ? args.shift() : path.join(root, 'models', 'target.gguf');
const addon = createRequire(import.meta.url)(path.join(root, 'native', 'build', 'repokv.node'));
const variants = args.length ? args : addon.cpuVariants().filter((v) => v.score > 0).sort((a, b) => b.score - a.score).map((v) => v.name);

const { getLlama } = await import('node-llama-cpp');
const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false });
const vocab = await llama.loadModel({ modelPath: model, vocabOnly: true });
let text = '';
for (const f of ['native/src/attention.cpp', 'native/src/session.cpp', 'native/src/model.cpp']) text += `<|file_sep|>${f}\n` + fs.readFileSync(path.join(root, f), 'utf8');
const tokens = Int32Array.from(vocab.tokenize(text, true).slice(0, nTokens));
await vocab.dispose();

const dir = tempDir('repokv-refvar-');
const refs = [];
for (const v of variants) {
	process.env.REPOKV_GGML_CPU_VARIANT = v;
	refs.push({ v, ref: llamaReference(model, tokens, { greedy, ctx: nTokens + greedy + 16, dir }) });
}
delete process.env.REPOKV_GGML_CPU_VARIANT;
fs.rmSync(dir, { recursive: true, force: true });

const base = refs[0];
console.log(`llama.cpp logits across ggml CPU variants: ${path.basename(model)}, ${tokens.length} prompt positions (${nTokens} asked) + greedy steps, vs ${base.v}`);
for (const { v, ref } of refs.slice(1)) {
	let maxAbs = 0, maxRef = 0;
	const n = Math.min(ref.promptLogits.length, base.ref.promptLogits.length);
	for (let i = 0; i < n; i++) {
		maxAbs = Math.max(maxAbs, Math.abs(ref.promptLogits[i] - base.ref.promptLogits[i]));
		maxRef = Math.max(maxRef, Math.abs(base.ref.promptLogits[i]));
	}
	let same = 0;
	while (same < ref.greedyTokens.length && ref.greedyTokens[same] === base.ref.greedyTokens[same]) same++;
	console.log(`  ${v.padEnd(12)} max |logit diff| ${maxAbs.toExponential(3)} (relative ${(maxAbs / maxRef).toExponential(2)} of max |logit| ${maxRef.toFixed(2)}), greedy tokens equal for ${same}/${ref.greedyTokens.length}`);
}
