// Statistics of `repokv bench fidelity`: every figure is a mean over prompts with a seeded bootstrap 95 % interval
// (resampling prompts, the unit the benchmark draws), comparisons between two configurations are paired on the same
// prompts (the interval of the mean per-prompt difference), and the automatic checks count a comparison only when
// its interval decides it. A tie at the floor or the ceiling (both sides all 0, or all at the maximum) is "not
// resolved", never a pass: it says the measure cannot see the difference, not that there is none.

import { seededRandom as rng } from './random.mjs';

export interface Interval {
	readonly n: number;
	readonly mean: number;
	/** 2.5 % and 97.5 % percentiles of the bootstrap means (NaN when n = 0; the mean itself when n = 1). */
	readonly lo: number;
	readonly hi: number;
}

export const defaultResamples = 2000;

/** Mean of `values` and its percentile bootstrap 95 % interval over `resamples` resamples (seeded: reproducible). */
export function bootstrapMean(values: readonly number[], seed: number, resamples: number = defaultResamples): Interval {
	const n = values.length;
	if (n === 0) return { n, mean: NaN, lo: NaN, hi: NaN };
	const mean = values.reduce((a, v) => a + v, 0) / n;
	if (n === 1) return { n, mean, lo: mean, hi: mean };
	const r = rng(seed);
	const means = new Float64Array(resamples);
	for (let b = 0; b < resamples; b++) {
		let s = 0;
		for (let i = 0; i < n; i++) s += values[Math.floor(r() * n)] ?? 0;
		means[b] = s / n;
	}
	means.sort();
	const at = (q: number): number => means[Math.min(resamples - 1, Math.max(0, Math.round(q * (resamples - 1))))] ?? NaN;
	return { n, mean, lo: at(0.025), hi: at(0.975) };
}

/**
 * The paired difference a − b over the prompts both have (keys present in both maps), with its bootstrap interval.
 * Pairing removes what the prompts share (an easy prompt is easy for both), so the interval is the one a comparison
 * needs, not the two rows' intervals side by side.
 */
export function pairedDifference(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>, seed: number, resamples?: number): Interval {
	const d: number[] = [];
	for (const [k, va] of a) {
		const vb = b.get(k);
		if (vb !== undefined && Number.isFinite(va) && Number.isFinite(vb)) d.push(va - vb);
	}
	return bootstrapMean(d, seed, resamples);
}

export type Verdict = 'holds' | 'fails' | 'not resolved';

export interface PairOutcome {
	readonly better: string;
	readonly worse: string;
	/** better − worse on the measure, oriented so that positive means `better` is better. */
	readonly difference: Interval;
	readonly verdict: Verdict;
	/** Why a pair is not resolved: its interval straddles 0, or both sides sit at the floor or the ceiling. */
	readonly reason?: 'interval contains 0' | 'tie at floor' | 'tie at ceiling' | 'too few prompts' | 'interval contains the margin';
}

export interface Bounds {
	/** The measure's worst and best possible values (top-1: 0 and 100; KL: +Infinity worst, 0 best). */
	readonly floor: number;
	readonly ceiling: number;
}

/**
 * Fewest paired prompts a verdict needs: a percentile bootstrap of a handful of values has a handful of distinct
 * means, so its "interval" can exclude 0 by construction (n = 2: three possible means).
 */
export const minPairedPrompts = 10;

const allAt = (m: ReadonlyMap<string, number>, x: number): boolean => m.size > 0 && [...m.values()].every((v) => v === x);

/**
 * One ordered pair: `better` is expected to be at least as good as `worse`. `higherIsBetter` orients the measure
 * (false for KL). Holds only when the paired interval lies strictly on the expected side of 0; fails when it lies
 * strictly on the other side; otherwise (a floor/ceiling tie, fewer than `minPairedPrompts` pairs) not resolved.
 */
export function comparePair(
	better: string,
	worse: string,
	values: ReadonlyMap<string, ReadonlyMap<string, number>>,
	higherIsBetter: boolean,
	bounds: Bounds,
	seed: number,
	resamples?: number,
): PairOutcome {
	const a = values.get(better) ?? new Map<string, number>();
	const b = values.get(worse) ?? new Map<string, number>();
	const raw = pairedDifference(a, b, seed, resamples);
	const difference = higherIsBetter ? raw : { n: raw.n, mean: -raw.mean, lo: -raw.hi, hi: -raw.lo };
	if (raw.n < minPairedPrompts) return { better, worse, difference, verdict: 'not resolved', reason: 'too few prompts' };
	if (allAt(a, bounds.floor) && allAt(b, bounds.floor)) return { better, worse, difference, verdict: 'not resolved', reason: 'tie at floor' };
	if (allAt(a, bounds.ceiling) && allAt(b, bounds.ceiling)) return { better, worse, difference, verdict: 'not resolved', reason: 'tie at ceiling' };
	if (difference.lo > 0) return { better, worse, difference, verdict: 'holds' };
	if (difference.hi < 0) return { better, worse, difference, verdict: 'fails' };
	return { better, worse, difference, verdict: 'not resolved', reason: 'interval contains 0' };
}

export interface OrderingOutcome {
	readonly order: readonly string[];
	readonly pairs: readonly PairOutcome[];
	/** holds: every adjacent pair holds; fails: any pair fails; else not resolved. */
	readonly verdict: Verdict;
}

/** An expected order best-first (e.g. speckv ≥ snapkv ≥ h2o ≥ window), checked pair by adjacent pair. */
export function orderingCheck(
	order: readonly string[],
	values: ReadonlyMap<string, ReadonlyMap<string, number>>,
	higherIsBetter: boolean,
	bounds: Bounds,
	seed: number,
	resamples?: number,
): OrderingOutcome {
	const pairs: PairOutcome[] = [];
	for (let i = 0; i + 1 < order.length; i++) {
		pairs.push(comparePair(order[i] ?? '', order[i + 1] ?? '', values, higherIsBetter, bounds, seed + i, resamples));
	}
	const verdict: Verdict = pairs.some((p) => p.verdict === 'fails') ? 'fails' : pairs.length > 0 && pairs.every((p) => p.verdict === 'holds') ? 'holds' : 'not resolved';
	return { order, pairs, verdict };
}

export interface MarginOutcome {
	readonly difference: Interval;
	readonly margin: number;
	readonly verdict: Verdict;
	readonly reason?: PairOutcome['reason'];
}

/**
 * "`candidate` is within `margin` of `reference`" (non-inferiority): holds when the whole paired interval of
 * candidate − reference (oriented, higher is better) lies above −margin; fails when it lies wholly below; else not
 * resolved. A floor tie (both all at the floor) is not resolved: the measure saw nothing.
 */
export function withinMargin(
	candidate: string,
	reference: string,
	values: ReadonlyMap<string, ReadonlyMap<string, number>>,
	margin: number,
	higherIsBetter: boolean,
	bounds: Bounds,
	seed: number,
	resamples?: number,
): MarginOutcome {
	const p = comparePair(candidate, reference, values, higherIsBetter, bounds, seed, resamples);
	if (p.reason === 'too few prompts' || p.reason === 'tie at floor') return { difference: p.difference, margin, verdict: 'not resolved', reason: p.reason };
	if (p.difference.lo > -margin) return { difference: p.difference, margin, verdict: 'holds' };
	if (p.difference.hi < -margin) return { difference: p.difference, margin, verdict: 'fails' };
	return { difference: p.difference, margin, verdict: 'not resolved', reason: 'interval contains the margin' };
}

/** Half the interval's width: the precision a row was measured to. */
export function halfWidth(i: Interval): number {
	return (i.hi - i.lo) / 2;
}

/** "12.3 [10.1, 14.2]" */
export function formatInterval(i: Interval, digits = 1): string {
	if (!Number.isFinite(i.mean)) return '–';
	return `${i.mean.toFixed(digits)} [${i.lo.toFixed(digits)}, ${i.hi.toFixed(digits)}]`;
}
