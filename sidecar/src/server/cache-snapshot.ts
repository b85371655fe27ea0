import { describeKvCache } from '../engine/kv-choice';
import { selectionDefaults } from '../engine/native-policy';
import type { EngineKvStats, EngineTimings } from '../engine/types';
import { kvTiers, storageTiers, type BudgetRule, type CacheSnapshot, type EngineSetting, type FileInContext, type KvCacheStatus, type KvHeadStats, type KvLayerStats, type KvTier, type LatencySplit, type StorageTier, type TierAmounts } from '../protocol';

// Builds the cache inspector's data (protocol `CacheSnapshot`) after a request. Two sources:
// - `engineStats`: the engine's own per-layer/per-head accounting (the native engine's `kvStats()`), real bytes;
// - `modelShape`: node-llama-cpp's KV cache cannot be inspected, but under a full cache it is exactly
//   2 (K, V) × headDim × 2 bytes (f16) per token, per KV head, per layer, so it is computed from the model's shape.
// Per file (`files`): with `rangeTiers` (the native engine's `kvRangeTiers`), the measured count of the file's
// (layer, KV head, position) cells in each tier, divided by layers × KV heads. Without it (node-llama-cpp, source
// `modelShape`) the context's overall tier share is applied to each file: exact there, since everything is f16.
// Tiers keep the engine's names (protocol `storageTiers`): every tier the engine has is shown, none folded into another.

export interface ModelShape {
	readonly layers: number;
	readonly kvHeads: number;
	readonly headDim: number;
}

export interface SnapshotInput {
	readonly sequence: number;
	readonly request: 'completion' | 'ask';
	readonly engine: EngineSetting;
	readonly model: { readonly path: string; readonly architecture: string; readonly contextSize: number };
	readonly shape: ModelShape;
	/** Positions in the cache: prompt tokens (BOS included) plus generated tokens. */
	readonly contextTokens: number;
	/** The prompt's pieces in order, with the tokens each took; `bos` is added before the first. */
	readonly spans: readonly { readonly path: string; readonly role: 'repo' | 'active'; readonly tokens: number }[];
	readonly bos: boolean;
	readonly latency: LatencySplit;
	readonly kvStats?: EngineKvStats;
	/**
	 * The engine's per-position tier counts (`LoadedModel.kvRangeTiers`): for sorted boundaries, per range
	 * [bounds[r], bounds[r + 1]) the (layer, KV head, position) cells held in each tier.
	 */
	readonly rangeTiers?: (bounds: Int32Array) => readonly Readonly<Record<StorageTier, number>>[];
	/** The KV settings the engine served this request with (native engine), for the budget rule. */
	readonly kv?: KvCacheStatus;
}

/**
 * The inspector's latency split of one engine request. `extraPrefillMs`: work before the engine that belongs to
 * preparing the prompt (building it); tiering (compression) is counted with scoring, as the protocol defines it.
 */
export function latencySplit(
	timings: EngineTimings,
	tokens: { prompt: number; reused: number; generated: number },
	extraPrefillMs: number,
	totalMs: number,
	selection?: 'fresh' | 'kept',
): LatencySplit {
	return {
		...(selection === undefined ? {} : { selection }),
		prefillMs: round2(timings.tokenizeMs + timings.prefillMs + extraPrefillMs),
		draftMs: round2(timings.draftMs ?? 0),
		scoringMs: round2((timings.scoringMs ?? 0) + (timings.compressMs ?? 0)),
		decodeMs: round2(timings.decodeMs),
		totalMs: round2(totalMs),
		prefillTokens: tokens.prompt - tokens.reused,
		reusedTokens: tokens.reused,
		generatedTokens: tokens.generated,
	};
}

/** Bytes of one token of one KV head in fp16: K and V, `headDim` elements each, 2 bytes per element. */
export function fp16BytesPerHeadToken(shape: ModelShape): number {
	return 2 * shape.headDim * 2;
}

export function buildCacheSnapshot(input: SnapshotInput): CacheSnapshot {
	const { shape, contextTokens } = input;
	const perHeadToken = fp16BytesPerHeadToken(shape);
	const layers: KvLayerStats[] = [];
	const stats = input.kvStats?.layers.length === shape.layers ? input.kvStats : undefined;
	for (let layer = 0; layer < shape.layers; layer++) {
		const heads: KvHeadStats[] = [];
		for (let head = 0; head < shape.kvHeads; head++) {
			const tiers = emptyTiers();
			const engineHead = stats?.layers[layer]?.heads[head];
			if (engineHead === undefined) {
				tiers.f16 = { tokens: contextTokens, bytes: contextTokens * perHeadToken };
			} else {
				for (const segment of engineHead.segments) {
					const tier = segment.tier;
					tiers[tier] = { tokens: tiers[tier].tokens + segment.tokens, bytes: tiers[tier].bytes + segment.bytes };
				}
				tiers.dropped = { tokens: Math.max(0, contextTokens - engineHead.tokens), bytes: 0 };
			}
			heads.push({
				head,
				tokens: storageTiers.reduce((sum, tier) => sum + tiers[tier].tokens, 0),
				bytes: storageTiers.reduce((sum, tier) => sum + tiers[tier].bytes, 0),
				tiers,
			});
		}
		const layerTiers = emptyTiers();
		for (const head of heads) {
			for (const tier of kvTiers) {
				layerTiers[tier] = { tokens: layerTiers[tier].tokens + head.tiers[tier].tokens, bytes: layerTiers[tier].bytes + head.tiers[tier].bytes };
			}
		}
		layers.push({ layer, bytes: heads.reduce((sum, head) => sum + head.bytes, 0), fp16Bytes: contextTokens * perHeadToken * shape.kvHeads, tiers: layerTiers, heads });
	}

	const kvBytes = layers.reduce((sum, layer) => sum + layer.bytes, 0);
	const fp16Bytes = contextTokens * perHeadToken * shape.kvHeads * shape.layers;
	const elements = contextTokens * shape.layers * shape.kvHeads * shape.headDim * 2;
	// Overall share of each tier across (layer, head, position), for per-file estimates.
	const cells = Math.max(1, contextTokens * shape.layers * shape.kvHeads);
	const share = Object.fromEntries(kvTiers.map((tier) => [tier, layers.reduce((sum, layer) => sum + layer.tiers[tier].tokens, 0) / cells])) as Record<KvTier, number>;

	const files: FileInContext[] = [];
	const starts: number[] = [];
	let position = input.bos ? 1 : 0;
	for (const span of input.spans) {
		starts.push(position);
		position += span.tokens;
	}
	const measured = stats === undefined ? undefined : measuredSpanTiers(input, starts, position, shape.layers * shape.kvHeads);
	input.spans.forEach((span, index) => {
		const start = starts[index] ?? 0;
		const keptTokens = measured?.[index] ?? (Object.fromEntries(kvTiers.map((tier) => [tier, round(span.tokens * share[tier])])) as Record<KvTier, number>);
		const precise = keptTokens.f16 + keptTokens.q8 + keptTokens.kivi4;
		files.push({
			path: span.path,
			role: span.role,
			startToken: start,
			endToken: start + span.tokens,
			keptTokens,
			keptFraction: measured === undefined ? round(share.f16 + share.q8 + share.kivi4) : span.tokens === 0 ? 0 : round(precise / span.tokens),
		});
	});

	return {
		sequence: input.sequence,
		time: new Date().toISOString(),
		request: input.request,
		engine: input.engine,
		source: stats === undefined ? 'modelShape' : 'engineStats',
		model: { ...input.model, layers: shape.layers, kvHeads: shape.kvHeads, headDim: shape.headDim },
		budget: budgetRule(input, stats, kvBytes, contextTokens),
		layers,
		files,
		totals: {
			contextTokens,
			kvBytes,
			fp16Bytes,
			bitsPerElement: elements === 0 ? 0 : round((kvBytes * 8) / elements),
			compressionRatio: kvBytes === 0 ? 1 : round(fp16Bytes / kvBytes),
			...(stats?.residentBytes === undefined ? {} : { residentBytes: stats.residentBytes }),
		},
		latency: input.latency,
	};
}

/**
 * Per span, the engine's measured tier counts divided by `cells` (layers × KV heads): the span's tokens per tier on
 * average over (layer, KV head); `dropped` is the rest of the span. `undefined` when the engine cannot count.
 */
function measuredSpanTiers(input: SnapshotInput, starts: readonly number[], end: number, cells: number): Record<KvTier, number>[] | undefined {
	if (input.rangeTiers === undefined || input.spans.length === 0 || cells === 0) {
		return undefined;
	}
	const counts = input.rangeTiers(Int32Array.from([...starts, end]));
	if (counts.length !== input.spans.length) {
		return undefined;
	}
	return input.spans.map((span, index) => {
		const tiers = Object.fromEntries(kvTiers.map((tier) => [tier, 0])) as Record<KvTier, number>;
		let stored = 0;
		for (const tier of storageTiers) {
			tiers[tier] = round((counts[index]?.[tier] ?? 0) / cells);
			stored += tiers[tier];
		}
		tiers.dropped = round(Math.max(0, span.tokens - stored));
		return tiers;
	});
}

/** The budget rule the engine actually used: its policy and split, with the settings it served (after any fallback). */
function budgetRule(input: SnapshotInput, stats: EngineKvStats | undefined, kvBytes: number, contextTokens: number): BudgetRule {
	const policy = stats?.policy ?? 'full';
	const kv = input.kv;
	if (policy === 'full' || stats?.split === undefined) {
		// Nothing was compressed: the `full` policy, or a prompt within the budget (the engine keeps it whole).
		const why = kv === undefined || kv.policy === 'full' ? '' : `; ${describeKvCache(kv)} compresses only a prompt larger than its budget`;
		return { policy: 'full', allocation: 'none', description: `full KV cache: every token in fp16 (engine ${input.engine}${stats === undefined ? ', computed from the model shape' : ''})${why}` };
	}
	const fallback = kv?.fallback === undefined ? '' : `; SpecKV is off (${kv.fallback.reason}), ${kv.fallback.fixHint}`;
	return {
		policy,
		allocation: stats.split,
		...(kv === undefined ? {} : { precision: kv.precision, budgetPercent: kv.budgetPercent }),
		bytesPerToken: contextTokens === 0 ? 0 : round(kvBytes / contextTokens),
		sinkTokens: selectionDefaults.sinks,
		recentWindow: selectionDefaults.window,
		description: `${kv === undefined ? policy : describeKvCache(kv)}, ${stats.split} split over layers and heads (engine ${input.engine})${fallback}`,
	};
}

/** The same snapshot without per-head detail (protocol `summaryOnly`). */
export function summarise(snapshot: CacheSnapshot): CacheSnapshot {
	return { ...snapshot, layers: snapshot.layers.map((layer) => ({ ...layer, heads: [] })) };
}

function emptyTiers(): Record<KvTier, TierAmounts[KvTier]> {
	return Object.fromEntries(kvTiers.map((tier) => [tier, { tokens: 0, bytes: 0 }])) as Record<KvTier, TierAmounts[KvTier]>;
}

function round(value: number): number {
	return Math.round(value * 1000) / 1000;
}

function round2(value: number): number {
	return Math.round(value * 100) / 100;
}
