// KV eviction policies of the native engine (docs/kv-policies.md): which entries each layer and KV head keeps.
//
// The addon observes importance scores during attention (full-row fp32 softmax, reduced over the G query heads of a
// KV head and over the query rows: sums for H2O/SnapKV, max for SpecKV) and compacts the kept entries into a smaller
// store; the choice of entries is made here, in plain functions that the tests check against brute force.
//
// Conventions (the same for every policy, so they compare at equal bytes):
//  - m = tokens in the cache before selection (the prompt less its last token, which decoding feeds first);
//  - C = the per-head budget in tokens (average over heads and layers), including sinks and the recent window;
//  - every policy but `full` keeps the first `sinks` (4) tokens and the most recent r tokens, r = min(window,
//    max(1, floor(C/2) - sinks)) (32 for C >= 72), and picks B = C - sinks - r more (per head) from the rest;
//  - prompts with m <= C are not compressed.
//
// Precision (docs/kv-policies.md "Precision"; docs/kv-quantization.md): with `precision` other than f16 the budget buys
// bytes, not tokens. A head's budget is what its C tokens take in an fp16 cache (C · 4D bytes: keys and values, no
// positions). Its sinks and recent window stay fp16 exactly as above; their real cost, and that of the fp16 room
// reserved for the tokens the request may generate (`reserveTokens`), positions included, comes off the budget, and the
// rest buys packed tokens in the policy's rank order: `q8`, `kivi4`, `kivi2`, `onebit` spend it all in one format;
// `mixed` spends `hiFraction` (0.75) of it on the top-ranked tokens at 4-bit (kivi4) and the rest on the next ones at
// 1.x bits (onebit); what no byte buys is dropped. The cost of a tier is its exact allocation (quant.bytes +
// positions), so after decoding `reserveTokens` tokens a head still holds at most C · 4D bytes.

import { storageTiers, type KvPolicy, type KvPrecision, type KvSplit, type StorageTier } from '../protocol';
import type { NativeSession, TierCost } from './native';

// The policy, split and precision names are the settings' (protocol.ts); re-exported for the policy tests and the
// benchmarks, which reach them through this module.
export { kvPolicies, kvPrecisions, kvSplits } from '../protocol';
export type { KvPolicy, KvPrecision, KvSplit } from '../protocol';

/** The largest n <= limit with cost(tier, n) <= bytes. */
export function tokensForBytes(cost: TierCost, tier: StorageTier, bytes: number, limit: number): number {
	if (limit <= 0 || cost(tier, 1) > bytes) {
		return 0;
	}
	let lo = 1;
	let hi = limit;
	while (lo < hi) {
		const mid = Math.ceil((lo + hi) / 2);
		if (cost(tier, mid) <= bytes) {
			lo = mid;
		} else {
			hi = mid - 1;
		}
	}
	return lo;
}

/** One knob: tokens per head, or percent of the fp16 cache's bytes. */
export type KvBudget = { readonly tokens: number } | { readonly percent: number };

export interface SelectionOptions {
	readonly policy: KvPolicy;
	readonly budget: KvBudget;
	/** Layer/head split of the budget; default per policy: pyramidkv → pyramid, adakv → adaptive, else uniform. */
	readonly split?: KvSplit;
	readonly sinks?: number;
	/** Observation window (query rows scored by SnapKV/SpecKV) and the most recent tokens kept: 32. */
	readonly window?: number;
	/** Max-pool kernel along tokens (odd): 7. */
	readonly poolKernel?: number;
	/** AdaKV floor α: 0.2. */
	readonly adaFloor?: number;
	/** PyramidKV β: 20. */
	readonly pyramidBeta?: number;
	/** Rank by another observed score (ablations, e.g. `window-max`: SpecKV's aggregation without the draft). */
	readonly scoreKind?: 'h2o' | 'snapkv' | 'window-max' | 'speckv';
	/** Storage of the picked tokens (default f16); other precisions need `tierCost`. */
	readonly precision?: KvPrecision;
	/**
	 * `mixed`: share of the picked tokens' bytes spent at 4-bit; why 0.75: docs/kv-policies.md, "Precision".
	 */
	readonly hiFraction?: number;
	/**
	 * Packed precisions: fp16 room for tokens generated after the selection, paid from the budget (0: the budget caps
	 * the cache at selection time, as for f16, so policies compare at equal bytes; the engine reserves its maxTokens, so
	 * the cache stays within the budget while decoding).
	 */
	readonly reserveTokens?: number;
	readonly tierCost?: TierCost;
}

export const selectionDefaults = { sinks: 4, window: 32, poolKernel: 7, adaFloor: 0.2, pyramidBeta: 20, hiFraction: 0.75 } as const;

/** Which observed score each policy ranks by (`undefined`: none needed). */
export function scoreKind(policy: KvPolicy): 'h2o' | 'snapkv' | 'speckv' | undefined {
	switch (policy) {
		case 'h2o':
			return 'h2o';
		case 'snapkv':
		case 'pyramidkv':
		case 'adakv':
			return 'snapkv';
		case 'speckv':
			return 'speckv';
		default:
			return undefined;
	}
}

export function defaultSplit(policy: KvPolicy): KvSplit {
	return policy === 'pyramidkv' ? 'pyramid' : policy === 'adakv' ? 'adaptive' : 'uniform';
}

/** Per-head budget C in tokens for a cache of m tokens (fp16 everywhere: bytes are proportional to tokens). */
export function budgetTokens(m: number, budget: KvBudget): number {
	if ('tokens' in budget) {
		return Math.max(1, Math.floor(budget.tokens));
	}
	return Math.max(1, Math.round((budget.percent / 100) * m));
}

/** Recent tokens always kept for a per-head budget C. */
export function recentKept(C: number, sinks: number = selectionDefaults.sinks, window: number = selectionDefaults.window): number {
	return Math.min(window, Math.max(1, Math.floor(C / 2) - sinks));
}

/** 1-D max-pool, stride 1, same length; the window is clipped at the edges (padding never wins). */
export function maxPool1d(x: Float32Array, kernel: number): Float32Array {
	if (kernel % 2 !== 1 || kernel < 1) {
		throw new RangeError(`pool kernel must be odd (got ${kernel})`);
	}
	const half = (kernel - 1) / 2;
	const out = new Float32Array(x.length);
	for (let i = 0; i < x.length; i++) {
		let m = -Infinity;
		for (let j = Math.max(0, i - half); j <= Math.min(x.length - 1, i + half); j++) {
			m = Math.max(m, x[j] ?? -Infinity);
		}
		out[i] = m;
	}
	return out;
}

/**
 * Positions of the k highest scores among positions [from, to) of `scores`; ties go to the earlier position.
 * Returned in rank order.
 */
export function topK(scores: Float32Array, k: number, from: number, to: number): number[] {
	const fast = topKByKeys(scores, k, from, to);
	if (fast !== undefined) {
		return fast;
	}
	const idx: number[] = [];
	for (let i = from; i < to; i++) {
		idx.push(i);
	}
	idx.sort((a, b) => (scores[b] ?? 0) - (scores[a] ?? 0) || a - b);
	return idx.slice(0, Math.max(0, k));
}

/** Indices below this fit the low bits of topKByKeys' sort keys. */
const keyIndexLimit = 2 ** 22;

/**
 * topK without a comparator (the engine ranks every candidate of every head per request): for finite scores >= 0 a
 * float32's bits (31 of them) order like its value, so bits · 2^22 + (2^22 − 1 − i) (53 bits, exact in a double)
 * sorted ascending and read from the end gives the scores in decreasing order, ties to the earlier position: the
 * same order as the comparator. `undefined` when a score is negative or not finite (the comparator then decides).
 */
function topKByKeys(scores: Float32Array, k: number, from: number, to: number): number[] | undefined {
	const lo = Math.max(0, from);
	const hi = Math.min(to, scores.length);
	if (from < 0 || hi !== to || hi >= keyIndexLimit) {
		return undefined;
	}
	const bits = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
	const keys = new Float64Array(Math.max(0, hi - lo));
	for (let i = lo; i < hi; i++) {
		const x = scores[i] ?? 0;
		if (!(x >= 0) || x === Infinity) {
			return undefined;
		}
		keys[i - lo] = (x === 0 ? 0 : (bits[i] ?? 0)) * keyIndexLimit + (keyIndexLimit - 1 - i);
	}
	keys.sort();
	const out: number[] = [];
	for (let j = keys.length - 1; j >= 0 && out.length < k; j--) {
		out.push(keyIndexLimit - 1 - ((keys[j] ?? 0) % keyIndexLimit));
	}
	return out;
}

/**
 * PyramidKV's linear schedule (layer 0 largest): non-window tokens per layer for an average B over nLayer layers
 * with `candidates` selectable tokens. Invariants: sum <= nLayer * B, every layer >= 1 (when B >= 1), each <= candidates.
 */
export function pyramidSchedule(nLayer: number, B: number, candidates: number, beta: number = selectionDefaults.pyramidBeta): number[] {
	if (nLayer <= 1 || candidates < 2 * B || B < 1) {
		return Array.from({ length: nLayer }, () => Math.max(0, Math.min(B, candidates)));
	}
	let min = Math.floor(B / beta);
	let max = 2 * B - min;
	if (max >= candidates) {
		max = candidates;
		min = 2 * B - max;
	}
	const step = Math.floor((max - min) / (nLayer - 1));
	const k = Array.from({ length: nLayer }, (_, l) => Math.max(1, Math.min(candidates, max - l * step)));
	// rounding (and the floor of 1) may leak: take the excess back from the largest layers
	let excess = k.reduce((a, b) => a + b, 0) - nLayer * B;
	for (let l = 0; excess > 0; l = (l + 1) % nLayer) {
		if ((k[l] ?? 0) > 1) {
			k[l] = (k[l] ?? 0) - 1;
			excess--;
		}
	}
	return k;
}

/**
 * AdaKV head-adaptive allocation of a layer's pool H * B: counts of each head in the global top H * B of the heads'
 * scores, then k_h = round((1 - floor) * c_h + floor * B), adjusted so the sum is exactly H * B (capped by what each
 * head has: `available[h]`).
 */
export function adakvAllocate(headScores: readonly Float32Array[], B: number, floor: number = selectionDefaults.adaFloor, available?: readonly number[]): number[] {
	const H = headScores.length;
	const avail = available ?? headScores.map((s) => s.length);
	const all: { s: number; h: number; i: number }[] = [];
	headScores.forEach((s, h) => {
		s.forEach((v, i) => all.push({ s: v, h, i }));
	});
	all.sort((a, b) => b.s - a.s || a.h - b.h || a.i - b.i);
	const pool = Math.min(H * B, avail.reduce((a, b) => a + b, 0));
	const counts = new Array<number>(H).fill(0);
	for (const e of all.slice(0, pool)) {
		counts[e.h] = (counts[e.h] ?? 0) + 1;
	}
	const k = counts.map((c, h) => Math.min(avail[h] ?? 0, Math.round((1 - floor) * c + floor * B)));
	// exact sum: add to / take from the heads with the most / fewest global picks first
	let diff = pool - k.reduce((a, b) => a + b, 0);
	const order = [...counts.keys()].sort((a, b) => (counts[b] ?? 0) - (counts[a] ?? 0) || a - b);
	for (let guard = 0; diff !== 0 && guard < 4 * H * (B + 1) + 4; guard++) {
		const h = diff > 0 ? order[guard % H] : order[H - 1 - (guard % H)];
		if (h === undefined) break;
		if (diff > 0 && (k[h] ?? 0) < (avail[h] ?? 0)) {
			k[h] = (k[h] ?? 0) + 1;
			diff--;
		} else if (diff < 0 && (k[h] ?? 0) > 0) {
			k[h] = (k[h] ?? 0) - 1;
			diff++;
		}
	}
	return k;
}

export interface Selection {
	/** Per layer * nHeadKv + head: kept positions (every tier), sorted. */
	readonly keep: Int32Array[];
	readonly budgetTokens: number;
	readonly recent: number;
	/** Non-window tokens per (layer, head) picked by score (every tier). */
	readonly picked: number[];
	/** Precisions other than f16: kept positions per tier (tiers holding nothing are absent), sorted. */
	readonly tiers?: Partial<Record<StorageTier, Int32Array[]>>;
}

/**
 * Splits one head's ranked candidates (best first) into packed tiers that fit in `bytes`. Returns the positions per
 * tier, in rank order.
 */
export function assignTiers(ranked: readonly number[], bytes: number, precision: Exclude<KvPrecision, 'f16'>, cost: TierCost, hiFraction: number = selectionDefaults.hiFraction): Partial<Record<StorageTier, number[]>> {
	if (precision !== 'mixed') {
		const n = tokensForBytes(cost, precision, bytes, ranked.length);
		return { [precision]: ranked.slice(0, n) };
	}
	const nHi = tokensForBytes(cost, 'kivi4', hiFraction * bytes, ranked.length);
	const spent = nHi > 0 ? cost('kivi4', nHi) : 0;
	const nLo = tokensForBytes(cost, 'onebit', bytes - spent, ranked.length - nHi);
	return { kivi4: ranked.slice(0, nHi), onebit: ranked.slice(nHi, nHi + nLo) };
}

/**
 * Kept positions per (layer, KV head) for a cache of m tokens. `scores(layer, head)` returns the observed score of
 * positions [0, m) for policies that rank (see `scoreKind`). Returns `undefined` when nothing is dropped (policy
 * `full`, or m <= C).
 */
export function selectKeep(m: number, nLayer: number, nHeadKv: number, options: SelectionOptions, scores?: (layer: number, head: number) => Float32Array): Selection | undefined {
	const sinks = options.sinks ?? selectionDefaults.sinks;
	const window = options.window ?? selectionDefaults.window;
	const kernel = options.poolKernel ?? selectionDefaults.poolKernel;
	const C = budgetTokens(m, options.budget);
	if (options.policy === 'full' || m <= C) {
		return undefined;
	}
	const nh = nLayer * nHeadKv;
	const keep: Int32Array[] = [];
	const picked: number[] = [];
	const precision = options.precision ?? 'f16';
	const cost = options.tierCost;
	if (precision !== 'f16' && cost === undefined) {
		throw new Error(`precision ${precision} needs the tiers' byte costs (tierCost)`);
	}
	if (precision !== 'f16' && options.policy === 'window') {
		throw new Error('policy window keeps fp16 tokens only (use a ranking policy with a packed precision)');
	}
	const tiers: Partial<Record<StorageTier, Int32Array[]>> = {};
	if (options.policy === 'window') {
		const s = Math.min(sinks, C);
		for (let i = 0; i < nh; i++) {
			const pos: number[] = [];
			for (let p = 0; p < s; p++) pos.push(p);
			for (let p = m - (C - s); p < m; p++) pos.push(p);
			keep.push(Int32Array.from(pos));
			picked.push(0);
		}
		return { keep, budgetTokens: C, recent: C - s, picked };
	}
	const kind = options.scoreKind ?? scoreKind(options.policy);
	if (kind === undefined || scores === undefined) {
		throw new Error(`policy ${options.policy} needs observed scores`);
	}
	const s = Math.min(sinks, C);
	const r = recentKept(C, s, window);
	const B = Math.max(0, C - s - r);
	const from = s;
	const to = m - r;
	const candidates = Math.max(0, to - from);
	const split = options.split ?? defaultSplit(options.policy);
	const pooled: Float32Array[][] = [];
	for (let l = 0; l < nLayer; l++) {
		const row: Float32Array[] = [];
		for (let h = 0; h < nHeadKv; h++) {
			const raw = scores(l, h).subarray(0, to);
			row.push(kind === 'h2o' ? raw : maxPool1d(raw, kernel));
		}
		pooled.push(row);
	}
	const perLayer = split === 'pyramid' ? pyramidSchedule(nLayer, B, candidates, options.pyramidBeta) : new Array<number>(nLayer).fill(Math.min(B, candidates));
	for (let l = 0; l < nLayer; l++) {
		const layerB = perLayer[l] ?? 0;
		const heads = pooled[l] ?? [];
		const perHead = split === 'adaptive' ? adakvAllocate(heads.map((p) => p.subarray(from, to)), layerB, options.adaFloor, heads.map(() => candidates)) : heads.map(() => layerB);
		for (let h = 0; h < nHeadKv; h++) {
			const k = perHead[h] ?? 0;
			const fixed: number[] = [];
			for (let p = 0; p < s; p++) fixed.push(p);
			for (let p = to; p < m; p++) fixed.push(p);
			if (precision === 'f16' || cost === undefined) {
				const pos = [...topK(heads[h] ?? new Float32Array(0), k, from, to), ...fixed];
				pos.sort((a, b) => a - b);
				keep.push(Int32Array.from(pos));
				picked.push(k);
				continue;
			}
			const ranked = topK(heads[h] ?? new Float32Array(0), candidates, from, to);
			// this head's budget (its C = k + fixed tokens, in fp16 bytes) less the real cost of its fp16 part
			const bytes = (k + fixed.length) * cost.fp16TokenBytes - cost('f16', fixed.length + (options.reserveTokens ?? 0));
			const split = assignTiers(ranked, Math.max(0, bytes), precision, cost, options.hiFraction);
			const byTier: Partial<Record<StorageTier, number[]>> = { f16: fixed, ...split };
			const all: number[] = [];
			for (const tier of storageTiers) {
				const list = byTier[tier];
				if (list === undefined) continue;
				all.push(...list);
				(tiers[tier] ??= new Array<Int32Array>(nh).fill(new Int32Array(0)))[l * nHeadKv + h] = Int32Array.from(list).sort();
			}
			all.sort((a, b) => a - b);
			keep.push(Int32Array.from(all));
			picked.push(all.length - fixed.length);
		}
	}
	// a tier no head uses is left out
	const used = Object.fromEntries(Object.entries(tiers).filter(([, lists]) => lists.some((list) => list.length > 0))) as Partial<Record<StorageTier, Int32Array[]>>;
	return { keep, budgetTokens: C, recent: r, picked, ...(precision === 'f16' ? {} : { tiers: used }) };
}

/**
 * Observation settings for prefilling a whole prompt of n tokens: the window is its last `window` tokens (the last
 * one included: it is the query that asks); after the prefill the cache is cut to n - 1, and decoding re-feeds the
 * last token (as SpecKV's release does).
 */
export function observationFor(policy: KvPolicy, n: number, window: number = selectionDefaults.window): { allRows: boolean; winFrom: number; specFrom: number } {
	return { allRows: policy === 'h2o', winFrom: Math.max(0, n - window), specFrom: n };
}

/**
 * SpecKV's scoring pass, on a cache of m = n - 1 prompt tokens: the target evaluates the prompt's last token and the
 * draft tokens (their queries fold into the observed max only), then the cache is cut back to m.
 */
export async function scoringPass(session: NativeSession, lastToken: number, draftTokens: readonly number[]): Promise<void> {
	const m = session.length;
	session.observe({ allRows: false, winFrom: m, specFrom: m, clear: false });
	await session.prefill([lastToken, ...draftTokens]);
	session.truncate(m);
}

/** Selects per `options` from the session's (master) cache and compacts it; `undefined` when nothing was dropped. */
export function compressSession(session: NativeSession, nLayer: number, nHeadKv: number, options: SelectionOptions, extraTokens: number, how: { dropMaster?: boolean } = {}): Selection | undefined {
	const m = session.length;
	const kind = options.scoreKind ?? scoreKind(options.policy);
	const needed = options.policy !== 'full' && options.policy !== 'window' && m > budgetTokens(m, options.budget);
	const flat = needed && kind !== undefined ? session.scores(kind, m) : undefined;
	const selection = selectKeep(m, nLayer, nHeadKv, options, flat === undefined ? undefined : (l, h) => flat.subarray((l * nHeadKv + h) * m, (l * nHeadKv + h + 1) * m));
	if (selection !== undefined) {
		const policy = options.precision === undefined || options.precision === 'f16' ? options.policy : `${options.policy}+${options.precision}`;
		session.compress(selection.tiers ?? selection.keep, { extraTokens, policy, dropMaster: how.dropMaster === true });
	}
	return selection;
}
