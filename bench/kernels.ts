import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { packageRoot } from '../sidecar/src/api';
import { round, summarize } from './common';

// `repokv bench kernels`: the packed KV formats' attention kernels on their own (native/src/quant, through the test
// addon's binding `quant`, native/build/repokv-test.node: a development build, not shipped), with the kernel table the
// engine would use on this CPU (REPOKV_NATIVE_SCALAR=1: the portable one): scores (R query rows against n keys, into one reused output buffer, so that the figure is the
// kernel's and not the allocation of R x n floats) and accumulate (R probability rows times n values), in CPU time per
// call (robust to other processes on the machine, unlike wall time), median over repeats. fp16 has no binding of its
// own here: the session-level comparison is `bench speed`.

interface QuantBinding {
	quantize(format: string, headDim: number, K: Float32Array, V: Float32Array): unknown;
	scores(seg: unknown, q: Float32Array, R: number, scale: number, out?: Float32Array): Float32Array;
	accumulate(seg: unknown, P: Float32Array, R: number): Float32Array;
	bytes(format: string, headDim: number, n: number): { total: number };
}

export interface KernelRow {
	readonly format: string;
	readonly tokens: number;
	readonly rows: number;
	readonly headDim: number;
	readonly bytes: number;
	/** Medians of CPU milliseconds per call. */
	readonly scoresMs: number;
	readonly accumulateMs: number;
}

export function runKernels(options: { tokens: number; rows: number; headDim: number; repeats: number }): KernelRow[] {
	const testAddon = path.join(packageRoot(), 'native', 'build', 'repokv-test.node');
	if (!existsSync(testAddon)) throw new Error(`bench kernels needs the test addon ${testAddon}; build it with \`node native/build.mjs\``);
	const q = (createRequire(import.meta.url)(testAddon) as { quant: QuantBinding }).quant;
	const { tokens: n, rows: R, headDim: D } = options;
	// deterministic data: uniform in [-0.5, 0.5), probabilities summing to about R
	let s = 1;
	const rnd = (): number => {
		s = (Math.imul(s, 1103515245) + 12345) >>> 0;
		return s / 2 ** 32 - 0.5;
	};
	const K = Float32Array.from({ length: n * D }, rnd);
	const V = Float32Array.from({ length: n * D }, rnd);
	const Q = Float32Array.from({ length: R * D }, rnd);
	const P = Float32Array.from({ length: R * n }, () => (rnd() + 0.5) * (2 / n));
	const S = new Float32Array(R * n);
	const cpuMs = (fn: () => void): number => {
		const c = process.cpuUsage();
		fn();
		const d = process.cpuUsage(c);
		return (d.user + d.system) / 1000;
	};
	const out: KernelRow[] = [];
	for (const format of ['q8', 'kivi4', 'kivi2', 'onebit']) {
		const seg = q.quantize(format, D, K, V);
		q.scores(seg, Q, R, 0.125, S); // warm-up
		q.accumulate(seg, P, R);
		const sc: number[] = [];
		const ac: number[] = [];
		for (let i = 0; i < options.repeats; i++) {
			sc.push(cpuMs(() => q.scores(seg, Q, R, 0.125, S)));
			ac.push(cpuMs(() => q.accumulate(seg, P, R)));
		}
		out.push({ format, tokens: n, rows: R, headDim: D, bytes: q.bytes(format, D, n).total, scoresMs: round(summarize(sc).median, 3), accumulateMs: round(summarize(ac).median, 3) });
	}
	return out;
}
