import type { Llama, LlamaContext, LlamaModel } from 'node-llama-cpp';

// The one place that sets up node-llama-cpp: for the llama engine (llama.ts), the native engine's tokenizer
// (native-engine.ts), SpecKV's draft (native-draft.ts) and the benchmarks.
//
// Threads are always passed, to `getLlama` (maxThreads) and to every context (ideal = min = threads), never left to
// node-llama-cpp: its default thread pool is max(cores, 4), so on a 2-core machine four ggml workers spin for two
// cores and fight each other, and decoding gets about 400 times slower (docs/platform-notes.md).

/**
 * node-llama-cpp is loaded on first use, not at start-up: it is large, loads native code, and most CLI paths
 * (`--help`, argument errors, the unit tests importing the sidecar bundle) never need it.
 */
export async function importNodeLlamaCpp(): Promise<typeof import('node-llama-cpp')> {
	return import('node-llama-cpp');
}

export type LlamaLogLevelName = 'error' | 'warn' | 'info';

export interface LlamaSetup {
	/** CPU threads: the cap of every context's thread pool (see above: always explicit). */
	readonly threads: number;
	/** The least severe llama.cpp messages passed on. */
	readonly logLevel: LlamaLogLevelName;
	/** Where llama.cpp's messages go (trimmed, empty ones dropped); without it, node-llama-cpp prints them. */
	readonly onLog?: (level: string, text: string) => void;
}

/** A node-llama-cpp backend instance (each one loads the shared libraries again: callers keep theirs). */
export async function getLlamaFor(setup: LlamaSetup): Promise<Llama> {
	const { getLlama, LlamaLogLevel } = await importNodeLlamaCpp();
	const { onLog } = setup;
	return getLlama({
		maxThreads: setup.threads,
		// Never try to compile llama.cpp or download anything: the prebuilt binaries are the contract, and this must
		// work offline.
		build: 'never',
		skipDownload: true,
		progressLogs: false,
		logLevel: LlamaLogLevel[setup.logLevel],
		...(onLog === undefined
			? {}
			: {
					logger: (level: string, message: string) => {
						const text = message.trimEnd();
						if (text !== '') {
							onLog(level, text);
						}
					},
				}),
	});
}

/** A model's tokenizer alone (vocabulary only: no weights, no context). */
export async function loadVocabOnly(modelPath: string, setup: LlamaSetup): Promise<LlamaModel> {
	const llama = await getLlamaFor(setup);
	return llama.loadModel({ modelPath, vocabOnly: true });
}

/** llama.cpp's K/V cache element types that repokv uses: F16 (its default), Q8_0, Q4_0. */
export type LlamaKvType = 'F16' | 'Q8_0' | 'Q4_0';

export interface LlamaContextOptions {
	readonly contextSize: number;
	readonly threads: number;
	readonly flashAttention: boolean;
	/** K and V element type (default F16); quantized V needs flash attention in llama.cpp. */
	readonly kvType?: LlamaKvType;
	/** Tokens per batch; default min(512, contextSize). */
	readonly batchSize?: number;
}

/** One context with one sequence. */
export async function createLlamaContext(model: LlamaModel, options: LlamaContextOptions): Promise<LlamaContext> {
	const kvType = options.kvType ?? 'F16';
	return model.createContext({
		contextSize: options.contextSize,
		// Explicit on both ends: `ideal` is what we want, `min` makes it a reservation rather than a hint.
		threads: { ideal: options.threads, min: options.threads },
		sequences: 1,
		batchSize: options.batchSize ?? Math.min(512, options.contextSize),
		flashAttention: options.flashAttention,
		// node-llama-cpp marks the K/V type options experimental: they are set only on models and types that the
		// benchmarks and the draft's tests measure.
		// eslint-disable-next-line @typescript-eslint/no-deprecated
		...(kvType === 'F16' ? {} : { experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType }),
	});
}
