// Every kernel table of this build and CPU (native/src/kernels/kernels.h: the portable one, AVX2 on x86-64 with AVX2,
// FMA and F16C) against the portable one, on random inputs: fp16 scores and value sums (batch and single-token
// orders), the softmax helpers, and the packed formats' kernels, including head dims whose shapes make a SIMD table fall
// back to portable code. The packed SIMD kernels round the query side to int8 levels, so they may differ from the
// portable ones by their rounding bound (quant-bounds.mjs); everything else agrees to float rounding.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { testAddonPath } from './helpers.mjs';
import { intBound } from './quant-bounds.mjs';

const Q = createRequire(import.meta.url)(testAddonPath).quant;
const { available } = Q.kernelSets();
const simd = available.filter((name) => name !== 'scalar');

function rng(seed) {
	let s = seed >>> 0;
	return () => {
		s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
		return s / 2 ** 32;
	};
}
const rand = rng(17);
const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
const maxAbs = (x) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

test('the portable table is always built and listed first', () => {
	assert.equal(available[0], 'scalar');
	assert.ok(available.includes(Q.kernelSets().active));
	console.log(`# kernel tables on this CPU: ${available.join(', ')} (engine uses ${Q.kernelSets().active})`);
});

test('fp16 segment kernels and softmax helpers of every SIMD table equal the portable ones within float rounding', { skip: simd.length === 0 && 'no SIMD table on this CPU' }, () => {
	for (const set of simd)
		for (const [D, n] of [[64, 1], [64, 13], [64, 200], [128, 37], [32, 300]])
			for (const R of [1, 3, 8]) {
				const K = Float32Array.from({ length: n * D }, gauss), q = Float32Array.from({ length: R * D }, gauss);
				const P = Float32Array.from({ length: R * n }, () => rand() / n);
				for (const single of [false, true]) {
					const S0 = Q.f16Scores('scalar', K, D, q, R, 0.125, single), S1 = Q.f16Scores(set, K, D, q, R, 0.125, single);
					const tolS = 1e-5 * maxAbs(S0);
					for (let i = 0; i < S0.length; i++) assert.ok(Math.abs(S0[i] - S1[i]) <= tolS, `${set} f16 scores D=${D} n=${n} R=${R} single=${single}: ${S0[i]} vs ${S1[i]}`);
					const O0 = Q.f16Accumulate('scalar', K, D, P, R, single), O1 = Q.f16Accumulate(set, K, D, P, R, single);
					const tolO = 1e-5 * maxAbs(O0);
					for (let i = 0; i < O0.length; i++) assert.ok(Math.abs(O0[i] - O1[i]) <= tolO, `${set} f16 values D=${D} n=${n} R=${R} single=${single}: ${O0[i]} vs ${O1[i]}`);
				}
			}
	for (const set of simd)
		for (const n of [1, 7, 8, 29, 1000]) {
			const x = Float32Array.from({ length: n }, () => gauss() * 4);
			const a = Q.softmaxKernels('scalar', x, 0.37), b = Q.softmaxKernels(set, x, 0.37);
			assert.equal(b.max, a.max);
			assert.ok(Math.abs(a.sum - b.sum) <= 1e-6 * a.sum, `${set} exp sum n=${n}: ${a.sum} vs ${b.sum}`);
			for (let i = 0; i < n; i++) assert.ok(Math.abs(a.exp[i] - b.exp[i]) <= 1e-6 * Math.max(1e-30, a.exp[i]) + 1e-38, `${set} exp n=${n} i=${i}`);
			assert.deepEqual(b.round, a.round, `${set}: fp16 rounding`);
			assert.deepEqual(b.f16, a.f16, `${set}: fp16 conversion`);
		}
});

test('packed-format kernels of every SIMD table equal the portable ones within the SIMD kernels\' rounding bound', { skip: simd.length === 0 && 'no SIMD table on this CPU' }, () => {
	const worst = {};
	// D 288 (kivi4: 9 code chunks) and 512 (onebit: 80 byte planes, 103 value bytes) take the SIMD tables' portable fallbacks
	for (const [D, n] of [[64, 1], [64, 45], [64, 300], [32, 130], [128, 160], [256, 70], [288, 40], [512, 140]])
		for (const f of ['q8', 'kivi4', 'kivi2', 'onebit']) {
			if (!Q.formats(D).find((x) => x.name === f).supported) continue;
			const K = Float32Array.from({ length: n * D }, (_, i) => gauss() * (i % D < 8 ? 6 : 1) + (i % D === 9 ? 4 : 0));
			const V = Float32Array.from({ length: n * D }, gauss);
			const seg = Q.quantize(f, D, K, V);
			const { k, v } = Q.dequantize(seg);
			for (const R of [1, 3, 9]) {
				const q = Float32Array.from({ length: R * D }, gauss);
				const P = Float32Array.from({ length: R * n }, () => rand() * (rand() < 0.2 ? 0 : 1));
				const S0 = Q.scores(seg, q, R, 0.125, undefined, 'scalar'), O0 = Q.accumulate(seg, P, R, 'scalar');
				const bound = intBound(Q, seg, f, D, n, k, v, q, R, P, 0.125);
				const tolS = 2e-5 * maxAbs(S0), tolO = 2e-5 * maxAbs(O0);
				for (const set of simd) {
					const S1 = Q.scores(seg, q, R, 0.125, undefined, set), O1 = Q.accumulate(seg, P, R, set);
					for (let i = 0; i < S0.length; i++) {
						const e = Math.abs(S0[i] - S1[i]);
						assert.ok(e <= bound.S[i] + tolS, `${set} ${f} D=${D} n=${n} R=${R}: score ${i} off by ${e}, bound ${bound.S[i]}`);
						worst[`${set} ${f}`] = Math.max(worst[`${set} ${f}`] ?? 0, e / (bound.S[i] + tolS));
					}
					for (let i = 0; i < O0.length; i++) {
						const e = Math.abs(O0[i] - O1[i]);
						assert.ok(e <= bound.O[i] + tolO, `${set} ${f} D=${D} n=${n} R=${R}: value ${i} off by ${e}, bound ${bound.O[i]}`);
					}
				}
			}
		}
	console.log(`# largest score difference SIMD vs portable as a fraction of its bound: ${Object.entries(worst).map(([k, w]) => `${k} ${w.toFixed(3)}`).join(', ')}`);
});
