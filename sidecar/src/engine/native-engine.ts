import { statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { LlamaModel, Token } from 'node-llama-cpp';

import { specialTokenTextsOf } from '../context/repo-format';
import { errorMessage, UserError } from '../errors';
import { bundledModelPath } from '../models/bundled';
import { GreedyOutput } from './greedy-output';
import { checkLoadOptions, chooseContextSize, fp16KvBytesPerToken } from './load-options';
import { argmax, NativeModel, tierCost, type NativeSession } from './native';
import { DraftModel } from './native-draft';
import { loadVocabOnly } from './node-llama';
import { defaultKvSettings, type KvMasterPrecision, type StorageTier } from '../protocol';
import { compressSession, defaultSplit, observationFor, scoringPass, selectionDefaults, type KvBudget, type SelectionOptions } from './native-policy';
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
// Per request (docs/architecture.md, "The KV pipeline"): the prompt's longest prefix already in the master copy is kept
// (the observation window is always re-evaluated; H2O needs every row, so it re-prefills), the rest is prefilled with
// importance observation, then SpecKV's draft lookahead and scoring pass, then selection from the master copy into a
// compacted store that decoding reads. The master copy stays for the next request.
//
// The KV options are the session's, not the model's: `configureKv` changes them between requests (the language
// server does on a settings change), loading or dropping only SpecKV's draft.

/** Prompt tokens per prefill call: the addon's micro-batch, so chunking changes no batch boundary of a cold prefill. */
const prefillChunkTokens = 512;

/** A function, not a property read, so the compiler does not narrow a signal that can flip while we await. */
function isAborted(signal: AbortSignal | undefined): boolean {
	return signal?.aborted === true;
}

/**
 * A request may keep the previous request's selection (no observation, draft, scoring or compaction) when its prompt
 * differs from the one that selection was made for only inside that selection's recent window, which is kept in fp16
 * whole, and has grown by at most this many tokens since (each kept request adds its new tail in fp16 on top of the
 * budget; typing after the cursor adds a token or two per request). Past it, the next request selects afresh.
 */
const keptSelectionGrowthTokens = 8;

/** How many tokens `a` and `b` share from the start, counting at most `limit`. */
function commonPrefixLength(a: readonly number[], b: readonly number[], limit: number): number {
	const end = Math.min(limit, a.length, b.length);
	let i = 0;
	while (i < end && a[i] === b[i]) {
		i++;
	}
	return i;
}

/** Room after a full context for SpecKV's scoring pass (the draft's lookahead is at most 64 tokens). */
const scoringRoomTokens = 256;

/** The selection a request runs (`undefined`: the full cache). The options are valid by type (their callers checked). */
function selectionOf(kv: KvCacheOptions | undefined, headDim: number): SelectionOptions | undefined {
	if (kv === undefined || kv.policy === 'full') {
		return undefined;
	}
	const precision = kv.precision ?? 'f16';
	const budget: KvBudget = kv.budgetTokens !== undefined ? { tokens: kv.budgetTokens } : { percent: kv.budgetPercent ?? defaultKvSettings.budgetPercent };
	return {
		policy: kv.policy,
		budget,
		...(kv.split === undefined ? {} : { split: kv.split }),
		...(precision === 'f16' ? {} : { precision, tierCost: tierCost(headDim), ...(kv.hiFraction === undefined ? {} : { hiFraction: kv.hiFraction }) }),
	};
}

/**
 * Packed precisions stage the master copy as it is prefilled (its fp16 form never exists whole), in
 * `kv.masterPrecision` (default `defaultKvSettings.masterPrecision`); `false`: not staged.
 */
function stagesMaster(selection: SelectionOptions | undefined, kv: KvCacheOptions | undefined): false | KvMasterPrecision {
	return selection?.precision !== undefined && selection.precision !== 'f16' ? (kv?.masterPrecision ?? defaultKvSettings.masterPrecision) : false;
}

async function loadVocab(modelPath: string, options: LoadModelOptions): Promise<LlamaModel> {
	return loadVocabOnly(modelPath, { threads: options.threads, logLevel: options.verbose === true ? 'info' : 'warn', onLog: (_level, text) => options.onLog?.('warn', text) });
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
		// Up to the trained context, capped by the setting; without one, by the memory a full fp16 cache would need.
		const contextSize = chooseContextSize({ trainContextSize, requested: options.contextSize, kvBytesPerToken: fp16KvBytesPerToken(model.info) });
		// Room for SpecKV's scoring pass whatever the policy now: a later `configureKv` may turn SpecKV on.
		const session = model.createSession({ contextSize: contextSize + scoringRoomTokens });
		const loaded = new NativeLoadedModel(model, vocab, session, modelPath, options.threads, contextSize);
		try {
			await loaded.configureKv(options.kvCache);
		} catch (error) {
			await loaded.dispose();
			throw error;
		}
		return loaded;
	},
};

class NativeLoadedModel implements LoadedModel {
	readonly info: LoadedModel['info'];
	readonly specialTokens: SpecialTokenTexts;
	private readonly stopTokens: ReadonlySet<Token>;
	/** Tokens of the master copy (the cache before selection), for prefix reuse. */
	private masterTokens: number[] = [];
	/** SpecKV's draft, loaded while the policy is `speckv`. */
	private draft: DraftModel | undefined;
	/** The draft file's identity when it was loaded (`fileIdentity`). */
	private draftIdentity: string | undefined;
	private kvOptions: KvCacheOptions | undefined;
	private selection: SelectionOptions | undefined;
	/**
	 * While the session is compressed: the length of the prompt (less its last token) its selection was made for, and
	 * the completion that request gave. The compressed store holds `masterTokens` (that prompt, or a later one that
	 * kept its selection).
	 */
	private compressedFor: { readonly selectedAt: number; output: string } | undefined;

	constructor(
		private readonly model: NativeModel,
		private readonly vocab: LlamaModel,
		private readonly session: NativeSession,
		modelPath: string,
		private readonly threads: number,
		contextSize: number,
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

	async configureKv(kv: KvCacheOptions | undefined): Promise<void> {
		const selection = selectionOf(kv, this.model.info.headDim);
		const staging = stagesMaster(selection, kv);
		if (staging !== stagesMaster(this.selection, this.kvOptions) || this.masterTokens.length === 0) {
			// The master copy was prefilled with another staging (another format, or fp16): start it afresh.
			this.session.truncate(0);
			this.masterTokens = [];
			this.session.setStaging(staging);
		}
		const draftPath = kv?.policy === 'speckv' ? (kv.draftPath ?? bundledModelPath('draft')) : undefined;
		// The same path with another file behind it (replaced or rewritten on disk; server/engine-host.ts notices and
		// reconfigures): loaded again.
		const draftIdentity = draftPath === undefined ? undefined : fileIdentity(draftPath);
		if (this.draft !== undefined && (this.draft.path !== draftPath || this.draftIdentity !== draftIdentity)) {
			const previous = this.draft;
			this.draft = undefined;
			await previous.dispose();
		}
		if (draftPath !== undefined && this.draft === undefined) {
			try {
				this.draft = await DraftModel.load(draftPath, { threads: this.threads, contextSize: this.session.stats().contextSize + 64 });
				this.draftIdentity = draftIdentity;
			} catch (error) {
				throw new UserError(`cannot load the draft model ${draftPath}: ${errorMessage(error)}`);
			}
		}
		this.kvOptions = kv;
		this.selection = selection;
		// another policy, budget or precision: the next request selects afresh
		this.compressedFor = undefined;
	}

	/**
	 * Where a request may keep the compressed store of the previous one (see keptSelectionGrowthTokens): the position
	 * its prompt first differs at, or `undefined` when it must select afresh. SpecKV also needs the draft's guess to be
	 * the one the selection was scored with, so that only the observation window's changed tokens differ from a fresh
	 * selection's evidence: the draft reads the same tokens (with `prefix-last`, an edit after the cursor), or what it
	 * reads now continues with the rest of its last guess (the user typed what it guessed).
	 */
	private keptSelectionFrom(promptTokens: readonly number[], request: CompletionRequest, lookahead: number): number | undefined {
		const kept = this.compressedFor;
		const policy = this.selection?.policy;
		if (kept === undefined || policy === undefined || policy === 'h2o' || request.reusePrefix !== true || request.maxTokens === 0) {
			return undefined;
		}
		const m = promptTokens.length - 1;
		const common = commonPrefixLength(this.masterTokens, promptTokens, m);
		const window = this.selection?.window ?? selectionDefaults.window;
		if (common < kept.selectedAt - window || m > kept.selectedAt + keptSelectionGrowthTokens) {
			// the change reaches into the selected part, or the prompt grew too much since the selection
			return undefined;
		}
		const layout = this.kvOptions?.draftLayout;
		if (policy === 'speckv' && this.draft !== undefined && !this.draft.hasLookahead(promptTokens, lookahead, layout) && !this.draft.typedAlong(promptTokens, lookahead, layout, [kept.output])) {
			return undefined;
		}
		return common;
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
		if (request.maxTokens === 0 && request.reusePrefix === true && commonPrefixLength(this.masterTokens, promptTokens, m) === m) {
			// A warm-up for a prompt the cache already starts with (the repository block, while the cache also holds the
			// active file's part): cutting the cache to it would only throw away what the next completion reuses.
			return { text: '', stopReason: 'maxTokens', tokens: { prompt: n, reused: m, generated: 0 }, timings: { tokenizeMs: tokenized - started, prefillMs: 0, decodeMs: 0 } };
		}
		const lookahead = this.kvOptions?.lookahead ?? Math.min(64, request.maxTokens);
		const keptFrom = this.keptSelectionFrom(promptTokens, request, lookahead);
		if (keptFrom !== undefined) {
			return this.completeOnKeptSelection(request, promptTokens, last, keptFrom, started, tokenized);
		}
		this.compressedFor = undefined;
		let reused = 0;
		if (request.reusePrefix === true && policy !== 'h2o') {
			reused = commonPrefixLength(this.masterTokens, promptTokens, m);
			if (policy !== 'full') {
				reused = Math.min(reused, Math.max(0, n - selectionDefaults.window));
			}
		}
		this.session.truncate(reused);
		this.masterTokens = this.masterTokens.slice(0, reused);
		// `full` prefills m tokens (decoding feeds the last); the others the whole prompt, observed (the window ends
		// with the last token), then cut to m: decoding re-feeds it.
		const end = policy === 'full' ? m : n;
		if (policy === 'full') {
			this.session.stopObserving();
		} else {
			this.session.observe(observationFor(policy, n));
		}
		// In chunks, as the llama engine does: a cancelled request stops within one chunk, and progress is reported.
		request.onPrefillProgress?.(reused, n);
		let evaluated = reused;
		while (evaluated < end && !isAborted(request.signal)) {
			const chunk = promptTokens.slice(evaluated, Math.min(end, evaluated + prefillChunkTokens));
			await this.session.prefill(chunk);
			evaluated += chunk.length;
			this.masterTokens = promptTokens.slice(0, evaluated);
			request.onPrefillProgress?.(evaluated, n);
		}
		if (evaluated < end || isAborted(request.signal)) {
			// What was evaluated stays in the master copy for the next request's prefix.
			this.session.stopObserving();
			const stopped = performance.now();
			return { text: '', stopReason: 'aborted', tokens: { prompt: n, reused, generated: 0 }, timings: { tokenizeMs: tokenized - started, prefillMs: stopped - tokenized, decodeMs: 0 } };
		}
		if (policy !== 'full') {
			this.session.truncate(m);
		}
		this.masterTokens = promptTokens.slice(0, m);
		const prefilled = performance.now();
		let draftMs: number | undefined;
		let scoringMs: number | undefined;
		let compressMs: number | undefined;
		if (request.maxTokens === 0) {
			// Nothing to decode (a cache warm-up): the master copy is what the next request reuses, and selecting
			// would be wasted; SpecKV's draft warms its own cache on the same prompt (its cold pass is the costly one).
			this.session.stopObserving();
			if (this.draft !== undefined) {
				await this.draft.warm(promptTokens, this.kvOptions?.draftLayout);
				draftMs = performance.now() - prefilled;
			}
		} else if (this.selection !== undefined) {
			if (policy === 'speckv' && this.draft !== undefined) {
				const guess = await this.draft.lookahead(promptTokens, lookahead, this.kvOptions?.draftLayout);
				const drafted = performance.now();
				draftMs = drafted - prefilled;
				await scoringPass(this.session, last, guess);
				scoringMs = performance.now() - drafted;
			}
			this.session.stopObserving();
			const t = performance.now();
			const { nLayer, nHeadKv } = this.model.info;
			if (compressSession(this.session, nLayer, nHeadKv, { reserveTokens: request.maxTokens + 1, ...this.selection }, request.maxTokens + 1) !== undefined) {
				this.compressedFor = { selectedAt: m, output: '' };
			}
			compressMs = performance.now() - t;
		}
		const result = await this.decode(request, promptTokens, last, reused, { tokenizeMs: tokenized - started, prefillMs: prefilled - tokenized, draftMs, scoringMs, compressMs }, 'fresh');
		if (this.compressedFor !== undefined) {
			// what the user sees as ghost text, and may type along with (keptSelectionFrom)
			this.compressedFor.output = result.text;
		}
		return result;
	}

	/**
	 * A request whose prompt differs from the compressed store's only from `from` on (keptSelectionFrom): the changed
	 * tokens are prefilled into the master copy (attending to every token, as a fresh prefill does) and appended to the
	 * compressed store in fp16; the selection stays, so there is no observation, draft, scoring or compaction.
	 */
	private async completeOnKeptSelection(request: CompletionRequest, promptTokens: readonly Token[], last: Token, from: number, started: number, tokenized: number): Promise<CompletionResult> {
		const n = promptTokens.length;
		const m = n - 1;
		this.session.stopObserving();
		this.session.beginTail(from);
		this.masterTokens = promptTokens.slice(0, from);
		request.onPrefillProgress?.(from, n);
		let evaluated = from;
		try {
			while (evaluated < m && !isAborted(request.signal)) {
				const chunk = promptTokens.slice(evaluated, Math.min(m, evaluated + prefillChunkTokens));
				await this.session.prefill(chunk);
				evaluated += chunk.length;
				this.masterTokens = promptTokens.slice(0, evaluated);
				request.onPrefillProgress?.(evaluated, n);
			}
		} catch (error) {
			// Leave no half-extended store behind: the next request starts from an empty cache.
			this.session.truncate(0);
			this.masterTokens = [];
			this.compressedFor = undefined;
			throw error;
		}
		if (evaluated < m || isAborted(request.signal)) {
			// The master copy keeps what was evaluated; the compressed store no longer matches it (truncate drops it).
			this.session.truncate(evaluated);
			this.compressedFor = undefined;
			return { text: '', stopReason: 'aborted', tokens: { prompt: n, reused: from, generated: 0 }, timings: { tokenizeMs: tokenized - started, prefillMs: performance.now() - tokenized, decodeMs: 0 } };
		}
		const prefilled = performance.now();
		this.session.endTail();
		const appendMs = performance.now() - prefilled;
		return this.decode(request, promptTokens, last, from, { tokenizeMs: tokenized - started, prefillMs: prefilled - tokenized, compressMs: appendMs }, 'kept');
	}

	/** Greedy decoding from the prompt's last token, on whatever store the session reads now. */
	private async decode(
		request: CompletionRequest,
		promptTokens: readonly Token[],
		last: Token,
		reused: number,
		timings: { tokenizeMs: number; prefillMs: number; draftMs?: number | undefined; scoringMs?: number | undefined; compressMs?: number | undefined },
		selection: 'fresh' | 'kept',
	): Promise<CompletionResult> {
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
				tokenizeMs: timings.tokenizeMs,
				prefillMs: timings.prefillMs,
				decodeMs: finished - decodeFrom,
				...(timings.draftMs === undefined ? {} : { draftMs: timings.draftMs }),
				...(timings.scoringMs === undefined ? {} : { scoringMs: timings.scoringMs }),
				...(timings.compressMs === undefined ? {} : { compressMs: timings.compressMs }),
			},
			...(this.selection === undefined ? {} : { selection }),
		};
	}

	kvStats(): EngineKvStats {
		const stats = this.session.stats();
		const draft = this.draft === undefined ? undefined : { path: this.draft.path, ...this.draft.cacheStats() };
		// In compressed mode the master copy is a store of its own; otherwise attention reads the master itself.
		const master = stats.compressed ? stats.masterBytes : 0;
		const selection = this.selection;
		const { nLayer, nHeadKv, headDim } = this.model.info;
		return {
			...stats,
			fp16Bytes: stats.tokens * nLayer * nHeadKv * headDim * 4,
			...(draft === undefined ? {} : { draft }),
			residentBytes: stats.bytes + master + (draft?.bytes ?? 0),
			...(selection === undefined ? {} : { split: selection.split ?? defaultSplit(selection.policy) }),
		};
	}

	kvRangeTiers(bounds: Int32Array): readonly Readonly<Record<StorageTier, number>>[] {
		return this.session.rangeTiers(bounds);
	}

	async dispose(): Promise<void> {
		await this.draft?.dispose();
		this.session.dispose();
		this.model.dispose();
		await this.vocab.dispose();
	}
}

/** Device, inode, size and modification time (server/model-files.ts `modelFileIdentity`): a replaced file gets another. */
function fileIdentity(file: string): string | undefined {
	try {
		const stats = statSync(file);
		return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}`;
	} catch {
		return undefined;
	}
}
