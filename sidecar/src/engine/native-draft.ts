import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

import { defaultKvSettings, type DraftLayout } from '../protocol';
import { draftPromptFor, type FimTokens } from './draft-prompt';

// SpecKV's draft lookahead (KV-METHODS.md §1.1 step 1): a small model that shares the target's tokenizer greedily
// guesses the next L tokens of the prompt, in node-llama-cpp with its own full KV cache (reused across requests:
// only the prompt's changed tail is evaluated). Only its token ids are used: the target scores them. It reads the
// prompt in the layout each request asks for (draft-prompt.ts; default `prefix-last`).

export class DraftModel {
	private constructor(
		readonly path: string,
		private readonly model: LlamaModel,
		private readonly context: LlamaContext,
		private readonly sequence: LlamaContextSequence,
		/** The layout `lookahead` reads the prompt in when the request names none. */
		private readonly layout: DraftLayout,
		private readonly fim: FimTokens | undefined,
		/** Bytes one token takes in the draft's KV cache (f16 keys and values, every layer and KV head). */
		private readonly kvBytesPerToken: number,
	) {}

	static async load(modelPath: string, options: { threads: number; contextSize: number; layout?: DraftLayout }): Promise<DraftModel> {
		const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
		const llama = await getLlama({ maxThreads: options.threads, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
		const model = await llama.loadModel({ modelPath });
		const contextSize = Math.min(options.contextSize, model.trainContextSize * 2);
		const context = await model.createContext({
			contextSize,
			threads: { ideal: options.threads, min: options.threads },
			sequences: 1,
			batchSize: Math.min(512, contextSize),
			// the draft's cost is its prompt prefill: flash attention cuts its CPU time at 4K tokens by ~35% (measured)
			flashAttention: true,
		});
		return new DraftModel(modelPath, model, context, context.getSequence(), options.layout ?? defaultKvSettings.draftLayout, fimTokensOf(model), kvBytesPerToken(model));
	}

	/** The tokens the draft's KV cache holds now, and their bytes (llama.cpp's default f16 cache). */
	cacheStats(): { tokens: number; bytes: number } {
		const tokens = this.sequence.nextTokenIndex;
		return { tokens, bytes: tokens * this.kvBytesPerToken };
	}

	/**
	 * Up to `n` greedy tokens after the target's `prompt`, read in the draft's layout (fewer at an end-of-generation
	 * token). A prompt longer than the draft's context is cut to its most recent tokens (the draft only guesses;
	 * without the cut node-llama-cpp would shift its context mid-evaluation, which is slow).
	 */
	async lookahead(targetPrompt: readonly number[], n: number, layout: DraftLayout = this.layout): Promise<number[]> {
		const prompt = draftPromptFor(targetPrompt, layout, this.fim);
		const room = this.context.contextSize - n - 1;
		const tokens = (prompt.length > room ? prompt.slice(prompt.length - room) : prompt) as Token[];
		const last = tokens.at(-1);
		if (last === undefined || n <= 0) {
			return [];
		}
		await this.evaluate(tokens.slice(0, -1));
		const out: number[] = [];
		for await (const token of this.sequence.evaluate([last], { temperature: 0 })) {
			if (this.model.isEogToken(token)) {
				break;
			}
			out.push(token);
			if (out.length >= n) {
				break;
			}
		}
		return out;
	}

	/**
	 * Evaluates the draft's reading of `targetPrompt` into its cache without guessing: a cache warm-up, so the next
	 * lookahead that starts the same way evaluates only its tail.
	 */
	async warm(targetPrompt: readonly number[], layout: DraftLayout = this.layout): Promise<void> {
		const prompt = draftPromptFor(targetPrompt, layout, this.fim);
		const room = this.context.contextSize - 1;
		await this.evaluate((prompt.length > room ? prompt.slice(prompt.length - room) : prompt) as Token[]);
	}

	/** Makes the cache hold exactly `tokens`: keeps the longest common prefix, evaluates the rest. */
	private async evaluate(tokens: readonly Token[]): Promise<void> {
		let reused = Math.min(this.sequence.compareContextTokens([...tokens]).firstDifferentIndex, tokens.length);
		if (reused < this.sequence.nextTokenIndex) {
			await this.sequence.eraseContextTokenRanges([{ start: reused, end: this.sequence.nextTokenIndex }]);
		}
		reused = Math.min(reused, this.sequence.nextTokenIndex);
		if (reused < tokens.length) {
			await this.sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(reused));
		}
	}

	async dispose(): Promise<void> {
		await this.context.dispose();
		await this.model.dispose();
	}
}

/** The model's FIM tokens as its GGUF declares them (the sidecar builds its prompts from the same ones). */
function fimTokensOf(model: LlamaModel): FimTokens | undefined {
	const { prefix, suffix, middle } = model.tokens.infill;
	return prefix === null || suffix === null || middle === null ? undefined : { prefix: Number(prefix), suffix: Number(suffix), middle: Number(middle) };
}

/** f16 K and V bytes per token of a model's KV cache, from its GGUF header: layers × KV heads × (key + value dims) × 2. */
function kvBytesPerToken(model: LlamaModel): number {
	const metadata = model.fileInfo.metadata as unknown as Record<string, unknown>;
	const general = metadata['general'] as { architecture?: string } | undefined;
	const arch = (metadata[general?.architecture ?? 'llama'] ?? {}) as Record<string, unknown>;
	const attention = (arch['attention'] ?? {}) as Record<string, unknown>;
	const num = (value: unknown, fallback: number): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback);
	const heads = num(attention['head_count'], 1);
	const headDim = Math.round(num(arch['embedding_length'], 64) / heads);
	const layers = num(arch['block_count'], 1);
	const kvHeads = num(attention['head_count_kv'], heads);
	return layers * kvHeads * (num(attention['key_length'], headDim) + num(attention['value_length'], headDim)) * 2;
}
