/** A cursor position as an editor's status bar shows it: both numbers start at 1. */
export interface EditorPosition {
	/** 1-based line number. */
	readonly line: number;
	/**
	 * 1-based column in UTF-16 code units (LSP's `character` + 1): a tab is one column, and a character outside the
	 * Basic Multilingual Plane (most emoji) is two. Column `length + 1` is the end of the line.
	 */
	readonly column: number;
}

/** Thrown for a position that lies outside the text; the message says which bound was crossed. */
export class PositionOutOfRangeError extends Error {
	override readonly name = 'PositionOutOfRangeError';
}

/**
 * The string offset of a 1-based editor position. Lines end at `\n`; a `\r` before it belongs to the line ending,
 * so CRLF files count columns like LF ones.
 */
export function offsetAt(text: string, position: EditorPosition): number {
	const { line, column } = position;
	if (!Number.isInteger(line) || !Number.isInteger(column) || line < 1 || column < 1) {
		throw new PositionOutOfRangeError(`line and column start at 1 (got line ${line}, column ${column})`);
	}
	let lineStart = 0;
	for (let current = 1; current < line; current++) {
		const newline = text.indexOf('\n', lineStart);
		if (newline === -1) {
			throw new PositionOutOfRangeError(`line ${line} is past the end of the file, which has ${current} line${current === 1 ? '' : 's'}`);
		}
		lineStart = newline + 1;
	}
	let lineEnd = text.indexOf('\n', lineStart);
	if (lineEnd === -1) {
		lineEnd = text.length;
	}
	if (lineEnd > lineStart && text[lineEnd - 1] === '\r') {
		lineEnd--;
	}
	const lineLength = lineEnd - lineStart;
	if (column > lineLength + 1) {
		throw new PositionOutOfRangeError(`column ${column} is past the end of line ${line}, which has ${lineLength} character${lineLength === 1 ? '' : 's'} (the last valid column is ${lineLength + 1})`);
	}
	return lineStart + column - 1;
}
