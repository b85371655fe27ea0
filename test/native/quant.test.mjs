// The packed KV formats of native/src/quant (q8, kivi4, kivi2, onebit): exact bit accounting against the allocated
// bytes, round-trip error bounds on the bundled target's real post-RoPE K/V, packed-code kernels equal to
// dequantize-then-dot within the error bound of their int8 rounding (intBound, quant-bounds.mjs), and the attention-output error
// per format (printed as a table;
// docs/kv-quantization.md records it).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { before, describe, test } from 'node:test';

import { root, testAddonPath } from './helpers.mjs';
import { intBound } from './quant-bounds.mjs';

const addon = createRequire(import.meta.url)(testAddonPath);
const Q = addon.quant;
const FORMATS = ['q8', 'kivi4', 'kivi2', 'onebit'];
const target = path.join(root, 'models', 'target.gguf');
const PROMPT = 1024;
const NQ = 16; // query positions per head in the attention tests (the last NQ prompt tokens)

function rng(seed) {
	let s = seed >>> 0;
	return () => {
		s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
		return s / 2 ** 32;
	};
}
function gaussian(rand) {
	return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}
function relErr(a, b) {
	let e = 0, n = 0;
	for (let i = 0; i < a.length; i++) {
		e += (a[i] - b[i]) ** 2;
		n += b[i] ** 2;
	}
	return Math.sqrt(e / n);
}

/** Dense attention (float64) of R query rows over n keys/values (token-major, D wide): R x D. */
function denseAttention(q, R, K, V, n, D, scale) {
	const out = new Float64Array(R * D);
	const s = new Float64Array(n);
	for (let r = 0; r < R; r++) {
		let mx = -Infinity;
		for (let j = 0; j < n; j++) {
			let d = 0;
			for (let c = 0; c < D; c++) d += q[r * D + c] * K[j * D + c];
			s[j] = d * scale;
			mx = Math.max(mx, s[j]);
		}
		let sum = 0;
		for (let j = 0; j < n; j++) sum += s[j] = Math.exp(s[j] - mx);
		for (let j = 0; j < n; j++) for (let c = 0; c < D; c++) out[r * D + c] += (s[j] / sum) * V[j * D + c];
	}
	return out;
}

// Real K/V (the engine's fp16 store) and real queries (fp32 reference forward) of a 1024-token code prompt.
let kv;
const haveTarget = fs.existsSync(target);
before(async () => {
	if (!haveTarget) return;
	const { getLlama } = await import('node-llama-cpp');
	const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false });
	const vocab = await llama.loadModel({ modelPath: target, vocabOnly: true });
	// code from a pinned dependency, so the measured errors do not drift as the repository changes
	const f = 'node_modules/node-llama-cpp/dist/bindings/Llama.js';
	const text = `<|file_sep|>${f}\n` + fs.readFileSync(path.join(root, f), 'utf8');
	const tokens = Int32Array.from(vocab.tokenize(text, true).slice(0, PROMPT));
	await vocab.dispose();
	assert.equal(tokens.length, PROMPT);
	kv = Q.dumpKv(target, tokens, { threads: 1, queries: true });
});

/** Queries of KV head h of layer l at prompt positions t0..t0+nq-1: (nq * G) x D, rows t-major, then group head. */
function queries(l, h, t0, nq) {
	const { nHead, nHeadKv, headDim: D } = kv;
	const G = nHead / nHeadKv;
	const q = new Float32Array(nq * G * D);
	for (let t = 0; t < nq; t++)
		for (let g = 0; g < G; g++) q.set(kv.q[l].subarray(((t0 + t) * nHead + h * G + g) * D, ((t0 + t) * nHead + h * G + g + 1) * D), (t * G + g) * D);
	return q;
}

describe('KV quantizers: bit accounting', () => {
	test('bytes per format follow the block layout; bits per element = allocated bytes x 8 / elements, exactly', () => {
		const rand = rng(1);
		for (const D of [64, 128]) {
			for (const n of [1, 5, 31, 32, 33, 127, 128, 129, 1000, 1024]) {
				const K = Float32Array.from({ length: n * D }, () => gaussian(rand));
				const V = Float32Array.from({ length: n * D }, () => gaussian(rand));
				for (const f of FORMATS) {
					const seg = Q.quantize(f, D, K, V);
					const info = Q.info(seg);
					assert.deepEqual(info.allocated, info.accounted, `${f} D=${D} n=${n}: allocated bytes = accounted bytes`);
					assert.deepEqual(info.accounted, (({ key, value, meta, total }) => ({ key, value, meta, total }))(Q.bytes(f, D, n)));
					assert.equal(info.bitsPerElement, (info.allocated.total * 8) / (2 * n * D), `${f} D=${D} n=${n}`);
				}
			}
		}
	});

	test('whole-block bits per element: q8 8.5/8.5, kivi4 5/5, kivi2 3/3, onebit 1.5/1.75; onebit <= 1.8 with all metadata', () => {
		const want = { q8: [8.5, 8.5], kivi4: [5, 5], kivi2: [3, 3], onebit: [1.5, 1.75] };
		for (const D of [64, 128]) {
			for (const f of Q.formats(D)) assert.deepEqual([f.keyBits, f.valueBits], want[f.name], `${f.name} D=${D}`);
			// onebit at D=64, per 128-token block: keys 16 outlier channels x 2 bit + 48 sign bits = 10 bytes/token, plus
			// 4 fp16 (Δ, min | μ, α) per channel = 256 bytes; values ceil(64/5) = 13 bytes/token + 64 fp16 γ = 128 bytes
			if (D === 64) {
				// plus per segment the 64-bit outlier mask and a flags byte (rotated or not)
				assert.deepEqual(Q.bytes('onebit', 64, 128), { key: 10 * 128 + 256, value: 13 * 128 + 128, meta: 9, total: 1536 + 1792 + 9, bitsPerElement: (3337 * 8) / (2 * 128 * 64) });
				assert.deepEqual(Q.bytes('kivi2', 64, 32), { key: 16 * 32 + 256, value: (16 + 8) * 32, meta: 0, total: 768 + 768, bitsPerElement: 3 });
				assert.deepEqual(Q.bytes('q8', 64, 1), { key: 68, value: 68, meta: 0, total: 136, bitsPerElement: 8.5 });
			}
			for (const n of [128, 1024, 4096, 32768]) assert.ok(Q.bytes('onebit', D, n).bitsPerElement <= 1.8, `onebit D=${D} n=${n}: ${Q.bytes('onebit', D, n).bitsPerElement}`);
		}
	});

	test('appending whole blocks (the store transcoding its fp16 window) = quantizing at once, allocation stays exact', () => {
		const rand = rng(5);
		const D = 64, n = 700;
		const K = Float32Array.from({ length: n * D }, (_, i) => gaussian(rand) * (i % 7 === 0 ? 5 : 1));
		const V = Float32Array.from({ length: n * D }, () => gaussian(rand));
		for (const f of FORMATS) {
			const B = Q.formats(D).find((x) => x.name === f).tokenBlock;
			const whole = Q.quantize(f, D, K, V);
			const opts = f === 'onebit' ? { maskOf: whole } : {};
			const seg = Q.quantize(f, D, new Float32Array(0), new Float32Array(0), opts);
			const step = B * 2;
			for (let t = 0; t < n; t += step) Q.append(seg, Q.quantize(f, D, K.slice(t * D, Math.min(n, t + step) * D), V.slice(t * D, Math.min(n, t + step) * D), opts));
			const info = Q.info(seg);
			assert.equal(info.tokens, n);
			assert.deepEqual(info.allocated, info.accounted, f);
			assert.deepEqual(info.accounted, Q.info(whole).accounted, f);
			const a = Q.dequantize(seg), b = Q.dequantize(whole);
			assert.deepEqual(a.k, b.k, `${f} keys`);
			assert.deepEqual(a.v, b.v, `${f} values`);
			if (f !== 'q8') assert.throws(() => Q.append(seg, Q.quantize(f, D, K.slice(0, D), V.slice(0, D), opts)), /whole token block/);
		}
		const ob = Q.quantize('onebit', D, K.slice(0, 128 * D), V.slice(0, 128 * D));
		const other = Q.quantize('onebit', D, V.slice(0, 128 * D), K.slice(0, 128 * D));
		const same = (a, b) => a.outlierChannels.join() === b.outlierChannels.join() && a.rotated === b.rotated;
		if (!same(Q.info(ob), Q.info(other))) assert.throws(() => Q.append(ob, other), /masks or rotation flags differ/);
	});

	test('unsupported head dims are errors', () => {
		assert.throws(() => Q.quantize('q8', 48, new Float32Array(48), new Float32Array(48)), /unsupported head dim/);
		assert.throws(() => Q.quantize('onebit', 96, new Float32Array(96), new Float32Array(96)), /unsupported head dim/);
		assert.throws(() => Q.quantize('int3', 64, new Float32Array(64), new Float32Array(64)), /unknown format/);
	});
});

describe('KV quantizers: kernels on packed data', () => {
	test('constant groups (Δ = 0) and signs: no NaN, 1-bit keys and ternary values keep their sign and scale', () => {
		const D = 64, n = 128;
		const K = new Float32Array(n * D).fill(0.5), V = new Float32Array(n * D).fill(-0.25);
		for (let t = 0; t < n; t++) for (let c = 0; c < D; c++) if (c % 2) V[t * D + c] = t % 2 ? 0.75 : -0.75;
		for (const f of FORMATS) {
			const { k, v } = Q.dequantize(Q.quantize(f, D, K, V));
			for (const x of [...k, ...v]) assert.ok(Number.isFinite(x), f);
			assert.ok(relErr(k, K) < 1e-2, `${f}: constant keys ${relErr(k, K)}`);
			// even channels: constant −0.25 (ternary: γ = 0.25, code −1); odd: ±0.75 alternating
			assert.ok(relErr(v, V) < 1e-2, `${f}: values ${relErr(v, V)}`);
		}
	});

	test('scores and value sums on packed codes equal dequantize-then-dot within the bound of their int8 rounding (random data, G rows sharing each read)', (t) => {
		const rand = rng(2);
		const seen = {};
		for (const [D, n] of [[64, 7], [64, 100], [64, 300], [32, 130], [128, 130], [256, 130]]) {
			const K = Float32Array.from({ length: n * D }, (_, i) => gaussian(rand) * (i % D < 8 ? 6 : 1) + (i % D === 9 ? 4 : 0));
			const V = Float32Array.from({ length: n * D }, () => gaussian(rand));
			for (const f of FORMATS) {
				const seg = Q.quantize(f, D, K, V);
				const { k, v } = Q.dequantize(seg);
				for (const R of [1, 3, 8]) {
					const q = Float32Array.from({ length: R * D }, () => gaussian(rand));
					const S = Q.scores(seg, q, R, 0.125);
					const P = Float32Array.from({ length: R * n }, () => rand() * (rand() < 0.2 ? 0 : 1));
					const O = Q.accumulate(seg, P, R);
					const bound = intBound(Q, seg, f, D, n, k, v, q, R, P, 0.125);
					const exactS = new Float64Array(R * n), exactO = new Float64Array(R * D);
					for (let r = 0; r < R; r++) {
						for (let j = 0; j < n; j++) for (let c = 0; c < D; c++) exactS[r * n + j] += q[r * D + c] * k[j * D + c] * 0.125;
						for (let c = 0; c < D; c++) for (let j = 0; j < n; j++) exactO[r * D + c] += P[r * n + j] * v[j * D + c];
					}
					// float slack 1e-5 of the largest value, plus the integer rounding's bound per element
					const maxS = Math.max(...exactS.map(Math.abs)), maxO = Math.max(...exactO.map(Math.abs));
					const st = (seen[f] ??= { s: 0, o: 0, sRel: 0, oRel: 0 });
					for (let i = 0; i < R * n; i++) {
						const e = Math.abs(exactS[i] - S[i]);
						assert.ok(e <= bound.S[i] + 1e-5 * maxS, `${f} D=${D} n=${n} R=${R}: score ${i} off by ${e}, bound ${bound.S[i]} (max ${maxS})`);
						if (bound.S[i] > 0) st.s = Math.max(st.s, e / bound.S[i]);
						st.sRel = Math.max(st.sRel, e / maxS);
					}
					for (let i = 0; i < R * D; i++) {
						const e = Math.abs(exactO[i] - O[i]);
						assert.ok(e <= bound.O[i] + 1e-5 * maxO, `${f} D=${D} n=${n} R=${R}: value ${i} off by ${e}, bound ${bound.O[i]} (max ${maxO})`);
						if (bound.O[i] > 0) st.o = Math.max(st.o, e / bound.O[i]);
						st.oRel = Math.max(st.oRel, e / maxO);
					}
				}
			}
		}
		const lines = Object.entries(seen).map(([f, x]) => `${f.padEnd(7)} scores: max error ${x.sRel.toExponential(2)} of the largest |score|, ${(100 * x.s).toFixed(0)} % of its bound; values: ${x.oRel.toExponential(2)} of the largest |out|, ${(100 * x.o).toFixed(0)} % of its bound`);
		t.diagnostic(lines.join('\n'));
		console.log(`# packed kernels vs dequantize-then-dot:\n# ${lines.join('\n# ')}`);
	});
});

describe('KV quantizers on the bundled target K/V', { skip: !haveTarget && 'models/target.gguf not built yet' }, () => {
	test('the reference forward pass reproduces the engine\'s keys (so its queries are the real ones)', () => {
		const { nLayer, nHeadKv, headDim: D, tokens: n } = kv;
		for (let l = 0; l < nLayer; l++) {
			const ref = new Float32Array(n * nHeadKv * D), eng = new Float32Array(n * nHeadKv * D);
			for (let h = 0; h < nHeadKv; h++)
				for (let t = 0; t < n; t++) {
					ref.set(kv.kRef[l].subarray((t * nHeadKv + h) * D, (t * nHeadKv + h + 1) * D), (t * nHeadKv + h) * D);
					eng.set(kv.k[l * nHeadKv + h].subarray(t * D, (t + 1) * D), (t * nHeadKv + h) * D);
				}
			assert.ok(relErr(eng, ref) < 2e-3, `layer ${l}: ${relErr(eng, ref)}`);
		}
	});

	test('round-trip and attention-output error per format (real K/V and queries, all layers and KV heads)', (t) => {
		const { nLayer, nHeadKv, nHead, headDim: D } = kv;
		const G = nHead / nHeadKv, n = PROMPT - NQ, scale = 1 / Math.sqrt(D), R = NQ * G;
		const rows = [];
		const variants = [...FORMATS.map((f) => [f, f]), ['onebit+fp16 sinks/recent', 'onebit']];
		for (const [name, f] of variants) {
			const acc = { k: 0, v: 0, s: 0, o: 0, oMax: 0, bytes: 0 };
			for (let l = 0; l < nLayer; l++)
				for (let h = 0; h < nHeadKv; h++) {
					const K = kv.k[l * nHeadKv + h].subarray(0, n * D), V = kv.v[l * nHeadKv + h].subarray(0, n * D);
					let Kd, Vd, bytes;
					if (f === name) {
						const seg = Q.quantize(f, D, K, V);
						({ k: Kd, v: Vd } = Q.dequantize(seg));
						bytes = Q.info(seg).allocated.total;
					} else {
						// §7.3 without the H/M tiers: 4 sinks and the last 32 tokens in fp16, the rest onebit
						const a = 4, b = n - 32;
						const seg = Q.quantize(f, D, K.slice(a * D, b * D), V.slice(a * D, b * D));
						const dq = Q.dequantize(seg);
						Kd = Float32Array.from(K);
						Vd = Float32Array.from(V);
						Kd.set(dq.k, a * D);
						Vd.set(dq.v, a * D);
						bytes = Q.info(seg).allocated.total + (n - (b - a)) * D * 2 * 2;
					}
					acc.k += relErr(Kd, K) / (nLayer * nHeadKv);
					acc.v += relErr(Vd, V) / (nLayer * nHeadKv);
					acc.bytes += bytes;
					const q = queries(l, h, n, NQ);
					// scores relative to the exact scores' spread; attention output relative to the exact output
					const S = new Float64Array(R * n), Sd = new Float64Array(R * n);
					for (let r = 0; r < R; r++)
						for (let j = 0; j < n; j++) {
							let a = 0, b = 0;
							for (let c = 0; c < D; c++) {
								a += q[r * D + c] * K[j * D + c];
								b += q[r * D + c] * Kd[j * D + c];
							}
							S[r * n + j] = a * scale;
							Sd[r * n + j] = b * scale;
						}
					acc.s += relErr(Sd, S) / (nLayer * nHeadKv);
					const e = relErr(denseAttention(q, R, Kd, Vd, n, D, scale), denseAttention(q, R, K, V, n, D, scale));
					acc.o += e / (nLayer * nHeadKv);
					acc.oMax = Math.max(acc.oMax, e);
				}
			rows.push({ format: name, bitsPerElement: (acc.bytes * 8) / (nLayer * nHeadKv * 2 * n * D), keyRelErr: acc.k, valueRelErr: acc.v, scoreRelErr: acc.s, attnOutRelErr: acc.o, attnOutRelErrMax: acc.oMax });
		}
		const fmt = (x) => x.toFixed(4);
		const lines = [`bundled target, ${n} tokens of JavaScript, ${nLayer} layers x ${nHeadKv} KV heads, D=${D}; queries: the last ${NQ} positions x ${G} heads`,
			'format                    bits/elem  K rel   V rel   score rel  attn-out rel (mean / max)'];
		for (const r of rows) lines.push(`${r.format.padEnd(26)}${fmt(r.bitsPerElement).padStart(8)}  ${fmt(r.keyRelErr)}  ${fmt(r.valueRelErr)}  ${fmt(r.scoreRelErr)}     ${fmt(r.attnOutRelErr)} / ${fmt(r.attnOutRelErrMax)}`);
		t.diagnostic(lines.join('\n'));
		console.log(lines.join('\n'));
		const by = Object.fromEntries(rows.map((r) => [r.format, r]));
		// bounds (measured values in docs/kv-quantization.md, with margin)
		const bounds = { q8: [0.01, 0.01, 0.02], kivi4: [0.08, 0.12, 0.15], kivi2: [0.35, 0.5, 0.7], onebit: [0.5, 0.6, 0.85] };
		for (const [f, [bk, bv, bo]] of Object.entries(bounds)) {
			assert.ok(by[f].keyRelErr < bk, `${f} K ${by[f].keyRelErr}`);
			assert.ok(by[f].valueRelErr < bv, `${f} V ${by[f].valueRelErr}`);
			assert.ok(by[f].attnOutRelErr < bo, `${f} attention ${by[f].attnOutRelErr}`);
		}
		for (const [a, b] of [['q8', 'kivi4'], ['kivi4', 'kivi2'], ['kivi2', 'onebit']]) {
			assert.ok(by[a].attnOutRelErr < by[b].attnOutRelErr, `${a} more accurate than ${b}`);
			assert.ok(by[a].bitsPerElement > by[b].bitsPerElement);
		}
		assert.ok(by.onebit.bitsPerElement <= 1.8);
	});
});
