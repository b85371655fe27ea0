// Post-processing of raw model output into what an editor inserts at the cursor. Each rule is one function, applied
// in order by `postprocessCompletion`, and covered by golden fixtures (test/fixtures/postprocess/*.golden, cursor
// marked with ║). The rules follow what users expect from Copilot, Tabby and llama.vscode (docs/architecture.md,
// "What users expect from peer tools"):
//
//   1. mode        single-line mode keeps the first line; multi-line mode ends at a blank line
//   2. block end   multi-line: stop before a line indented less than the cursor's line (it closes an outer block)
//   3. repetition  cut runs of the same line, and a short pattern repeated to the end of a line
//   4. next lines  multi-line: stop where the completion starts re-typing the lines below the cursor
//   5. suffix      drop what duplicates the rest of the cursor's line (`);` already after the cursor)

/**
 * `singleLine`: complete the rest of the current line only. `multiLine`: a block, ended by a blank line or by
 * leaving the cursor's block.
 */
export type CompletionMode = 'singleLine' | 'multiLine';

export interface PostprocessContext {
	readonly mode: CompletionMode;
	/** Text of the cursor's line before the cursor. */
	readonly linePrefix: string;
	/** Text of the cursor's line after the cursor. */
	readonly lineSuffix: string;
	/** The document after the cursor's line (the lines below it); enables rule 4. */
	readonly nextLines?: string;
}

/**
 * Choose the mode an editor would: typing in the middle of a line (something other than whitespace before the
 * cursor, or code after it) wants the rest of that line; an empty or indentation-only line wants a block.
 */
export function chooseMode(linePrefix: string, lineSuffix = ''): CompletionMode {
	if (linePrefix.trim() !== '') {
		return 'singleLine';
	}
	// Only closing brackets and punctuation after the cursor still allow a block before them.
	return /^[\s)\]};,]*$/.test(lineSuffix) ? 'multiLine' : 'singleLine';
}

/** Stop strings to give the engine for a mode, so it does not generate what post-processing would cut anyway. */
export function stopStringsFor(mode: CompletionMode): string[] {
	return mode === 'singleLine' ? ['\n'] : ['\n\n', '\r\n\r\n'];
}

/** The post-processing context at a string offset of a document: its line around the cursor and what follows. */
export function postprocessContextAt(text: string, offset: number, mode?: CompletionMode): PostprocessContext {
	const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
	const newline = text.indexOf('\n', offset);
	const lineEnd = newline === -1 ? text.length : newline;
	const linePrefix = text.slice(lineStart, offset);
	const lineSuffix = text.slice(offset, lineEnd).replace(/\r$/, '');
	return {
		mode: mode ?? chooseMode(linePrefix, lineSuffix),
		linePrefix,
		lineSuffix,
		nextLines: newline === -1 ? '' : text.slice(newline + 1),
	};
}

export function postprocessCompletion(raw: string, context: PostprocessContext): string {
	let text = raw.replace(/\r\n/g, '\n');
	if (context.mode === 'singleLine') {
		text = firstLine(text);
	} else {
		text = cutAtBlankLine(text);
		text = cutAtBlockEnd(text, indentationOf(context.linePrefix));
	}
	text = cutRepetition(text);
	if (context.mode === 'multiLine' && context.nextLines !== undefined) {
		text = cutAtNextLines(text, context.nextLines);
	}
	text = text.trimEnd();
	text = dropSuffixDuplicate(text, context.lineSuffix);
	return text.trim() === '' ? '' : text;
}

function firstLine(text: string): string {
	const newline = text.indexOf('\n');
	return newline === -1 ? text : text.slice(0, newline);
}

function cutAtBlankLine(text: string): string {
	const match = /\n[ \t]*\n/.exec(text);
	return match === null ? text : text.slice(0, match.index);
}

/**
 * Cut before the first later line indented less than the cursor's line: that line belongs to an enclosing block
 * (typically its closing brace, which the editor usually already has after the cursor).
 */
function cutAtBlockEnd(text: string, cursorIndent: number): string {
	const lines = text.split('\n');
	for (let index = 1; index < lines.length; index++) {
		const line = lines[index] ?? '';
		if (line.trim() !== '' && indentationOf(line) < cursorIndent) {
			return lines.slice(0, index).join('\n');
		}
	}
	return text;
}

/**
 * Small models loop. Keep one copy of a line repeated three or more times in a row (and drop what follows it), and
 * cut a line that ends in a short pattern repeated four or more times (`0, 0, 0, 0, 0`) after its first copy.
 */
function cutRepetition(text: string): string {
	const lines = text.split('\n');
	let kept = lines.length;
	for (let index = 2; index < lines.length; index++) {
		const line = (lines[index] ?? '').trim();
		if (line !== '' && line === (lines[index - 1] ?? '').trim() && line === (lines[index - 2] ?? '').trim()) {
			kept = index - 1;
			break;
		}
	}
	const result = lines.slice(0, kept);
	for (let index = 0; index < result.length; index++) {
		const line = result[index] ?? '';
		const match = /(.{1,24}?)\1{3,}\s*$/.exec(line);
		// A run of one character that is indentation or a rule (`----`, `====`) is not a loop.
		if (match?.[1] !== undefined && /[\p{L}\p{N}]/u.test(match[1])) {
			result[index] = line.slice(0, match.index + match[1].length);
			return result.slice(0, index + 1).join('\n');
		}
	}
	return result.join('\n');
}

/**
 * Stop where the completion re-types the code below the cursor: at the first completion line (after the first) that
 * equals the next non-blank line of the document. A completion whose first line already equals it is dropped.
 */
function cutAtNextLines(text: string, nextLines: string): string {
	const next = nextLines
		.split('\n')
		.map((line) => line.trim())
		.find((line) => line !== '');
	if (next === undefined || next.length < 2) {
		return text;
	}
	const lines = text.split('\n');
	for (let index = 0; index < lines.length; index++) {
		if ((lines[index] ?? '').trim() === next) {
			return lines.slice(0, index).join('\n');
		}
	}
	return text;
}

/** The model often re-types what already follows the cursor on its line (a closing `);`): do not insert it twice. */
function dropSuffixDuplicate(text: string, lineSuffix: string): string {
	const rest = lineSuffix.trim();
	if (rest === '') {
		return text;
	}
	const lastLine = text.slice(text.lastIndexOf('\n') + 1);
	if (lastLine.trim() !== '' && rest.startsWith(lastLine.trim()) && !text.includes('\n')) {
		// The whole (single-line) completion is what already follows the cursor.
		return '';
	}
	if (text.endsWith(rest)) {
		return text.slice(0, text.length - rest.length).trimEnd();
	}
	return text;
}

/** Indentation width, counting a tab as one level of four columns. */
function indentationOf(line: string): number {
	let width = 0;
	for (const char of line) {
		if (char === ' ') {
			width += 1;
		} else if (char === '\t') {
			width += 4;
		} else {
			break;
		}
	}
	return width;
}
