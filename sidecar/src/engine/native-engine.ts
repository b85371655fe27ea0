import { performance } from 'node:perf_hooks';
import type { LlamaModel, Token } from 'node-llama-cpp';

import { specialTokenTextsOf } from '../context/repo-format';
import { errorMessage, UserError } from '../errors';
import { bundledModelPath } from '../models/bundled';
import { GreedyOutput } from './greedy-output';
import { checkLoadOptions } from './load-options';
import { argmax, NativeModel, tierCost, type NativeSession } from './native';
import { DraftModel } from './native-draft';
import { compressSession, isKvPolicy, isKvPrecision, kvPrecisions, layerSplits, observationFor, scoringPass, selectionDefaults, type KvBudget, type LayerSplit, type SelectionOptions } from './native-policy';
import {
	type CompletionRequest,
	type CompletionResult,
	type Engine,
	type EngineKvStats,
	type KvCacheOptions,
	type LoadedModel,
	type LoadModelOptions,
	type SpecialTokenTexts,
} from './types';

// The `native` engine: repokv's own forward pass (native/ addon) for the target model, over a KV cache that a policy
// compresses after the prefill (native-policy.ts; SpecKV's draft runs in node-llama-cpp, native-draft.ts), with
// node-llama-cpp kept for what it does exactly: tokenization (a vocab-only model: no weights, no context).
//
// Per request (DESIGN.md §4): the prompt's longest prefix already in the master copy is kept (the observation window
// is always re-evaluated; H2O needs every row, so it re-prefills), the rest is prefilled with importance observation,
// then SpecKV's draft lookahead and scoring pass, then selection from the master copy into a compacted store that
// decoding reads. The master copy stays for the next request.

function selectionOf(kv: KvCacheOptions | undefined, headDim: number): SelectionOptions | undefined {
	if (kv === undefined || kv.policy === 'full') {
		return undefined;
	}
	if (!isKvPolicy(kv.policy)) {
		throw new UserError(`unknown KV policy '${kv.policy}'; available: full, window, h2o, snapkv, pyramidkv, adakv, speckv`, 2);
	}
	if (kv.split !== undefined && !(layerSplits as readonly string[]).includes(kv.split)) {
		throw new UserError(`unknown layer split '${kv.split}'; available: ${layerSplits.join(', ')}`, 2);
	}
	const precision = kv.precision ?? 'f16';
	if (!isKvPrecision(precision)) {
		throw new UserError(`unknown KV precision '${precision}'; available: ${kvPrecisions.join(', ')}`, 2);
	}
	if (precision !== 'f16' && kv.policy === 'window') {
		throw new UserError(`KV precision ${precision} needs a ranking policy (h2o, snapkv, pyramidkv, adakv, speckv), not window`, 2);
	}
	const budget: KvBudget = kv.budgetTokens !== undefined ? { tokens: kv.budgetTokens } : { percent: kv.budgetPercent ?? 12 };
	return {
		policy: kv.policy,
		budget,
		...(kv.split === undefined ? {} : { split: kv.split as LayerSplit }),
		...(precision === 'f16' ? {} : { precision, tierCost: tierCost(headDim), ...(kv.hiFraction === undefined ? {} : { hiFraction: kv.hiFraction }) }),
	};
}

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
		checkLoadOptions(options);
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
		let selection: SelectionOptions | undefined;
		try {
			selection = selectionOf(options.kvCache, model.info.headDim);
		} catch (error) {
			model.dispose();
			await vocab.dispose();
			throw error;
		}
		// room for SpecKV's scoring pass after a full context
		const session = model.createSession({ contextSize: contextSize + (selection?.policy === 'speckv' ? 256 : 0) });
		// packed precisions: the master copy is staged in q8 as the prompt is prefilled (its fp16 form never exists whole)
		if (selection?.precision !== undefined && selection.precision !== 'f16') {
			session.setStaging(true);
		}
		return new NativeLoadedModel(model, vocab, session, modelPath, options.threads, contextSize, selection, options.kvCache);
	},
};

class NativeLoadedModel implements LoadedModel {
	readonly info: LoadedModel['info'];
	readonly specialTokens: SpecialTokenTexts;
	private readonly stopTokens: ReadonlySet<Token>;
	/** Tokens of the master copy (the cache before selection), for prefix reuse. */
	private masterTokens: number[] = [];
	private draft: DraftModel | undefined;

	constructor(
		private readonly model: NativeModel,
		private readonly vocab: LlamaModel,
		private readonly session: NativeSession,
		modelPath: string,
		private readonly threads: number,
		contextSize: number,
		private readonly selection: SelectionOptions | undefined,
		private readonly kvOptions: KvCacheOptions | undefined,
	) {
		// FIM texts the GGUF declares, and the repository-level format (Qwen2.5-Coder) where its vocabulary has it.
		this.specialTokens = specialTokenTextsOf(vocab);
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
		// By default each request starts from an empty cache (as the llama engine does), so timings are comparable;
		// with reusePrefix the master copy's common prefix is kept.
		const n = promptTokens.length;
		const m = n - 1;
		const policy = this.selection?.policy ?? 'full';
		let reused = 0;
		if (request.reusePrefix === true && policy !== 'h2o') {
			while (reused < Math.min(m, this.masterTokens.length) && this.masterTokens[reused] === promptTokens[reused]) {
				reused++;
			}
			if (policy !== 'full') {
				reused = Math.min(reused, Math.max(0, n - selectionDefaults.window));
			}
		}
		this.session.truncate(reused);
		this.masterTokens = this.masterTokens.slice(0, reused);
		if (policy === 'full') {
			this.session.stopObserving();
			if (m > reused) {
				await this.session.prefill(promptTokens.slice(reused, m));
			}
		} else {
			// the whole prompt, observed (the window ends with the last token), then cut to m: decoding re-feeds it
			this.session.observe(observationFor(policy, n));
			await this.session.prefill(promptTokens.slice(reused));
			this.session.truncate(m);
		}
		this.masterTokens = promptTokens.slice(0, m);
		const prefilled = performance.now();
		let draftMs: number | undefined;
		let scoringMs: number | undefined;
		let compressMs: number | undefined;
		if (this.selection !== undefined) {
			if (policy === 'speckv') {
				this.draft ??= await DraftModel.load(this.kvOptions?.draftPath ?? bundledModelPath('draft'), {
					threads: this.threads,
					contextSize: this.session.stats().contextSize + 64,
					...(this.kvOptions?.draftLayout === undefined ? {} : { layout: this.kvOptions.draftLayout }),
				});
				const lookahead = await this.draft.lookahead(promptTokens, this.kvOptions?.lookahead ?? Math.min(64, request.maxTokens));
				const drafted = performance.now();
				draftMs = drafted - prefilled;
				await scoringPass(this.session, last, lookahead);
				scoringMs = performance.now() - drafted;
			}
			this.session.stopObserving();
			const t = performance.now();
			const { nLayer, nHeadKv } = this.model.info;
			compressSession(this.session, nLayer, nHeadKv, { reserveTokens: request.maxTokens + 1, ...this.selection }, request.maxTokens + 1);
			compressMs = performance.now() - t;
		}
		const decodeFrom = performance.now();

		const output = new GreedyOutput<Token>(request, (tokens) => this.vocab.detokenize(tokens), (token) => this.vocab.isEogToken(token) || this.stopTokens.has(token));
		if (output.shouldStart()) {
			let next: Token = last;
			do {
				await this.session.decode(next);
				next = argmax(this.session.logits()) as Token;
			} while (output.accept(next));
		}
		const finished = performance.now();
		return {
			text: output.text,
			stopReason: output.stopReason,
			tokens: { prompt: promptTokens.length, reused, generated: output.generated.length },
			timings: {
				tokenizeMs: tokenized - started,
				prefillMs: prefilled - tokenized,
				decodeMs: finished - decodeFrom,
				...(draftMs === undefined ? {} : { draftMs }),
				...(scoringMs === undefined ? {} : { scoringMs }),
				...(compressMs === undefined ? {} : { compressMs }),
			},
		};
	}

	kvStats(): EngineKvStats {
		return this.session.stats();
	}

	async dispose(): Promise<void> {
		await this.draft?.dispose();
		this.session.dispose();
		this.model.dispose();
		await this.vocab.dispose();
	}
}
