// The portable (non-AVX2) paths of the packed KV kernels: REPOKV_NATIVE_SCALAR=1 is read when the addon loads (each
// test file runs in its own process), then the kernels must still equal dequantize-then-dot.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { testAddonPath } from './helpers.mjs';

process.env.REPOKV_NATIVE_SCALAR = '1';
const Q = createRequire(import.meta.url)(testAddonPath).quant;

test('portable kernels: packed scores and value sums equal dequantize-then-dot', () => {
	let s = 11;
	const rand = () => {
		s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
		return s / 2 ** 32 - 0.5;
	};
	const D = 64;
	for (const n of [5, 200]) {
		const K = Float32Array.from({ length: n * D }, (_, i) => rand() * (i % D < 8 ? 12 : 2));
		const V = Float32Array.from({ length: n * D }, () => rand());
		for (const f of ['q8', 'kivi4', 'kivi2', 'onebit']) {
			const seg = Q.quantize(f, D, K, V);
			const { k, v } = Q.dequantize(seg);
			for (const R of [1, 3, 9]) {
				const q = Float32Array.from({ length: R * D }, rand);
				const P = Float32Array.from({ length: R * n }, () => rand() + 0.5);
				const S = Q.scores(seg, q, R, 0.5);
				const O = Q.accumulate(seg, P, R);
				for (let r = 0; r < R; r++) {
					for (let j = 0; j < n; j++) {
						let d = 0;
						for (let c = 0; c < D; c++) d += q[r * D + c] * k[j * D + c];
						assert.ok(Math.abs(d * 0.5 - S[r * n + j]) <= 1e-4 * (1 + Math.abs(d)), `${f} n=${n} R=${R} score`);
					}
					for (let c = 0; c < D; c++) {
						let d = 0;
						for (let j = 0; j < n; j++) d += P[r * n + j] * v[j * D + c];
						assert.ok(Math.abs(d - O[r * D + c]) <= 1e-4 * (1 + Math.abs(d)), `${f} n=${n} R=${R} value`);
					}
				}
			}
		}
	}
});
