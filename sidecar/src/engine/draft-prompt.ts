// What SpecKV's draft reads (docs/kv-policies.md, "SpecKV" step 1). The draft only guesses the next tokens; the target
// then scores the guess against its own prompt. So the draft may read the context in whichever layout it guesses best.
//
// `prefix-last` (the default): a FIM-ordered active file `<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>` is given to
// the draft as plain text `P`, so the cursor is the last token and the code just before it (the name being looked
// up) is adjacent, as in an ordinary file. The bundled 2-layer draft cannot make the hop from `<|fim_middle|>` back to
// the text before `<|fim_suffix|>` and then match it; its retrieval on FIM-ordered needles is far better as
// `prefix-last` (figures: models/README.md, docs/architecture.md "Departures").
// The suffix is dropped: the guess only has to be right about the next few tokens.
//
// `fim`: the target's prompt unchanged (for a draft that reads FIM well, e.g. a larger model).

import type { DraftLayout } from '../protocol';

/** The FIM control tokens of the draft's vocabulary. */
export interface FimTokens {
	readonly prefix: number;
	readonly suffix: number;
	readonly middle: number;
}

/**
 * The draft's prompt for the target's `prompt`. `prefix-last` rewrites only a prompt that ends in a FIM-ordered file
 * (`…<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>`): everything before `<|fim_prefix|>`, then P. Any other prompt
 * (plain, or without the draft's FIM tokens) is returned as it is.
 */
export function draftPromptFor(prompt: readonly number[], layout: DraftLayout, fim: FimTokens | undefined): readonly number[] {
	if (layout === 'fim' || fim === undefined || prompt.at(-1) !== fim.middle) {
		return prompt;
	}
	const suffixAt = prompt.lastIndexOf(fim.suffix);
	const prefixAt = suffixAt < 0 ? -1 : prompt.lastIndexOf(fim.prefix, suffixAt);
	if (prefixAt < 0) {
		return prompt;
	}
	return [...prompt.slice(0, prefixAt), ...prompt.slice(prefixAt + 1, suffixAt)];
}
