// repokv's language-server protocol: the single source of truth for every message between the sidecar (server) and the
// extension (client), and for the data the cache inspector (webview) renders (docs/architecture.md, "Protocol" and
// "Cache inspector").
//
// Standard LSP is used wherever it exists: document sync, `textDocument/inlineCompletion` (LSP 3.18),
// `$/cancelRequest`, `$/progress`, `workspace/configuration`. The custom methods below are `repokv/<area>/<verb>`;
// notifications say `did…`. Each method is a namespace with `method`, `messageDirection` and a typed `type`.
//
// Direction glyphs in the JSDoc (as in Tabby's protocol.ts):
//   ↩️ request, client → server        ➡️ notification, client → server
//   ⬅️ notification, server → client   ↪️ request, server → client
//
// This module must stay importable from three bundles: the sidecar (ESM, Node), the extension (CommonJS, Node)
// and the webview (IIFE, browser). So: types, method names and `*Type` objects only — no Node imports, no state.
// `vscode-languageserver-protocol`'s root export is its platform-neutral `common` API. The webview only needs the
// data types: `import type { CacheSnapshot } from '…/protocol'` keeps the JSON-RPC library out of its bundle.

/* eslint-disable @typescript-eslint/no-namespace -- one namespace per method is the LSP library's own convention
   (vscode-languageserver-protocol, Tabby, vscode-eslint): `XRequest.method`, `XRequest.type` read as one unit. */
import {
	MessageDirection,
	ProtocolNotificationType,
	ProtocolRequestType,
	ProtocolRequestType0,
	type PartialResultParams,
	type WorkDoneProgressParams,
} from 'vscode-languageserver-protocol';

// ---------------------------------------------------------------------------------------------------------------
// Settings (`workspace/configuration`, section `repokv`)
// ---------------------------------------------------------------------------------------------------------------

/**
 * Every setting with a fixed set of values is defined here once, as a `const` list; its type is derived from the
 * list, and the server (settings.ts), the CLI (cli/args.ts), the engine, the extension and the benchmarks import both.
 * package.json's `contributes.configuration` repeats the lists as JSON enums (it cannot import); a unit test checks
 * that they match.
 */

/** Which inference engine runs the target model. The engine interface hides which one is in use. */
export const engineSettings = ['native', 'llama'] as const;
export type EngineSetting = (typeof engineSettings)[number];

/**
 * Where the native engine runs (docs/gpu.md). `auto`: the GPU when repokv's CUDA engine is built and a CUDA device is
 * present, else the CPU; `cuda`: the GPU, or the CPU with one status message saying why not; `cpu`: the CPU. Until
 * the native forward pass runs on CUDA (not yet: docs/gpu.md), every choice runs on the CPU and `cuda` says so.
 */
export const deviceSettings = ['auto', 'cuda', 'cpu'] as const;
export type DeviceSetting = (typeof deviceSettings)[number];
export const defaultDevice: DeviceSetting = 'auto';
/** The device an engine actually runs on, what was asked for, and why they differ (`reason`, when they do). */
export interface DeviceStatus {
	readonly requested: DeviceSetting;
	readonly used: 'cpu' | 'cuda';
	readonly reason?: string;
}

/**
 * KV policies of the native engine (docs/kv-policies.md): which entries each layer and KV head keeps after the prefill.
 */
export const kvPolicies = ['full', 'window', 'h2o', 'snapkv', 'pyramidkv', 'adakv', 'speckv'] as const;
export type KvPolicy = (typeof kvPolicies)[number];

/** How a policy's budget is split over layers and KV heads (`undefined`: the policy's own split). */
export const kvSplits = ['uniform', 'pyramid', 'adaptive'] as const;
export type KvSplit = (typeof kvSplits)[number];

/**
 * The storage formats of KV entries, most to least precise: the one name table on this side of the N-API boundary,
 * equal to the native addon's (native/src/kv_store.cpp, in its `Tier` enum order; test/unit/tier-names.test.mjs
 * checks it against the addon). `f16`: IEEE half keys and values; `q8`: 8.5 bits per element; `kivi4` / `kivi2`:
 * KIVI, keys per channel and values per token, 5 / 3 bits per element; `onebit`: ~1.6 bits (keys 1-bit with 2-bit
 * outlier channels, values ternary). docs/kv-quantization.md describes each.
 */
export const storageTiers = ['f16', 'q8', 'kivi4', 'kivi2', 'onebit'] as const;
export type StorageTier = (typeof storageTiers)[number];

/**
 * How the tokens a policy picks beyond its sinks and recent window are stored: one of the `storageTiers`, or
 * `mixed`: the top-ranked at 4-bit (kivi4), the next at ~1.6-bit (onebit); sinks and the recent window stay f16.
 * Packed precisions make the budget buy bytes, not tokens.
 */
export const kvPrecisions = [...storageTiers, 'mixed'] as const;
export type KvPrecision = (typeof kvPrecisions)[number];

/**
 * The format the master copy of the prompt's KV (kept for prefix reuse and re-selection) is staged in while a packed
 * precision prefills: q8 (8.5 bits per element), kivi4 (5.0) or kivi2 (3.0); kivi moves whole 32-token blocks. Later
 * prompt tokens attend to the staged ones, so the format also moves the prompt's own hidden states.
 */
export const kvMasterPrecisions = ['q8', 'kivi4', 'kivi2'] as const satisfies readonly StorageTier[];
export type KvMasterPrecision = (typeof kvMasterPrecisions)[number];

/**
 * How SpecKV's draft reads a FIM prompt: `prefix-last` (the active file's text before the cursor, last) or `fim`
 * (the target's prompt as it is). engine/draft-prompt.ts says why `prefix-last` is the default.
 */
export const draftLayouts = ['prefix-last', 'fim'] as const;
export type DraftLayout = (typeof draftLayouts)[number];

/** Allowed range of `kv.budgetPercent` (percent of the fp16 KV cache's bytes). */
export const kvBudgetPercentRange = { min: 1, max: 100 } as const;

/** The KV settings the server, the CLI and the extension use when none is given. */
export interface KvDefaults {
	readonly policy: KvPolicy;
	readonly budgetPercent: number;
	readonly precision: KvPrecision;
	readonly draftLayout: DraftLayout;
	/** Staging format of the master copy under a packed precision (`kvMasterPrecisions`). */
	readonly masterPrecision: KvMasterPrecision;
	/**
	 * The draft-free policy used instead of `speckv` when no compatible draft is available (file missing, or a
	 * vocabulary other than the target's): same budget, split and precision, so the cache stays compressed.
	 */
	readonly fallbackPolicy: Exclude<KvPolicy, 'speckv' | 'full' | 'window'>;
}

/**
 * The product's default: the native engine with SpecKV at 12 % of the fp16 KV bytes, picked tokens in the mixed
 * 4-bit + 1.x-bit tiers (bench/results: at 12 % the needle scores match `full`'s on the bundled models), the master
 * copy staged in kivi4 (bench/results/master-precision.md: its fidelity cost is small next to the selection's own, and
 * it holds 0.38 of the fp16 bytes where q8 holds 0.58).
 */
export const defaultKvSettings: KvDefaults = { policy: 'speckv', budgetPercent: 12, precision: 'mixed', draftLayout: 'prefix-last', masterPrecision: 'kivi4', fallbackPolicy: 'snapkv' };

/** The engine the server, the CLI and the extension use when none is given: the compressed one. */
export const defaultEngine: EngineSetting = 'native';

/**
 * Defaults of the request settings that the server (settings.ts), the CLI (complete, ask) and the extension all
 * apply; the others have one reader, settings.ts, which holds their defaults.
 */
export const defaultCompletionSettings = { maxTokens: 64 } as const;
export const defaultAskSettings = { maxTokens: 128, maxChunks: 24 } as const;

export interface RepokvSettings {
	/**
	 * `native`: repokv's addon with the compressed KV cache (the default). `llama`: node-llama-cpp with a full KV cache
	 * (the reference).
	 */
	readonly engine?: EngineSetting;
	/** One of `deviceSettings` (native engine). Default `defaultDevice`. */
	readonly device?: DeviceSetting;
	readonly model?: {
		/**
		 * Target model: an absolute path to a GGUF file, or an `hf:<user>/<repo>/<file>.gguf` URI that is downloaded
		 * once (with progress in `repokv/status/didChange`) through node-llama-cpp. Default: the bundled
		 * `models/target.gguf`.
		 */
		readonly target?: string;
		/**
		 * Draft model for SpecKV lookahead; same forms as `target`, with the target's vocabulary. Default: automatic,
		 * the bundled `models/draft.gguf` when it pairs with the target, else the smallest local GGUF that does (next
		 * to the target, node-llama-cpp's models folder, `downloadFolder`).
		 */
		readonly draft?: string;
		/** Folder that downloaded models are stored in. Default: node-llama-cpp's models folder under the user's home. */
		readonly downloadFolder?: string;
		/** Give up a model download after this many seconds without finishing. Default 600. */
		readonly downloadTimeoutSeconds?: number;
	};
	/**
	 * CPU threads for inference. Always explicit (runtimes default to more than a small machine has, which is
	 * catastrophically slow). Default: the machine's cores less one, at least 1.
	 */
	readonly threads?: number;
	/** Context window in tokens. Default: what the model was trained with. */
	readonly contextSize?: number;
	/**
	 * KV cache compression of the `native` engine (the `llama` engine always keeps the full cache): which entries
	 * each layer and KV head keeps after the prefill (native/README.md). A change applies to the next request without
	 * reloading the target model (only SpecKV's draft is loaded or unloaded).
	 */
	readonly kv?: {
		/**
		 * One of `kvPolicies`; `speckv` needs a draft (`model.draft`) with the target's vocabulary, and without one
		 * `defaultKvSettings.fallbackPolicy` is used (the status says so). Default `defaultKvSettings.policy`.
		 */
		readonly policy?: KvPolicy;
		/** Budget in percent of the full fp16 cache's bytes, `kvBudgetPercentRange`. Default `defaultKvSettings.budgetPercent`. */
		readonly budgetPercent?: number;
		/** One of `kvSplits`. Default: the policy's own (pyramidkv: pyramid, adakv: adaptive, else uniform). */
		readonly split?: KvSplit;
		/** One of `kvPrecisions` (`window` and `full` always store f16). Default `defaultKvSettings.precision`. */
		readonly precision?: KvPrecision;
		/** One of `draftLayouts`. Default `defaultKvSettings.draftLayout`. */
		readonly draftLayout?: DraftLayout;
		/**
		 * One of `kvMasterPrecisions`: the format the master copy (the whole prompt's KV, kept for prefix reuse) is
		 * staged in under a packed precision. Default `defaultKvSettings.masterPrecision`.
		 */
		readonly masterPrecision?: KvMasterPrecision;
	};
	readonly completion?: {
		/** `false` answers every inline completion request with no items. Default `true`. */
		readonly enabled?: boolean;
		/** Most tokens generated per completion. Default `defaultCompletionSettings.maxTokens`. */
		readonly maxTokens?: number;
		/** Smallest debounce delay in milliseconds; the adaptive debouncer never waits less. Default 25. */
		readonly debounceMinMs?: number;
		/** Largest debounce delay in milliseconds. Default 300. */
		readonly debounceMaxMs?: number;
		/**
		 * Time budget for generating one completion, in milliseconds, counted from the end of its prefill; the engine
		 * is aborted after it. The prefill itself is stopped only by cancellation (or after 2 minutes): its KV is kept
		 * and reused by the next request, so finishing it is never wasted. Default 10000.
		 */
		readonly timeoutMs?: number;
		/** Entries in the completion LRU cache. Default 64. */
		readonly cacheSize?: number;
		/**
		 * Prefill the repository block into the KV cache while idle (after a document opens or the feed changes), so
		 * the first completion only evaluates its FIM prompt. Aborted as soon as a real request arrives; what it
		 * evaluated by then is kept. Default `true`.
		 */
		readonly prewarm?: boolean;
	};
	readonly ask?: {
		/** Most tokens generated for one answer. Default `defaultAskSettings.maxTokens`. */
		readonly maxTokens?: number;
		/** Most retrieved chunks put in the context when the workspace does not fit whole. Default `defaultAskSettings.maxChunks`. */
		readonly maxChunks?: number;
	};
	/** Limits of the workspace mirror, enforced on the server whatever the client sends. */
	readonly limits?: {
		/** Larger files are refused (reported as skipped). Default 1 MiB. */
		readonly maxFileBytes?: number;
		/** The mirror refuses files that would take its total past this. Default 16 MiB. */
		readonly maxTotalBytes?: number;
		/** Most files in the mirror. Default 20000. */
		readonly maxFiles?: number;
	};
}

/** The `initializationOptions` of `initialize`. */
export interface RepokvInitializationOptions {
	/** Settings to use until (or instead of) `workspace/configuration` answers. */
	readonly settings?: RepokvSettings;
	/** Do not load a model before the first request. Default `false`: the model loads right after `initialized`. */
	readonly lazyModelLoad?: boolean;
	/**
	 * The client sends the workspace itself through `repokv/workspace/didChangeFiles` (repokv's extension does).
	 * Default `false`: the server reads the workspace folders from disk with the CLI's reader and rules, and follows
	 * changes through `workspace/didChangeWatchedFiles` (when the client can register it) or its own watcher.
	 */
	readonly feedsWorkspace?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// repokv/workspace/didChangeFiles
// ---------------------------------------------------------------------------------------------------------------

/** One file's full text, as the client sends it to the mirror. */
export interface WorkspaceFileContent {
	/**
	 * Path relative to the workspace root, forward slashes (`src/config.ts`). This is the file's identity in the
	 * mirror, in prompts and in citations.
	 */
	readonly path: string;
	/**
	 * The file's URI (`file:///…/src/config.ts`), if the client knows it. Lets the server match open text documents
	 * (`textDocument/didOpen` URIs) to mirror entries; without it the server derives URIs from the workspace folders.
	 */
	readonly uri?: string;
	/** The full UTF-8 text. Binary content must not be sent (the server refuses text containing NUL characters). */
	readonly text: string;
	/**
	 * Monotonic version of this file's content (an editor document version, or a counter per file). A change whose
	 * version is lower than the mirror's is stale and ignored. Optional: without it every change applies.
	 */
	readonly version?: number;
	/** Last modification time (ms since the epoch); orders the repository block least recently edited first. */
	readonly mtimeMs?: number;
}

/** A file moved or renamed inside the workspace; its text is unchanged (send a change as well if it is not). */
export interface WorkspaceFileRename {
	/** Old workspace-relative path. */
	readonly from: string;
	/** New workspace-relative path. */
	readonly to: string;
}

/** Parameters of `repokv/workspace/didChangeFiles`. */
export interface DidChangeFilesParams {
	/** Files added or whose text changed (full text each time; the mirror diffs for KV reuse itself). */
	readonly changed?: readonly WorkspaceFileContent[];
	/** Workspace-relative paths of deleted files. A deleted folder is sent as the paths of its files. */
	readonly deleted?: readonly string[];
	/** Renamed or moved files. Applied before `changed`. */
	readonly renamed?: readonly WorkspaceFileRename[];
	/**
	 * Set on the batches of the initial feed: batch `index` (0-based) of `count`. The server reports indexing
	 * progress from it, and becomes `ready` after the last batch. Omitted for later deltas.
	 */
	readonly batch?: {
		readonly index: number;
		readonly count: number;
		/** Files in the whole feed (all batches), for `indexing n/N files` progress. */
		readonly totalFiles?: number;
	};
	/**
	 * `true` when this batch replaces the whole mirror (the client rescanned): files not in any batch of this feed are
	 * removed once the last batch arrives. Default `false` (a delta).
	 */
	readonly reset?: boolean;
}

/**
 * ➡️ The long-context feed: batches of files at start, deltas on change, delete and rename. The server enforces its
 * own limits and the ignore and secret rules again (a file the client should not have sent is dropped and counted
 * in `StatusParams.workspace.skipped`), reports progress through `repokv/status/didChange`, and never answers.
 */
export namespace WorkspaceDidChangeFilesNotification {
	export const method = 'repokv/workspace/didChangeFiles' as const;
	export const messageDirection: MessageDirection = MessageDirection.clientToServer;
	export const type = new ProtocolNotificationType<DidChangeFilesParams, void>(method);
}

// ---------------------------------------------------------------------------------------------------------------
// repokv/status/didChange
// ---------------------------------------------------------------------------------------------------------------

/**
 * The server's health, a state machine: `starting` → `loadingModel` → (`indexing` ⇄ `prefilling`) → `ready`; any
 * state → `error` (with a fix hint), and `error` → `loadingModel` when settings change.
 */
export type ServerState = 'starting' | 'loadingModel' | 'indexing' | 'prefilling' | 'ready' | 'error';

/** Progress of the current state's work, `done` of `total` `unit`s. */
export interface StatusProgress {
	readonly done: number;
	readonly total: number;
	/** `files` while indexing, `tokens` while prefilling, `bytes` while downloading a model. */
	readonly unit: 'files' | 'tokens' | 'bytes';
}

/** Latencies of recent requests, in milliseconds. */
export interface StatusLatencies {
	/** The last completion, end to end in the server (debounce excluded). */
	readonly lastCompletionMs?: number;
	/** Median over the last 10 completions. */
	readonly medianCompletionMs?: number;
	/** Prefill of the last completion, and how many of its prompt tokens were reused from the previous request's KV. */
	readonly lastPrefillMs?: number;
	readonly lastPrefillTokens?: number;
	readonly lastReusedTokens?: number;
	/** The last answer of `repokv/repo/ask`, end to end. */
	readonly lastAskMs?: number;
}

/** Parameters of `repokv/status/didChange` (and the result of `repokv/status`). */
export interface StatusParams {
	readonly state: ServerState;
	/** One line for a status bar tooltip, e.g. `indexing 120/340 files`. */
	readonly message: string;
	/** Progress of the current state's work, when it has a measurable size. */
	readonly progress?: StatusProgress;
	/**
	 * What the user can do about it (e.g. "set repokv.model.target to a GGUF file"): in state `error`, and in `ready`
	 * while the server runs degraded (SpecKV fell back, `kvCache.fallback`).
	 */
	readonly fixHint?: string;
	readonly latencies?: StatusLatencies;
	/** What the mirror holds. */
	readonly workspace?: {
		readonly files: number;
		readonly bytes: number;
		/** Files refused by the server's rules, by reason (`tooLarge`, `binary`, `secret`, `ignored`, `overTotal`, `tooMany`). */
		readonly skipped: Readonly<Record<string, number>>;
	};
	/** Inline completion counters since start: how many requests came, reached the engine, were answered otherwise. */
	readonly completions?: {
		readonly requested: number;
		/** Requests that reached the engine (prefill + decode). */
		readonly computed: number;
		/** Answered from the LRU cache (same document version, cursor and context). */
		readonly cacheHits: number;
		/** Answered from the last suggestion because the user typed its start. */
		readonly typedAhead: number;
		/** Cancelled or superseded before or while computing (answered empty). */
		readonly cancelled: number;
		readonly errors: number;
	};
	/** The engine and model in use, once loaded. */
	readonly engine?: {
		readonly name: EngineSetting;
		readonly model: string;
		readonly contextSize: number;
		readonly threads: number;
		/** Native engine: the device it runs on (and why, when not the one asked for). */
		readonly device?: DeviceStatus;
	};
	/** The KV cache the engine serves with, once configured (the llama engine: always `full`, 100 %, f16). */
	readonly kvCache?: KvCacheStatus;
}

/** What KV compression the next request runs with: the settings as applied, after any fallback. */
export interface KvCacheStatus {
	readonly policy: KvPolicy;
	readonly budgetPercent: number;
	readonly precision: KvPrecision;
	/** Absent: the policy's own split. */
	readonly split?: KvSplit;
	/** SpecKV's draft model file, when the policy is `speckv`. */
	readonly draft?: string;
	/**
	 * Set when the policy asked for could not be served (SpecKV without a compatible draft): what was asked, why not,
	 * and what to change. The cache is still compressed, with `policy`.
	 */
	readonly fallback?: { readonly requested: KvPolicy; readonly reason: string; readonly fixHint: string };
}

/** ⬅️ Pushed on every state change and at most every 250 ms during progress. */
export namespace StatusDidChangeNotification {
	export const method = 'repokv/status/didChange' as const;
	export const messageDirection: MessageDirection = MessageDirection.serverToClient;
	export const type = new ProtocolNotificationType<StatusParams, void>(method);
}

/** ↩️ The current status, for a client that (re)connects and wants it without waiting for a push. */
export namespace StatusRequest {
	export const method = 'repokv/status' as const;
	export const messageDirection: MessageDirection = MessageDirection.clientToServer;
	export const type = new ProtocolRequestType0<StatusParams, never, void, void>(method);
}

// ---------------------------------------------------------------------------------------------------------------
// repokv/repo/ask
// ---------------------------------------------------------------------------------------------------------------

/** Parameters of `repokv/repo/ask`. Pass a `partialResultToken` to receive the answer as it is generated. */
export interface AskParams extends WorkDoneProgressParams, PartialResultParams {
	/** The question, in natural language or as identifiers (`where is RETRY_LIMIT_MS defined?`). */
	readonly question: string;
	/** Most tokens to generate. Default: the `repokv.ask.maxTokens` setting. */
	readonly maxTokens?: number;
	/** The file the user is looking at (workspace-relative); its chunks get a small retrieval bonus. */
	readonly activeFile?: string;
}

/** A place in the workspace that an answer relies on. Every citation names a file in the mirror and a line it has. */
export interface Citation {
	/** Workspace-relative path. */
	readonly file: string;
	/** 1-based line of the cited text. */
	readonly line: number;
	/** 1-based last line of the cited chunk (inclusive); equals `line` for one line. */
	readonly endLine: number;
	/** The text of line `line`, trimmed, so a client can show it without reading the file. */
	readonly preview: string;
	/** Retrieval score (BM25); higher is more relevant. Comparable only within one answer. */
	readonly score: number;
}

/** The result of `repokv/repo/ask`. */
export interface AskResult {
	/** The generated answer. Empty when the model produced nothing useful; `citations` still hold. */
	readonly answer: string;
	/** Where the answer's evidence is, most relevant first: retrieved lines that match the question's terms. */
	readonly citations: readonly Citation[];
	/** How the context was built. */
	readonly context: {
		/** `whole`: the whole workspace fitted the context; `retrieved`: BM25 over chunks chose what went in. */
		readonly mode: 'whole' | 'retrieved';
		/** Prompt tokens. */
		readonly tokens: number;
		/** Workspace-relative paths in the context, in prompt order. */
		readonly files: readonly string[];
		/** Chunks considered by retrieval (0 in `whole` mode). */
		readonly chunksSearched: number;
	};
	/** `endOfGeneration`, `maxTokens`, `aborted` (cancelled), … as the engine reported. */
	readonly stopReason: string;
	readonly timings: { readonly retrieveMs: number; readonly prefillMs: number; readonly decodeMs: number; readonly totalMs: number };
}

/**
 * What `$/progress` carries for an ask's `partialResultToken`: the citations first (as soon as retrieval is done),
 * then the answer's text in pieces. Concatenating every `textDelta` gives `AskResult.answer`.
 */
export interface AskPartialResult {
	readonly textDelta?: string;
	readonly citations?: readonly Citation[];
}

/**
 * ↩️ Answer a question over the workspace. Streams through `$/progress` (partial results as above; work-done
 * progress with `retrieving`, `prefilling n/N`, `generating` messages when a `workDoneToken` is given). Cancellable
 * with `$/cancelRequest`: the answer so far is returned.
 */
export namespace RepoAskRequest {
	export const method = 'repokv/repo/ask' as const;
	export const messageDirection: MessageDirection = MessageDirection.clientToServer;
	export const type = new ProtocolRequestType<AskParams, AskResult, AskPartialResult, void, void>(method);
}

// ---------------------------------------------------------------------------------------------------------------
// repokv/cache/snapshot, repokv/cache/didChange — the cache inspector's data (docs/architecture.md)
// ---------------------------------------------------------------------------------------------------------------

/**
 * What the cache inspector counts per KV head: each storage tier (`storageTiers`, the engine's names), and
 * `dropped`: evicted, costs nothing and is not attended to (not a tier of the store: a dropped token is absent from
 * every segment of its head).
 */
export type KvTier = StorageTier | 'dropped';

/** All of them, in display order (most to least precise, then dropped). */
export const kvTiers: readonly KvTier[] = [...storageTiers, 'dropped'];

/** Tokens and bytes held in one tier. */
export interface TierAmount {
	/** Token positions stored in this tier. */
	readonly tokens: number;
	/** Bytes those positions take, keys and values, with the tier's metadata (scales, zero points, positions). */
	readonly bytes: number;
}

/** Amounts per tier; every tier is present (zeros where unused). */
export type TierAmounts = Readonly<Record<KvTier, TierAmount>>;

/** One KV head of one layer. */
export interface KvHeadStats {
	/** KV head index (0-based; grouped-query models have fewer KV heads than query heads). */
	readonly head: number;
	/** Positions stored for this head, dropped excluded. */
	readonly tokens: number;
	/** Bytes stored for this head. */
	readonly bytes: number;
	readonly tiers: TierAmounts;
}

/** One transformer layer's KV cache. */
export interface KvLayerStats {
	/** Layer index, 0-based. */
	readonly layer: number;
	/** Sum over heads. */
	readonly bytes: number;
	/** What this layer would take with every context position in fp16, for comparison. */
	readonly fp16Bytes: number;
	/** Sum over heads per tier. */
	readonly tiers: TierAmounts;
	/** Per KV head, `heads[h].head === h`. */
	readonly heads: readonly KvHeadStats[];
}

/** How the KV budget was allotted for the last request. */
export interface BudgetRule {
	/**
	 * Eviction/tiering policy: `full` (everything fp16), `window`, `h2o`, `snapkv`, `pyramidkv`, `speckv`
	 * (docs/kv-policies.md).
	 */
	readonly policy: string;
	/**
	 * `uniform` (same per layer), `pyramid` (more for lower layers), `adaptive` (per head): the split the engine used
	 * (the setting, or the policy's own); `none` under `full`.
	 */
	readonly allocation: 'none' | KvSplit;
	/** Storage of the picked tokens (`mixed`: 4-bit + 1.x-bit tiers); absent under `full`. */
	readonly precision?: KvPrecision;
	/** The budget in percent of the fp16 cache's bytes; absent under `full`. */
	readonly budgetPercent?: number;
	/** The one knob: KV bytes per context token across all layers and heads; absent under `full`. */
	readonly bytesPerToken?: number;
	/** Attention-sink positions kept in fp16. */
	readonly sinkTokens?: number;
	/** Most recent positions kept in fp16. */
	readonly recentWindow?: number;
	/** One human sentence, e.g. `full KV cache: every token in fp16 (engine llama)`. */
	readonly description: string;
}

/** One file's span of the context and how much of it was kept. */
export interface FileInContext {
	/** Workspace-relative path. */
	readonly path: string;
	/** `repo`: a whole file in the repository block; `active`: the active file's FIM prompt (prefix/suffix). */
	readonly role: 'repo' | 'active';
	/** First context position of the span (0-based, BOS included in the count), inclusive. */
	readonly startToken: number;
	/** Position after the span's last token (exclusive). */
	readonly endToken: number;
	/**
	 * Per tier, the span's (layer, KV head, position) cells in the KV cache attention read for the last request,
	 * divided by (layers × KV heads): the span's tokens kept in that tier, averaged over layers and KV heads (so the
	 * tiers sum to `endToken - startToken`; `dropped` is the rest). Measured per position by the native engine
	 * (snapshot source `engineStats`, every tier by its own name); for node-llama-cpp (source `modelShape`)
	 * everything is `f16`, as its full cache holds it. Under `full` everything is `f16`.
	 */
	readonly keptTokens: Readonly<Record<KvTier, number>>;
	/**
	 * Share of the span kept at 4 bits or better, (f16 + q8 + kivi4) / span tokens from `keptTokens`, 0…1: what the
	 * model could attend to precisely.
	 */
	readonly keptFraction: number;
}

/** Totals against an fp16 full cache of the same context. */
export interface CacheTotals {
	/** Positions in the context (prompt + generated). */
	readonly contextTokens: number;
	/** Real KV bytes held now. */
	readonly kvBytes: number;
	/** What an fp16 cache of `contextTokens` would take: 2 × layers × kvHeads × headDim × 2 bytes × tokens. */
	readonly fp16Bytes: number;
	/** Average stored bits per K/V element, metadata included (16 under `full` fp16). */
	readonly bitsPerElement: number;
	/** `fp16Bytes / kvBytes` (1 under `full`). */
	readonly compressionRatio: number;
	/**
	 * Native engine: everything it holds for this context, `kvBytes` plus the master copy the next request reuses
	 * (kept apart from a compressed store) and SpecKV's draft's own cache.
	 */
	readonly residentBytes?: number;
}

/** Where the last request's time went, in milliseconds. Steps an engine does not run are 0. */
export interface LatencySplit {
	readonly prefillMs: number;
	/** SpecKV draft lookahead. */
	readonly draftMs: number;
	/** SpecKV scoring pass and tiering. */
	readonly scoringMs: number;
	readonly decodeMs: number;
	readonly totalMs: number;
	/** Prompt tokens evaluated by this request's prefill. */
	readonly prefillTokens: number;
	/** Prompt tokens whose KV was reused from the previous request (a matching prefix). */
	readonly reusedTokens: number;
	/** Tokens generated. */
	readonly generatedTokens: number;
	/**
	 * Native engine under a KV policy: `kept` when the request kept the previous request's selection (only the end of
	 * the prompt changed, e.g. typing after the cursor), so it ran no draft, scoring or compaction; else `fresh`.
	 */
	readonly selection?: 'fresh' | 'kept';
}

/** Everything the cache inspector shows, for the last completed request. */
export interface CacheSnapshot {
	/** Increases with every snapshot, so a client can drop out-of-order pushes. */
	readonly sequence: number;
	/** ISO time the snapshot was taken. */
	readonly time: string;
	/** What the snapshot describes. */
	readonly request: 'completion' | 'ask';
	readonly engine: EngineSetting;
	/**
	 * `engineStats`: the engine's own per-layer/per-head accounting (native engine). `modelShape`: computed from
	 * the model's shape for a full fp16 cache (llama engine, whose KV is not inspectable).
	 */
	readonly source: 'engineStats' | 'modelShape';
	readonly model: {
		readonly path: string;
		readonly architecture: string;
		readonly layers: number;
		readonly kvHeads: number;
		readonly headDim: number;
		readonly contextSize: number;
	};
	readonly budget: BudgetRule;
	/** Per layer, `layers[l].layer === l`. */
	readonly layers: readonly KvLayerStats[];
	/** Files in context, in prompt order, with their token ranges. */
	readonly files: readonly FileInContext[];
	readonly totals: CacheTotals;
	readonly latency: LatencySplit;
}

/** Parameters of `repokv/cache/snapshot`. */
export interface CacheSnapshotParams {
	/** Leave out `layers[].heads` (per-layer totals only), for a compact view. Default `false`. */
	readonly summaryOnly?: boolean;
}

/** ↩️ The cache inspector's data for the last request, or `null` before the first one. */
export namespace CacheSnapshotRequest {
	export const method = 'repokv/cache/snapshot' as const;
	export const messageDirection: MessageDirection = MessageDirection.clientToServer;
	export const type = new ProtocolRequestType<CacheSnapshotParams, CacheSnapshot | null, never, void, void>(method);
}

/** ⬅️ The same data, pushed after each request, at most every 500 ms (the latest wins). */
export namespace CacheDidChangeNotification {
	export const method = 'repokv/cache/didChange' as const;
	export const messageDirection: MessageDirection = MessageDirection.serverToClient;
	export const type = new ProtocolNotificationType<CacheSnapshot, void>(method);
}

// ---------------------------------------------------------------------------------------------------------------
// Standard methods, as repokv uses them
// ---------------------------------------------------------------------------------------------------------------

// `textDocument/inlineCompletion` (LSP 3.18): the server answers with an `InlineCompletionList` of at most one item
// whose `insertText` is plain text inserted at the cursor (`range` empty at the position). `null`/empty items when
// the request was cancelled, superseded by a newer one, disabled, or the model produced nothing. The item's
// `command` is unused. Documents must be synced (`textDocument/didOpen`/`didChange`, full or incremental).

/** The `repokv` section of `workspace/configuration`. */
export const settingsSection = 'repokv';
