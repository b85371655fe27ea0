import { performance } from 'node:perf_hooks';
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

import { specialTokenTextsOf } from '../context/repo-format';
import { errorMessage, UserError } from '../errors';
import { GreedyOutput } from './greedy-output';
import { checkLoadOptions, chooseContextSize, fp16KvBytesPerToken, type KvShape } from './load-options';
import { createLlamaContext, getLlamaFor, importNodeLlamaCpp } from './node-llama';
import {
	type CompletionRequest,
	type CompletionResult,
	type Engine,
	type LoadedModel,
	type LoadModelOptions,
	type SpecialTokenTexts,
} from './types';

// The node-llama-cpp engine: full KV cache, llama.cpp's own kernels. It is the reference every other engine is
// measured against, so it stays plain: greedy decoding, no speculative tricks, the prompt evaluated as given.

/** One `Llama` (native backend instance) per thread count; creating one loads the shared libraries again. */
const llamaInstances = new Map<string, Promise<Llama>>();

async function llamaFor(options: LoadModelOptions): Promise<Llama> {
	const key = `${options.threads}:${options.verbose === true ? 'v' : ''}`;
	let instance = llamaInstances.get(key);
	if (instance === undefined) {
		instance = getLlamaFor({
			threads: options.threads,
			logLevel: options.verbose === true ? 'info' : 'warn',
			onLog: (level, text) => options.onLog?.(toLogLevel(level), text),
		});
		llamaInstances.set(key, instance);
	}
	return instance;
}

function toLogLevel(level: string): 'debug' | 'info' | 'warn' | 'error' {
	switch (level) {
		case 'fatal':
		case 'error':
			return 'error';
		case 'warn':
			return 'warn';
		case 'info':
		case 'log':
			return 'info';
		default:
			return 'debug';
	}
}

export const llamaEngine: Engine = {
	name: 'llama',

	async loadModel(options: LoadModelOptions): Promise<LoadedModel> {
		const { modelPath } = options;
		checkLoadOptions(options);
		const { readGgufFileInfo } = await importNodeLlamaCpp();
		// Reading the header first turns "not a model at all" into a clear message before llama.cpp is involved.
		try {
			await readGgufFileInfo(modelPath, { readTensorInfo: false });
		} catch (error) {
			throw new UserError(`model file ${modelPath} is not a valid GGUF file: ${errorMessage(error)}`);
		}

		const llama = await llamaFor(options);
		let model: LlamaModel;
		try {
			model = await llama.loadModel({ modelPath });
		} catch (error) {
			throw new UserError(`cannot load model ${modelPath}: ${errorMessage(error)}`);
		}

		try {
			const trainContextSize = model.trainContextSize;
			const contextSize = chooseContextSize({ trainContextSize, requested: options.contextSize, kvBytesPerToken: fp16KvBytesPerToken(kvShapeOf(model)) });
			const context = await createLlamaContext(model, {
				contextSize,
				threads: options.threads,
				// Flash attention speeds prefill but slows single-token decode at long context on CPUs
				// (docs/platform-notes.md, "node-llama-cpp"). Completion latency is dominated by decode for short prompts.
				flashAttention: options.referenceCache?.flashAttention ?? false,
				// Only benchmarks set a K/V type.
				...(options.referenceCache?.kvType === undefined ? {} : { kvType: options.referenceCache.kvType }),
			});
			return new LlamaLoadedModel(model, context, modelPath, options.threads);
		} catch (error) {
			await model.dispose();
			throw new UserError(`cannot create a context for model ${modelPath}: ${errorMessage(error)}`);
		}
	},
};

class LlamaLoadedModel implements LoadedModel {
	readonly info: LoadedModel['info'];
	readonly specialTokens: SpecialTokenTexts;
	private readonly sequence: LlamaContextSequence;

	constructor(
		private readonly model: LlamaModel,
		private readonly context: LlamaContext,
		modelPath: string,
		threads: number,
	) {
		this.sequence = context.getSequence();
		this.specialTokens = readSpecialTokens(model);
		this.info = {
			path: modelPath,
			architecture: model.fileInfo.metadata.general.architecture,
			trainContextSize: model.trainContextSize,
			contextSize: context.contextSize,
			threads,
			addsBos: model.tokens.shouldPrependBosToken && model.tokens.bos !== null,
		};
	}

	countTokens(text: string): number {
		return this.model.tokenize(text, true).length;
	}

	async complete(request: CompletionRequest): Promise<CompletionResult> {
		// A request cancelled while queued (the user typed on) must not cost a prefill.
		if (request.signal?.aborted === true) {
			return { text: '', stopReason: 'aborted', tokens: { prompt: 0, generated: 0 }, timings: { tokenizeMs: 0, prefillMs: 0, decodeMs: 0 } };
		}
		const started = performance.now();
		// specialTokens = true: the prompt's structure (`<|file_sep|>`, FIM markers) must become special tokens,
		// not the characters `<`, `|`, ... (the context builder neutralises such texts inside file contents).
		const promptTokens = this.model.tokenize(request.prompt, true);
		const bos = this.model.tokens.bos;
		if (this.info.addsBos && bos !== null) {
			promptTokens.unshift(bos);
		}
		const tokenized = performance.now();
		if (promptTokens.length === 0) {
			throw new Error('cannot complete an empty prompt');
		}
		if (promptTokens.length + request.maxTokens > this.info.contextSize) {
			throw new UserError(`the prompt (${promptTokens.length} tokens) plus ${request.maxTokens} generated tokens do not fit the context of ${this.info.contextSize} tokens`);
		}

		// By default each request starts from an empty KV cache, so that timings do not depend on the previous
		// request. With `reusePrefix` (the language server) the longest prefix matching what the sequence already
		// holds is kept — node-llama-cpp's sequence knows its tokens — and only the rest is evaluated.
		const lastPromptToken = promptTokens.pop();
		const total = promptTokens.length + (lastPromptToken === undefined ? 0 : 1);
		let reused = 0;
		if (request.reusePrefix === true) {
			reused = Math.min(this.sequence.compareContextTokens(promptTokens).firstDifferentIndex, promptTokens.length);
			if (request.maxTokens === 0 && reused === promptTokens.length) {
				// A warm-up for a prompt the cache already starts with (the repository block, while the cache also holds
				// the active file's part): erasing the rest would only throw away what the next completion reuses.
				return { text: '', stopReason: 'maxTokens', tokens: { prompt: total, reused, generated: 0 }, timings: { tokenizeMs: tokenized - started, prefillMs: 0, decodeMs: 0 } };
			}
			if (reused < this.sequence.nextTokenIndex) {
				await this.sequence.eraseContextTokenRanges([{ start: reused, end: this.sequence.nextTokenIndex }]);
			}
			// Erasing can fall back to clearing (e.g. when the model cannot remove a range); trust the sequence.
			reused = Math.min(reused, this.sequence.nextTokenIndex);
		} else {
			await this.sequence.clearHistory();
		}
		// Prefill in chunks: a cancelled request stops within one chunk, and progress can be reported.
		request.onPrefillProgress?.(reused, total);
		for (let start = reused; start < promptTokens.length; start += prefillChunkTokens) {
			if (isAborted(request.signal)) {
				break;
			}
			await this.sequence.evaluateWithoutGeneratingNewTokens(promptTokens.slice(start, start + prefillChunkTokens));
			request.onPrefillProgress?.(Math.min(start + prefillChunkTokens, promptTokens.length), total);
		}
		const prefilled = performance.now();

		// temperature 0 is greedy: deterministic, and the tiny bundled models loop when sampled (docs/platform-notes.md).
		const output = new GreedyOutput<Token>(request, (tokens) => this.model.detokenize(tokens), (token) => this.model.isEogToken(token) || this.model.isSpecialToken(token));
		if (output.shouldStart() && lastPromptToken !== undefined) {
			for await (const token of this.sequence.evaluate([lastPromptToken], { temperature: 0 })) {
				if (!output.accept(token)) {
					break;
				}
			}
		}
		const finished = performance.now();

		return {
			text: output.text,
			stopReason: output.stopReason,
			tokens: { prompt: total, reused, generated: output.generated.length },
			timings: { tokenizeMs: tokenized - started, prefillMs: prefilled - tokenized, decodeMs: finished - prefilled },
		};
	}

	async dispose(): Promise<void> {
		await this.context.dispose();
		await this.model.dispose();
	}
}

/** A function, not a property read, so the compiler does not narrow a signal that can flip while we await. */
function isAborted(signal: AbortSignal | undefined): boolean {
	return signal?.aborted === true;
}

/** Prompt tokens evaluated per prefill step; between steps the abort signal is checked and progress reported. */
const prefillChunkTokens = 256;

/** FIM texts from the model's vocabulary when it declares them, the defaults otherwise; the repository-level format where declared. */
function readSpecialTokens(model: LlamaModel): SpecialTokenTexts {
	return specialTokenTextsOf(model);
}

/** The KV cache's shape from the GGUF header (the head dim from `key_length` when declared, else d_model / heads). */
function kvShapeOf(model: LlamaModel): KvShape {
	const meta = model.fileInfo.architectureMetadata;
	const nHead = meta.attention?.head_count ?? 1;
	const nHeadKv = meta.attention?.head_count_kv ?? nHead;
	const headDim = meta.attention?.key_length ?? Math.floor((meta.embedding_length ?? 0) / (typeof nHead === 'number' ? nHead : 1));
	return { nLayer: meta.block_count ?? 0, nHeadKv: typeof nHeadKv === 'number' ? nHeadKv : 1, headDim };
}
