// What the master copy's staging format costs in fidelity (issue 14 §6). The master copy is staged while the prompt is
// prefilled, so its precision changes the prompt's own hidden states (later prompt tokens attend to staged earlier
// ones) and the tokens the policy then tiers are transcoded from it. On a prompt of code, the last `--eval` tokens
// are held out and teacher-forced after the prompt; their next-token distributions are compared with those of the
// full fp16 engine (policy `full`, never staged):
//   - master-<fmt>: the staged master itself (no selection): the staging's own effect;
//   - default-<fmt>: the product's path: SpecKV (draft lookahead + scoring pass), 12 % of the fp16 bytes, mixed
//     tiers, from that master;
//   - default-f16master: the same selection from an unstaged fp16 master (the part no staging format can remove).
// Reported per row: mean KL(full || row) in nats, top-1 agreement with full, the master's bytes (positions included)
// over the fp16 K/V bytes of the prompt, and its prefill time.
//
// node esbuild.mjs && node bench/master-fidelity.mjs [--model FILE] [--draft FILE] [--tokens 4096] [--eval 64]
//   [--formats q8,kivi4,kivi2] [--threads 1] [--json]
// Default model and draft: the bundled ones. Real shapes: --model "$(node native/test-fixtures/real-shapes.mjs
// --shape qwen2.5-coder-0.5b --type Q8_0)" --draft "$(... --layers 2)" (random weights: the figures say how errors
// propagate through that shape, not how a trained model's distribution moves).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { NativeModel, DraftModel, nativePolicy: P, tierCost, loadVocabOnly } = await import(path.join(root, 'dist', 'sidecar.mjs'));

const { values: a } = parseArgs({
	options: {
		model: { type: 'string', default: path.join(root, 'models', 'target.gguf') },
		draft: { type: 'string' },
		tokens: { type: 'string', default: '4096' },
		eval: { type: 'string', default: '64' },
		formats: { type: 'string', default: 'q8,kivi4,kivi2' },
		threads: { type: 'string', default: '1' },
		json: { type: 'boolean', default: false },
	},
});
const N = Number(a.tokens);
const E = Number(a.eval);
const threads = Number(a.threads);
const draftPath = a.draft ?? (a.model === path.join(root, 'models', 'target.gguf') ? path.join(root, 'models', 'draft.gguf') : undefined);

/** The code prompt of bench/common.ts codePromptTokens: repokv's own sources, repeated to n tokens. */
async function codeTokens(modelPath, n) {
	const vocab = await loadVocabOnly(modelPath, { threads: 1, logLevel: 'error' });
	const files = ['native/src/attention.cpp', 'native/src/session.cpp', 'native/src/model.cpp', 'native/src/kv_store.cpp', 'native/src/addon.cpp', 'sidecar/src/engine/native.ts'];
	let text = '';
	for (const f of files) text += `<|file_sep|>${f}\n` + readFileSync(path.join(root, f), 'utf8');
	const once = vocab.tokenize(text, true).map(Number);
	await vocab.dispose();
	const out = [];
	while (out.length < n) out.push(...once.slice(0, n - out.length));
	return out;
}

function softmax(row) {
	let mx = -Infinity;
	for (const x of row) mx = Math.max(mx, x);
	const p = new Float64Array(row.length);
	let s = 0;
	for (let i = 0; i < row.length; i++) s += p[i] = Math.exp(row[i] - mx);
	for (let i = 0; i < row.length; i++) p[i] /= s;
	return p;
}
function argmax(row) {
	let b = 0;
	for (let i = 1; i < row.length; i++) if (row[i] > row[b]) b = i;
	return b;
}
/** mean KL(ref || x) and top-1 agreement over the held-out rows. */
function compare(ref, x, nVocab) {
	let kl = 0;
	let agree = 0;
	for (let r = 0; r < E; r++) {
		const pr = softmax(ref.subarray(r * nVocab, (r + 1) * nVocab));
		const px = softmax(x.subarray(r * nVocab, (r + 1) * nVocab));
		for (let i = 0; i < nVocab; i++) if (pr[i] > 0) kl += pr[i] * (Math.log(pr[i]) - Math.log(Math.max(px[i], 1e-300)));
		agree += argmax(ref.subarray(r * nVocab, (r + 1) * nVocab)) === argmax(x.subarray(r * nVocab, (r + 1) * nVocab)) ? 1 : 0;
	}
	return { kl: kl / E, top1: agree / E };
}

const tokens = await codeTokens(a.model, N);
const n = N - E; // the prompt; tokens[n..N) are held out
const prompt = tokens.slice(0, n);
const held = tokens.slice(n - 1, N - 1); // fed after the m = n - 1 cached prompt tokens: rows predict tokens[n..N)
const model = NativeModel.load(a.model, { threads });
const { nLayer, nHeadKv, headDim, nVocab } = model.info;
const contextSize = N + 128;
const draft = draftPath === undefined ? undefined : await DraftModel.load(draftPath, { threads, contextSize: contextSize + 64 });
const lookahead = draft === undefined ? [] : await draft.lookahead(prompt, E);
const fp16Bytes = (n - 1) * nLayer * nHeadKv * headDim * 4;

// the reference: policy full, fp16, never staged
const ref = model.createSession({ contextSize });
let t0 = performance.now();
await ref.prefill(prompt.slice(0, n - 1));
const refPrefillMs = performance.now() - t0;
await ref.prefill(held, { allLogits: true });
const refLogits = ref.logits('all').slice();
ref.dispose();

const rows = [];
for (const fmt of ['f16', ...a.formats.split(',')]) {
	const s = model.createSession({ contextSize });
	if (fmt !== 'f16') s.setStaging(fmt);
	s.observe(P.observationFor('speckv', n));
	t0 = performance.now();
	await s.prefill(prompt);
	const prefillMs = performance.now() - t0;
	s.truncate(n - 1);
	const masterBytes = s.stats().bytes;
	await P.scoringPass(s, prompt[n - 1], lookahead);
	s.stopObserving();
	P.compressSession(s, nLayer, nHeadKv, { policy: 'speckv', budget: { percent: 12 }, precision: 'mixed', tierCost: tierCost(headDim), reserveTokens: E + 1 }, E + 1);
	const tierBytes = s.stats().bytes;
	await s.prefill(held, { allLogits: true });
	const compressed = compare(refLogits, s.logits('all'), nVocab);
	s.decompress();
	await s.prefill(held, { allLogits: true });
	const master = fmt === 'f16' ? undefined : compare(refLogits, s.logits('all'), nVocab);
	s.dispose();
	const common = { master: fmt, masterBytes, masterOfFp16: +(masterBytes / fp16Bytes).toFixed(3), prefillMs: Math.round(prefillMs) };
	if (master) rows.push({ row: `master-${fmt}`, ...common, kl: +master.kl.toExponential(3), top1: +master.top1.toFixed(3) });
	rows.push({ row: fmt === 'f16' ? 'default-f16master' : `default-${fmt}`, ...common, tierBytes, kl: +compressed.kl.toExponential(3), top1: +compressed.top1.toFixed(3) });
}
await draft?.dispose();
const result = { model: path.basename(a.model), draft: draftPath && path.basename(draftPath), tokens: N, held: E, lookahead: lookahead.length, threads, refPrefillMs: Math.round(refPrefillMs), fp16Bytes, rows };
if (a.json) {
	console.log(JSON.stringify(result, null, 1));
} else {
	console.log(`${result.model} (draft ${result.draft ?? 'none'}, ${result.lookahead} draft tokens), ${N - E}-token prompt of code + ${E} held-out tokens teacher-forced, vs full fp16 (prefill ${result.refPrefillMs} ms, ${threads} thread)`);
	console.log('| row | master of fp16 | prefill ms | mean KL (nats) | top-1 agreement |');
	console.log('|---|---|---|---|---|');
	for (const r of rows) console.log(`| ${r.row} | ${r.masterOfFp16} | ${r.prefillMs} | ${r.kl} | ${r.top1} |`);
}
