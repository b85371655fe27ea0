// KV eviction policies (sidecar/src/engine/native-policy.ts) against brute-force references on small inputs, the
// addon's scoring pass against a dense float computation, and compressed sessions of the native engine.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { importSidecar } from '../support/bundles.mjs';
import { randomTokens, root, useTestAddon } from './helpers.mjs';

useTestAddon(); // scoreAttention

const { NativeModel, nativePolicy: P, loadNativeAddon } = await importSidecar();
const { scoreAttention } = /** @type {any} */ (loadNativeAddon()); // a test-addon binding, untyped

function rng(seed) {
	let s = seed >>> 0;
	return () => {
		s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
		return s / 2 ** 32;
	};
}

describe('policy building blocks', () => {
	test('max-pool: same length, window clipped at the edges, equals brute force', () => {
		const r = rng(1);
		for (const kernel of [1, 3, 7]) {
			for (let n = 1; n <= 20; n++) {
				const x = Float32Array.from({ length: n }, () => Math.round(r() * 8) / 8);
				const got = P.maxPool1d(x, kernel);
				assert.equal(got.length, n);
				for (let i = 0; i < n; i++) {
					const want = Math.max(...Array.from(x).slice(Math.max(0, i - (kernel - 1) / 2), i + (kernel - 1) / 2 + 1));
					assert.equal(got[i], want, `kernel ${kernel} n ${n} i ${i}`);
				}
			}
		}
		// the edge value itself is the max when it is the largest: no zero padding leaks in with negative inputs
		assert.deepEqual(Array.from(P.maxPool1d(Float32Array.of(-3, -2, -1), 7)), [-1, -1, -1]);
		assert.throws(() => P.maxPool1d(Float32Array.of(1), 4), /odd/);
	});

	test('top-k: highest scores, ties to the earlier position, only inside [from, to)', () => {
		const s = Float32Array.of(5, 1, 3, 3, 3, 9, 0, 3);
		assert.deepEqual(P.topK(s, 3, 1, 8), [5, 2, 3]);
		assert.deepEqual(P.topK(s, 10, 6, 8), [7, 6]);
		const r = rng(2);
		for (let trial = 0; trial < 50; trial++) {
			const n = 1 + Math.floor(r() * 30);
			const x = Float32Array.from({ length: n }, () => Math.floor(r() * 4));
			const k = Math.floor(r() * (n + 2));
			const brute = [...x.keys()].sort((a, b) => x[b] - x[a] || a - b).slice(0, k);
			assert.deepEqual(P.topK(x, k, 0, n), brute);
		}
	});

	test('top-k of real-valued scores (a subarray, as the engine passes them) equals the comparator sort, also with zeros, ties, negatives and NaN', () => {
		const r = rng(9);
		for (let trial = 0; trial < 60; trial++) {
			const n = 1 + Math.floor(r() * 400);
			const backing = Float32Array.from({ length: n + 7 }, () => (r() < 0.3 ? Math.floor(r() * 3) / 8 : r() * 1e-3));
			if (trial % 10 === 9) backing[3 + Math.floor(r() * n)] = trial % 20 === 9 ? -0.5 : NaN;
			if (trial % 7 === 6) backing[3] = -0;
			const x = backing.subarray(3, 3 + n);
			const from = Math.floor(r() * n);
			const to = from + Math.floor(r() * (n - from + 1));
			const k = Math.floor(r() * (to - from + 2));
			const brute = [...x.keys()].filter((i) => i >= from && i < to).sort((a, b) => (x[b] ?? 0) - (x[a] ?? 0) || a - b).slice(0, k);
			assert.deepEqual(P.topK(x, k, from, to), brute, `trial ${trial}`);
		}
	});

	test('pyramid schedule: sum <= layers * B, every layer >= 1, non-increasing, within the candidates', () => {
		for (const nLayer of [1, 2, 6, 32]) {
			for (const B of [1, 2, 5, 20, 87, 224]) {
				for (const cand of [B, 2 * B, 3 * B, 500, 5000]) {
					const k = P.pyramidSchedule(nLayer, B, cand);
					assert.equal(k.length, nLayer);
					assert.ok(k.reduce((a, b) => a + b, 0) <= nLayer * B, `sum ${k} B ${B}`);
					for (let l = 0; l < nLayer; l++) {
						assert.ok(k[l] >= 1 && k[l] <= cand, `layer ${l}: ${k[l]}`);
						if (l > 0) assert.ok(k[l] <= k[l - 1]);
					}
				}
			}
		}
		// the linear shape: layer 0 gets about 2B - B/20
		const k = P.pyramidSchedule(6, 100, 4000);
		assert.equal(k[0], 195);
		assert.ok(k[5] < 20);
	});

	test('AdaKV allocation: sums to H * B, follows the global top picks with the floor, equals the formula', () => {
		const r = rng(3);
		for (let trial = 0; trial < 40; trial++) {
			const H = 1 + Math.floor(r() * 4);
			const n = 10 + Math.floor(r() * 30);
			const B = 1 + Math.floor(r() * 8);
			const heads = Array.from({ length: H }, (_, h) => Float32Array.from({ length: n }, () => r() * (h + 1)));
			const k = P.adakvAllocate(heads, B, 0.2);
			assert.equal(k.reduce((a, b) => a + b, 0), H * B);
			// brute force of the counts
			const all = heads.flatMap((s, h) => Array.from(s, (v, i) => ({ v, h, i }))).sort((a, b) => b.v - a.v || a.h - b.h || a.i - b.i);
			const c = new Array(H).fill(0);
			for (const e of all.slice(0, H * B)) c[e.h]++;
			for (let h = 0; h < H; h++) {
				const formula = Math.round(0.8 * c[h] + 0.2 * B);
				assert.ok(Math.abs(k[h] - formula) <= H, `head ${h}: ${k[h]} vs ${formula}`);
				assert.ok(k[h] >= 0 && k[h] <= n);
			}
		}
		// a dominant head gets most of the pool, but never less than the floor for the other
		const k = P.adakvAllocate([Float32Array.from({ length: 50 }, () => 1), Float32Array.from({ length: 50 }, () => 0)], 10, 0.2);
		assert.deepEqual(k, [18, 2]);
	});

	test('selection: sinks and the recent window are always kept, C tokens per head on average, short prompts untouched', () => {
		const nLayer = 3, nHeadKv = 2, m = 300;
		const r = rng(4);
		const scores = Array.from({ length: nLayer * nHeadKv }, () => Float32Array.from({ length: m }, () => r()));
		for (const policy of P.kvPolicies) {
			for (const percent of [3, 6, 12, 25]) {
				const sel = P.selectKeep(m, nLayer, nHeadKv, { policy, budget: { percent } }, (l, h) => scores[l * nHeadKv + h]);
				if (policy === 'full') {
					assert.equal(sel, undefined);
					continue;
				}
				const C = Math.round((percent / 100) * m);
				const total = sel.keep.reduce((a, k) => a + k.length, 0);
				assert.ok(total <= nLayer * nHeadKv * C, `${policy}@${percent}: ${total}`);
				if (policy !== 'pyramidkv') assert.equal(total, nLayer * nHeadKv * C, `${policy}@${percent}`);
				for (const k of sel.keep) {
					for (let p = 0; p < 4; p++) assert.ok(k.includes(p), `${policy}: sink ${p}`);
					for (let p = m - sel.recent; p < m; p++) assert.ok(k.includes(p), `${policy}: recent ${p}`);
					assert.deepEqual(Array.from(k), [...new Set(k)].sort((a, b) => a - b));
				}
			}
		}
		assert.equal(P.selectKeep(100, 1, 1, { policy: 'snapkv', budget: { tokens: 100 } }, () => new Float32Array(100)), undefined);
		// window = sinks + the most recent
		const w = P.selectKeep(50, 1, 1, { policy: 'window', budget: { tokens: 10 } });
		assert.deepEqual(Array.from(w.keep[0]), [0, 1, 2, 3, 44, 45, 46, 47, 48, 49]);
	});

	test('selection picks the pooled top-k of the scores per head (snapkv) and the raw top-k (h2o)', () => {
		const m = 200;
		const s = new Float32Array(m);
		s[100] = 1; // one spike: pooling spreads it to 97..103
		s[150] = 0.5;
		const opts = { budget: { tokens: 32 } }; // 4 sinks + 12 recent + 16 picked
		const snap = P.selectKeep(m, 1, 1, { policy: 'snapkv', ...opts }, () => s);
		assert.equal(snap.recent, 12);
		const picked = Array.from(snap.keep[0]).filter((p) => p >= 4 && p < m - snap.recent);
		assert.deepEqual(picked, [4, 5, 97, 98, 99, 100, 101, 102, 103, 147, 148, 149, 150, 151, 152, 153]);
		const h2o = P.selectKeep(m, 1, 1, { policy: 'h2o', ...opts }, () => s);
		const hp = Array.from(h2o.keep[0]).filter((p) => p >= 4 && p < m - h2o.recent);
		// the two spikes, then ties (zeros) to the earliest positions
		assert.deepEqual(hp, [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 100, 150]);
	});
});

describe('scoring pass', () => {
	// consecutive key positions take the addon's dense accumulation loops, gapped ones the general loop
	for (const stride of [1, 2])
	test(`observed scores equal a dense float computation (full-row fp32 softmax, max/sum over the GQA group and rows), key positions ${stride === 1 ? 'consecutive' : 'gapped'}`, () => {
		const nHead = 6, nHeadKv = 2, headDim = 16, G = nHead / nHeadKv;
		const nk = 45;
		const r = rng(5);
		const f16 = () => Math.round((r() * 2 - 1) * 64) / 64; // exactly representable in fp16
		const kPos = Int32Array.from({ length: nk }, (_, i) => i * stride);
		const qPos = Int32Array.from([30, 31, 38, 39, 40, 41, 42, 43, 44]);
		const q = Float32Array.from({ length: qPos.length * nHead * headDim }, f16);
		const k = Float32Array.from({ length: nk * nHeadKv * headDim }, f16);
		const winFrom = 38, specFrom = 42;
		const got = scoreAttention({ q, k, nHead, nHeadKv, headDim, qPos, kPos, allRows: true, winFrom, specFrom });
		const cap = kPos[nk - 1] + 1; // the accumulators' positions per head
		const want = { allSum: new Float64Array(nHeadKv * cap), winSum: new Float64Array(nHeadKv * cap), winMax: new Float64Array(nHeadKv * cap), specMax: new Float64Array(nHeadKv * cap) };
		const scale = 1 / Math.sqrt(headDim);
		qPos.forEach((qp, t) => {
			for (let hq = 0; hq < nHead; hq++) {
				const h = Math.floor(hq / G);
				const logits = [];
				for (let j = 0; j < nk; j++) {
					if (kPos[j] > qp) {
						logits.push(-Infinity);
						continue;
					}
					let dot = 0;
					for (let d = 0; d < headDim; d++) dot += q[(t * nHead + hq) * headDim + d] * k[(j * nHeadKv + h) * headDim + d];
					logits.push(dot * scale);
				}
				const mx = Math.max(...logits);
				const e = logits.map((x) => Math.exp(x - mx));
				const sum = e.reduce((a, b) => a + b, 0);
				for (let j = 0; j < nk; j++) {
					const p = e[j] / sum;
					const i = h * cap + kPos[j];
					if (qp >= specFrom) want.specMax[i] = Math.max(want.specMax[i], p);
					else {
						want.allSum[i] += p;
						if (qp >= winFrom) {
							want.winSum[i] += p;
							want.winMax[i] = Math.max(want.winMax[i], p);
						}
					}
				}
			}
		});
		assert.equal(got.length, cap);
		for (const key of Object.keys(want)) {
			for (let i = 0; i < want[key].length; i++) {
				assert.ok(Math.abs(got[key][i] - want[key][i]) < 2e-5 * Math.max(1, want[key][i]), `${key}[${i}]: ${got[key][i]} vs ${want[key][i]}`);
			}
		}
		assert.ok(want.specMax.some((x) => x > 0) && want.winSum.some((x) => x > 0));
	});
});

describe('compressed sessions (bundled target)', () => {
	const model = NativeModel.load(path.join(root, 'models', 'target.gguf'), { threads: 1 });
	const { nLayer, nHeadKv, headDim, nVocab } = model.info;
	const tokens = randomTokens(600, nVocab, 11);
	const m = tokens.length - 1;

	test('keeping every entry is bit-identical to full; dropping frees real bytes per layer and head; the master copy is reused', async () => {
		const s = model.createSession({ contextSize: 1024 });
		s.observe(P.observationFor('snapkv', tokens.length));
		await s.prefill(tokens);
		s.truncate(m);
		await s.decode(tokens[m]);
		const full = s.logits();
		s.truncate(m);
		const all = Array.from({ length: nLayer * nHeadKv }, () => Int32Array.from({ length: m }, (_, i) => i));
		s.compress(all, { extraTokens: 8, policy: 'all' });
		await s.decode(tokens[m]);
		assert.deepEqual(s.logits(), full);
		s.truncate(m); // back to the master copy
		assert.equal(s.stats().compressed, false);

		const sel = P.compressSession(s, nLayer, nHeadKv, { policy: 'snapkv', budget: { percent: 12 } }, 8);
		const st = s.stats();
		assert.equal(st.policy, 'snapkv');
		assert.equal(st.compressed, true);
		assert.equal(st.masterTokens, m);
		const C = Math.round(0.12 * m);
		for (const layer of st.layers) {
			for (const head of layer.heads) {
				assert.equal(head.tokens, C);
				assert.equal(head.bytes, C * (headDim * 4 + 4));
			}
		}
		assert.equal(st.bytes, nLayer * nHeadKv * C * (headDim * 4 + 4));
		assert.equal(st.masterBytes, nLayer * nHeadKv * m * (headDim * 4 + 4));
		assert.equal(sel.keep.length, nLayer * nHeadKv);
		await s.decode(tokens[m]);
		const compressed = s.logits();
		assert.notDeepEqual(compressed, full);
		assert.equal(s.length, m + 1);
		assert.equal(s.stats().layers[0].heads[0].tokens, C + 1);
		// the next request: the master prefix is still there, nothing to prefill again
		s.truncate(m);
		assert.equal(s.length, m);
		await s.decode(tokens[m]);
		assert.deepEqual(s.logits(), full);
		// editing from position 300 on: the master is cut there and recomputed from there
		s.truncate(300);
		assert.equal(s.stats().masterTokens, 300);
		await s.prefill(tokens.subarray(300, m));
		await s.decode(tokens[m]);
		assert.deepEqual(s.logits(), full);
		s.dispose();
	});

	test('speckv: the scoring pass leaves the cache as it was and changes the speckv scores only', async () => {
		const s = model.createSession({ contextSize: 1024 });
		s.observe(P.observationFor('speckv', tokens.length));
		await s.prefill(tokens);
		s.truncate(m);
		const before = s.scores('speckv', m);
		const snap = s.scores('snapkv', m);
		await P.scoringPass(s, tokens[m], [5, 6, 7, 8]);
		assert.equal(s.length, m);
		const after = s.scores('speckv', m);
		assert.deepEqual(s.scores('snapkv', m), snap);
		let changed = 0;
		for (let i = 0; i < after.length; i++) {
			assert.ok(after[i] >= before[i]);
			if (after[i] > before[i]) changed++;
		}
		assert.ok(changed > 0);
		const sel = P.compressSession(s, nLayer, nHeadKv, { policy: 'speckv', budget: { tokens: 64 } }, 4);
		assert.ok(sel);
		assert.equal(s.stats().layers[5].heads[1].tokens, 64);
		s.dispose();
	});
});
