import type { LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

import { defaultKvSettings, type DraftLayout } from '../protocol';
import { draftPromptFor, type FimTokens } from './draft-prompt';
import { createLlamaContext, getLlamaFor } from './node-llama';

// SpecKV's draft lookahead (docs/kv-policies.md, "SpecKV" step 1): a small model that shares the target's tokenizer
// greedily guesses the next L tokens of the prompt, in node-llama-cpp with its own full KV cache (reused across
// requests: only the prompt's changed tail is evaluated). Only its token ids are used: the target scores them. It reads
// the prompt in the layout each request asks for (draft-prompt.ts; default `prefix-last`).

export class DraftModel {
	private constructor(
		readonly path: string,
		private readonly model: LlamaModel,
		private readonly context: LlamaContext,
		private readonly sequence: LlamaContextSequence,
		/** The layout `lookahead` reads the prompt in when the request names none. */
		private readonly layout: DraftLayout,
		private readonly fim: FimTokens | undefined,
		/** Bytes one token takes in the draft's KV cache (keys and values in its cache type, every layer and KV head). */
		private readonly kvBytesPerToken: number,
		/** The draft's K/V cache type: Q8_0 when its key and value head sizes are multiples of 32, else F16. */
		readonly kvCacheType: DraftKvType,
	) {}

	static async load(modelPath: string, options: { threads: number; contextSize: number; layout?: DraftLayout }): Promise<DraftModel> {
		const llama = await getLlamaFor({ threads: options.threads, logLevel: 'error' });
		const model = await llama.loadModel({ modelPath });
		const contextSize = Math.min(options.contextSize, model.trainContextSize * 2);
		const shape = kvShapeOf(model);
		// Q8_0 K/V (34 bytes per 32 elements, 0.53 of f16): llama.cpp quantizes the V cache only with flash attention,
		// in blocks of 32 along the head dimension; the draft only guesses tokens, which the target then scores
		const kvCacheType: DraftKvType = shape.keyDim % 32 === 0 && shape.valueDim % 32 === 0 ? 'Q8_0' : 'F16';
		const context = await createLlamaContext(model, {
			contextSize,
			threads: options.threads,
			// the draft's cost is its prompt prefill, which flash attention shortens (docs/platform-notes.md)
			flashAttention: true,
			// Q8_0 with flash attention on the CPU is what bench session's llama-q8_0-fa configuration runs, and
			// test/native/draft.test.mjs checks the draft's guesses with it
			kvType: kvCacheType,
		});
		return new DraftModel(
			modelPath,
			model,
			context,
			context.getSequence(),
			options.layout ?? defaultKvSettings.draftLayout,
			fimTokensOf(model),
			kvBytesPerToken(shape, kvCacheType),
			kvCacheType,
		);
	}

	/**
	 * The last lookahead: the draft prompt it read (after the cut to the context) and its guess, kept whole (`n` is the
	 * guess's length limit). Greedy decoding is a function of the tokens read, so the same prompt and the same `n` give
	 * the same guess: a request whose draft prompt is unchanged (with `prefix-last`, an edit after the cursor only
	 * changes the suffix, which that layout drops) reuses it instead of generating the n tokens again.
	 */
	private last: { prompt: readonly number[]; n: number; out: readonly number[] } | undefined;
	/** Lookaheads answered from `last` (tests, stats). */
	reusedLookaheads = 0;

	/** The tokens the draft's KV cache holds now, and their bytes (in its cache type, `kvCacheType`). */
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
		const tokens = this.reading(targetPrompt, n, layout);
		const last = tokens.at(-1);
		if (last === undefined || n <= 0) {
			return [];
		}
		const previous = this.last;
		if (previous?.n === n && sameTokens(previous.prompt, tokens)) {
			this.reusedLookaheads++;
			return [...previous.out];
		}
		this.last = undefined;
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
		this.last = { prompt: [...tokens], n, out: [...out] };
		return out;
	}

	/** Whether `lookahead` would answer from the last guess (the draft reads the same tokens): no draft work at all. */
	hasLookahead(targetPrompt: readonly number[], n: number, layout: DraftLayout = this.layout): boolean {
		const previous = this.last;
		return previous?.n === n && sameTokens(previous.prompt, this.reading(targetPrompt, n, layout));
	}

	/**
	 * Whether the draft would now read its last reading plus text that begins its last guess, or begins one of
	 * `continuations` (the target's completion from the selection that guess scored): the user typed what was guessed
	 * or shown (typing along with the ghost text). Greedy decoding is a function of the tokens read, so the draft's
	 * guess for the new reading is the rest of the old one, and the target's completion the rest of the one shown: the
	 * selection those scores made still holds. Texts are compared from the token before the first difference on, so a
	 * retokenised junction (`= ` + `4` read as `=` + ` 4`) compares equal.
	 */
	typedAlong(targetPrompt: readonly number[], n: number, layout: DraftLayout = this.layout, continuations: readonly string[] = []): boolean {
		const previous = this.last;
		if (previous?.n !== n) {
			return false;
		}
		const reading = this.reading(targetPrompt, n, layout);
		let common = 0;
		while (common < Math.min(reading.length, previous.prompt.length) && reading[common] === previous.prompt[common]) {
			common++;
		}
		if (common < previous.prompt.length - maxRetokenisedTokens || reading.length <= common) {
			return false;
		}
		const from = Math.max(0, common - 1);
		const before = this.model.detokenize(previous.prompt.slice(from) as Token[]);
		const now = this.model.detokenize(reading.slice(from));
		if (!now.startsWith(before) || now.length === before.length) {
			return false;
		}
		const typed = now.slice(before.length);
		return [this.model.detokenize(previous.out as Token[]), ...continuations].some((continuation) => continuation.startsWith(typed));
	}

	/** The tokens the draft reads to guess `n` tokens after `targetPrompt`: its layout, cut to its context. */
	private reading(targetPrompt: readonly number[], n: number, layout: DraftLayout): Token[] {
		const prompt = draftPromptFor(targetPrompt, layout, this.fim);
		const room = this.context.contextSize - n - 1;
		return (prompt.length > room ? prompt.slice(prompt.length - room) : prompt) as Token[];
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

/** Tokens at the end of the last reading that typing may retokenise (a word merged with the typed characters). */
const maxRetokenisedTokens = 4;

function sameTokens(a: readonly number[], b: readonly number[]): boolean {
	if (a.length !== b.length) {
		return false;
	}
	for (let i = 0; i < a.length; i++) {
		if (a[i] !== b[i]) {
			return false;
		}
	}
	return true;
}

/** The model's FIM tokens as its GGUF declares them (the sidecar builds its prompts from the same ones). */
function fimTokensOf(model: LlamaModel): FimTokens | undefined {
	const { prefix, suffix, middle } = model.tokens.infill;
	return prefix === null || suffix === null || middle === null ? undefined : { prefix: Number(prefix), suffix: Number(suffix), middle: Number(middle) };
}

type DraftKvType = 'F16' | 'Q8_0';

interface KvShape {
	readonly layers: number;
	readonly kvHeads: number;
	readonly keyDim: number;
	readonly valueDim: number;
}

/** The KV cache's shape from a model's GGUF header: layers, KV heads, key and value head dims. */
function kvShapeOf(model: LlamaModel): KvShape {
	const metadata = model.fileInfo.metadata as unknown as Record<string, unknown>;
	const general = metadata['general'] as { architecture?: string } | undefined;
	const arch = (metadata[general?.architecture ?? 'llama'] ?? {}) as Record<string, unknown>;
	const attention = (arch['attention'] ?? {}) as Record<string, unknown>;
	const num = (value: unknown, fallback: number): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback);
	const heads = num(attention['head_count'], 1);
	const headDim = Math.round(num(arch['embedding_length'], 64) / heads);
	return {
		layers: num(arch['block_count'], 1),
		kvHeads: num(attention['head_count_kv'], heads),
		keyDim: num(attention['key_length'], headDim),
		valueDim: num(attention['value_length'], headDim),
	};
}

/** K and V bytes per token: layers × KV heads × (key + value dims) elements, f16 2 bytes each, Q8_0 34 per 32. */
export function kvBytesPerToken(shape: KvShape, type: DraftKvType): number {
	const elements = shape.layers * shape.kvHeads * (shape.keyDim + shape.valueDim);
	return type === 'F16' ? elements * 2 : (elements / 32) * 34;
}
