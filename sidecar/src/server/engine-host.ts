import { existsSync } from 'node:fs';
import * as path from 'node:path';

import { loadEngine } from '../engine';
import { describeDevice, probeCuda, resolveDevice } from '../engine/device';
import { chooseKvCache, describeFallback, describeKvCache, type DraftSource, type KvChoice } from '../engine/kv-choice';
import type { LoadedModel, TokenCounter } from '../engine/types';
import { errorMessage, UserError } from '../errors';
import type { KvCacheStatus } from '../protocol';
import type { ModelShape } from './cache-snapshot';
import { JobQueue } from './job-queue';
import { checkContextFits, effectiveContext } from './memory-check';
import { isRemoteModel, modelFileIdentity, resolveModelPath } from './model-files';
import { reloadNeeded, type ReloadNeeded, type ResolvedSettings } from './settings';
import type { StatusReporter } from './status';

// Owns the loaded model: loads it for the current settings (downloading `hf:` models first), applies settings
// changes at the cost `reloadNeeded` gives (the target is reloaded only when a model setting changed; a KV change
// reconfigures the native engine's next request, a SpecKV toggle loads or drops only the draft), and runs every
// engine job through one queue. A failed load is remembered, so requests fail fast with the same clear message (and
// the status says how to fix it) until the settings change; an engine that throws mid-request is disposed and
// reloaded on the next request. SpecKV without a compatible draft falls back to a draft-free policy (kv-choice.ts):
// said once in the log, and in the status for as long as it lasts.

export interface LoadedEngine {
	readonly model: LoadedModel;
	readonly shape: ModelShape;
	/** Counts tokens with a cache: the repository block's pieces are counted once per text. */
	readonly counter: TokenCounter;
	readonly settings: ResolvedSettings;
	/** The KV cache the native engine serves with, after any fallback; `undefined` for the llama engine (full). */
	readonly kv: KvCacheStatus | undefined;
}

export class EngineHost {
	readonly queue = new JobQueue();
	private current: { settings: ResolvedSettings; promise: Promise<LoadedEngine> } | undefined;

	constructor(
		private readonly status: StatusReporter,
		private readonly log: (message: string) => void,
	) {}

	/** The engine for `settings`, loading, reloading or reconfiguring it as needed. Rejects with a `UserError` when it cannot load. */
	get(settings: ResolvedSettings): Promise<LoadedEngine> {
		const current = this.current;
		// The model file replaced, rewritten or deleted since it was loaded (or since it failed to): load it again,
		// so a vanished file is a clear error now and a restored one serves the next request (model-files.ts).
		const fileChanged = this.modelFile !== undefined && modelFileIdentity(this.modelFile.path) !== this.modelFile.identity;
		if (fileChanged) {
			this.log(`model file ${this.modelFile?.path ?? ''} changed on disk; reloading it`);
			this.modelFile = undefined;
		}
		// SpecKV's draft file the same way: loaded again (or, vanished, the draft-free fallback), the target kept.
		const draftChanged = !fileChanged && this.draftFile !== undefined && modelFileIdentity(this.draftFile.path) !== this.draftFile.identity;
		if (draftChanged) {
			this.log(`SpecKV's draft ${this.draftFile?.path ?? ''} changed on disk; loading it again`);
			this.draftFile = undefined;
		}
		if (current?.settings === settings && !fileChanged && !draftChanged) {
			return current.promise;
		}
		// A load that failed is tried again on any settings change (a new download folder may be what fixes it).
		let change = current === undefined || fileChanged || this.failed === current.promise ? 'model' : reloadNeeded(current.settings, settings);
		if (draftChanged && (change === 'none' || change === 'kv')) {
			change = 'draft';
		}
		let promise: Promise<LoadedEngine>;
		if (current === undefined || change === 'model') {
			const previous = current?.promise;
			promise = (async () => {
				await this.disposeQueued(previous);
				return this.load(settings);
			})();
		} else if (change === 'none') {
			promise = current.promise.then((loaded) => ({ ...loaded, settings }));
		} else {
			// Queued: a request already waiting for the engine runs with the settings it was made under.
			promise = current.promise.then(async (loaded) => (await this.queue.run(() => this.reconfigure(loaded, settings, change))) ?? loaded);
		}
		this.current = { settings, promise };
		// Unhandled-rejection safety: callers see the error through their own await.
		promise.catch(() => {
			this.failed = promise;
		});
		return promise;
	}

	/** The engine promise that last rejected. */
	private failed: Promise<LoadedEngine> | undefined;

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

	/** The local model file the engine was loaded from, and its identity then (`modelFileIdentity`). */
	private modelFile: { path: string; identity: string | undefined } | undefined;
	/** SpecKV's local draft file (the one serving, or the one the setting names that could not), and its identity then. */
	private draftFile: { path: string; identity: string | undefined } | undefined;

	private async load(settings: ResolvedSettings): Promise<LoadedEngine> {
		const localPath = isRemoteModel(settings.model.target) ? undefined : path.resolve(settings.model.target);
		this.modelFile = localPath === undefined ? undefined : { path: localPath, identity: modelFileIdentity(localPath) };
		try {
			this.status.set('loadingModel', `resolving model ${settings.model.target}`);
			const modelPath = await resolveModelPath(settings.model.target, {
				downloadFolder: settings.model.downloadFolder,
				timeoutMs: settings.model.downloadTimeoutMs,
				onProgress: (done, total) => { this.status.set('loadingModel', `downloading ${settings.model.target}`, { progress: { done, total, unit: 'bytes' } }); },
			});
			this.status.set('loadingModel', `loading ${modelPath} (engine ${settings.engine}, ${settings.threads} thread${settings.threads === 1 ? '' : 's'})`);
			const shape = await readShape(modelPath);
			// Weights + KV for the context must fit in memory: a clear error with the largest context that does,
			// never an OOM kill (memory-check.ts). SpecKV's draft counts too.
			const draft = settings.engine === 'native' && settings.kv.policy === 'speckv' ? settings.model.draft : undefined;
			checkContextFits({
				modelFiles: draft !== undefined && !isRemoteModel(draft) && existsSync(draft) ? [modelPath, draft] : [modelPath],
				shape,
				contextTokens: await effectiveContext(modelPath, settings.contextSize),
			});
			const engine = await loadEngine(settings.engine);
			// The KV options are applied after the load, as any later change is (a draft that fails to load then
			// falls back instead of failing the target's load).
			const model = await engine.loadModel({
				modelPath,
				threads: settings.threads,
				...(settings.contextSize === undefined ? {} : { contextSize: settings.contextSize }),
				onLog: (level, message) => {
					if (level === 'error' || level === 'warn') {
						this.log(`[${settings.engine} ${level}] ${message}`);
					}
				},
			});
			// the device the native engine runs on; when not the one asked for, said once in the log (docs/gpu.md)
			const device = settings.engine === 'native' ? resolveDevice(settings.device, probeCuda()) : undefined;
			if (device?.reason !== undefined) {
				this.log(`repokv: ${describeDevice(device)}`);
			}
			this.status.annotate({ engine: { name: settings.engine, model: modelPath, contextSize: model.info.contextSize, threads: settings.threads, ...(device === undefined ? {} : { device }) } });
			const loaded: LoadedEngine = { model, shape, counter: new CachingCounter(model), settings, kv: undefined };
			return await this.configureKv(loaded, settings);
		} catch (error) {
			const message = errorMessage(error);
			this.status.set('error', `cannot load the model: ${message}`, { fixHint: fixHintFor(message, settings) });
			throw error instanceof UserError ? error : new UserError(message);
		}
	}

	/** A settings change that keeps the target: the native engine's KV options, and SpecKV's draft when `draft`. */
	private async reconfigure(loaded: LoadedEngine, settings: ResolvedSettings, change: Exclude<ReloadNeeded, 'none' | 'model'>): Promise<LoadedEngine> {
		if (change === 'draft' && settings.kv.policy === 'speckv') {
			this.status.set('loadingModel', `loading SpecKV's draft ${settings.model.draft ?? '(automatic)'} (the target stays loaded)`);
		}
		try {
			const configured = await this.configureKv(loaded, settings);
			if (this.status.state === 'loadingModel') {
				this.status.set('ready', 'ready');
			}
			return configured;
		} catch (error) {
			const message = errorMessage(error);
			this.status.set('error', `cannot apply the KV settings: ${message}`, { fixHint: fixHintFor(message, settings) });
			throw error instanceof UserError ? error : new UserError(message);
		}
	}

	/**
	 * Applies `settings.kv` to a native engine (the llama engine keeps the full cache): SpecKV only with a draft
	 * that pairs with the target, and a draft that fails to load gives way to the fallback policy as well.
	 */
	private async configureKv(loaded: LoadedEngine, settings: ResolvedSettings): Promise<LoadedEngine> {
		const { model } = loaded;
		if (settings.engine !== 'native' || model.configureKv === undefined) {
			this.status.annotate({ kvCache: fullCache });
			return { ...loaded, settings, kv: undefined };
		}
		const source = await this.draftSource(settings);
		let choice = await chooseKvCache(model.info.path, settings.kv, source, 'repokv.model.draft');
		// Watched even when it cannot serve (missing, or of another vocabulary): a draft put right is picked up too.
		const configured = settings.kv.policy === 'speckv' && settings.model.draft !== undefined && !isRemoteModel(settings.model.draft) ? path.resolve(settings.model.draft) : undefined;
		const draftPath = choice.status.draft ?? ('path' in source ? source.path : configured);
		this.draftFile = draftPath === undefined ? undefined : { path: draftPath, identity: modelFileIdentity(draftPath) };
		try {
			await model.configureKv(choice.kvCache);
		} catch (error) {
			if (choice.kvCache?.policy !== 'speckv') {
				throw error;
			}
			choice = await chooseKvCache(model.info.path, settings.kv, { unavailable: errorMessage(error) }, 'repokv.model.draft');
			await model.configureKv(choice.kvCache);
		}
		this.report(choice);
		return { ...loaded, settings, kv: choice.status };
	}

	/** SpecKV's draft as a local file (downloading an `hf:` draft), automatic without a setting, or why there is none. */
	private async draftSource(settings: ResolvedSettings): Promise<DraftSource> {
		if (settings.kv.policy !== 'speckv') {
			return { unavailable: 'SpecKV is not the policy' };
		}
		if (settings.model.draft === undefined) {
			return { automatic: settings.model.downloadFolder === undefined ? {} : { downloadFolder: settings.model.downloadFolder } };
		}
		try {
			return { path: await resolveModelPath(settings.model.draft, { downloadFolder: settings.model.downloadFolder, timeoutMs: settings.model.downloadTimeoutMs }) };
		} catch (error) {
			return { unavailable: `the draft model cannot be used: ${errorMessage(error)}` };
		}
	}

	/** Once per configuration: the log line, and the KV cache in the status (with the fallback, while it lasts). */
	private report(choice: KvChoice): void {
		const fallback = describeFallback(choice.status);
		this.log(fallback ?? `kv cache: ${describeKvCache(choice.status)}${choice.status.draft === undefined ? '' : ` (draft ${choice.status.draft})`}`);
		this.status.annotate({ kvCache: choice.status });
	}
}

/** What the status says of an engine that never compresses (the llama reference). */
const fullCache: KvCacheStatus = { policy: 'full', budgetPercent: 100, precision: 'f16' };

/** The status line while `kv` serves: `ready`, or what the fallback costs and how to fix it. */
export function readyStatus(kv: KvCacheStatus | undefined): { message: string; fixHint?: string } {
	const fallback = kv?.fallback;
	if (kv === undefined || fallback === undefined) {
		return { message: 'ready' };
	}
	return { message: `ready; SpecKV is off (${fallback.reason}), serving ${describeKvCache(kv)}`, fixHint: fallback.fixHint };
}

/** Layers, KV heads and head size from the GGUF header (for full-KV byte accounting). */
export async function readShape(modelPath: string): Promise<ModelShape> {
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
	if (/disk is full/i.test(message)) {
		return 'free disk space, or set repokv.model.downloadFolder to a folder on a disk with room for the model';
	}
	const fits = /largest context that fits is about (\d+) tokens/.exec(message);
	if (fits !== null) {
		return `set repokv.contextSize to ${fits[1]} or less, or close other programs to free memory`;
	}
	if (/not enough memory/i.test(message)) {
		return 'close other programs, or choose a smaller model in repokv.model.target';
	}
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
 * after the first request counting costs a map lookup per file. Bounded by entries and by characters, least recently
 * used first out: the repository's pieces, counted on every request, stay; the prefixes and suffixes of one keystroke
 * (never asked again) go. Each key is a copy: a text sliced from a document (the builder's prefix, suffix and
 * cut-search probes are) would keep the whole document alive, one version per keystroke (a 1 MiB file held 1 MiB
 * per completion, up to 20,000 of them).
 */
export class CachingCounter implements TokenCounter {
	/** Least recently used first; the value keeps the copied key, so that a hit re-inserts the copy, not the slice. */
	private readonly counts = new Map<string, { readonly key: string; readonly count: number }>();
	private chars = 0;

	constructor(
		private readonly inner: TokenCounter,
		private readonly limit = 20_000,
		private readonly maxChars = 32 * 1024 * 1024,
	) {}

	/** Characters of the texts cached now. */
	get cachedChars(): number {
		return this.chars;
	}

	get size(): number {
		return this.counts.size;
	}

	countTokens(text: string): number {
		// Short texts are cheaper to count than to keep; one over a quarter of the bound would evict too much.
		if (text.length < 64 || text.length > this.maxChars / 4) {
			return this.inner.countTokens(text);
		}
		const hit = this.counts.get(text);
		if (hit !== undefined) {
			this.counts.delete(text);
			this.counts.set(hit.key, hit);
			return hit.count;
		}
		const count = this.inner.countTokens(text);
		const key = flatCopy(text);
		this.counts.set(key, { key, count });
		this.chars += key.length;
		for (const [oldest] of this.counts) {
			if (this.counts.size <= this.limit && this.chars <= this.maxChars) {
				break;
			}
			this.counts.delete(oldest);
			this.chars -= oldest.length;
		}
		return count;
	}
}

/** A string with the same characters that shares no storage with `text` (V8 keeps a slice's parent alive). */
function flatCopy(text: string): string {
	// Latin-1 when every code unit fits (V8's one-byte strings), else UTF-16 code units: both round-trip exactly.
	return /[\u0100-\uffff]/.test(text) ? Buffer.from(text, 'utf16le').toString('utf16le') : Buffer.from(text, 'latin1').toString('latin1');
}
