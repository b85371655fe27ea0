// Error bounds of the packed formats' SIMD kernels (quant.test.mjs, kernels.test.mjs).

/**
 * Upper bounds of the AVX2 kernels' error against the exact products over the dequantized cache (k, v: n x D), from
 * their integer arithmetic (native/src/kernels/x86/avx2_packed.cpp): a kernel writes a score as bias + Σ_m w_m·x_m with integer
 * x_m and float weights w rounded to multiples of a step β per (token block, row), |ŵ − w| ≤ β/2, so the score is
 * off by at most (β/2)·Σ_m |x_m| (times |scale|):
 * - kivi-b, blocks of 32: w = q∘Δ in two int8 levels, β = max_c |q_c Δ_c| / (127·128), x = the codes, Δ_c = the
 *   block's range of k̂_c / (2^b − 1).
 * - onebit, blocks of 128: w = the 16-entry tables each key nibble looks up, x = one lookup per nibble, in two int8
 *   levels (h + l/64) of the unit β = max|T| / 63 per family, so each lookup is off by at most β/128: outlier tables
 *   a_j((x&3) − 1.5) + a_j+1((x>>2) − 1.5) (a = q∘Δ, Δ = range / 3), sign tables Σ_i b_i σ_i (b = q'∘α in the stored
 *   rotated basis, α = half the block's range of the rotated k̂): (Do/2)·βo/128 + (Dn/4)·βn/128.
 * - q8: float products, bound 0.
 * Values: onebit quantizes each block's probabilities to two u8 levels (p ≈ π·(h + l/255), π = max_t p_t / 255, off by
 * at most π/510), so out_c is off by at most Σ_blocks (π/510)·Σ_t |v̂_tc|; the other formats accumulate in float (0).
 * The portable kernels (REPOKV_NATIVE_SCALAR=1) are exact in float: test/native/quant-scalar.test.mjs.
 * Q: the test addon's `quant` binding.
 */
export function intBound(Q, seg, f, D, n, k, v, q, R, P, scale) {
	const S = new Float64Array(R * n), O = new Float64Array(R * D);
	const block = Q.formats(D).find((x) => x.name === f).tokenBlock;
	const range = (x, w, t0, t1, c) => {
		let lo = Infinity, hi = -Infinity;
		for (let t = t0; t < t1; t++) (lo = Math.min(lo, x[t * w + c])), (hi = Math.max(hi, x[t * w + c]));
		return [lo, hi];
	};
	for (let t0 = 0; t0 < n; t0 += block) {
		const t1 = Math.min(n, t0 + block);
		if (f === 'kivi4' || f === 'kivi2') {
			const top = f === 'kivi4' ? 15 : 3;
			const lo = [], dl = [];
			for (let c = 0; c < D; c++) {
				const [a, b] = range(k, D, t0, t1, c);
				lo.push(a), dl.push((b - a) / top);
			}
			for (let r = 0; r < R; r++) {
				let amax = 0;
				for (let c = 0; c < D; c++) amax = Math.max(amax, Math.abs(q[r * D + c] * dl[c]));
				for (let t = t0; t < t1; t++) {
					let codes = 0;
					for (let c = 0; c < D; c++) if (dl[c] > 0) codes += (k[t * D + c] - lo[c]) / dl[c];
					S[r * n + t] = (amax / (254 * 128)) * codes * Math.abs(scale);
				}
			}
		}
		if (f === 'onebit') {
			const { outlierChannels: outl } = Q.info(seg);
			const Do = outl.length, Dn = D - Do;
			const y = Q.rotateNormals(seg, k.subarray(t0 * D, t1 * D));
			const dl = outl.map((c) => ((([a, b]) => b - a)(range(k, D, t0, t1, c))) / 3);
			const al = Array.from({ length: Dn }, (_, j) => ((([a, b]) => b - a)(range(y, Dn, 0, t1 - t0, j))) / 2);
			for (let r = 0; r < R; r++) {
				const qn = Q.rotateNormals(seg, q.subarray(r * D, (r + 1) * D));
				let bo = 0, bn = 0;
				for (let j = 0; j < Do; j += 2) bo = Math.max(bo, 1.5 * (Math.abs(q[r * D + outl[j]] * dl[j]) + Math.abs(q[r * D + outl[j + 1]] * dl[j + 1])));
				for (let j = 0; j < Dn; j += 4) bn = Math.max(bn, [0, 1, 2, 3].reduce((s, i) => s + Math.abs(qn[j + i] * al[j + i]), 0));
				for (let t = t0; t < t1; t++) S[r * n + t] = ((Do / 2) * (bo / 63) / 128 + (Dn / 4) * (bn / 63) / 128) * Math.abs(scale);
			}
			for (let r = 0; r < R; r++) {
				let pmax = 0;
				for (let t = t0; t < t1; t++) pmax = Math.max(pmax, P[r * n + t]);
				for (let c = 0; c < D; c++) {
					let sa = 0;
					for (let t = t0; t < t1; t++) sa += Math.abs(v[t * D + c]);
					O[r * D + c] += (pmax / 255 / 510) * sa;
				}
			}
		}
	}
	return { S, O };
}
