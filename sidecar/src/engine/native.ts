import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

import { packageRoot } from '../models/bundled';
import { storageTiers, type StorageTier } from '../protocol';

// Typed wrapper of repokv's native addon (native/build/repokv.node, built by native/build.mjs): the target model's
// forward pass over a KV cache we own. Tokenization is not here: the engine takes token ids (node-llama-cpp's
// vocab-only model tokenizes, see native-engine.ts).

/** Shape and provenance of a loaded model, as the addon read it from the GGUF file. */
export interface NativeModelInfo {
	readonly path: string;
	readonly architecture: 'llama' | 'qwen2';
	readonly nVocab: number;
	readonly nEmbd: number;
	readonly nLayer: number;
	readonly nHead: number;
	readonly nHeadKv: number;
	readonly headDim: number;
	readonly nFf: number;
	/** GGUF `<arch>.context_length`. */
	readonly contextLength: number;
	readonly ropeType: 'normal' | 'neox';
	readonly ropeFreqBase: number;
	readonly tiedOutput: boolean;
	readonly weightBytes: number;
	/** Bytes of weights repacked for the CPU backend's faster quantized kernels (as llama.cpp does). */
	readonly repackedBytes: number;
	/** Weight bytes per ggml buffer type, e.g. `{ CPU: …, CPU_REPACK: … }`: all but `CPU` are repacked. */
	readonly weightBuffers: Readonly<Record<string, number>>;
	/** e.g. `f16:42,f32:13` (tensor count per ggml type). */
	readonly weightTypes: string;
	readonly threads: number;
}

/** One stored run of tokens of a KV head in one storage tier. */
export interface NativeSegmentStats {
	readonly tier: StorageTier;
	readonly tokens: number;
	/** Bytes allocated: keys + values + format metadata + positions. */
	readonly bytes: number;
	/** Of `bytes`: the positions (4 per token). */
	readonly positionBytes: number;
}

export interface NativeHeadStats {
	readonly tokens: number;
	readonly bytes: number;
	readonly segments: readonly NativeSegmentStats[];
}

export interface NativeCacheStats {
	/** `full` until `compress`, then the policy named there. */
	readonly policy: string;
	/** Whether attention reads a compacted copy (the stats below are then its, the master copy is separate). */
	readonly compressed: boolean;
	/** The retained master copy (policy `full`) the compressed store was selected from. */
	readonly masterTokens: number;
	readonly masterBytes: number;
	/** Tokens evaluated into the session (its next position). */
	readonly tokens: number;
	readonly contextSize: number;
	/** `layers[l].heads[h]`: per layer, per KV head. */
	readonly layers: readonly { readonly heads: readonly NativeHeadStats[] }[];
	/** Sum of the heads' real bytes. */
	readonly bytes: number;
	/** Bytes the store has reserved (capacity for `contextSize` tokens). */
	readonly reservedBytes: number;
	/** Of `bytes`: the positions. */
	readonly positionBytes: number;
	/** Totals per storage tier (tiers holding no token are absent). */
	readonly tiers: Readonly<Partial<Record<StorageTier, { readonly tokens: number; readonly bytes: number }>>>;
	readonly timings: { readonly prefillMs: number; readonly prefillTokens: number; readonly decodeMs: number; readonly decodeTokens: number; readonly compressMs: number };
}


interface AddonModel {
	info(): NativeModelInfo;
	setThreads(threads: number): void;
	dispose(): void;
}
interface AddonSession {
	evalSync(tokens: Int32Array, allLogits: boolean): number;
	evalAsync(tokens: Int32Array, allLogits: boolean): Promise<number>;
	logits(row?: number | 'all'): Float32Array;
	nPast(): number;
	truncate(position: number): number;
	stats(): NativeCacheStats;
	rangeTiers(bounds: Int32Array): Float64Array;
	observe(allRows: boolean, winFrom: number, specFrom: number, clear: boolean): void;
	stopObserving(): void;
	scores(kind: ScoreKind, length: number): Float32Array;
	compress(keep: Int32Array[] | Partial<Record<StorageTier, Int32Array[]>>, extraTokens: number, policy: string, dropMaster: boolean): number;
	decompress(): number;
	beginTail(position: number): number;
	endTail(): number;
	setStaging(tier: boolean | 'q8' | 'kivi4' | 'kivi2'): void;
	dispose(): void;
}

/** Observed importance scores: H2O column sums, SnapKV window sums, window max, SpecKV max (window + scoring pass). */
export type ScoreKind = 'h2o' | 'snapkv' | 'window-max' | 'speckv';

/** One storage format of the engine's KV store, from the addon's single table (native/src/storage_format.h). */
export interface NativeStorageFormat {
	/** The format's name everywhere: the addon, the protocol, the inspector. */
	readonly name: string;
	/** A packed format (native/src/quant/); else fp16. */
	readonly packed: boolean;
	/** Tokens that share per-channel scales (1 for per-token formats). */
	readonly tokenBlock: number;
}

interface Addon {
	/** The storage formats in the engine's order (rangeTiers' columns). */
	readonly storageFormats: readonly NativeStorageFormat[];
	/** Exact bytes n tokens of one KV head take in a format (positions not included). */
	formatBytes(name: string, headDim: number, n: number): { key: number; value: number; meta: number; total: number; bitsPerElement: number };
	loadModel(path: string, options: { threads: number }): AddonModel;
	loadModelAsync(path: string, options: { threads: number }): Promise<AddonModel>;
	createSession(model: AddonModel, options: { contextSize: number; batchSize: number }): AddonSession;
	physicalCores(): number;
	runtimeInfo(): NativeRuntimeInfo;
}

/** The ggml runtime the addon runs on. */
export interface NativeRuntimeInfo {
	readonly binsDir: string;
	/** A SIMD attention kernel table in use (AVX2/FMA/F16C on x86-64, NEON on arm64), not the portable one. */
	readonly simd: boolean;
	/** The attention kernel table in use (native/src/kernels/kernels.h): `scalar`, `avx2` or `neon`. */
	readonly kernels: string;
	/**
	 * Policy `full` reproduces llama.cpp's logits bit for bit (flash attention off): attention sums in the same order
	 * as the loaded CPU variant's matmuls (AVX2 with tinyBLAS, no AVX-512). Elsewhere logits agree within rounding.
	 */
	readonly bitExactWithLlamaCpp: boolean;
	/** Features of the CPU backend variant ggml loaded (`AVX2: "1"`, ...). */
	readonly cpuFeatures: Readonly<Record<string, string>>;
	readonly physicalCores: number;
}

let addon: Addon | undefined;

/** Path of the built addon: `$REPOKV_NATIVE_ADDON`, else `native/build/repokv.node` in the package. */
export function nativeAddonPath(): string {
	return process.env['REPOKV_NATIVE_ADDON'] ?? path.join(packageRoot(), 'native', 'build', 'repokv.node');
}

/** Loads the addon once; a clear error if it was not built. */
export function loadNativeAddon(): Addon {
	if (addon === undefined) {
		const file = nativeAddonPath();
		if (!existsSync(file)) {
			throw new Error(`the native engine is not built (${file} is missing); run \`npm run build\` (node native/build.mjs)`);
		}
		addon = createRequire(import.meta.url)(file) as Addon;
	}
	return addon;
}

export function nativeRuntimeInfo(): NativeRuntimeInfo {
	return loadNativeAddon().runtimeInfo();
}

/** Physical CPU cores (the default thread count). */
/** The engine's storage formats (one table in the addon; names as the protocol and the inspector use them). */
export function nativeStorageFormats(): readonly NativeStorageFormat[] {
	return loadNativeAddon().storageFormats;
}

/**
 * Exact bytes n tokens of one KV head take in a tier (keys, values, format metadata, positions). Monotone in n.
 * `fp16TokenBytes`: one token's keys and values in an fp16 cache (4 · head dim), the unit budgets are stated in.
 */
export type TierCost = ((tier: StorageTier, n: number) => number) & { readonly fp16TokenBytes: number };

/**
 * Exact bytes n tokens of one KV head take in each storage tier at head dim D (what KvStore allocates: the addon's
 * formatBytes, quant.h's format_bytes — the packed format's buffers, fp16 keys and values 2·D bytes each — plus 4 bytes
 * of position per token).
 */
export function tierCost(headDim: number): TierCost {
	const native = loadNativeAddon();
	const cost = (tier: StorageTier, n: number): number => (n <= 0 ? 0 : native.formatBytes(tier, headDim, n).total + 4 * n);
	return Object.assign(cost, { fp16TokenBytes: 4 * headDim });
}

export function physicalCores(): number {
	return loadNativeAddon().physicalCores();
}

export interface NativeLoadOptions {
	/** CPU threads; default: the physical cores. */
	readonly threads?: number;
}

export interface NativeSessionOptions {
	/** Tokens the session can hold. Default 4096. */
	readonly contextSize?: number;
	/** Micro-batch size of prefill. Default 512. */
	readonly batchSize?: number;
}

function toTokens(tokens: readonly number[] | Int32Array): Int32Array {
	return tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
}

/** A GGUF model loaded into the native engine (weights in memory, one ggml CPU backend). */
export class NativeModel {
	readonly info: NativeModelInfo;

	private constructor(private readonly handle: AddonModel) {
		this.info = handle.info();
	}

	/** Loads a `llama` or `qwen2` GGUF. Throws an Error naming the problem for unsupported, broken or truncated files. */
	static load(modelPath: string, options: NativeLoadOptions = {}): NativeModel {
		const native = loadNativeAddon();
		const threads = options.threads ?? native.physicalCores();
		if (!Number.isInteger(threads) || threads < 1) {
			throw new RangeError(`threads must be a positive integer (got ${threads})`);
		}
		return new NativeModel(native.loadModel(modelPath, { threads }));
	}

	/** `load` off the main thread (reading large weights does not block the event loop). */
	static async loadAsync(modelPath: string, options: NativeLoadOptions = {}): Promise<NativeModel> {
		const native = loadNativeAddon();
		const threads = options.threads ?? native.physicalCores();
		if (!Number.isInteger(threads) || threads < 1) {
			throw new RangeError(`threads must be a positive integer (got ${threads})`);
		}
		return new NativeModel(await native.loadModelAsync(modelPath, { threads }));
	}

	get threads(): number {
		return this.handle.info().threads;
	}

	setThreads(threads: number): void {
		this.handle.setThreads(threads);
	}

	createSession(options: NativeSessionOptions = {}): NativeSession {
		return new NativeSession(loadNativeAddon().createSession(this.handle, { contextSize: options.contextSize ?? 4096, batchSize: options.batchSize ?? 512 }));
	}

	/** Frees the weights once no session uses them any more. */
	dispose(): void {
		this.handle.dispose();
	}
}

/**
 * An inference session: one sequence, positions 0..n-1, with its own KV store (policy `full`: every token in fp16,
 * keys post-RoPE at their original positions).
 */
export class NativeSession {
	constructor(private readonly handle: AddonSession) {}

	/** Evaluates `tokens` at the next positions (in micro-batches, off the main thread). Resolves to the new length. */
	async prefill(tokens: readonly number[] | Int32Array, options: { allLogits?: boolean } = {}): Promise<number> {
		return this.handle.evalAsync(toTokens(tokens), options.allLogits === true);
	}

	/** Evaluates one token. Resolves to the new length. */
	async decode(token: number): Promise<number> {
		return this.handle.evalAsync(Int32Array.of(token), false);
	}

	/** Synchronous prefill (blocks the event loop; for benchmarks and tools). */
	prefillSync(tokens: readonly number[] | Int32Array, options: { allLogits?: boolean } = {}): number {
		return this.handle.evalSync(toTokens(tokens), options.allLogits === true);
	}

	decodeSync(token: number): number {
		return this.handle.evalSync(Int32Array.of(token), false);
	}

	/**
	 * Next-token logits after the last evaluated token. With `allLogits` prefill, `row` picks the prediction after the
	 * prompt's token `row`, and `'all'` returns every row back to back.
	 */
	logits(row?: number | 'all'): Float32Array {
		return this.handle.logits(row);
	}

	/** Number of tokens in the session (the next token's position). */
	get length(): number {
		return this.handle.nPast();
	}

	/** Drops every token at `position` and after; the next token is evaluated at `position`. */
	truncate(position: number): number {
		return this.handle.truncate(position);
	}

	/** Cache statistics: tokens and real bytes per layer and KV head. */
	stats(): NativeCacheStats {
		return this.handle.stats();
	}

	/**
	 * Per position range, the (layer, KV head, position) cells held in each storage tier, in the store attention reads
	 * (the compacted one when compressed). `bounds`: sorted boundaries, range r = [bounds[r], bounds[r + 1]). Positions
	 * outside every range are not counted; a dropped position is in no tier. Summed over ranges covering every
	 * position, the counts equal `stats().tiers[tier].tokens`.
	 */
	rangeTiers(bounds: Int32Array): Record<StorageTier, number>[] {
		const flat = this.handle.rangeTiers(bounds);
		const ranges: Record<StorageTier, number>[] = [];
		for (let r = 0; r + 1 < bounds.length; r++) {
			const at = (tier: number): number => flat[r * storageTiers.length + tier] ?? 0;
			ranges.push(Object.fromEntries(storageTiers.map((tier, index) => [tier, at(index)])) as Record<StorageTier, number>);
		}
		return ranges;
	}

	/**
	 * Observe importance scores during the next evaluations (resets them): rows at positions >= `specFrom` (SpecKV's
	 * scoring pass) fold into a max, rows in [`winFrom`, `specFrom`) into window sums and max, and with `allRows` every
	 * row before `specFrom` into column sums (H2O). `clear: false` keeps what was observed and changes the ranges only.
	 */
	observe(options: { allRows: boolean; winFrom: number; specFrom: number; clear?: boolean }): void {
		this.handle.observe(options.allRows, options.winFrom, options.specFrom, options.clear !== false);
	}

	stopObserving(): void {
		this.handle.stopObserving();
	}

	/** Observed scores of positions [0, length) as [layer][KV head][length]. */
	scores(kind: ScoreKind, length: number): Float32Array {
		return this.handle.scores(kind, length);
	}

	/**
	 * Compressed mode: attention reads a compacted copy of the entries in `keep` (per layer * nHeadKv + head: kept
	 * positions) with room for `extraTokens` new ones; the master copy stays for the next request unless `dropMaster`.
	 * `truncate` to a position <= the master length, or `decompress`, returns to the master copy.
	 */
	compress(keep: Int32Array[] | Partial<Record<StorageTier, Int32Array[]>>, options: { extraTokens: number; policy: string; dropMaster?: boolean }): void {
		this.handle.compress(keep, options.extraTokens, options.policy, options.dropMaster === true);
	}

	decompress(): number {
		return this.handle.decompress();
	}

	/**
	 * Prefix reuse that keeps the compressed store (the prompt changed only near its end): cuts the compressed store and
	 * the master copy at `position`; the tokens prefilled until `endTail` go to the master copy (attending to every
	 * token, as a fresh prefill does); `endTail` appends them to the compressed store in fp16 and returns to it. The
	 * earlier selection stays for the tokens before `position`. A `truncate` in between drops the compressed store.
	 */
	beginTail(position: number): number {
		return this.handle.beginTail(position);
	}

	endTail(): number {
		return this.handle.endTail();
	}

	/**
	 * Staging of the master copy: after every prefill micro-batch, fp16 entries older than the newest 256 (the first 4
	 * positions excepted) move to q8 (8.5 bits), kivi4 (5.0) or kivi2 (3.0) — kivi in whole 32-token blocks, the
	 * remainder waiting in fp16 — so a long prompt's cache never holds all of it in fp16. `true`: q8; `false`: off.
	 * For packed precisions only: what a policy keeps in 4-bit or 1.x-bit is then transcoded from the staged master,
	 * and policy `full` (never staged) stays bit-exact with llama.cpp.
	 */
	setStaging(tier: boolean | 'q8' | 'kivi4' | 'kivi2'): void {
		this.handle.setStaging(tier);
	}

	dispose(): void {
		this.handle.dispose();
	}
}

/** Index of the largest value (greedy sampling). */
export function argmax(values: Float32Array): number {
	let best = 0;
	for (let i = 1; i < values.length; i++) {
		if ((values[i] ?? -Infinity) > (values[best] ?? -Infinity)) {
			best = i;
		}
	}
	return best;
}
