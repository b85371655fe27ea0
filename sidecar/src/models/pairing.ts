import { createHash } from 'node:crypto';
import * as path from 'node:path';

import { errorMessage, UserError } from '../errors';

// Whether a draft model can stand in for a target model's tokenizer. SpecKV feeds the draft the target's token ids
// and reads the draft's guesses back as target ids, so the two vocabularies must be the same list of tokens with
// the same types; a draft with another vocabulary makes llama.cpp fail mid-request ("invalid token") or, worse,
// guess with the wrong words. Checked once at load, from the GGUF headers only (no weights are read).

/** What identifies a vocabulary: its size and a hash of every token's text and type, in id order. */
export interface VocabularyFingerprint {
	readonly tokenCount: number;
	/** SHA-256 (hex) over each token's UTF-8 text, a NUL, its type as decimal, a NUL; in id order. */
	readonly hash: string;
	/** `tokenizer.ggml.model` (`gpt2`, `llama`, ...). */
	readonly tokenizerModel: string;
}

/** The draft's vocabulary is not the target's: SpecKV cannot pair them. A `UserError`: it is a setting to fix. */
export class DraftMismatchError extends UserError {
	constructor(
		readonly targetPath: string,
		readonly draftPath: string,
		readonly reason: string,
	) {
		super(`the draft model ${draftPath} cannot be paired with the target ${targetPath}: ${reason}`);
	}
}

/** Reads a GGUF file's vocabulary fingerprint. Rejects with a `UserError` when the file has no readable vocabulary. */
export async function vocabularyFingerprint(modelPath: string): Promise<VocabularyFingerprint> {
	const { readGgufFileInfo } = await import('node-llama-cpp');
	let metadata: Record<string, unknown>;
	try {
		const info = await readGgufFileInfo(modelPath, { readTensorInfo: false });
		metadata = info.metadata;
	} catch (error) {
		throw new UserError(`model file ${modelPath} is not a valid GGUF file: ${errorMessage(error)}`);
	}
	const tokenizer = asRecord(asRecord(metadata['tokenizer'])['ggml']);
	const tokens = tokenizer['tokens'];
	const types = tokenizer['token_type'];
	if (!Array.isArray(tokens) || tokens.length === 0) {
		throw new UserError(`model file ${modelPath} has no vocabulary (tokenizer.ggml.tokens is missing)`);
	}
	const hash = createHash('sha256');
	for (let id = 0; id < tokens.length; id++) {
		const text: unknown = tokens[id];
		const type: unknown = Array.isArray(types) ? types[id] : undefined;
		hash.update(typeof text === 'string' ? text : '');
		hash.update('\0');
		hash.update(typeof type === 'number' ? String(type) : '');
		hash.update('\0');
	}
	const model = tokenizer['model'];
	return { tokenCount: tokens.length, hash: hash.digest('hex'), tokenizerModel: typeof model === 'string' ? model : 'unknown' };
}

/** Why two fingerprints differ, in words; undefined when they are the same vocabulary. */
export function vocabularyDifference(target: VocabularyFingerprint, draft: VocabularyFingerprint): string | undefined {
	if (target.tokenCount !== draft.tokenCount) {
		return `the target has ${target.tokenCount} tokens and the draft ${draft.tokenCount}`;
	}
	if (target.tokenizerModel !== draft.tokenizerModel) {
		return `the target's tokenizer is ${target.tokenizerModel} and the draft's ${draft.tokenizerModel}`;
	}
	if (target.hash !== draft.hash) {
		return `both have ${target.tokenCount} tokens, but the token lists differ (vocabulary hash ${target.hash.slice(0, 12)} vs ${draft.hash.slice(0, 12)})`;
	}
	return undefined;
}

/**
 * Checks that `draftPath` can serve as SpecKV's draft for `targetPath`. Rejects with a `DraftMismatchError` naming
 * both files when the vocabularies differ, or a `UserError` when either file cannot be read.
 */
export async function checkDraftPairing(targetPath: string, draftPath: string): Promise<void> {
	const [target, draft] = await Promise.all([vocabularyFingerprint(targetPath), vocabularyFingerprint(draftPath)]);
	const reason = vocabularyDifference(target, draft);
	if (reason !== undefined) {
		throw new DraftMismatchError(path.resolve(targetPath), path.resolve(draftPath), reason);
	}
}

function asRecord(value: unknown): Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
