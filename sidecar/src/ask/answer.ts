import { performance } from 'node:perf_hooks';

import { neutraliseSpecialTokens, repoPieceText } from '../context/builder';
import type { EngineTimings, LoadedModel, TokenCounter } from '../engine/types';
import type { AskPartialResult, AskResult, Citation } from '../protocol';
import { citationsFrom, type RetrievableFile, type RetrievalIndex } from './retrieval';

// Repository Q&A: retrieval picks the evidence, the model writes the answer. The citations come from retrieval
// alone (BM25 hits, each a line that exists), so they are right even when the model's prose is not — and with the
// bundled 10M-parameter code model the prose is weak; the answer says nothing it did not generate.
//
// Prompt: [context files or retrieved chunks, least relevant first] <|file_sep|>ANSWER.md\nQuestion: …\nAnswer:
// The context is the whole workspace when it fits the window, otherwise the best BM25 chunks that fit.

export interface AskInput {
	readonly question: string;
	/** Mirror files in stable order (least recently edited first). */
	readonly files: readonly RetrievableFile[];
	readonly index: RetrievalIndex;
	readonly model: LoadedModel;
	/** A caching token counter over `model`. */
	readonly counter: TokenCounter;
	readonly maxTokens: number;
	readonly maxChunks: number;
	readonly activeFile?: string;
	readonly signal?: AbortSignal;
	readonly onPartial?: (partial: AskPartialResult) => void;
	readonly onStage?: (message: string, percentage?: number) => void;
	/** Reuse the KV of a matching prompt prefix (the server's engine holds the previous request's cache). */
	readonly reusePrefix?: boolean;
	/**
	 * Keep `files` in the given order in whole-workspace mode (the server passes the last completion's repository
	 * block order, so an answer reuses its KV and the next completion reuses the answer's). Default: cited files are
	 * moved last, nearest the question.
	 */
	readonly keepOrder?: boolean;
}

/** Most citations returned. */
const maxCitations = 5;

export async function answerQuestion(input: AskInput): Promise<AskResult & { readonly promptTokens: number; readonly reusedTokens: number; readonly generatedTokens: number; readonly spans: { path: string; tokens: number }[]; readonly engineTimings: EngineTimings }> {
	const started = performance.now();
	const { model, counter } = input;
	const special = model.specialTokens;
	input.onStage?.('retrieving', 0);
	input.index.update(input.files);
	const hits = input.index.search(input.question, Math.max(input.maxChunks, maxCitations), input.activeFile);
	const citations: Citation[] = citationsFrom(hits, maxCitations);
	input.onPartial?.({ citations });
	const retrieved = performance.now();

	const question = neutraliseSpecialTokens(input.question.replace(/\s+/g, ' ').trim(), special);
	const tail = `${special.fileSeparator}ANSWER.md\nQuestion: ${question}\nAnswer:`;
	const budget = model.info.contextSize - input.maxTokens - (model.info.addsBos ? 1 : 0) - counter.countTokens(tail);

	// Whole workspace if it fits; cited files go last, nearest the question.
	const cited = new Set(citations.map((citation) => citation.file));
	const ordered = input.keepOrder === true ? input.files : [...input.files.filter((file) => !cited.has(file.path)), ...[...cited].reverse().flatMap((path) => input.files.filter((file) => file.path === path))];
	const wholePieces = ordered.map((file) => {
		const text = repoPieceText(file, special);
		return { path: file.path, text, tokens: counter.countTokens(text) };
	});
	const wholeTokens = wholePieces.reduce((sum, piece) => sum + piece.tokens, 0);
	let mode: 'whole' | 'retrieved';
	let pieces: { path: string; text: string; tokens: number }[];
	if (wholeTokens <= budget) {
		mode = 'whole';
		pieces = wholePieces;
	} else {
		mode = 'retrieved';
		pieces = [];
		let remaining = budget;
		for (const hit of hits.slice(0, input.maxChunks)) {
			const text = `${special.fileSeparator}${hit.chunk.path}\n${neutraliseSpecialTokens(hit.chunk.text, special)}\n`;
			const tokens = counter.countTokens(text);
			if (tokens <= remaining) {
				pieces.push({ path: hit.chunk.path, text, tokens });
				remaining -= tokens;
			}
		}
		// Best chunk nearest the question.
		pieces.reverse();
	}
	const prompt = pieces.map((piece) => piece.text).join('') + tail;

	const stopStrings = ['\n\n', special.fileSeparator, 'Question:'];
	let sent = '';
	const stream = (text: string): void => {
		// Stream only what the final answer will keep: not a stop string, nor the start of one, nor edge whitespace.
		const safe = holdBack(text, stopStrings).trim();
		if (safe.length > sent.length && safe.startsWith(sent)) {
			input.onPartial?.({ textDelta: safe.slice(sent.length) });
			sent = safe;
		}
	};
	input.onStage?.('prefilling', 10);
	const result = await model.complete({
		prompt,
		maxTokens: input.maxTokens,
		stopStrings,
		reusePrefix: input.reusePrefix ?? false,
		onPrefillProgress: (done, total) => input.onStage?.(`prefilling ${done}/${total} tokens`, 10 + Math.round((70 * done) / Math.max(1, total))),
		onText: (text) => {
			stream(text);
		},
		...(input.signal === undefined ? {} : { signal: input.signal }),
	});
	const answer = result.text.trim();
	if (answer.startsWith(sent) && answer.length > sent.length) {
		input.onPartial?.({ textDelta: answer.slice(sent.length) });
	}
	const finished = performance.now();
	return {
		answer,
		citations,
		context: { mode, tokens: result.tokens.prompt, files: [...new Set(pieces.map((piece) => piece.path))], chunksSearched: mode === 'retrieved' ? input.index.chunkCount : 0 },
		stopReason: result.stopReason,
		timings: { retrieveMs: retrieved - started, prefillMs: result.timings.prefillMs, decodeMs: result.timings.decodeMs, totalMs: finished - started },
		promptTokens: result.tokens.prompt,
		reusedTokens: result.tokens.reused ?? 0,
		generatedTokens: result.tokens.generated,
		// the engine's own split (draft, scoring, compression), for the cache inspector
		engineTimings: result.timings,
		spans: [...pieces.map((piece) => ({ path: piece.path, tokens: piece.tokens })), { path: 'ANSWER.md', tokens: counter.countTokens(tail) }],
	};
}

/** `text` cut before the first stop string, and before a tail that could still grow into one. */
export function holdBack(text: string, stopStrings: readonly string[]): string {
	let end = text.length;
	for (const stop of stopStrings) {
		const at = text.indexOf(stop);
		if (at !== -1) {
			end = Math.min(end, at);
		}
	}
	let cut = text.slice(0, end);
	for (const stop of stopStrings) {
		for (let k = Math.min(stop.length - 1, cut.length); k > 0; k--) {
			if (cut.endsWith(stop.slice(0, k))) {
				cut = cut.slice(0, cut.length - k);
				break;
			}
		}
	}
	return cut;
}
