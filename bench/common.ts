import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { LlamaModel } from 'node-llama-cpp';

import { loadVocabOnly, packageRoot } from '../sidecar/src/api';

// Helpers shared by the benchmarks.

/** A code prompt of exactly `n` tokens: repokv's own native sources as `<|file_sep|>path\n text` documents, repeated. */
export function codePromptTokens(vocab: LlamaModel, n: number): number[] {
	const files = ['native/src/attention.cpp', 'native/src/session.cpp', 'native/src/model.cpp', 'native/src/kv_store.cpp', 'native/src/addon.cpp', 'sidecar/src/engine/native.ts'];
	let text = '';
	for (const f of files) {
		text += `<|file_sep|>${f}\n` + readFileSync(path.join(packageRoot(), f), 'utf8');
	}
	const once = vocab.tokenize(text, true).map(Number);
	const out: number[] = [];
	while (out.length < n) {
		out.push(...once.slice(0, n - out.length));
	}
	return out;
}

/**
 * The first 12 hex digits of a file's SHA-256. Results name the exact model files they were measured on: the
 * bundled models are retrained from time to time under the same paths, so a path alone does not say which.
 */
export function fileFingerprint(file: string): string {
	return createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 12);
}

export async function loadVocab(modelPath: string, threads: number): Promise<LlamaModel> {
	return loadVocabOnly(modelPath, { threads, logLevel: 'error' });
}

export function summarize(values: readonly number[]): { min: number; median: number; max: number } {
	const s = [...values].sort((a, b) => a - b);
	const mid = Math.floor(s.length / 2);
	const median = s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
	return { min: s[0] ?? 0, median, max: s[s.length - 1] ?? 0 };
}

export function round(x: number, digits = 1): number {
	const f = 10 ** digits;
	return Math.round(x * f) / f;
}

export function peakRssMb(): number {
	// resourceUsage().maxRSS is in kilobytes
	return round(process.resourceUsage().maxRSS / 1024, 1);
}

export function rssMb(): number {
	return round(process.memoryUsage().rss / (1024 * 1024), 1);
}
