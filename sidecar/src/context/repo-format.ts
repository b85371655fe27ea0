import type { SpecialTokenTexts } from '../engine/types';
import { defaultSpecialTokenTexts } from '../engine/types';

// Which prompt format a model was trained on for a whole repository, read from its vocabulary.
//
// Qwen2.5-Coder declares a repository-level format with two control tokens of its vocabulary:
//
//   <|repo_name|>{name}\n<|file_sep|>{path}\n{content}\n ... <|file_sep|>{active}\n<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>
//
// A model whose vocabulary has both `<|repo_name|>` and `<|file_sep|>` as control tokens gets it (the builder writes
// the `<|repo_name|>` header and ends every file with a newline); any other model keeps the bundled models' format,
// which is the same without the header (models/README.md).

/** Texts of the repository-level format's tokens, as Qwen2.5-Coder spells them. */
export const repoNameTokenText = '<|repo_name|>';

/** What the detection needs of a vocabulary; node-llama-cpp's `LlamaModel` has it. */
export interface VocabularyLookup {
	tokenize(text: string, specialTokens: boolean): readonly number[];
	getTokenAttributes(token: never): { readonly control: boolean };
	readonly tokens: {
		readonly infill: { readonly prefixString: string | null; readonly suffixString: string | null; readonly middleString: string | null };
		readonly eosString: string | null;
	};
}

/** The id of `text` when the vocabulary has it as one control token; undefined otherwise. */
export function controlTokenId(vocab: VocabularyLookup, text: string): number | undefined {
	const ids = vocab.tokenize(text, true);
	const [only] = ids;
	if (ids.length !== 1 || only === undefined) {
		return undefined;
	}
	return vocab.getTokenAttributes(only as never).control ? only : undefined;
}

/** Whether the vocabulary declares Qwen2.5-Coder's repository-level format (`<|repo_name|>` and `<|file_sep|>`). */
export function hasRepoLevelFormat(vocab: VocabularyLookup): boolean {
	return controlTokenId(vocab, repoNameTokenText) !== undefined && controlTokenId(vocab, defaultSpecialTokenTexts.fileSeparator) !== undefined;
}

/**
 * The special token texts the prompt builder writes for this model: the FIM tokens the GGUF declares (or the
 * defaults), the file separator, the end of text, and `repoName` only when the model has the repository-level format.
 */
export function specialTokenTextsOf(vocab: VocabularyLookup): SpecialTokenTexts {
	const { infill } = vocab.tokens;
	return {
		fimPrefix: infill.prefixString ?? defaultSpecialTokenTexts.fimPrefix,
		fimSuffix: infill.suffixString ?? defaultSpecialTokenTexts.fimSuffix,
		fimMiddle: infill.middleString ?? defaultSpecialTokenTexts.fimMiddle,
		// llama.cpp has no accessor for the file separator's text; it recognises `<|file_sep|>` by its text.
		fileSeparator: defaultSpecialTokenTexts.fileSeparator,
		endOfText: vocab.tokens.eosString ?? defaultSpecialTokenTexts.endOfText,
		...(hasRepoLevelFormat(vocab) ? { repoName: repoNameTokenText } : {}),
	};
}

/** The repository-level header, `<|repo_name|>{name}\n`, or '' for a model without the format. */
export function repoHeaderText(special: SpecialTokenTexts, repoName: string): string {
	return special.repoName === undefined ? '' : `${special.repoName}${repoName}\n`;
}
