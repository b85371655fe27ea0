import * as path from 'node:path';

import { availableEngines, isEngineName } from '../engine';
import { describeDevice, probeCuda, resolveDevice } from '../engine/device';
import { chooseKvCache, describeFallback, ranksTokens, resolveKvSettings, type KvChoice, type ResolvedKvSettings } from '../engine/kv-choice';
import type { EngineName, KvCacheOptions } from '../engine/types';
import { UserError } from '../errors';
import { defaultDevice, defaultEngine, defaultKvSettings, deviceSettings, kvBudgetPercentRange, kvMasterPrecisions, kvPolicies, kvPrecisions, kvSplits, type DeviceSetting, type DeviceStatus, type KvCacheStatus } from '../protocol';
import { draftLayoutOption, integerOption, oneOfOption } from './args';

// The engine and KV cache options that `repokv complete` and `repokv ask` share: their `parseArgs` specs, their help
// text, their validation (the CLI's one boundary: the engine trusts what passes here), and SpecKV's fallback when the
// draft cannot pair with the target, reported once on stderr.

/** `parseArgs` option specs. */
export const engineOptionSpecs = {
	engine: { type: 'string' },
	device: { type: 'string' },
	policy: { type: 'string' },
	budget: { type: 'string' },
	'budget-tokens': { type: 'string' },
	split: { type: 'string' },
	precision: { type: 'string' },
	draft: { type: 'string' },
	'draft-layout': { type: 'string' },
	'master-precision': { type: 'string' },
} as const;

type EngineOptionValues = { readonly [K in keyof typeof engineOptionSpecs]?: string | undefined };

/** The help lines for the options above. */
export function engineOptionsUsage(): string {
	const d = defaultKvSettings;
	return `  --engine NAME       inference engine: ${availableEngines().join(', ')} (default ${defaultEngine}: the compressed KV cache;
                      llama: node-llama-cpp with a full cache, the reference)
  --device NAME       where the native engine runs: ${deviceSettings.join(', ')} (default ${defaultDevice}; the CUDA path is not
                      built yet, so every choice runs on the CPU and cuda says so on stderr: docs/gpu.md)
  --policy NAME       KV cache policy (native engine): ${kvPolicies.join(', ')} (default ${d.policy};
                      without a draft that pairs with the model, ${d.fallbackPolicy}, and a warning on stderr)
  --budget PCT        KV budget in percent of the fp16 cache's bytes (default ${d.budgetPercent}); or --budget-tokens N per head
  --split NAME        budget split over layers/heads: ${kvSplits.join(', ')} (default per policy)
  --precision NAME    storage of the picked tokens: ${kvPrecisions.join(', ')} (mixed: 4-bit + 1.x-bit);
                      the budget then buys bytes (default ${d.precision}; full and window store f16)
  --draft PATH        SpecKV's draft model, with the model's vocabulary (default: the bundled models/draft.gguf when
                      it pairs, else the smallest GGUF with the model's vocabulary next to it or in the models folder)
  --draft-layout NAME how the draft reads a FIM prompt: prefix-last (the active file's text before the cursor,
                      last; default) or fim (the target's prompt as it is)
  --master-precision NAME  with a packed precision, the format the prompt's master copy is staged in while it is
                      prefilled: ${kvMasterPrecisions.join(', ')} (default ${d.masterPrecision})`;
}

/** The engine and KV settings the options ask for, validated. */
export interface EngineOptions {
	readonly engine: EngineName;
	/** Native engine only: the device asked for (`prepareDevice` resolves it). */
	readonly device: DeviceSetting;
	/** Native engine only. */
	readonly kv: ResolvedKvSettings;
	readonly budgetTokens: number | undefined;
	/** `undefined`: automatic (the bundled draft when it pairs with the model, else a local GGUF that does). */
	readonly draftPath: string | undefined;
}

export function parseEngineOptions(values: EngineOptionValues): EngineOptions {
	const engine = values.engine ?? defaultEngine;
	if (!isEngineName(engine)) {
		throw new UserError(`unknown engine '${engine}'; available: ${availableEngines().join(', ')}`, 2);
	}
	const policy = oneOfOption(values.policy, 'policy', kvPolicies);
	// `--policy full` describes what the llama engine does anyway; any other KV option would be silently ignored.
	const nativeOnly = (['device', 'policy', 'budget', 'budget-tokens', 'split', 'precision', 'draft', 'draft-layout', 'master-precision'] as const).find((name) => values[name] !== undefined && !(name === 'policy' && policy === 'full'));
	if (engine !== 'native' && nativeOnly !== undefined) {
		throw new UserError(`--${nativeOnly} ${values[nativeOnly] ?? ''} needs --engine native (the llama engine keeps the full cache)`, 2);
	}
	const budgetPercent = values.budget === undefined ? undefined : Number(values.budget);
	if (budgetPercent !== undefined && !(budgetPercent >= kvBudgetPercentRange.min && budgetPercent <= kvBudgetPercentRange.max)) {
		throw new UserError(`--budget must be a percentage from ${kvBudgetPercentRange.min} to ${kvBudgetPercentRange.max} (got '${values.budget}')`, 2);
	}
	const precision = oneOfOption(values.precision, 'precision', kvPrecisions);
	const kv = resolveKvSettings({
		policy,
		budgetPercent,
		split: oneOfOption(values.split, 'split', kvSplits),
		precision,
		draftLayout: draftLayoutOption(values['draft-layout']),
		masterPrecision: oneOfOption(values['master-precision'], 'master-precision', kvMasterPrecisions),
	});
	if (precision !== undefined && precision !== 'f16' && !ranksTokens(kv.policy)) {
		throw new UserError(`--precision ${precision} needs a ranking policy (h2o, snapkv, pyramidkv, adakv, speckv), not ${kv.policy}`, 2);
	}
	if ((values['draft-layout'] !== undefined || values.draft !== undefined) && kv.policy !== 'speckv') {
		throw new UserError(`--${values.draft === undefined ? 'draft-layout' : 'draft'} is for --policy speckv (the only policy with a draft)`, 2);
	}
	return {
		engine,
		device: oneOfOption(values.device, 'device', deviceSettings) ?? defaultDevice,
		kv,
		budgetTokens: integerOption(values['budget-tokens'], 'budget-tokens', 1),
		draftPath: values.draft === undefined ? undefined : path.resolve(values.draft),
	};
}

/** What the engine loads with, and the KV cache as served (`undefined` for the llama engine). */
export interface PreparedKv {
	readonly kvCache: KvCacheOptions | undefined;
	readonly status: KvCacheStatus | undefined;
}

/**
 * The native engine's KV options for `modelPath`: SpecKV's draft is checked against the model first, and when it
 * cannot serve, the fallback is said once on stderr (with the fix), and returned in `status` for --json.
 */
export async function prepareKv(options: EngineOptions, modelPath: string): Promise<PreparedKv> {
	if (options.engine !== 'native') {
		return { kvCache: undefined, status: undefined };
	}
	const choice: KvChoice = await chooseKvCache(modelPath, options.kv, options.draftPath === undefined ? { automatic: {} } : { path: options.draftPath }, '--draft');
	const warning = describeFallback(choice.status);
	if (warning !== undefined) {
		process.stderr.write(`repokv: ${warning}\n`);
	}
	const kvCache = choice.kvCache === undefined || options.budgetTokens === undefined ? choice.kvCache : { ...choice.kvCache, budgetTokens: options.budgetTokens };
	return { kvCache, status: choice.status };
}

/**
 * The device the native engine runs on for `options` (`undefined` for the llama engine, which node-llama-cpp places
 * itself). When it is not the one asked for, says why once on stderr.
 */
export function prepareDevice(options: EngineOptions): DeviceStatus | undefined {
	if (options.engine !== 'native') {
		return undefined;
	}
	const device = resolveDevice(options.device, probeCuda());
	if (device.reason !== undefined) {
		process.stderr.write(`repokv: ${describeDevice(device)}\n`);
	}
	return device;
}
