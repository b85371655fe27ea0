import { availableParallelism } from 'node:os';

import { resolveKvSettings, type ResolvedKvSettings } from '../engine/kv-choice';
import { defaultAskSettings, defaultCompletionSettings, defaultDevice, defaultEngine, defaultKvSettings, deviceSettings, draftLayouts, engineSettings, kvBudgetPercentRange, kvMasterPrecisions, kvPolicies, kvPrecisions, kvSplits, type DeviceSetting, type EngineSetting } from '../protocol';
import { bundledModelPath } from '../models/bundled';
import { defaultMirrorLimits, type MirrorLimits } from './mirror';

// Settings as the server uses them: every field present and valid. Whatever the client answers for
// `workspace/configuration` (or puts in `initializationOptions`) goes through `resolveSettings`, so a wrong type or
// an out-of-range number falls back to its default instead of reaching the engine.

export interface ResolvedSettings {
	readonly engine: EngineSetting;
	/** Native engine: where it runs (engine/device.ts resolves it against the machine). */
	readonly device: DeviceSetting;
	readonly model: {
		readonly target: string;
		/** `undefined`: automatic (the bundled draft when it pairs with the target, else a local GGUF that does). */
		readonly draft: string | undefined;
		readonly downloadFolder: string | undefined;
		readonly downloadTimeoutMs: number;
	};
	readonly threads: number;
	readonly contextSize: number | undefined;
	readonly kv: ResolvedKvSettings;
	readonly completion: {
		readonly enabled: boolean;
		readonly maxTokens: number;
		readonly debounceMinMs: number;
		readonly debounceMaxMs: number;
		readonly timeoutMs: number;
		readonly cacheSize: number;
		readonly prewarm: boolean;
	};
	readonly ask: { readonly maxTokens: number; readonly maxChunks: number };
	readonly limits: MirrorLimits;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[]): T | undefined {
	return allowed.find((candidate) => candidate === value);
}

/**
 * Threads default to the cores less one (the editor needs one), at least 1. On 2 cores that is 1, which is also
 * where ggml decodes fastest (docs/platform-notes.md, "Contention").
 */
export function defaultServerThreads(): number {
	return Math.max(1, availableParallelism() - 1);
}

/** Sanitise raw settings (the protocol's `RepokvSettings`, or anything a client sent) into resolved ones. */
export function resolveSettings(raw: unknown): ResolvedSettings {
	const root = asRecord(raw);
	const model = asRecord(root['model']);
	const completion = asRecord(root['completion']);
	const ask = asRecord(root['ask']);
	const limits = asRecord(root['limits']);
	const kv = asRecord(root['kv']);
	const debounceMinMs = int(completion['debounceMinMs'], 25, 0, 5000);
	return {
		engine: oneOf(root['engine'], engineSettings) ?? defaultEngine,
		device: oneOf(root['device'], deviceSettings) ?? defaultDevice,
		model: {
			target: str(model['target']) ?? bundledModelPath('target'),
			draft: str(model['draft']),
			downloadFolder: str(model['downloadFolder']),
			downloadTimeoutMs: int(model['downloadTimeoutSeconds'], 600, 1, 86_400) * 1000,
		},
		threads: int(root['threads'], defaultServerThreads(), 1, 256),
		contextSize: root['contextSize'] === undefined || root['contextSize'] === null ? undefined : int(root['contextSize'], 4096, 64, 1 << 20),
		kv: resolveKvSettings({
			policy: oneOf(kv['policy'], kvPolicies),
			budgetPercent: int(kv['budgetPercent'], defaultKvSettings.budgetPercent, kvBudgetPercentRange.min, kvBudgetPercentRange.max),
			split: oneOf(kv['split'], kvSplits),
			precision: oneOf(kv['precision'], kvPrecisions),
			draftLayout: oneOf(kv['draftLayout'], draftLayouts),
			masterPrecision: oneOf(kv['masterPrecision'], kvMasterPrecisions),
		}),
		completion: {
			enabled: typeof completion['enabled'] === 'boolean' ? completion['enabled'] : true,
			maxTokens: int(completion['maxTokens'], defaultCompletionSettings.maxTokens, 1, 1024),
			debounceMinMs,
			debounceMaxMs: Math.max(debounceMinMs, int(completion['debounceMaxMs'], 300, 0, 10_000)),
			timeoutMs: int(completion['timeoutMs'], 10_000, 100, 600_000),
			cacheSize: int(completion['cacheSize'], 64, 0, 10_000),
			prewarm: typeof completion['prewarm'] === 'boolean' ? completion['prewarm'] : true,
		},
		ask: { maxTokens: int(ask['maxTokens'], defaultAskSettings.maxTokens, 1, 2048), maxChunks: int(ask['maxChunks'], defaultAskSettings.maxChunks, 1, 1000) },
		limits: {
			maxFileBytes: int(limits['maxFileBytes'], defaultMirrorLimits.maxFileBytes, 1, 1 << 30),
			maxTotalBytes: int(limits['maxTotalBytes'], defaultMirrorLimits.maxTotalBytes, 1, 1 << 31),
			maxFiles: int(limits['maxFiles'], defaultMirrorLimits.maxFiles, 1, 10_000_000),
		},
	};
}

/**
 * What a settings change from `a` to `b` costs, the one place that decides it (the engine host acts on it):
 * - `model`: reload the target (engine, target file, threads, context size changed);
 * - `draft`: load, swap or drop SpecKV's draft and re-check its pairing (the draft file, or whether the native
 *   engine runs SpecKV, changed); the target stays loaded;
 * - `kv`: the next request compresses with other options (budget, split, precision, policy between draft-free ones,
 *   draft layout, master precision: the master copy is then prefilled afresh); nothing is loaded;
 * - `none`: no engine setting changed (completion, ask, limits are read per request).
 */
export type ReloadNeeded = 'none' | 'kv' | 'draft' | 'model';

export function reloadNeeded(a: ResolvedSettings, b: ResolvedSettings): ReloadNeeded {
	if (a.engine !== b.engine || a.model.target !== b.model.target || a.threads !== b.threads || a.contextSize !== b.contextSize) {
		return 'model';
	}
	// The llama engine keeps the full cache and runs no draft: KV settings do not reach it.
	if (b.engine !== 'native') {
		return 'none';
	}
	// the native engine's weights and cache live on its device
	if (a.device !== b.device) {
		return 'model';
	}
	const speckvA = a.kv.policy === 'speckv';
	const speckvB = b.kv.policy === 'speckv';
	if (speckvA !== speckvB || (speckvB && a.model.draft !== b.model.draft)) {
		return 'draft';
	}
	const kvA = a.kv;
	const kvB = b.kv;
	if (kvA.policy !== kvB.policy || kvA.budgetPercent !== kvB.budgetPercent || kvA.split !== kvB.split || kvA.precision !== kvB.precision || kvA.draftLayout !== kvB.draftLayout || kvA.masterPrecision !== kvB.masterPrecision) {
		return 'kv';
	}
	return 'none';
}

function asRecord(value: unknown): Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function str(value: unknown): string | undefined {
	return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

function int(value: unknown, fallback: number, min: number, max: number): number {
	return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max ? value : fallback;
}
