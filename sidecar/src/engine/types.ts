// The engine interface: everything the rest of the sidecar may ask of a model runtime. Two implementations are
// planned: `llama` (node-llama-cpp, full KV cache; llama.ts) and `native` (our addon with the compressed KV cache).
// Keep this surface small and runtime-neutral so that both can implement it and benchmarks can swap them.

import type { DraftLayout, EngineSetting, KvMasterPrecision, KvPolicy, KvPrecision, KvSplit, StorageTier } from '../protocol';
import type { LlamaKvType } from './node-llama';

/** Names of the available engines (the `engine` setting's values); the CLI's `--engine` option takes one of these. */
export type EngineName = EngineSetting;

/**
 * The special token texts a prompt is built from. They are read from the model's vocabulary, so that a model with
 * different spellings still gets its own tokens; `defaultSpecialTokenTexts` is the fallback.
 */
export interface SpecialTokenTexts {
	readonly fimPrefix: string;
	readonly fimSuffix: string;
	readonly fimMiddle: string;
	/** Starts each file of the repository block: `<|file_sep|>{path}\n{text}`. */
	readonly fileSeparator: string;
	readonly endOfText: string;
	/**
	 * `<|repo_name|>` when the model declares Qwen2.5-Coder's repository-level format (the token and `<|file_sep|>`
	 * are control tokens of its vocabulary): the prompt then starts with `<|repo_name|>{name}\n`. Absent otherwise.
	 */
	readonly repoName?: string;
}

/** The spellings used by the bundled models (and Qwen2.5-Coder, StarCoder2-style repo-level FIM). */
export const defaultSpecialTokenTexts: SpecialTokenTexts = {
	fimPrefix: '<|fim_prefix|>',
	fimSuffix: '<|fim_suffix|>',
	fimMiddle: '<|fim_middle|>',
	fileSeparator: '<|file_sep|>',
	endOfText: '<|endoftext|>',
};

/** Counts tokens the way the model will see them: special token texts count as one special token each. */
export interface TokenCounter {
	countTokens(text: string): number;
}

export interface LoadModelOptions {
	/** Absolute path of the GGUF file. */
	readonly modelPath: string;
	/**
	 * CPU threads for evaluation. Always explicit: runtimes default to more threads than a small machine has, and
	 * ggml's spinning thread pool then makes decoding hundreds of times slower (docs/platform-notes.md).
	 */
	readonly threads: number;
	/** Context window in tokens; clamped to what the model was trained on. Default: the trained context. */
	readonly contextSize?: number;
	/** Receives the runtime's own log lines (already filtered to warnings and errors unless `verbose`). */
	readonly onLog?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
	readonly verbose?: boolean;
	/** KV cache policy (native engine only; the llama engine always keeps the full cache). */
	readonly kvCache?: KvCacheOptions;
	/**
	 * The llama engine's cache layout (the reference's tuning knobs, for benchmarks that compare against its best
	 * configuration). Default: f16 K/V, flash attention off. A quantized V cache needs flash attention.
	 */
	readonly referenceCache?: ReferenceCacheOptions;
}

/** node-llama-cpp's own KV cache options, as the llama engine passes them to `createContext`. */
export interface ReferenceCacheOptions {
	readonly flashAttention?: boolean;
	/** K and V element type: llama.cpp's F16 (the default), Q8_0 or Q4_0. */
	readonly kvType?: LlamaKvType;
}

/**
 * The native engine's KV policy (docs/kv-policies.md): which entries each layer and KV head keeps after the prefill.
 * The values are valid by type; the callers' boundaries (settings.ts, the CLI's arguments) filled in the defaults.
 */
export interface KvCacheOptions {
	readonly policy: KvPolicy;
	/** Budget: percent of the fp16 cache's bytes, or tokens per KV head (one of the two). */
	readonly budgetPercent?: number;
	readonly budgetTokens?: number;
	/** Layer/head split (default per policy). */
	readonly split?: KvSplit;
	/** Storage of the picked tokens (default f16; `window` and `full` only store f16). */
	readonly precision?: KvPrecision;
	/** Packed precisions: the master copy's staging format (default `defaultKvSettings.masterPrecision`). */
	readonly masterPrecision?: KvMasterPrecision;
	/** `mixed`: share of the picked bytes at 4-bit (default 0.75). */
	readonly hiFraction?: number;
	/** SpecKV's draft model (default: the bundled draft) and lookahead tokens (default: the request's maxTokens). */
	readonly draftPath?: string;
	readonly lookahead?: number;
	/** How the draft reads the prompt (draft-prompt.ts; default `prefix-last`). */
	readonly draftLayout?: DraftLayout;
}

export interface Engine {
	readonly name: EngineName;
	/** Load a model and create its evaluation context. Throws `UserError` for a missing or broken model file. */
	loadModel(options: LoadModelOptions): Promise<LoadedModel>;
}

export interface ModelInfo {
	readonly path: string;
	readonly architecture: string;
	/** The context the model was trained with (GGUF `<arch>.context_length`). */
	readonly trainContextSize: number;
	/** The context window actually allocated; prompts plus generated tokens must fit in it. */
	readonly contextSize: number;
	readonly threads: number;
	/** Whether the engine puts a BOS token before every prompt (it then takes one token of the context). */
	readonly addsBos: boolean;
}

/** One stored run of a KV head's tokens in one storage tier (engine-reported, for the cache inspector). */
export interface EngineKvSegment {
	readonly tier: StorageTier;
	readonly tokens: number;
	readonly bytes: number;
}

/** An engine's own accounting of its KV cache after the last request (the native engine has one; llama.cpp not). */
export interface EngineKvStats {
	readonly policy: string;
	/** Positions evaluated into the cache. */
	readonly tokens: number;
	/** `layers[l].heads[h]`: per layer, per KV head. */
	readonly layers: readonly { readonly heads: readonly { readonly tokens: number; readonly bytes: number; readonly segments: readonly EngineKvSegment[] }[] }[];
	readonly bytes: number;
	/** Totals per storage tier; a tier holding no token is absent. */
	readonly tiers?: Readonly<Partial<Record<StorageTier, { readonly tokens: number; readonly bytes: number }>>>;
	/** The retained uncompressed master copy the policy selected from (native engine), for reuse by the next request. */
	readonly masterTokens?: number;
	readonly masterBytes?: number;
	/** What a full fp16 cache of the same `tokens` positions takes: tokens × layers × KV heads × head dim × 2 (K, V) × 2 bytes. */
	readonly fp16Bytes?: number;
	/** SpecKV's draft model: the tokens its own (full, fp16) KV cache holds and their bytes. Absent without a draft. */
	readonly draft?: { readonly path: string; readonly tokens: number; readonly bytes: number };
	/**
	 * Everything the engine holds for this context: the attended store (`bytes`), the master copy when it is kept
	 * apart from it, and the draft's cache.
	 */
	readonly residentBytes?: number;
	/** The split the policy used (`uniform`, `pyramid`, `adaptive`); absent under `full`. */
	readonly split?: KvSplit;
}

export interface LoadedModel extends TokenCounter {
	readonly info: ModelInfo;
	readonly specialTokens: SpecialTokenTexts;
	/** The engine's per-layer/per-head KV accounting, where it has one. */
	kvStats?(): EngineKvStats;
	/**
	 * Per position range, how many (layer, KV head, position) cells the KV cache attention reads holds in each tier
	 * (named as in `EngineKvStats.tiers`); `bounds`: sorted boundaries, range r = [bounds[r], bounds[r + 1]). Dropped
	 * positions are in no tier. Engines that cannot inspect their cache per position leave it out.
	 */
	kvRangeTiers?(bounds: Int32Array): readonly Readonly<Record<StorageTier, number>>[];
	/**
	 * Native engine: the KV compression of the next requests, without reloading the target model. Loads SpecKV's
	 * draft (`policy: 'speckv'`) or disposes it (any other policy); a change of storage precision drops the master
	 * copy (its staging differs), so the next request prefills afresh. `undefined`: the full cache.
	 */
	configureKv?(kv: KvCacheOptions | undefined): Promise<void>;
	/** Generate a continuation of `prompt`, greedily. Special token texts in the prompt are parsed as special tokens. */
	complete(request: CompletionRequest): Promise<CompletionResult>;
	dispose(): Promise<void>;
}

export interface CompletionRequest {
	/** The full prompt text, special tokens written as their texts. */
	readonly prompt: string;
	/** Upper bound on generated tokens. */
	readonly maxTokens: number;
	/**
	 * Generation also stops when the generated text contains one of these strings; the result's text is cut before
	 * it. End-of-generation tokens (end of text, file separator) always stop generation.
	 */
	readonly stopStrings?: readonly string[];
	/**
	 * Aborting ends generation early; the result then has `stopReason: 'aborted'` and the text so far. Engines check
	 * it between prefill chunks too, so a cancelled request stops prefilling within one chunk.
	 */
	readonly signal?: AbortSignal;
	/**
	 * Keep the KV cache of the longest prompt prefix that matches the previous request's tokens and evaluate only the
	 * rest (the language server's stable-first prompts share the repository block). Default `false`: every request
	 * starts from an empty cache, so timings do not depend on the previous request. Engines may ignore it.
	 */
	readonly reusePrefix?: boolean;
	/** Called while prefilling: `done` of `total` prompt tokens are in the KV cache (reused ones count as done). */
	readonly onPrefillProgress?: (done: number, total: number) => void;
	/** Called after each generated token with the text so far (stop strings not yet cut). */
	readonly onText?: (text: string) => void;
}

export type StopReason = 'endOfGeneration' | 'stopString' | 'maxTokens' | 'aborted';

export interface CompletionResult {
	readonly text: string;
	readonly stopReason: StopReason;
	readonly tokens: {
		/** Prompt tokens, BOS included. */
		readonly prompt: number;
		/** Of `prompt`, tokens whose KV was reused from the previous request (`reusePrefix`); 0 or absent otherwise. */
		readonly reused?: number;
		readonly generated: number;
	};
	/** Wall-clock milliseconds of each phase. */
	readonly timings: EngineTimings;
	/**
	 * Native engine under a KV policy: whether this request selected its cache (`fresh`), or kept the previous
	 * request's selection because only the prompt's last tokens changed (`kept`: no draft, scoring or compaction).
	 */
	readonly selection?: 'fresh' | 'kept';
}

/** Wall-clock milliseconds of each phase of one engine request. */
export interface EngineTimings {
	readonly tokenizeMs: number;
	/** Evaluating the prompt (all but its last token) into the KV cache. */
	readonly prefillMs: number;
	/** Evaluating the prompt's last token and every generated token, sampling included. */
	readonly decodeMs: number;
	/** Native engine, KV policies: the draft's lookahead, the target's scoring pass, selection + compaction. */
	readonly draftMs?: number;
	readonly scoringMs?: number;
	readonly compressMs?: number;
}
