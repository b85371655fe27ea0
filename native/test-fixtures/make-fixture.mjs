// Random-weight GGUF fixtures for the native engine's tests and benchmarks: `llama` (RoPE normal) and `qwen2`
// (RoPE neox, Q/K/V biases), tied or separate output, weight type of choice. Deterministic for a given seed.
//
// CLI: node native/test-fixtures/make-fixture.mjs OUT.gguf [qwen2|llama] [F16|F32|BF16|Q8_0|Q4_0]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GGML, GGUF, writeGguf } from './gguf-writer.mjs';

function rng(seed) {
	let a = seed >>> 0;
	const next = () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
	return () => {
		// Box-Muller, standard normal
		const u = Math.max(next(), 1e-12), v = next();
		return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
	};
}

/** GPT-2 byte -> unicode mapping, so the 256 byte tokens are valid gpt2 BPE vocabulary entries. */
function byteTokens() {
	const bs = [];
	for (let i = 33; i <= 126; i++) bs.push(i);
	for (let i = 161; i <= 172; i++) bs.push(i);
	for (let i = 174; i <= 255; i++) bs.push(i);
	const cs = [...bs];
	let n = 0;
	for (let b = 0; b < 256; b++) {
		if (!bs.includes(b)) {
			bs.push(b);
			cs.push(256 + n++);
		}
	}
	const map = new Map(bs.map((b, i) => [b, String.fromCodePoint(cs[i])]));
	return Array.from({ length: 256 }, (_, b) => map.get(b));
}

/** @type {Record<'qwen2' | 'llama' | 'targetLike', Parameters<typeof makeFixture>[1]>} */
export const FIXTURES = {
	// qwen2 with biases, GQA 4:2, head dim 32, tied output
	qwen2: { arch: 'qwen2', nEmbd: 128, nHead: 4, nHeadKv: 2, nLayer: 2, nFf: 256, ropeBase: 10000, tied: true, biases: true },
	// llama, GQA 4:2, head dim 64, separate output
	llama: { arch: 'llama', nEmbd: 256, nHead: 4, nHeadKv: 2, nLayer: 2, nFf: 512, ropeBase: 10000, tied: false, biases: false },
	// shaped like the bundled target (models/): 6 layers, d 384, 6 heads / 2 KV heads, head dim 64, vocab 2048
	targetLike: { arch: 'llama', nEmbd: 384, nHead: 6, nHeadKv: 2, nLayer: 6, nFf: 1024, ropeBase: 1e8, tied: false, biases: false, nVocab: 2048, contextLength: 32768 },
};

/**
 * @param {string} file
 * @param {{arch: 'llama'|'qwen2', nEmbd: number, nHead: number, nHeadKv: number, nLayer: number, nFf: number,
 *          ropeBase: number, tied: boolean, biases: boolean, weightType?: number, seed?: number, contextLength?: number,
 *          nVocab?: number, transform?: (f: {kv: any[], tensors: any[]}) => void}} cfg  (transform edits metadata/tensors
 *          before writing, for broken-file tests)
 */
export function makeFixture(file, cfg) {
	const { arch, nEmbd: E, nHead, nHeadKv, nLayer, nFf: F } = cfg;
	const wtype = cfg.weightType ?? GGML.F16;
	const hd = E / nHead;
	const randn = rng(cfg.seed ?? 1234);
	const tokens = [...byteTokens(), 'Ġt', 'he'];
	for (let i = tokens.length; i < (cfg.nVocab ?? 259) - 1; i++) tokens.push(`<|extra_${i}|>`);
	tokens.push('<|endoftext|>');
	const nVocab = tokens.length;
	const eos = nVocab - 1;
	const types = tokens.map((t, i) => (i === eos || t.startsWith('<|extra_') ? 3 : 1));
	const kv = [
		{ key: 'general.architecture', type: GGUF.STRING, value: arch },
		{ key: 'general.name', type: GGUF.STRING, value: `repokv-fixture-${arch}` },
		{ key: 'general.alignment', type: GGUF.UINT32, value: 32 },
		{ key: `${arch}.context_length`, type: GGUF.UINT32, value: cfg.contextLength ?? 4096 },
		{ key: `${arch}.embedding_length`, type: GGUF.UINT32, value: E },
		{ key: `${arch}.block_count`, type: GGUF.UINT32, value: nLayer },
		{ key: `${arch}.feed_forward_length`, type: GGUF.UINT32, value: F },
		{ key: `${arch}.attention.head_count`, type: GGUF.UINT32, value: nHead },
		{ key: `${arch}.attention.head_count_kv`, type: GGUF.UINT32, value: nHeadKv },
		{ key: `${arch}.attention.layer_norm_rms_epsilon`, type: GGUF.FLOAT32, value: 1e-6 },
		{ key: `${arch}.rope.freq_base`, type: GGUF.FLOAT32, value: cfg.ropeBase },
		{ key: `${arch}.rope.dimension_count`, type: GGUF.UINT32, value: hd },
		{ key: 'tokenizer.ggml.model', type: GGUF.STRING, value: 'gpt2' },
		{ key: 'tokenizer.ggml.pre', type: GGUF.STRING, value: 'gpt-2' },
		{ key: 'tokenizer.ggml.tokens', type: GGUF.ARRAY, itemType: GGUF.STRING, value: tokens },
		{ key: 'tokenizer.ggml.token_type', type: GGUF.ARRAY, itemType: GGUF.INT32, value: types },
		{ key: 'tokenizer.ggml.merges', type: GGUF.ARRAY, itemType: GGUF.STRING, value: ['Ġ t', 'h e'] },
		{ key: 'tokenizer.ggml.bos_token_id', type: GGUF.UINT32, value: eos },
		{ key: 'tokenizer.ggml.eos_token_id', type: GGUF.UINT32, value: eos },
		{ key: 'tokenizer.ggml.add_bos_token', type: GGUF.BOOL, value: false },
	];
	const rand = (n, std, mean = 0) => Float32Array.from({ length: n }, () => mean + std * randn());
	const tensors = [];
	const add = (name, ne, std, type = wtype, mean = 0) => tensors.push({ name, ne, type, data: rand(ne.reduce((a, b) => a * b, 1), std, mean) });
	add('token_embd.weight', [E, nVocab], 1.0);
	add('output_norm.weight', [E], 0.1, GGML.F32, 1.0);
	if (!cfg.tied) add('output.weight', [E, nVocab], 3 / Math.sqrt(E));
	for (let l = 0; l < nLayer; l++) {
		const p = `blk.${l}.`;
		add(p + 'attn_norm.weight', [E], 0.1, GGML.F32, 1.0);
		add(p + 'attn_q.weight', [E, nHead * hd], 1.5 / Math.sqrt(E));
		add(p + 'attn_k.weight', [E, nHeadKv * hd], 1.5 / Math.sqrt(E));
		add(p + 'attn_v.weight', [E, nHeadKv * hd], 1 / Math.sqrt(E));
		if (cfg.biases) {
			add(p + 'attn_q.bias', [nHead * hd], 0.5, GGML.F32);
			add(p + 'attn_k.bias', [nHeadKv * hd], 0.5, GGML.F32);
			add(p + 'attn_v.bias', [nHeadKv * hd], 0.5, GGML.F32);
		}
		add(p + 'attn_output.weight', [nHead * hd, E], 1 / Math.sqrt(E));
		add(p + 'ffn_norm.weight', [E], 0.1, GGML.F32, 1.0);
		add(p + 'ffn_gate.weight', [E, F], 1 / Math.sqrt(E));
		add(p + 'ffn_up.weight', [E, F], 1 / Math.sqrt(E));
		add(p + 'ffn_down.weight', [F, E], 1 / Math.sqrt(F));
	}
	cfg.transform?.({ kv, tensors });
	writeGguf(file, kv, tensors);
	return { file, nVocab, ...cfg };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
	const [out, which = 'qwen2', type = 'F16'] = process.argv.slice(2);
	if (!out) {
		console.error('usage: make-fixture.mjs OUT.gguf [qwen2|llama] [F16|F32|BF16|Q8_0|Q4_0]');
		process.exit(2);
	}
	if (!(which in FIXTURES) || !(type in GGML)) {
		console.error('unknown fixture or type');
		process.exit(2);
	}
	makeFixture(out, { ...FIXTURES[which], weightType: GGML[type] });
	console.log(out);
}
