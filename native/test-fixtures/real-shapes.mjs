// Random-weight GGUF models with the shapes and tokenizers of real code models (docs/architecture.md, "Serving real
// models"): Qwen2.5-Coder 0.5B / 1.5B / 3B / 7B (qwen2, 151,936-token vocabulary with the FIM and repository tokens)
// and deepseek-coder 1.3B (llama architecture, deepseek-coder's vocabulary). There are no real weights on the machines
// this project is tested on; these files exercise everything else a user's download does: the architecture's metadata,
// head dims 64 and 128, tied and separate output, the weight types users download (F16, Q8_0, Q4_K_M, Q5_K_M, Q6_K),
// the real tokenizer, and the sizes (a full 0.5B at Q8_0 is ~500 MB).
//
// - The tokenizers come from the vocabulary files of llama.cpp's test suite, inside the llama.cpp source that
//   node-llama-cpp bundles (llama/gitRelease.bundle): models/ggml-vocab-qwen2.gguf, models/ggml-vocab-deepseek-coder.gguf.
//   Qwen2's vocabulary is Qwen2.5-Coder's except ids 151646-151664, which it has as [PAD...]: they are renamed as in
//   Qwen2.5-Coder's tokenizer (151659-151664: <|fim_prefix|>, <|fim_middle|>, <|fim_suffix|>, <|fim_pad|>,
//   <|repo_name|>, <|file_sep|>, control tokens), with tokenizer.ggml.fim_*_token_id declaring them.
// - Weights: normal with std 0.02 (matrices, embeddings, biases), norms exactly 1. Deterministic per (seed, tensor).
// - F16 / F32 / Q8_0 are written here, streaming (chunks of rows), never holding a tensor in memory. K-quants are made
//   from an F16 file by llama.cpp's own quantizer (llama-quantize.cpp, llama_model_quantize), so their per-tensor
//   types are what a downloaded Q4_K_M has.
// - Generated files are cached under native/build/real-shapes/ (gitignored), named by shape, layers, type, seed and
//   generator version: a second request is free.
//
// CLI:  node native/test-fixtures/real-shapes.mjs --shape qwen2.5-coder-0.5b [--type Q8_0] [--layers 2] [--seed 1]
//       [--out FILE]     prints the file's path;  --list prints the shapes
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { readGgufHeader } from './gguf-reader.mjs';
import { GGML, GGUF, tensorBytes, writeGgufStreaming } from './gguf-writer.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const buildDir = path.join(root, 'native', 'build');
export const cacheDir = path.join(buildDir, 'real-shapes');

/** Bumped whenever a change here changes the bytes written, so cached files are regenerated. */
export const GENERATOR_VERSION = 1;

/** Token ids of Qwen2.5-Coder's special tokens (its tokenizer_config.json), in the 151,936-entry vocabulary. */
export const QWEN_CODER_TOKENS = {
	endOfText: 151643,
	fimPrefix: 151659,
	fimMiddle: 151660,
	fimSuffix: 151661,
	fimPad: 151662,
	repoName: 151663,
	fileSep: 151664,
};

// ids 151646-151664 of Qwen2.5's tokenizer, which llama.cpp's Qwen2 test vocabulary has as [PADn] padding. Types as
// llama.cpp's converter gives them: texts that look special (<|...|>) are control (3), the rest user-defined (4).
const QWEN_CODER_ADDED = [
	'<|object_ref_start|>', '<|object_ref_end|>', '<|box_start|>', '<|box_end|>', '<|quad_start|>', '<|quad_end|>',
	'<|vision_start|>', '<|vision_end|>', '<|vision_pad|>', '<|image_pad|>', '<|video_pad|>', '<tool_call>', '</tool_call>',
	'<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>',
];
const QWEN_CODER_ADDED_FIRST = 151646;

/**
 * Real model shapes (their config.json). `vocab` names the tokenizer source; `tied`: no output.weight, the
 * embedding is the output projection.
 */
export const SHAPES = {
	'qwen2.5-coder-0.5b': { arch: 'qwen2', vocab: 'qwen2.5-coder', nLayer: 24, nEmbd: 896, nFf: 4864, nHead: 14, nHeadKv: 2, tied: true, ropeBase: 1e6, contextLength: 32768 },
	'qwen2.5-coder-1.5b': { arch: 'qwen2', vocab: 'qwen2.5-coder', nLayer: 28, nEmbd: 1536, nFf: 8960, nHead: 12, nHeadKv: 2, tied: true, ropeBase: 1e6, contextLength: 32768 },
	'qwen2.5-coder-3b': { arch: 'qwen2', vocab: 'qwen2.5-coder', nLayer: 36, nEmbd: 2048, nFf: 11008, nHead: 16, nHeadKv: 2, tied: true, ropeBase: 1e6, contextLength: 32768 },
	'qwen2.5-coder-7b': { arch: 'qwen2', vocab: 'qwen2.5-coder', nLayer: 28, nEmbd: 3584, nFf: 18944, nHead: 28, nHeadKv: 4, tied: false, ropeBase: 1e6, contextLength: 32768 },
	// deepseek-coder-1.3b-base: llama architecture, no GQA, linear RoPE scaling x4 (16K from a 4K base)
	'deepseek-coder-1.3b': { arch: 'llama', vocab: 'deepseek-coder', nLayer: 24, nEmbd: 2048, nFf: 5504, nHead: 16, nHeadKv: 16, tied: false, ropeBase: 1e5, contextLength: 16384, ropeScalingLinear: 4 },
};

/** Weight types: written directly (F32, F16, Q8_0) or made from F16 by llama.cpp's quantizer (ftype name). */
export const WEIGHT_TYPES = ['F32', 'F16', 'Q8_0', 'Q4_K_M', 'Q5_K_M', 'Q6_K', 'Q4_K_S', 'Q5_K_S'];
const DIRECT = { F32: GGML.F32, F16: GGML.F16, Q8_0: GGML.Q8_0 };
const FILE_TYPE = { F32: 0, F16: 1, Q8_0: 7 };

// ---- vocabulary files from node-llama-cpp's llama.cpp bundle --------------------------------------------------------

const VOCAB_SOURCES = { 'qwen2.5-coder': 'ggml-vocab-qwen2.gguf', 'deepseek-coder': 'ggml-vocab-deepseek-coder.gguf' };
/** Token counts of those vocabularies (= token_embd rows), to describe a cached file without reading it. */
const VOCAB_SIZES = { 'qwen2.5-coder': 151936, 'deepseek-coder': 32256 };

function llamaBundle() {
	const bundle = path.join(root, 'node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');
	if (!fs.existsSync(bundle)) throw new Error(`llama.cpp source bundle not found at ${bundle}; run \`npm ci\``);
	return bundle;
}

/**
 * Path of one of llama.cpp's vocabulary files (`ggml-vocab-qwen2.gguf`, ...), extracted once from the bundle into
 * native/build/vocab/ (re-extracted when the bundle changes, as native/build.mjs does for the headers).
 */
export function llamaVocabFile(fileName) {
	const bundle = llamaBundle();
	const dir = path.join(buildDir, 'vocab');
	const out = path.join(dir, fileName);
	const stat = fs.statSync(bundle);
	const stampFile = path.join(dir, '.stamp');
	const stamp = `${stat.size} ${stat.mtimeMs}`;
	const fresh = fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === stamp;
	if (fresh && fs.existsSync(out)) return out;
	if (!fresh) fs.rmSync(dir, { recursive: true, force: true });
	fs.mkdirSync(dir, { recursive: true });
	const tmp = fs.mkdtempSync(path.join(buildDir, 'bundle-vocab-'));
	try {
		// A clone without checkout is ~1 s; `git show` then reads one blob.
		execFileSync('git', ['clone', '--quiet', '--no-checkout', bundle, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
		const blob = execFileSync('git', ['-C', tmp, 'show', `HEAD:models/${fileName}`], { maxBuffer: 256 << 20 });
		fs.writeFileSync(`${out}.partial`, blob);
		fs.renameSync(`${out}.partial`, out);
	} finally {
		fs.rmSync(tmp, { recursive: true, force: true });
	}
	fs.writeFileSync(stampFile, stamp);
	return out;
}

/** The tokenizer.* metadata of a vocabulary (`qwen2.5-coder` or `deepseek-coder`), as GGUF entries. */
export function tokenizerMetadata(vocab) {
	const header = readGgufHeader(llamaVocabFile(VOCAB_SOURCES[vocab]));
	const kv = header.kv.filter((e) => e.key.startsWith('tokenizer.'));
	const entry = (key) => kv.find((e) => e.key === key);
	if (vocab === 'qwen2.5-coder') {
		const tokens = entry('tokenizer.ggml.tokens').value;
		const types = entry('tokenizer.ggml.token_type').value;
		QWEN_CODER_ADDED.forEach((text, i) => {
			tokens[QWEN_CODER_ADDED_FIRST + i] = text;
			types[QWEN_CODER_ADDED_FIRST + i] = /^<\|.*\|>$/.test(text) ? 3 : 4;
		});
		const set = (key, type, value) => {
			const e = entry(key);
			if (e) Object.assign(e, { type, value });
			else kv.push({ key, type, value });
		};
		const T = QWEN_CODER_TOKENS;
		// As in Qwen2.5-Coder base GGUFs: no BOS prepended, <|endoftext|> ends text and pads.
		set('tokenizer.ggml.eos_token_id', GGUF.UINT32, T.endOfText);
		set('tokenizer.ggml.padding_token_id', GGUF.UINT32, T.endOfText);
		set('tokenizer.ggml.bos_token_id', GGUF.UINT32, T.endOfText);
		set('tokenizer.ggml.add_bos_token', GGUF.BOOL, false);
		set('tokenizer.ggml.fim_pre_token_id', GGUF.UINT32, T.fimPrefix);
		set('tokenizer.ggml.fim_suf_token_id', GGUF.UINT32, T.fimSuffix);
		set('tokenizer.ggml.fim_mid_token_id', GGUF.UINT32, T.fimMiddle);
		set('tokenizer.ggml.fim_pad_token_id', GGUF.UINT32, T.fimPad);
		set('tokenizer.ggml.fim_rep_token_id', GGUF.UINT32, T.repoName);
		set('tokenizer.ggml.fim_sep_token_id', GGUF.UINT32, T.fileSep);
	}
	return { kv, nVocab: entry('tokenizer.ggml.tokens').value.length };
}

// ---- weights --------------------------------------------------------------------------------------------------------

/** FNV-1a of a string, for per-tensor seeds (a tensor's values do not depend on which tensors precede it). */
function hashString(s, seed) {
	let h = (0x811c9dc5 ^ seed) >>> 0;
	for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
	return h;
}

/** Standard normal values from xorshift128 + Box-Muller (both outputs used): ~10^8 values in seconds. */
function normalSource(seed) {
	let x = seed | 1, y = 362436069, z = 521288629, w = 88675123;
	const uniform = () => {
		const t = x ^ (x << 11);
		x = y; y = z; z = w;
		w = (w ^ (w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
		return (w + 0.5) / 4294967296;
	};
	for (let i = 0; i < 16; i++) uniform();
	return (out, std) => {
		for (let i = 0; i < out.length; i += 2) {
			const r = Math.sqrt(-2 * Math.log(uniform())) * std;
			const a = 2 * Math.PI * uniform();
			out[i] = r * Math.cos(a);
			if (i + 1 < out.length) out[i + 1] = r * Math.sin(a);
		}
	};
}

/** Chunks of whole rows, about a million values each, of N(0, std²) (or all `constant`). */
function* rowChunks(ne, seed, name, { std = 0.02, constant = undefined } = {}) {
	const rowLength = ne[0];
	const rows = ne.slice(1).reduce((a, b) => a * b, 1);
	const perChunk = Math.max(1, Math.floor((1 << 20) / rowLength));
	const fill = normalSource(hashString(name, seed));
	for (let start = 0; start < rows; start += perChunk) {
		const chunk = new Float32Array(Math.min(perChunk, rows - start) * rowLength);
		if (constant !== undefined) chunk.fill(constant);
		else fill(chunk, std);
		yield chunk;
	}
}

/** The GGUF entries and tensor list of a shape (the tensors' data is produced when written). */
function modelLayout(shapeName, shape, { layers, weightType, seed }) {
	const { arch, nEmbd: E, nHead, nHeadKv, nFf: F } = shape;
	const nLayer = layers ?? shape.nLayer;
	const hd = E / nHead;
	const { kv: tokenizer, nVocab } = tokenizerMetadata(shape.vocab);
	const name = nLayer === shape.nLayer ? shapeName : `${shapeName}-${nLayer}layers`;
	const kv = [
		{ key: 'general.architecture', type: GGUF.STRING, value: arch },
		{ key: 'general.name', type: GGUF.STRING, value: `repokv random-weight ${name}` },
		{ key: 'general.file_type', type: GGUF.UINT32, value: FILE_TYPE[weightType] ?? 1 },
		{ key: 'general.alignment', type: GGUF.UINT32, value: 32 },
		{ key: `${arch}.context_length`, type: GGUF.UINT32, value: shape.contextLength },
		{ key: `${arch}.embedding_length`, type: GGUF.UINT32, value: E },
		{ key: `${arch}.block_count`, type: GGUF.UINT32, value: nLayer },
		{ key: `${arch}.feed_forward_length`, type: GGUF.UINT32, value: F },
		{ key: `${arch}.attention.head_count`, type: GGUF.UINT32, value: nHead },
		{ key: `${arch}.attention.head_count_kv`, type: GGUF.UINT32, value: nHeadKv },
		{ key: `${arch}.attention.layer_norm_rms_epsilon`, type: GGUF.FLOAT32, value: 1e-6 },
		{ key: `${arch}.rope.freq_base`, type: GGUF.FLOAT32, value: shape.ropeBase },
		...(arch === 'llama' ? [{ key: 'llama.rope.dimension_count', type: GGUF.UINT32, value: hd }, { key: 'llama.vocab_size', type: GGUF.UINT32, value: nVocab }] : []),
		...(shape.ropeScalingLinear ? [{ key: `${arch}.rope.scaling.type`, type: GGUF.STRING, value: 'linear' }, { key: `${arch}.rope.scaling.factor`, type: GGUF.FLOAT32, value: shape.ropeScalingLinear }] : []),
		...tokenizer,
	];
	const wt = weightType in DIRECT ? DIRECT[weightType] : GGML.F16;
	const tensors = [];
	const matrix = (tname, ne) => tensors.push({ name: tname, ne, type: wt, chunks: () => rowChunks(ne, seed, tname) });
	const vector = (tname, n, opts) => tensors.push({ name: tname, ne: [n], type: GGML.F32, chunks: () => rowChunks([n], seed, tname, opts) });
	matrix('token_embd.weight', [E, nVocab]);
	vector('output_norm.weight', E, { constant: 1 });
	if (!shape.tied) matrix('output.weight', [E, nVocab]);
	for (let l = 0; l < nLayer; l++) {
		const p = `blk.${l}.`;
		vector(p + 'attn_norm.weight', E, { constant: 1 });
		matrix(p + 'attn_q.weight', [E, nHead * hd]);
		matrix(p + 'attn_k.weight', [E, nHeadKv * hd]);
		matrix(p + 'attn_v.weight', [E, nHeadKv * hd]);
		if (arch === 'qwen2') {
			vector(p + 'attn_q.bias', nHead * hd);
			vector(p + 'attn_k.bias', nHeadKv * hd);
			vector(p + 'attn_v.bias', nHeadKv * hd);
		}
		matrix(p + 'attn_output.weight', [nHead * hd, E]);
		vector(p + 'ffn_norm.weight', E, { constant: 1 });
		matrix(p + 'ffn_gate.weight', [E, F]);
		matrix(p + 'ffn_up.weight', [E, F]);
		matrix(p + 'ffn_down.weight', [F, E]);
	}
	return { kv, tensors, nVocab, nLayer, headDim: hd };
}

// ---- llama.cpp's quantizer ------------------------------------------------------------------------------------------

/** native/build/llama-quantize, compiled on first use against node-llama-cpp's libllama (as native/build.mjs does for llama-ref). */
export function llamaQuantizeTool() {
	const src = path.join(here, 'llama-quantize.cpp');
	const bin = path.join(buildDir, 'llama-quantize');
	if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs >= fs.statSync(src).mtimeMs) return bin;
	const pathsFile = path.join(buildDir, 'paths.json');
	if (!fs.existsSync(pathsFile)) throw new Error('native/build/paths.json is missing: run `node native/build.mjs` first');
	const { binsDir, llamaTag } = JSON.parse(fs.readFileSync(pathsFile, 'utf8'));
	const inc = path.join(buildDir, 'llama-src');
	const partial = `${bin}.partial-${process.pid}`;
	execFileSync(process.env.CXX || 'g++', ['-std=c++17', '-O2', '-I', path.join(inc, 'ggml', 'include'), '-I', path.join(inc, 'include'), src, '-o', partial, '-L', binsDir, `-l:libllama.${llamaTag}.so`, '-l:libggml-base.so', `-l:libggml.${llamaTag}.so`, `-Wl,-rpath,${binsDir}`, '-pthread'], { stdio: ['ignore', 'ignore', 'pipe'] });
	fs.renameSync(partial, bin);
	return bin;
}

// ---- entry points ---------------------------------------------------------------------------------------------------

/**
 * Writes a random-weight model of a real shape to `out`. Returns its description.
 * @param {string} out
 * @param {{shape: keyof typeof SHAPES, type?: string, layers?: number, seed?: number, threads?: number}} options
 */
export function writeRealShape(out, { shape: shapeName, type = 'Q8_0', layers, seed = 1, threads = 1 }) {
	const shape = SHAPES[shapeName];
	if (!shape) throw new Error(`unknown shape ${shapeName} (known: ${Object.keys(SHAPES).join(', ')})`);
	if (!WEIGHT_TYPES.includes(type)) throw new Error(`unknown weight type ${type} (known: ${WEIGHT_TYPES.join(', ')})`);
	if (layers !== undefined && !(Number.isInteger(layers) && layers >= 1)) throw new Error(`layers must be a positive integer (got ${layers})`);
	const layout = modelLayout(shapeName, shape, { layers, weightType: type, seed });
	fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
	if (type in DIRECT) {
		writeGgufStreaming(out, layout.kv, layout.tensors);
	} else {
		// Under temporary names, renamed when complete: a test running alongside never sees half a file.
		const f16 = `${out}.f16-${process.pid}`;
		const partial = `${out}.partial-${process.pid}`;
		try {
			writeGgufStreaming(f16, layout.kv, layout.tensors);
			execFileSync(llamaQuantizeTool(), [f16, partial, type, String(threads)], { stdio: ['ignore', 'ignore', 'pipe'] });
			fs.renameSync(partial, out);
		} finally {
			fs.rmSync(f16, { force: true });
			fs.rmSync(partial, { force: true });
		}
	}
	return { file: out, shape: shapeName, type, nLayer: layout.nLayer, nVocab: layout.nVocab, headDim: layout.headDim, tied: shape.tied, arch: shape.arch, nHeadKv: shape.nHeadKv, contextLength: shape.contextLength };
}

/**
 * A cached random-weight model of a real shape: generated into native/build/real-shapes/ on first use, named by
 * everything that determines its bytes. Returns the same description as `writeRealShape`.
 */
export function realShapeFixture({ shape, type = 'Q8_0', layers, seed = 1, threads = 1 }) {
	const nLayer = layers ?? SHAPES[shape]?.nLayer;
	const file = path.join(cacheDir, `${shape}-${nLayer}L-${type}-s${seed}-v${GENERATOR_VERSION}.gguf`);
	if (fs.existsSync(file)) {
		const s = SHAPES[shape];
		return { file, shape, type, nLayer, nVocab: VOCAB_SIZES[s.vocab], headDim: s.nEmbd / s.nHead, tied: s.tied, arch: s.arch, nHeadKv: s.nHeadKv, contextLength: s.contextLength };
	}
	return writeRealShape(file, { shape, type, layers, seed, threads });
}

/** Bytes a shape's file will take at a direct weight type (header excluded), e.g. to decide whether a benchmark fits. */
export function estimatedBytes(shapeName, type = 'Q8_0', layers) {
	const shape = SHAPES[shapeName];
	const layout = modelLayout(shapeName, shape, { layers, weightType: type in DIRECT ? type : 'F16', seed: 1 });
	return layout.tensors.reduce((sum, t) => sum + tensorBytes(t.ne, t.type), 0);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
	const usage = `usage: real-shapes.mjs --shape NAME [--type ${WEIGHT_TYPES.join('|')}] [--layers N] [--seed N] [--threads N] [--out FILE]\n       real-shapes.mjs --list`;
	let values;
	try {
		({ values } = parseArgs({ options: { shape: { type: 'string' }, type: { type: 'string' }, layers: { type: 'string' }, seed: { type: 'string' }, threads: { type: 'string' }, out: { type: 'string' }, list: { type: 'boolean' } } }));
	} catch (error) {
		console.error(`${error.message}\n${usage}`);
		process.exit(2);
	}
	if (values.list) {
		for (const [name, s] of Object.entries(SHAPES)) {
			console.log(`${name.padEnd(22)} ${s.arch.padEnd(6)} ${s.nLayer} layers, d ${s.nEmbd}, ffn ${s.nFf}, heads ${s.nHead}/${s.nHeadKv}, head dim ${s.nEmbd / s.nHead}, ${s.tied ? 'tied' : 'separate'} output, vocab ${s.vocab}, Q8_0 ${(estimatedBytes(name) / 1e6).toFixed(0)} MB`);
		}
		process.exit(0);
	}
	if (!values.shape) {
		console.error(usage);
		process.exit(2);
	}
	// writeRealShape rejects an unknown shape name.
	const options = { shape: /** @type {keyof typeof SHAPES} */ (values.shape), type: values.type ?? 'Q8_0', layers: values.layers === undefined ? undefined : Number(values.layers), seed: values.seed === undefined ? 1 : Number(values.seed), threads: values.threads === undefined ? 1 : Number(values.threads) };
	try {
		const started = performance.now();
		const made = values.out ? writeRealShape(values.out, options) : realShapeFixture(options);
		console.log(made.file);
		console.error(`${path.basename(made.file)}: ${(fs.statSync(made.file).size / 1e6).toFixed(1)} MB in ${((performance.now() - started) / 1000).toFixed(1)} s`);
	} catch (error) {
		console.error(`real-shapes.mjs: ${error.message}`);
		process.exit(1);
	}
}
