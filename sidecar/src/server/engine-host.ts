import { loadEngine } from '../engine';
import type { LoadedModel, TokenCounter } from '../engine/types';
import { errorMessage, UserError } from '../errors';
import type { ModelShape } from './cache-snapshot';
import { JobQueue } from './job-queue';
import { resolveModelPath } from './model-files';
import type { ResolvedSettings } from './settings';
import type { StatusReporter } from './status';

// Owns the loaded model: loads it for the current settings (downloading `hf:` models first), reloads when settings
// that matter change, and runs every engine job through one queue. A failed load is remembered, so requests fail
// fast with the same clear message (and the status says how to fix it) until the settings change; an engine that
// throws mid-request is disposed and reloaded on the next request.

export interface LoadedEngine {
	readonly model: LoadedModel;
	readonly shape: ModelShape;
	/** Counts tokens with a cache: the repository block's pieces are counted once per text. */
	readonly counter: TokenCounter;
	readonly settings: ResolvedSettings;
}

export class EngineHost {
	readonly queue = new JobQueue();
	private current: { key: string; promise: Promise<LoadedEngine> } | undefined;

	constructor(
		private readonly status: StatusReporter,
		private readonly log: (message: string) => void,
	) {}

	/** The engine for `settings`, loading or reloading it as needed. Rejects with a `UserError` when it cannot load. */
	get(settings: ResolvedSettings): Promise<LoadedEngine> {
		const key = JSON.stringify([settings.engine, settings.model.target, settings.threads, settings.contextSize]);
		if (this.current?.key !== key) {
			const previous = this.current?.promise;
			const promise = (async () => {
				await this.disposeQueued(previous);
				return this.load(settings);
			})();
			this.current = { key, promise };
			// Unhandled-rejection safety: callers see the error through their own await.
			promise.catch(() => undefined);
		}
		return this.current.promise;
	}

	/** Forget a model that failed mid-request; the next `get` loads it again. */
	async invalidate(reason: string): Promise<void> {
		const current = this.current;
		this.current = undefined;
		this.log(`engine reset: ${reason}`);
		await this.disposeQueued(current?.promise);
	}

	/** Dispose a model after the jobs already queued on it (an in-flight completion must not lose its model). */
	private async disposeQueued(engine: Promise<LoadedEngine> | undefined): Promise<void> {
		const loaded = await engine?.catch(() => undefined);
		if (loaded !== undefined) {
			await this.queue.run(() => loaded.model.dispose()).catch(() => undefined);
		}
	}

	async dispose(): Promise<void> {
		await this.invalidate('shutdown');
	}

	private async load(settings: ResolvedSettings): Promise<LoadedEngine> {
		try {
			this.status.set('loadingModel', `resolving model ${settings.model.target}`);
			const modelPath = await resolveModelPath(settings.model.target, {
				downloadFolder: settings.model.downloadFolder,
				timeoutMs: settings.model.downloadTimeoutMs,
				onProgress: (done, total) => { this.status.set('loadingModel', `downloading ${settings.model.target}`, { progress: { done, total, unit: 'bytes' } }); },
			});
			this.status.set('loadingModel', `loading ${modelPath} (engine ${settings.engine}, ${settings.threads} thread${settings.threads === 1 ? '' : 's'})`);
			// SpecKV's draft is a model file of its own (a path or an hf: URI, resolved the same way).
			const draftPath =
				settings.engine === 'native' && settings.kv.policy === 'speckv'
					? await resolveModelPath(settings.model.draft, { downloadFolder: settings.model.downloadFolder, timeoutMs: settings.model.downloadTimeoutMs })
					: undefined;
			const shape = await readShape(modelPath);
			const engine = await loadEngine(settings.engine);
			const model = await engine.loadModel({
				modelPath,
				threads: settings.threads,
				...(settings.contextSize === undefined ? {} : { contextSize: settings.contextSize }),
				// Only the native engine owns its KV cache; `full` needs no options at all.
				...(settings.engine === 'native' && settings.kv.policy !== 'full'
					? {
							kvCache: {
								policy: settings.kv.policy,
								budgetPercent: settings.kv.budgetPercent,
								...(settings.kv.split === undefined ? {} : { split: settings.kv.split }),
								...(settings.kv.precision === 'f16' ? {} : { precision: settings.kv.precision }),
								...(draftPath === undefined ? {} : { draftPath, draftLayout: settings.kv.draftLayout }),
							},
						}
					: {}),
				onLog: (level, message) => {
					if (level === 'error' || level === 'warn') {
						this.log(`[${settings.engine} ${level}] ${message}`);
					}
				},
			});
			this.status.annotate({ engine: { name: settings.engine, model: modelPath, contextSize: model.info.contextSize, threads: settings.threads } });
			return { model, shape, counter: new CachingCounter(model), settings };
		} catch (error) {
			const message = errorMessage(error);
			this.status.set('error', `cannot load the model: ${message}`, { fixHint: fixHintFor(message, settings) });
			throw error instanceof UserError ? error : new UserError(message);
		}
	}
}

/** Layers, KV heads and head size from the GGUF header (for full-KV byte accounting). */
async function readShape(modelPath: string): Promise<ModelShape> {
	const { readGgufFileInfo } = await import('node-llama-cpp');
	let info;
	try {
		info = await readGgufFileInfo(modelPath, { readTensorInfo: false });
	} catch (error) {
		throw new UserError(`model file ${modelPath} is not a valid GGUF file: ${errorMessage(error)}`);
	}
	const metadata = info.metadata as unknown as Record<string, unknown>;
	const general = metadata['general'] as { architecture?: string } | undefined;
	const arch = (metadata[general?.architecture ?? 'llama'] ?? {}) as Record<string, unknown>;
	const attention = (arch['attention'] ?? {}) as Record<string, unknown>;
	const num = (value: unknown, fallback: number): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback);
	const heads = num(attention['head_count'], 1);
	const embedding = num(arch['embedding_length'], 64);
	return {
		layers: num(arch['block_count'], 1),
		kvHeads: num(attention['head_count_kv'], heads),
		headDim: num(attention['key_length'], Math.round(embedding / heads)),
	};
}

function fixHintFor(message: string, settings: ResolvedSettings): string {
	if (/not found/i.test(message)) {
		return `set repokv.model.target to an existing GGUF file or an hf: URI (now: ${settings.model.target})`;
	}
	if (/offline|download/i.test(message)) {
		return 'connect to the network once, or download the model elsewhere and set repokv.model.target to its path';
	}
	if (/GGUF|load/i.test(message)) {
		return `the model file looks broken or unsupported; re-download it or choose another in repokv.model.target`;
	}
	if (/native/i.test(message)) {
		return 'set repokv.engine to "llama" to use node-llama-cpp instead of the native engine';
	}
	return 'see the repokv output channel for details';
}

/**
 * Token counts cached by text. The repository block is re-counted on every request; its pieces change rarely, so
 * after the first request counting costs a map lookup per file. Bounded: cleared when it grows past its limit.
 */
export class CachingCounter implements TokenCounter {
	private readonly counts = new Map<string, number>();

	constructor(
		private readonly inner: TokenCounter,
		private readonly limit = 20_000,
	) {}

	countTokens(text: string): number {
		// Short texts are cheaper to count than to keep.
		if (text.length < 64) {
			return this.inner.countTokens(text);
		}
		let count = this.counts.get(text);
		if (count === undefined) {
			count = this.inner.countTokens(text);
			if (this.counts.size >= this.limit) {
				this.counts.clear();
			}
			this.counts.set(text, count);
		}
		return count;
	}
}
