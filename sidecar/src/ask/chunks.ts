// Splits files into overlapping line windows for retrieval. A chunk remembers its file and 1-based line range, so a
// hit turns into a citation that exists: the line is read back from the same text the chunk came from.

export interface Chunk {
	readonly id: number;
	readonly path: string;
	/** 1-based first line. */
	readonly startLine: number;
	/** 1-based last line, inclusive. */
	readonly endLine: number;
	readonly text: string;
}

export interface ChunkOptions {
	/** Lines per chunk. Default 30. */
	readonly lines?: number;
	/** Lines shared by consecutive chunks. Default 5. */
	readonly overlap?: number;
	/** Longest chunk in characters; longer windows are cut short. Default 2000 (as llama.vscode). */
	readonly maxChars?: number;
}

export function chunkFile(path: string, text: string, firstId: number, options: ChunkOptions = {}): Chunk[] {
	const size = Math.max(1, options.lines ?? 30);
	const overlap = Math.min(size - 1, Math.max(0, options.overlap ?? 5));
	const maxChars = options.maxChars ?? 2000;
	const lines = text.split('\n');
	const chunks: Chunk[] = [];
	for (let start = 0; start < lines.length; ) {
		let end = Math.min(lines.length, start + size);
		let body = lines.slice(start, end).join('\n');
		while (body.length > maxChars && end - start > 1) {
			end = start + Math.max(1, Math.floor((end - start) / 2));
			body = lines.slice(start, end).join('\n');
		}
		if (body.trim() !== '') {
			chunks.push({ id: firstId + chunks.length, path, startLine: start + 1, endLine: end, text: body.slice(0, maxChars) });
		}
		if (end >= lines.length) {
			break;
		}
		start = Math.max(start + 1, end - overlap);
	}
	return chunks;
}
