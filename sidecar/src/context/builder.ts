import type { SpecialTokenTexts, TokenCounter } from '../engine/types';
import { inSameFolder, resolveImports } from './neighbours';
import { repoHeaderText } from './repo-format';

// Builds the long-context completion prompt (docs/architecture.md, "Prompt layout"):
//
//   <|file_sep|>a.ts\n...<|file_sep|>b.ts\n...            repository block, least relevant first
//   <|file_sep|>{active}\n<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>     the active file's FIM prompt
//
// A model with Qwen2.5-Coder's repository-level format (`specialTokens.repoName`, repo-format.ts) gets the same
// layout under a `<|repo_name|>{name}\n` header, every file ending with a newline, as it was trained:
//
//   <|repo_name|>{name}\n<|file_sep|>a.ts\n...\n<|file_sep|>{active}\n<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>
//
// Files are ordered stable-first: files unrelated to the active one first, then its neighbours (same folder, then
// the files it imports), so that what matters most sits next to the cursor and the start of the prompt changes
// least between requests (the KV cache of an unchanged prefix can be reused). When the prompt does not fit, whole
// files are dropped, least relevant first; a file is never cut in half, and the FIM prompt is never cut.

/** A file as the builder needs it. */
export interface PromptFile {
	/** Workspace-relative path with forward slashes; it is written into the prompt. */
	readonly path: string;
	readonly text: string;
}

export interface BuildPromptOptions {
	/** Workspace files. The active file is skipped if present: its text goes into the FIM prompt instead. */
	readonly files: readonly PromptFile[];
	readonly activePath: string;
	/** The active file's current text (an editor's buffer may differ from the disk). */
	readonly activeText: string;
	/** Cursor as a string offset into `activeText`. */
	readonly cursorOffset: number;
	readonly specialTokens: SpecialTokenTexts;
	readonly counter: TokenCounter;
	/** Tokens the whole prompt may take: the context window less generated tokens and BOS. */
	readonly budgetTokens: number;
	/** The prefix keeps at most its last this-many tokens (whole lines). Default 1500. */
	readonly maxPrefixTokens?: number;
	/** The suffix keeps at most its first this-many tokens (whole lines). Default 500. */
	readonly maxSuffixTokens?: number;
	/**
	 * Puts the files in prompt order, least relevant first (dropping to fit starts there). Default
	 * `orderByRelevance`; the language server passes its stable-first order (least recently edited first).
	 */
	readonly orderFiles?: (files: readonly PromptFile[], activePath: string, activeText: string) => PromptFile[];
	/**
	 * The repository's name, for models with the repository-level format (`specialTokens.repoName`): the workspace
	 * folder's name. Default `defaultRepoName`. Ignored for other models.
	 */
	readonly repoName?: string;
}

/** One file's piece of the prompt and the tokens it takes (as counted piece by piece). */
export interface PromptSpan {
	readonly path: string;
	/** `repo`: a whole file of the repository block; `active`: the FIM prompt of the active file. */
	readonly role: 'repo' | 'active';
	readonly tokens: number;
}

export interface BuiltPrompt {
	/** The whole prompt: repository block, then the FIM prompt. */
	readonly text: string;
	/** Just the FIM prompt, the prompt's tail. */
	readonly fimPrompt: string;
	/** The prefix and suffix as kept (after capping and neutralising special token texts). */
	readonly prefix: string;
	readonly suffix: string;
	/** Paths in the repository block, in prompt order. */
	readonly included: readonly string[];
	/** Paths left out to fit the budget, most relevant first. */
	readonly dropped: readonly string[];
	/** Prompt tokens as counted piece by piece (exact for tokenizers that split at special tokens, as llama.cpp does). */
	readonly tokenCount: number;
	/** The prompt's pieces in order: the included files, then the active file's FIM prompt. */
	readonly spans: readonly PromptSpan[];
}

export const defaultMaxPrefixTokens = 1500;
export const defaultMaxSuffixTokens = 500;
/** The repository-level header's name when the caller does not know the workspace's. */
export const defaultRepoName = 'workspace';

/** Thrown when even the FIM prompt alone does not fit the budget: the context window is too small to be useful. */
export class ContextBudgetError extends Error {
	override readonly name = 'ContextBudgetError';
}

export function buildCompletionPrompt(options: BuildPromptOptions): BuiltPrompt {
	const { specialTokens: special, counter } = options;
	const maxPrefixTokens = options.maxPrefixTokens ?? defaultMaxPrefixTokens;
	const maxSuffixTokens = options.maxSuffixTokens ?? defaultMaxSuffixTokens;

	const neutral = (text: string): string => neutraliseSpecialTokens(text, special);
	const prefix = keepLastTokens(neutral(options.activeText.slice(0, options.cursorOffset)), maxPrefixTokens, counter);
	const suffix = keepFirstTokens(neutral(options.activeText.slice(options.cursorOffset)), maxSuffixTokens, counter);
	const fimPrompt = `${special.fileSeparator}${options.activePath}\n${special.fimPrefix}${prefix}${special.fimSuffix}${suffix}${special.fimMiddle}`;
	const fimTokens = counter.countTokens(fimPrompt);
	// The repository-level header (empty for models without the format) always comes first, whatever fits after it.
	const header = repoHeaderText(special, neutral(oneLine(options.repoName ?? defaultRepoName)));
	const headerTokens = header === '' ? 0 : counter.countTokens(header);
	if (fimTokens + headerTokens > options.budgetTokens) {
		throw new ContextBudgetError(`the completion prompt alone needs ${fimTokens + headerTokens} tokens but only ${options.budgetTokens} fit in the context; use a larger context`);
	}

	const ordered = (options.orderFiles ?? orderByRelevance)(options.files.filter((file) => file.path !== options.activePath), options.activePath, options.activeText);
	const pieces = ordered.map((file) => {
		const text = repoPieceText(file, special);
		return { path: file.path, text, tokens: counter.countTokens(text) };
	});

	// Fill from the most relevant end. A file that does not fit is dropped, but smaller, less relevant files may
	// still fit after it: every token of context the window allows is used.
	let remaining = options.budgetTokens - fimTokens - headerTokens;
	const keep = new Array<boolean>(pieces.length).fill(false);
	const dropped: string[] = [];
	for (let index = pieces.length - 1; index >= 0; index--) {
		const piece = pieces[index];
		if (piece === undefined) {
			continue;
		}
		if (piece.tokens <= remaining) {
			keep[index] = true;
			remaining -= piece.tokens;
		} else {
			dropped.push(piece.path);
		}
	}
	const kept = pieces.filter((_, index) => keep[index]);
	const spans: PromptSpan[] = [...kept.map((piece) => ({ path: piece.path, role: 'repo' as const, tokens: piece.tokens })), { path: options.activePath, role: 'active', tokens: fimTokens }];
	// The header's tokens are counted in the first span, so the spans still add up to the prompt.
	const [first, ...rest] = spans;
	const spansWithHeader = first === undefined ? spans : [{ ...first, tokens: first.tokens + headerTokens }, ...rest];

	return {
		text: header + kept.map((piece) => piece.text).join('') + fimPrompt,
		fimPrompt,
		prefix,
		suffix,
		included: kept.map((piece) => piece.path),
		dropped,
		tokenCount: options.budgetTokens - remaining,
		spans: spansWithHeader,
	};
}

/**
 * A file's piece of the repository block: `<|file_sep|>{path}\n{text}`, special token texts neutralised. With the
 * repository-level format the text ends with a newline (the next `<|file_sep|>` starts a line, as in training).
 */
export function repoPieceText(file: PromptFile, special: SpecialTokenTexts): string {
	const text = neutraliseSpecialTokens(file.text, special);
	const ending = special.repoName !== undefined && !text.endsWith('\n') ? '\n' : '';
	return `${special.fileSeparator}${file.path}\n${text}${ending}`;
}

/** A name for the header: its first line (a newline would end the header early). */
function oneLine(name: string): string {
	return name.split(/\r?\n/, 1)[0] ?? '';
}

/**
 * Workspace files other than the active one, least relevant first: unrelated files (by path, a stable order),
 * then files in the active file's folder, then the files it imports (in import order), which end up nearest the
 * cursor.
 */
export function orderByRelevance(files: readonly PromptFile[], activePath: string, activeText: string): PromptFile[] {
	const byPath = new Map(files.filter((file) => file.path !== activePath).map((file) => [file.path, file]));
	const imported = resolveImports(activePath, activeText, new Set(byPath.keys()));
	const importedSet = new Set(imported);
	const rest = [...byPath.values()].filter((file) => !importedSet.has(file.path)).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
	const others = rest.filter((file) => !inSameFolder(file.path, activePath));
	const sameFolder = rest.filter((file) => inSameFolder(file.path, activePath));
	const importedFiles = imported.flatMap((p) => {
		const file = byPath.get(p);
		return file === undefined ? [] : [file];
	});
	return [...others, ...sameFolder, ...importedFiles];
}

/**
 * Break up special token texts that occur inside file contents, by inserting a zero-width space after their first
 * character. The prompt is tokenized with special-token parsing on (its structure needs it), so a source file that
 * merely mentions `<|file_sep|>` (a tokenizer's source, or repokv's own) would otherwise inject a real separator.
 */
export function neutraliseSpecialTokens(text: string, special: SpecialTokenTexts): string {
	let result = text;
	for (const token of [special.fimPrefix, special.fimSuffix, special.fimMiddle, special.fileSeparator, special.endOfText, special.repoName ?? '']) {
		if (token.length > 1 && result.includes(token)) {
			result = result.split(token).join(`${token.slice(0, 1)}\u200b${token.slice(1)}`);
		}
	}
	return result;
}

/** The longest tail of `text` that starts at a line start (or, for one huge line, anywhere) and fits `maxTokens`. */
export function keepLastTokens(text: string, maxTokens: number, counter: TokenCounter): string {
	if (counter.countTokens(text) <= maxTokens) {
		return text;
	}
	// Starts of non-empty lines: a cut there keeps whole lines.
	const starts = lineStarts(text).filter((start) => start < text.length);
	// Token counts shrink as the cut moves later, so binary search for the earliest line start that fits.
	const fitsFrom = (start: number): boolean => counter.countTokens(text.slice(start)) <= maxTokens;
	const line = firstTrue(starts.length, (i) => fitsFrom(starts[i] ?? text.length));
	const lineStart = starts[line];
	if (lineStart !== undefined) {
		return text.slice(lineStart);
	}
	// Even the last line is too long: cut inside it, at a character.
	const lastStart = starts[starts.length - 1] ?? 0;
	const cut = firstTrue(text.length - lastStart + 1, (i) => fitsFrom(lastStart + i));
	return text.slice(lastStart + cut);
}

/** The longest head of `text` that ends at a line end (or, for one huge line, anywhere) and fits `maxTokens`. */
export function keepFirstTokens(text: string, maxTokens: number, counter: TokenCounter): string {
	if (counter.countTokens(text) <= maxTokens) {
		return text;
	}
	// Candidate ends just after each newline; take the last one that fits.
	const ends = lineStarts(text).slice(1);
	const fitsTo = (end: number): boolean => counter.countTokens(text.slice(0, end)) <= maxTokens;
	const count = firstTrue(ends.length, (i) => !fitsTo(ends[i] ?? text.length));
	if (count > 0) {
		return text.slice(0, ends[count - 1]);
	}
	const firstLineEnd = ends[0] ?? text.length;
	const chars = firstTrue(firstLineEnd + 1, (i) => !fitsTo(i));
	return text.slice(0, Math.max(0, chars - 1));
}

/** Offsets at which lines start: 0 and every position just after a `\n`. */
function lineStarts(text: string): number[] {
	const starts = [0];
	for (let index = text.indexOf('\n'); index !== -1; index = text.indexOf('\n', index + 1)) {
		starts.push(index + 1);
	}
	return starts;
}

/** The smallest i in [0, n) for which the monotone predicate holds, or n if none does. */
function firstTrue(n: number, predicate: (i: number) => boolean): number {
	let low = 0;
	let high = n;
	while (low < high) {
		const middle = (low + high) >>> 1;
		if (predicate(middle)) {
			high = middle;
		} else {
			low = middle + 1;
		}
	}
	return low;
}
