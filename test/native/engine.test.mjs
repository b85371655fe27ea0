// The native engine's API and its failure modes: broken, truncated and unsupported files raise JS errors naming the
// problem (the process never aborts), sessions truncate, report per-layer/per-head cache stats, and run async.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { FIXTURES, makeFixture } from '../../native/test-fixtures/make-fixture.mjs';
import { GGML, GGUF } from '../../native/test-fixtures/gguf-writer.mjs';
import { importSidecar } from '../support/bundles.mjs';
import { randomTokens, tempDir, useTestAddon } from './helpers.mjs';

useTestAddon(); // quant.dumpKv

const { NativeModel, loadNativeAddon } = await importSidecar();

const dir = tempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const good = path.join(dir, 'qwen2.gguf');
makeFixture(good, { ...FIXTURES.qwen2, weightType: GGML.F16 });

function variant(name, transform) {
	const file = path.join(dir, `${name}.gguf`);
	makeFixture(file, { ...FIXTURES.qwen2, transform });
	return file;
}

function maxDiff(a, b) {
	let m = 0;
	for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
	return m;
}

describe('native engine: broken and unsupported models are JS errors', () => {
	/** @type {[string, () => string, RegExp][]} */
	const cases = [
		['a missing file', () => path.join(dir, 'nope.gguf'), /cannot open model file/],
		['a file that is not GGUF', () => {
			const f = path.join(dir, 'text.gguf');
			fs.writeFileSync(f, 'hello world, not a model');
			return f;
		}, /not a GGUF file/],
		['a file cut inside its header', () => {
			const f = path.join(dir, 'header-cut.gguf');
			fs.writeFileSync(f, fs.readFileSync(good).subarray(0, 200));
			return f;
		}, /corrupt or truncated/],
		['a file cut inside its tensor data', () => {
			const f = path.join(dir, 'data-cut.gguf');
			const buf = fs.readFileSync(good);
			fs.writeFileSync(f, buf.subarray(0, Math.floor(buf.length * 0.6)));
			return f;
		}, /truncated/],
		['an unsupported architecture', () => variant('phi3', ({ kv }) => {
			for (const e of kv) {
				if (e.key === 'general.architecture') e.value = 'phi3';
				else e.key = e.key.replace(/^qwen2\./, 'phi3.');
			}
		}), /unsupported model architecture 'phi3'/],
		['a missing tensor', () => variant('no-ffn', ({ tensors }) => {
			tensors.splice(tensors.findIndex((t) => t.name === 'blk.1.ffn_up.weight'), 1);
		}), /tensor 'blk\.1\.ffn_up\.weight' is missing/],
		['a tensor of the wrong shape', () => variant('bad-shape', ({ tensors }) => {
			const t = tensors.find((x) => x.name === 'blk.0.attn_k.weight');
			t.ne = [128, 32];
			t.data = t.data.subarray(0, 128 * 32);
		}), /blk\.0\.attn_k\.weight' has shape \[128, 32\], expected \[128, 64\]/],
		['a missing hyperparameter', () => variant('no-layers', ({ kv }) => {
			kv.splice(kv.findIndex((e) => e.key === 'qwen2.block_count'), 1);
		}), /'qwen2\.block_count' is missing/],
		['head counts that do not divide', () => variant('bad-gqa', ({ kv }) => {
			kv.find((e) => e.key === 'qwen2.attention.head_count_kv').value = 3;
		}), /not a multiple of head_count_kv/],
		['a string where a number belongs', () => variant('bad-type', ({ kv }) => {
			Object.assign(kv.find((e) => e.key === 'qwen2.embedding_length'), { type: GGUF.STRING, value: 'wide' });
		}), /embedding_length' is not a number/],
	];
	for (const [name, make, message] of cases) {
		test(name, () => {
			assert.throws(() => NativeModel.load(make(), { threads: 1 }), message);
		});
	}
});

describe('native engine: async loading', () => {
	test('loadAsync resolves to a model, and rejects with the same errors as load', async () => {
		const model = await NativeModel.loadAsync(good, { threads: 1 });
		assert.equal(model.info.architecture, 'qwen2');
		model.dispose();
		await assert.rejects(NativeModel.loadAsync(path.join(dir, 'missing.gguf'), { threads: 1 }), /cannot open model file/);
		const cut = path.join(dir, 'async-cut.gguf');
		const buf = fs.readFileSync(good);
		fs.writeFileSync(cut, buf.subarray(0, Math.floor(buf.length / 2)));
		await assert.rejects(NativeModel.loadAsync(cut, { threads: 1 }), /truncated/);
	});
});

describe('native engine: sessions', () => {
	test('model info and default threads (physical cores)', () => {
		const model = NativeModel.load(good);
		assert.equal(model.info.architecture, 'qwen2');
		assert.equal(model.info.nLayer, 2);
		assert.equal(model.info.nHeadKv, 2);
		assert.equal(model.info.headDim, 32);
		assert.equal(model.info.threads, loadNativeAddon().physicalCores());
		model.dispose();
	});

	// Which weights ggml repacks into a CPU-specific layout depends on the CPU variant (AVX2: Q4_0, Q4_K, IQ4_NL;
	// AVX-512 and AMX variants more). The figures asserted here are the ones ggml reports, on any CPU.
	test('repacked weights: the bytes ggml put in extra buffer types; none with REPOKV_NATIVE_NO_REPACK', () => {
		const q40 = path.join(dir, 'qwen2-q4_0.gguf');
		makeFixture(q40, { ...FIXTURES.qwen2, weightType: GGML.Q4_0 });
		const sum = (o, keep) => Object.entries(o).filter(([name]) => keep(name)).reduce((a, [, b]) => a + b, 0);
		for (const file of [good, q40]) {
			const m = NativeModel.load(file, { threads: 1 });
			const { weightBuffers, repackedBytes, weightBytes } = m.info;
			assert.ok(weightBuffers.CPU > 0, 'norms and embeddings stay in plain CPU memory');
			assert.equal(repackedBytes, sum(weightBuffers, (n) => n !== 'CPU'));
			assert.ok(sum(weightBuffers, () => true) >= weightBytes);
			if (file === q40 && loadNativeAddon().runtimeInfo().cpuFeatures.AVX2 === '1') assert.ok(repackedBytes > 0, 'ggml repacks Q4_0 matmul weights on AVX2');
			m.dispose();
		}
		process.env.REPOKV_NATIVE_NO_REPACK = '1';
		try {
			const m = NativeModel.load(q40, { threads: 1 });
			assert.equal(m.info.repackedBytes, 0);
			assert.deepEqual(Object.keys(m.info.weightBuffers), ['CPU']);
			m.dispose();
		} finally {
			delete process.env.REPOKV_NATIVE_NO_REPACK;
		}
	});

	// The fp32 reference forward pass (quant.dumpKv with queries) reads weights from the file: the backend's copy may
	// be repacked (Q4_0 on AVX2) and unreadable. Its keys must match the engine's.
	test('reference forward pass on repacked Q4_0 weights matches the engine', () => {
		const q40 = path.join(dir, 'qwen2-q4_0-ref.gguf');
		makeFixture(q40, { ...FIXTURES.qwen2, weightType: GGML.Q4_0 });
		const tokens = randomTokens(24, 259);
		const kv = /** @type {any} */ (loadNativeAddon()).quant.dumpKv(q40, tokens, { threads: 1, queries: true });
		const D = kv.headDim;
		for (let l = 0; l < kv.nLayer; l++) {
			let err = 0, norm = 0;
			for (let h = 0; h < kv.nHeadKv; h++) {
				const mine = kv.k[l * kv.nHeadKv + h];
				for (let t = 0; t < tokens.length; t++) {
					for (let c = 0; c < D; c++) {
						const ref = kv.kRef[l][(t * kv.nHeadKv + h) * D + c];
						err += (mine[t * D + c] - ref) ** 2;
						norm += ref ** 2;
					}
				}
			}
			// Q4_0 matmuls round activations to 8 bits; fp16 storage: a few 1e-3 relative
			assert.ok(Math.sqrt(err / norm) < 0.02, `layer ${l}: keys differ from the reference by ${Math.sqrt(err / norm)}`);
		}
	});

	test('bad inputs are errors, not crashes', () => {
		const model = NativeModel.load(good, { threads: 1 });
		const s = model.createSession({ contextSize: 16 });
		assert.throws(() => s.prefillSync([1, 2, 100000]), /out of range/);
		assert.throws(() => s.prefillSync([-1]), /out of range/);
		assert.throws(() => s.logits(), /no logits/);
		assert.throws(() => s.prefillSync(randomTokens(17, 259)), /context is full/);
		assert.equal(s.length, 0);
		s.prefillSync(randomTokens(16, 259));
		assert.throws(() => s.decodeSync(3), /context is full/);
		s.dispose();
		assert.throws(() => s.length, /disposed/);
		model.dispose();
	});

	test('cache stats: tokens and real bytes per layer and KV head', () => {
		const model = NativeModel.load(good, { threads: 1 });
		const s = model.createSession({ contextSize: 256 });
		s.prefillSync(randomTokens(100, 259));
		s.decodeSync(5);
		const st = s.stats();
		assert.equal(st.policy, 'full');
		assert.equal(st.tokens, 101);
		assert.equal(st.layers.length, 2);
		for (const layer of st.layers) {
			assert.equal(layer.heads.length, 2);
			for (const h of layer.heads) {
				assert.equal(h.tokens, 101);
				// fp16 K and V (head dim 32) plus a 4-byte position per token
				assert.equal(h.bytes, 101 * (32 * 2 * 2 + 4));
				assert.deepEqual(h.segments.map((x) => x.tier), ['f16']);
			}
		}
		assert.equal(st.bytes, 2 * 2 * 101 * 132);
		assert.equal(st.timings.decodeTokens, 1);
		s.dispose();
		model.dispose();
	});

	test('rangeTiers: per position range and tier, the (layer, KV head, position) cells of the store attention reads', () => {
		const model = NativeModel.load(good, { threads: 1 });
		const s = model.createSession({ contextSize: 256 });
		s.prefillSync(randomTokens(120, 259, 5));
		const bounds = Int32Array.from([0, 1, 30, 30, 75, 120]); // an empty range included
		const cells = 2 * 2; // layers x KV heads
		const tierSums = (ranges) => {
			const sums = {};
			for (const r of ranges) for (const [tier, n] of Object.entries(r)) sums[tier] = (sums[tier] ?? 0) + n;
			return sums;
		};
		// policy full: everything f16, every range whole in every head
		const full = s.rangeTiers(bounds);
		assert.equal(full.length, 5);
		assert.deepEqual(full.map((r) => r.f16), [1, 29, 0, 45, 45].map((n) => n * cells));
		for (const r of full) assert.deepEqual([r.q8, r.kivi4, r.kivi2, r.onebit], [0, 0, 0, 0]);
		assert.equal(tierSums(full).f16, s.stats().tiers.f16.tokens);
		// tiered per (layer, head) differently, some positions dropped: the counts follow each head's lists
		const lists = (from, to, step) => Array.from({ length: cells }, (_, lh) =>
			Int32Array.from({ length: to - from }, (_, i) => from + i).filter((p) => (p + lh) % step !== 0));
		const every = (from, to) => Array.from({ length: cells }, () => Int32Array.from({ length: to - from }, (_, i) => from + i));
		s.compress({ f16: every(0, 10), q8: lists(10, 40, 7), kivi4: every(40, 80), kivi2: lists(80, 100, 3), onebit: every(100, 110) }, { extraTokens: 8, policy: 'tiers' });
		const st = s.stats();
		const ranges = s.rangeTiers(Int32Array.from([0, 120]));
		const sums = tierSums(ranges);
		for (const tier of ['f16', 'q8', 'kivi4', 'kivi2', 'onebit']) assert.equal(sums[tier], st.tiers[tier]?.tokens ?? 0, tier);
		const split = s.rangeTiers(bounds);
		assert.deepEqual(tierSums(split), sums, 'ranges covering every position sum to the totals');
		assert.deepEqual(split[0], { f16: cells, q8: 0, kivi4: 0, kivi2: 0, onebit: 0 });
		// positions 75..119: kivi4 75..79, kivi2 80..99 less every third (per head), onebit 100..109, 110..119 dropped
		const kivi2 = lists(80, 100, 3).reduce((n, a) => n + a.length, 0);
		assert.deepEqual(split[4], { f16: 0, q8: 0, kivi4: 5 * cells, kivi2, onebit: 10 * cells });
		assert.deepEqual(s.rangeTiers(Int32Array.from([7])), []);
		assert.throws(() => s.rangeTiers(Int32Array.from([5, 2])), /sorted/);
		assert.throws(() => s.rangeTiers(/** @type {any} */ ([0, 5])), /Int32Array/);
		// back to the master copy: everything f16 again
		s.decompress();
		assert.equal(tierSums(s.rangeTiers(bounds)).f16, 120 * cells);
		s.dispose();
		model.dispose();
	});

	test('truncate drops the tail; re-evaluating it reproduces the logits', () => {
		const model = NativeModel.load(good, { threads: 1 });
		const a = model.createSession({ contextSize: 512 });
		const tokens = randomTokens(300, 259, 3);
		a.prefillSync(tokens);
		const full = a.logits();
		assert.equal(a.truncate(200), 200);
		assert.equal(a.stats().layers[0].heads[1].tokens, 200);
		a.prefillSync(tokens.subarray(200));
		assert.ok(maxDiff(a.logits(), full) < 1e-4);
		// truncate, then continue token by token: same as a fresh session evaluating the same sequence
		a.truncate(120);
		for (const t of [7, 8, 9]) a.decodeSync(t);
		const b = model.createSession({ contextSize: 512 });
		b.prefillSync([...tokens.subarray(0, 120), 7, 8]);
		b.decodeSync(9);
		assert.ok(maxDiff(a.logits(), b.logits()) < 1e-3);
		a.dispose();
		b.dispose();
		model.dispose();
	});

	test('async prefill/decode equal the sync calls; a busy session refuses a second call', async () => {
		const model = NativeModel.load(good, { threads: 1 });
		const tokens = randomTokens(64, 259, 11);
		const a = model.createSession({ contextSize: 128 });
		const b = model.createSession({ contextSize: 128 });
		a.prefillSync(tokens);
		a.decodeSync(42);
		const pending = b.prefill(tokens);
		assert.throws(() => b.decodeSync(1), /busy/);
		assert.equal(await pending, 64);
		assert.equal(await b.decode(42), 65);
		assert.equal(maxDiff(a.logits(), b.logits()), 0);
		a.dispose();
		b.dispose();
		model.dispose();
	});

	test('two sessions of one model evaluating concurrently get the same results as one by one', async () => {
		const model = NativeModel.load(good, { threads: 1 });
		const ta = randomTokens(300, 259, 21);
		const tb = randomTokens(300, 259, 22);
		const a = model.createSession({ contextSize: 512 });
		const b = model.createSession({ contextSize: 512 });
		await Promise.all([a.prefill(ta), b.prefill(tb)]);
		const la = a.logits();
		const lb = b.logits();
		a.truncate(0);
		b.truncate(0);
		a.prefillSync(ta);
		b.prefillSync(tb);
		assert.equal(maxDiff(la, a.logits()), 0);
		assert.equal(maxDiff(lb, b.logits()), 0);
		a.dispose();
		b.dispose();
		model.dispose();
	});

	test('prefill with every position\'s logits; micro-batches do not change results', () => {
		const model = NativeModel.load(good, { threads: 1 });
		const tokens = randomTokens(200, 259, 5);
		const a = model.createSession({ contextSize: 256, batchSize: 512 });
		const b = model.createSession({ contextSize: 256, batchSize: 64 });
		a.prefillSync(tokens, { allLogits: true });
		b.prefillSync(tokens, { allLogits: true });
		const la = a.logits('all');
		assert.equal(la.length, 200 * 259);
		assert.ok(maxDiff(la, b.logits('all')) < 1e-3);
		assert.deepEqual(a.logits(199), a.logits());
		a.dispose();
		b.dispose();
		model.dispose();
	});
});
