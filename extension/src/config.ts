import * as vscode from 'vscode';
import {
	defaultCompletionSettings,
	defaultDevice,
	defaultEngine,
	defaultKvSettings,
	deviceSettings,
	draftLayouts,
	engineSettings,
	kvBudgetPercentRange,
	kvMasterPrecisions,
	kvPolicies,
	kvPrecisions,
	kvSplits,
	type DeviceSetting,
	type DraftLayout,
	type EngineSetting,
	type KvMasterPrecision,
	type KvPolicy,
	type KvPrecision,
	type KvSplit,
	settingsSection,
	type RepokvSettings,
} from '../../sidecar/src/protocol';

// The one typed reader of repokv's settings (package.json `contributes.configuration`). Every value goes through
// a sanitiser, so a hand-edited settings.json with a wrong type falls back to the default instead of reaching the
// sidecar (vscode-eslint's `sanitize`, rust-analyzer's `config.ts`).

/** How ghost text is requested: as the user types, or only on Alt+\ (`repokv.triggerCompletion`). */
export type TriggerMode = 'automatic' | 'manual';

export interface Config {
	readonly completion: {
		readonly enabled: boolean;
		readonly trigger: TriggerMode;
		/** Language ids that never get ghost text (`plaintext`, `markdown`, …). */
		readonly disabledLanguages: readonly string[];
		readonly maxTokens: number;
	};
	readonly engine: EngineSetting;
	/** Where the native engine runs (`repokv.device`). */
	readonly device: DeviceSetting;
	readonly model: { readonly target: string; readonly draft: string };
	/** The native engine's KV compression (the sidecar applies it from the next request, reloading no model). */
	readonly kv: {
		readonly policy: KvPolicy;
		readonly budgetPercent: number;
		/** `default`: the policy's own split. */
		readonly split: KvSplit | 'default';
		readonly precision: KvPrecision;
		readonly draftLayout: DraftLayout;
		readonly masterPrecision: KvMasterPrecision;
	};
	/** 0 = the sidecar's default (cores less one). */
	readonly threads: number;
	/** 0 = the model's trained context. */
	readonly contextSize: number;
	readonly workspace: {
		readonly maxFileKB: number;
		/** How much of the workspace the sidecar keeps (its `limits.maxTotalBytes`), in MiB; the feed stops there. */
		readonly maxTotalMB: number;
		/** Extra globs, on top of `files.exclude`, `.gitignore` and `.repokvignore`. */
		readonly exclude: readonly string[];
	};
}

function bool(value: unknown, fallback: boolean): boolean {
	return typeof value === 'boolean' ? value : fallback;
}

function int(value: unknown, fallback: number, min: number, max: number): number {
	return typeof value === 'number' && Number.isFinite(value) ? Math.min(max, Math.max(min, Math.round(value))) : fallback;
}

function str(value: unknown, fallback: string): string {
	return typeof value === 'string' ? value.trim() : fallback;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
	return allowed.find((candidate) => candidate === value) ?? fallback;
}

function strings(value: unknown): readonly string[] {
	return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string' && item.trim() !== '') : [];
}

/** Reads the current settings (of the first workspace folder's scope). */
export function readConfig(scope?: vscode.ConfigurationScope): Config {
	const c = vscode.workspace.getConfiguration(settingsSection, scope);
	return {
		completion: {
			enabled: bool(c.get('completion.enabled'), true),
			trigger: oneOf(c.get('completion.trigger'), ['automatic', 'manual'] as const, 'automatic'),
			disabledLanguages: strings(c.get('completion.disabledLanguages')),
			maxTokens: int(c.get('completion.maxTokens'), defaultCompletionSettings.maxTokens, 1, 512),
		},
		engine: oneOf(c.get('engine'), engineSettings, defaultEngine),
		device: oneOf(c.get('device'), deviceSettings, defaultDevice),
		model: { target: str(c.get('model.target'), ''), draft: str(c.get('model.draft'), '') },
		kv: {
			policy: oneOf(c.get('kv.policy'), kvPolicies, defaultKvSettings.policy),
			budgetPercent: int(c.get('kv.budgetPercent'), defaultKvSettings.budgetPercent, kvBudgetPercentRange.min, kvBudgetPercentRange.max),
			split: oneOf(c.get('kv.split'), [...kvSplits, 'default'] as const, 'default'),
			precision: oneOf(c.get('kv.precision'), kvPrecisions, defaultKvSettings.precision),
			draftLayout: oneOf(c.get('kv.draftLayout'), draftLayouts, defaultKvSettings.draftLayout),
			masterPrecision: oneOf(c.get('kv.masterPrecision'), kvMasterPrecisions, defaultKvSettings.masterPrecision),
		},
		threads: int(c.get('threads'), 0, 0, 256),
		contextSize: int(c.get('contextSize'), 0, 0, 1 << 20),
		workspace: {
			maxFileKB: int(c.get('workspace.maxFileKB'), 1024, 1, 64 * 1024),
			maxTotalMB: int(c.get('workspace.maxTotalMB'), 16, 1, 2048),
			exclude: strings(c.get('workspace.exclude')),
		},
	};
}

/** What the sidecar gets for `workspace/configuration` section `repokv` (protocol.ts `RepokvSettings`). */
export function toServerSettings(config: Config): RepokvSettings {
	const model: { target?: string; draft?: string } = {};
	if (config.model.target !== '') model.target = config.model.target;
	if (config.model.draft !== '') model.draft = config.model.draft;
	return {
		engine: config.engine,
		device: config.device,
		model,
		...(config.threads > 0 ? { threads: config.threads } : {}),
		...(config.contextSize > 0 ? { contextSize: config.contextSize } : {}),
		kv: {
			policy: config.kv.policy,
			budgetPercent: config.kv.budgetPercent,
			...(config.kv.split === 'default' ? {} : { split: config.kv.split }),
			precision: config.kv.precision,
			draftLayout: config.kv.draftLayout,
			masterPrecision: config.kv.masterPrecision,
		},
		completion: { enabled: config.completion.enabled, maxTokens: config.completion.maxTokens },
		limits: { maxFileBytes: config.workspace.maxFileKB * 1024, maxTotalBytes: config.workspace.maxTotalMB * 1024 * 1024 },
	};
}

/** Whether ghost text may be requested for this document and trigger (the inline-completion middleware's gate). */
export function completionAllowed(config: Config, languageId: string, explicit: boolean): boolean {
	if (!config.completion.enabled) return false;
	if (config.completion.disabledLanguages.includes(languageId)) return false;
	return explicit || config.completion.trigger === 'automatic';
}
