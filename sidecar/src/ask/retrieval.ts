import type { Citation } from '../protocol';
import { Bm25Index, terms } from './bm25';
import { chunkFile, type Chunk } from './chunks';

// Lexical retrieval over the workspace for repository Q&A: files → line-window chunks → BM25. Chunks are cached per
// file text, and the index is rebuilt only when some file changed since the last search. A hit becomes a citation
// at the chunk's line that best matches the question, read from the same text, so every citation exists.

export interface RetrievableFile {
	readonly path: string;
	readonly text: string;
}

export interface RetrievalHit {
	readonly chunk: Chunk;
	readonly score: number;
	/** The chunk's best-matching line (1-based) and its text. */
	readonly line: number;
	readonly lineText: string;
}

export class RetrievalIndex {
	private readonly byPath = new Map<string, { text: string; chunks: Chunk[] }>();
	private index: { bm25: Bm25Index; chunks: Map<number, Chunk> } | undefined;
	private nextId = 0;

	/** Bring the index in line with the current files (unchanged files keep their chunks). */
	update(files: readonly RetrievableFile[]): void {
		const seen = new Set<string>();
		let changed = false;
		for (const file of files) {
			seen.add(file.path);
			const cached = this.byPath.get(file.path);
			if (cached?.text !== file.text) {
				const chunks = chunkFile(file.path, file.text, this.nextId);
				this.nextId += chunks.length;
				this.byPath.set(file.path, { text: file.text, chunks });
				changed = true;
			}
		}
		for (const path of [...this.byPath.keys()]) {
			if (!seen.has(path)) {
				this.byPath.delete(path);
				changed = true;
			}
		}
		if (changed) {
			this.index = undefined;
		}
	}

	get chunkCount(): number {
		let count = 0;
		for (const { chunks } of this.byPath.values()) {
			count += chunks.length;
		}
		return count;
	}

	/** Best chunks for a question, best first. `boostPath` (the active file) gets a 10 % bonus. */
	search(question: string, limit: number, boostPath?: string): RetrievalHit[] {
		const index = this.built();
		const queryTerms = terms(question);
		if (queryTerms.length === 0) {
			return [];
		}
		const hits = index.bm25.search(queryTerms, Math.max(limit * 2, limit + 8));
		const querySet = new Set(queryTerms);
		return hits
			.flatMap(({ id, score }) => {
				const chunk = index.chunks.get(id);
				return chunk === undefined ? [] : [{ chunk, score: chunk.path === boostPath ? score * 1.1 : score }];
			})
			.sort((a, b) => b.score - a.score || a.chunk.id - b.chunk.id)
			.slice(0, limit)
			.map(({ chunk, score }) => ({ chunk, score, ...bestLine(chunk, querySet) }));
	}

	private built(): { bm25: Bm25Index; chunks: Map<number, Chunk> } {
		if (this.index === undefined) {
			const chunks = new Map<number, Chunk>();
			for (const file of this.byPath.values()) {
				for (const chunk of file.chunks) {
					chunks.set(chunk.id, chunk);
				}
			}
			this.index = { bm25: new Bm25Index([...chunks.values()].map((chunk) => ({ id: chunk.id, terms: terms(chunk.text) }))), chunks };
		}
		return this.index;
	}
}

/** The chunk line sharing the most distinct terms with the question (the earliest on ties). */
function bestLine(chunk: Chunk, querySet: ReadonlySet<string>): { line: number; lineText: string } {
	const lines = chunk.text.split('\n');
	let best = 0;
	let bestScore = -1;
	lines.forEach((text, index) => {
		const found = new Set(terms(text).filter((term) => querySet.has(term)));
		// Whole identifiers (with `_` or mixed case) outweigh their parts; a definition line (`=`/`:`) wins ties.
		let score = 0;
		for (const term of found) {
			score += term.length > 3 ? 2 : 1;
		}
		if (score > 0 && /[=:]/.test(text)) {
			score += 0.5;
		}
		if (score > bestScore) {
			bestScore = score;
			best = index;
		}
	});
	return { line: chunk.startLine + best, lineText: lines[best] ?? '' };
}

/** Citations from hits: one per (file, line), best first, at most `limit`. */
export function citationsFrom(hits: readonly RetrievalHit[], limit: number): Citation[] {
	const seen = new Set<string>();
	const citations: Citation[] = [];
	for (const hit of hits) {
		const key = `${hit.chunk.path}:${hit.line}`;
		if (seen.has(key)) {
			continue;
		}
		seen.add(key);
		citations.push({ file: hit.chunk.path, line: hit.line, endLine: hit.chunk.endLine, preview: hit.lineText.trim().slice(0, 200), score: Math.round(hit.score * 1000) / 1000 });
		if (citations.length >= limit) {
			break;
		}
	}
	return citations;
}
