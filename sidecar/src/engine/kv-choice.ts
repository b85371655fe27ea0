import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';

import { errorMessage, UserError } from '../errors';
import { bundledModelPath } from '../models/bundled';
import { findPairedDraft } from '../models/catalog';
import { DraftMismatchError, vocabularyDifference, vocabularyFingerprint, type VocabularyFingerprint } from '../models/pairing';
import { defaultKvSettings, type DraftLayout, type KvCacheStatus, type KvMasterPrecision, type KvPolicy, type KvPrecision, type KvSplit } from '../protocol';
import type { KvCacheOptions } from './types';

// Which KV compression a native-engine request runs with, decided the same way for the language server and the CLI:
// the settings with their defaults filled in (`resolveKvSettings`), then SpecKV's draft checked before anything runs
// (`chooseKvCache`). A draft that is missing, unreadable or has another vocabulary than the target cannot guess
// the target's tokens (llama.cpp would fail mid-request with "Eval has failed"), so SpecKV then gives way to a
// draft-free ranking policy with the same budget and tiers: the cache stays compressed, and the reason and the fix
// are reported once, by the caller, in its own words (status and log, or a stderr line and a --json field).

/** The KV settings as the native engine applies them; valid by type, every default filled in. */
export interface ResolvedKvSettings {
	readonly policy: KvPolicy;
	readonly budgetPercent: number;
	/** `undefined`: the policy's own split. */
	readonly split: KvSplit | undefined;
	/** `window` and `full` rank nothing, so they always store f16 (a packed precision spends bytes by rank). */
	readonly precision: KvPrecision;
	readonly draftLayout: DraftLayout;
	/** The master copy's staging format under a packed precision (unused under f16). */
	readonly masterPrecision: KvMasterPrecision;
}

/** Fills in the defaults (`defaultKvSettings`); a policy that ranks nothing gets f16 whatever precision was asked. */
export function resolveKvSettings(kv: {
	readonly policy?: KvPolicy | undefined;
	readonly budgetPercent?: number | undefined;
	readonly split?: KvSplit | undefined;
	readonly precision?: KvPrecision | undefined;
	readonly draftLayout?: DraftLayout | undefined;
	readonly masterPrecision?: KvMasterPrecision | undefined;
}): ResolvedKvSettings {
	const policy = kv.policy ?? defaultKvSettings.policy;
	return {
		policy,
		budgetPercent: kv.budgetPercent ?? defaultKvSettings.budgetPercent,
		split: kv.split,
		precision: ranksTokens(policy) ? (kv.precision ?? defaultKvSettings.precision) : 'f16',
		draftLayout: kv.draftLayout ?? defaultKvSettings.draftLayout,
		masterPrecision: kv.masterPrecision ?? defaultKvSettings.masterPrecision,
	};
}

/** Whether a policy ranks tokens (and so can spend a packed precision's bytes by rank). */
export function ranksTokens(policy: KvPolicy): boolean {
	return policy !== 'full' && policy !== 'window';
}

/** The engine's options and what to report about them. */
export interface KvChoice {
	/** What `loadModel`/`configureKv` take: `undefined` under `full`. */
	readonly kvCache: KvCacheOptions | undefined;
	/** The KV cache as served, with the fallback's reason and fix when SpecKV could not run. */
	readonly status: KvCacheStatus;
}

/**
 * SpecKV's draft: a local file; why there is none (e.g. an `hf:` download that failed); or `automatic` (no draft
 * setting): the bundled draft when it pairs with the target, else the smallest local GGUF with the target's
 * vocabulary (models/catalog.ts: the target's folder, node-llama-cpp's models folder, `downloadFolder`).
 */
export type DraftSource = { readonly path: string } | { readonly unavailable: string } | { readonly automatic: { readonly downloadFolder?: string } };

/**
 * The native engine's KV options for `kv`. Under `speckv` the draft is checked first: the file must exist and have
 * the target's vocabulary (models/pairing.ts); otherwise `defaultKvSettings.fallbackPolicy` serves, and
 * `status.fallback` says why and names `draftSetting` (the setting or option that picks the draft) in its fix.
 */
export async function chooseKvCache(targetPath: string, kv: ResolvedKvSettings, draft: DraftSource, draftSetting: string): Promise<KvChoice> {
	let policy = kv.policy;
	let fallback: KvCacheStatus['fallback'];
	let draftPath: string | undefined;
	if (policy === 'speckv') {
		const usable = await usableDraft(targetPath, draft);
		if ('path' in usable) {
			draftPath = usable.path;
		} else {
			policy = defaultKvSettings.fallbackPolicy;
			fallback = {
				requested: 'speckv',
				reason: usable.problem,
				fixHint: `set ${draftSetting} to a GGUF draft with the target's vocabulary (the same tokenizer family, e.g. the 0.5B model of the target's series)`,
			};
		}
	}
	const status: KvCacheStatus = {
		policy,
		budgetPercent: kv.budgetPercent,
		precision: kv.precision,
		...(kv.split === undefined ? {} : { split: kv.split }),
		...(draftPath === undefined ? {} : { draft: draftPath }),
		...(fallback === undefined ? {} : { fallback }),
	};
	if (policy === 'full') {
		return { kvCache: undefined, status };
	}
	return {
		kvCache: {
			policy,
			budgetPercent: kv.budgetPercent,
			...(kv.split === undefined ? {} : { split: kv.split }),
			...(kv.precision === 'f16' ? {} : { precision: kv.precision, masterPrecision: kv.masterPrecision }),
			...(draftPath === undefined ? {} : { draftPath, draftLayout: kv.draftLayout }),
		},
		status,
	};
}

/**
 * The draft that can serve `targetPath`, or why none can, in one sentence. A target that cannot be read is not the
 * draft's fault: that rejects, with the error loading it would give.
 */
async function usableDraft(targetPath: string, draft: DraftSource): Promise<{ path: string } | { problem: string }> {
	if (!existsSync(targetPath)) {
		throw new UserError(`model file not found: ${targetPath}`);
	}
	const target = await fingerprintOf(targetPath);
	if ('unavailable' in draft) {
		return { problem: draft.unavailable };
	}
	if ('path' in draft) {
		const problem = await pairingProblem(targetPath, target, draft.path);
		return problem === undefined ? { path: draft.path } : { problem };
	}
	const bundled = bundledModelPath('draft');
	const bundledProblem = await pairingProblem(targetPath, target, bundled);
	if (bundledProblem === undefined) {
		return { path: bundled };
	}
	const found = await findPairedDraft(targetPath, draft.automatic).catch(() => undefined);
	return found === undefined
		? { problem: `${bundledProblem}, and no smaller GGUF with the target's vocabulary was found next to the target or in the models and download folders` }
		: { path: found };
}

/** Why `draftPath` cannot serve the target as its draft; `undefined` when it can. */
async function pairingProblem(targetPath: string, target: VocabularyFingerprint, draftPath: string): Promise<string | undefined> {
	if (!existsSync(draftPath)) {
		return `draft model file not found: ${draftPath}`;
	}
	try {
		const reason = vocabularyDifference(target, await fingerprintOf(draftPath));
		return reason === undefined ? undefined : new DraftMismatchError(path.resolve(targetPath), path.resolve(draftPath), reason).message;
	} catch (error) {
		// an unreadable draft GGUF: the message names the file
		return errorMessage(error);
	}
}

/**
 * Fingerprints by file identity (path, size, modification time): a budget change re-checks the pairing without
 * re-reading a 151,936-token vocabulary. A failed read is not kept, so a fixed file is read again.
 */
const fingerprints = new Map<string, Promise<VocabularyFingerprint>>();

function fingerprintOf(file: string): Promise<VocabularyFingerprint> {
	const stats = statSync(file, { throwIfNoEntry: false });
	const key = `${file}\u0000${stats?.size ?? -1}\u0000${stats?.mtimeMs ?? -1}`;
	let fingerprint = fingerprints.get(key);
	if (fingerprint === undefined) {
		fingerprint = vocabularyFingerprint(file);
		fingerprints.set(key, fingerprint);
		fingerprint.catch(() => fingerprints.delete(key));
	}
	return fingerprint;
}

/** One line saying what `status` serves, for logs and the CLI: `speckv, mixed tiers at 12 % of the fp16 KV bytes`. */
export function describeKvCache(status: KvCacheStatus): string {
	if (status.policy === 'full') {
		return 'full KV cache (every token in fp16)';
	}
	const precision = status.precision === 'mixed' ? 'mixed 4-bit + 1.x-bit tiers' : `${status.precision} storage`;
	return `${status.policy}, ${precision} at ${status.budgetPercent} % of the fp16 KV bytes${status.split === undefined ? '' : `, ${status.split} split`}`;
}

/** The fallback as one warning line (CLI stderr, server log and status message); `undefined` when there was none. */
export function describeFallback(status: KvCacheStatus): string | undefined {
	const { fallback } = status;
	return fallback === undefined ? undefined : `SpecKV is off: ${fallback.reason}. Serving ${describeKvCache(status)} instead; to fix it, ${fallback.fixHint}.`;
}
