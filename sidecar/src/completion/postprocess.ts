// A first, deliberately small post-processing step for raw model output. The full pipeline (bracket balancing
// against the suffix, de-duplication with the following lines, golden tests) is a later issue; this keeps what a
// user would accept and cuts what obviously runs past the completion.

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
}

/**
 * Choose the mode an editor would: typing in the middle of a line (something other than whitespace before the
 * cursor) wants the rest of that line; an empty or indentation-only line wants a block.
 */
export function chooseMode(linePrefix: string): CompletionMode {
	return linePrefix.trim() === '' ? 'multiLine' : 'singleLine';
}

/** Stop strings to give the engine for a mode, so it does not generate what post-processing would cut anyway. */
export function stopStringsFor(mode: CompletionMode): string[] {
	return mode === 'singleLine' ? ['\n'] : ['\n\n', '\r\n\r\n'];
}

export function postprocessCompletion(raw: string, context: PostprocessContext): string {
	let text = raw.replace(/\r\n/g, '\n');
	if (context.mode === 'singleLine') {
		const newline = text.indexOf('\n');
		if (newline !== -1) {
			text = text.slice(0, newline);
		}
	} else {
		text = cutAtBlankLine(text);
		text = cutAtBlockEnd(text, indentationOf(context.linePrefix));
	}
	text = text.trimEnd();
	// The model often re-types what already follows the cursor (a closing `);`); do not insert it twice.
	const rest = context.lineSuffix.trim();
	if (rest !== '' && text.endsWith(rest)) {
		text = text.slice(0, text.length - rest.length).trimEnd();
	}
	return text;
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
