import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { LlamaModel, Token } from 'node-llama-cpp';

import { errorMessage, UserError } from '../errors';
import { argmax, NativeModel, type NativeSession } from './native';
import {
	defaultSpecialTokenTexts,
	type CompletionRequest,
	type CompletionResult,
	type Engine,
	type LoadedModel,
	type LoadModelOptions,
	type SpecialTokenTexts,
	type StopReason,
} from './types';

// The `native` engine: repokv's own forward pass (native/ addon, policy `full` for now) for the target model, with
// node-llama-cpp kept for what it does exactly: tokenization (a vocab-only model: no weights, no context).

async function loadVocab(modelPath: string, options: LoadModelOptions): Promise<LlamaModel> {
	const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
	const llama = await getLlama({
		maxThreads: options.threads,
		build: 'never',
		skipDownload: true,
		progressLogs: false,
		logLevel: options.verbose === true ? LlamaLogLevel.info : LlamaLogLevel.warn,
		logger: (_level, message) => {
			const text = message.trimEnd();
			if (text !== '') {
				options.onLog?.('warn', text);
			}
		},
	});
	return llama.loadModel({ modelPath, vocabOnly: true });
}

export const nativeEngine: Engine = {
	name: 'native',

	async loadModel(options: LoadModelOptions): Promise<LoadedModel> {
		const { modelPath } = options;
		if (!Number.isInteger(options.threads) || options.threads < 1) {
			throw new UserError(`threads must be a positive integer (got ${options.threads})`, 2);
		}
		if (!existsSync(modelPath)) {
			throw new UserError(`model file not found: ${modelPath}`);
		}
		let model: NativeModel;
		try {
			model = await NativeModel.loadAsync(modelPath, { threads: options.threads });
		} catch (error) {
			throw new UserError(`cannot load model ${modelPath} in the native engine: ${errorMessage(error)}`);
		}
		let vocab: LlamaModel;
		try {
			vocab = await loadVocab(modelPath, options);
		} catch (error) {
			model.dispose();
			throw new UserError(`cannot load the tokenizer of ${modelPath}: ${errorMessage(error)}`);
		}
		const trainContextSize = model.info.contextLength;
		const contextSize = Math.min(options.contextSize ?? trainContextSize, trainContextSize);
		return new NativeLoadedModel(model, vocab, model.createSession({ contextSize }), modelPath, options.threads, contextSize);
	},
};

class NativeLoadedModel implements LoadedModel {
	readonly info: LoadedModel['info'];
	readonly specialTokens: SpecialTokenTexts;
	private readonly stopTokens: ReadonlySet<Token>;

	constructor(
		private readonly model: NativeModel,
		private readonly vocab: LlamaModel,
		private readonly session: NativeSession,
		modelPath: string,
		threads: number,
		contextSize: number,
	) {
		const { infill } = vocab.tokens;
		this.specialTokens = {
			fimPrefix: infill.prefixString ?? defaultSpecialTokenTexts.fimPrefix,
			fimSuffix: infill.suffixString ?? defaultSpecialTokenTexts.fimSuffix,
			fimMiddle: infill.middleString ?? defaultSpecialTokenTexts.fimMiddle,
			fileSeparator: defaultSpecialTokenTexts.fileSeparator,
			endOfText: vocab.tokens.eosString ?? defaultSpecialTokenTexts.endOfText,
		};
		const sep = vocab.tokenize(this.specialTokens.fileSeparator, true);
		const [only] = sep;
		this.stopTokens = new Set(sep.length === 1 && only !== undefined && vocab.isSpecialToken(only) ? [only] : []);
		this.info = {
			path: modelPath,
			architecture: model.info.architecture,
			trainContextSize: model.info.contextLength,
			contextSize,
			threads,
			addsBos: vocab.tokens.shouldPrependBosToken && vocab.tokens.bos !== null,
		};
	}

	countTokens(text: string): number {
		return this.vocab.tokenize(text, true).length;
	}

	async complete(request: CompletionRequest): Promise<CompletionResult> {
		const started = performance.now();
		const promptTokens: Token[] = this.vocab.tokenize(request.prompt, true);
		const bos = this.vocab.tokens.bos;
		if (this.info.addsBos && bos !== null) {
			promptTokens.unshift(bos);
		}
		const tokenized = performance.now();
		const last = promptTokens.at(-1);
		if (last === undefined) {
			throw new Error('cannot complete an empty prompt');
		}
		if (promptTokens.length + request.maxTokens > this.info.contextSize) {
			throw new UserError(`the prompt (${promptTokens.length} tokens) plus ${request.maxTokens} generated tokens do not fit the context of ${this.info.contextSize} tokens`);
		}
		// Each request starts from an empty cache (as the llama engine does), so timings are comparable.
		this.session.truncate(0);
		if (promptTokens.length > 1) {
			await this.session.prefill(promptTokens.slice(0, -1));
		}
		const prefilled = performance.now();

		const generated: Token[] = [];
		let text = '';
		let stopReason: StopReason = 'maxTokens';
		const stopStrings = request.stopStrings ?? [];
		const aborted = (): boolean => request.signal?.aborted === true;
		if (aborted()) {
			stopReason = 'aborted';
		} else if (request.maxTokens > 0) {
			let next: Token = last;
			for (;;) {
				await this.session.decode(next);
				next = argmax(this.session.logits()) as Token;
				if (this.vocab.isEogToken(next) || this.stopTokens.has(next)) {
					stopReason = 'endOfGeneration';
					break;
				}
				generated.push(next);
				text = this.vocab.detokenize(generated);
				const stopAt = firstStopIndex(text, stopStrings);
				if (stopAt !== undefined) {
					text = text.slice(0, stopAt);
					stopReason = 'stopString';
					break;
				}
				if (aborted()) {
					stopReason = 'aborted';
					break;
				}
				if (generated.length >= request.maxTokens) {
					break;
				}
			}
		}
		const finished = performance.now();
		return {
			text,
			stopReason,
			tokens: { prompt: promptTokens.length, generated: generated.length },
			timings: { tokenizeMs: tokenized - started, prefillMs: prefilled - tokenized, decodeMs: finished - prefilled },
		};
	}

	async dispose(): Promise<void> {
		this.session.dispose();
		this.model.dispose();
		await this.vocab.dispose();
	}
}

function firstStopIndex(text: string, stopStrings: readonly string[]): number | undefined {
	let earliest: number | undefined;
	for (const stop of stopStrings) {
		const index = stop === '' ? -1 : text.indexOf(stop);
		if (index !== -1 && (earliest === undefined || index < earliest)) {
			earliest = index;
		}
	}
	return earliest;
}
