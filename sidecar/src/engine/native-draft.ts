import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

import { defaultDraftLayout, draftPromptFor, type DraftLayout, type FimTokens } from './draft-prompt';

// SpecKV's draft lookahead (KV-METHODS.md §1.1 step 1): a small model that shares the target's tokenizer greedily
// guesses the next L tokens of the prompt, in node-llama-cpp with its own full KV cache (reused across requests:
// only the prompt's changed tail is evaluated). Only its token ids are used: the target scores them. It reads the
// prompt in its own layout (draft-prompt.ts; default `prefix-last`).

export class DraftModel {
	private constructor(
		private readonly model: LlamaModel,
		private readonly context: LlamaContext,
		private readonly sequence: LlamaContextSequence,
		private readonly layout: DraftLayout,
		private readonly fim: FimTokens | undefined,
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
		return new DraftModel(model, context, context.getSequence(), options.layout ?? defaultDraftLayout, fimTokensOf(model));
	}

	/**
	 * Up to `n` greedy tokens after the target's `prompt`, read in the draft's layout (fewer at an end-of-generation
	 * token). A prompt longer than the draft's context is cut to its most recent tokens (the draft only guesses;
	 * without the cut node-llama-cpp would shift its context mid-evaluation, which is slow).
	 */
	async lookahead(targetPrompt: readonly number[], n: number): Promise<number[]> {
		const prompt = draftPromptFor(targetPrompt, this.layout, this.fim);
		const room = this.context.contextSize - n - 1;
		const tokens = (prompt.length > room ? prompt.slice(prompt.length - room) : prompt) as Token[];
		const last = tokens.at(-1);
		if (last === undefined || n <= 0) {
			return [];
		}
		const head = tokens.slice(0, -1);
		let reused = Math.min(this.sequence.compareContextTokens(head).firstDifferentIndex, head.length);
		if (reused < this.sequence.nextTokenIndex) {
			await this.sequence.eraseContextTokenRanges([{ start: reused, end: this.sequence.nextTokenIndex }]);
		}
		reused = Math.min(reused, this.sequence.nextTokenIndex);
		if (reused < head.length) {
			await this.sequence.evaluateWithoutGeneratingNewTokens(head.slice(reused));
		}
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
