// Okapi BM25 over code chunks, small and dependency-free. Code needs its own term splitting: identifiers are
// indexed whole and by their parts (`RETRY_LIMIT_MS` → `retry_limit_ms`, `retry`, `limit`, `ms`; `retryDelay` →
// `retrydelay`, `retry`, `delay`), so a question in words finds an identifier and an identifier finds itself.

/** Terms of a text, lower-cased: whole identifiers and their camelCase/snake_case parts, numbers, words. */
export function terms(text: string): string[] {
	const out: string[] = [];
	for (const match of text.matchAll(/[\p{L}\p{N}_$]+/gu)) {
		const word = match[0];
		if (word.length > 64) {
			continue;
		}
		const lower = word.toLowerCase();
		if (!stopWords.has(lower) && (lower.length > 1 || /\d/.test(lower))) {
			out.push(lower);
		}
		const parts = word
			.replace(/([a-z\d])([A-Z])/g, '$1 $2')
			.replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
			.split(/[_$\s]+/)
			.map((part) => part.toLowerCase())
			.filter((part) => part.length > 1 && !stopWords.has(part));
		if (parts.length > 1) {
			out.push(...parts);
		}
	}
	return out;
}

/** English question words and the most common keywords, which say nothing about where an answer is. */
const stopWords = new Set([
	'the', 'a', 'an', 'is', 'are', 'was', 'be', 'of', 'to', 'in', 'on', 'for', 'and', 'or', 'it', 'its', 'this', 'that',
	'what', 'where', 'which', 'who', 'how', 'why', 'when', 'does', 'do', 'did', 'with', 'as', 'by', 'at', 'from', 'can',
	'defined', 'define', 'value', 'set', 'used', 'use', 'file', 'code', 'there', 'i', 'we', 'you', 'me', 'my', 'our',
]);

export interface Bm25Document {
	readonly id: number;
	readonly terms: readonly string[];
}

export interface Bm25Hit {
	readonly id: number;
	readonly score: number;
}

/** An immutable BM25 index; rebuild it (cheap) when the documents change. k1 = 1.2, b = 0.75 (the usual values). */
export class Bm25Index {
	private readonly postings = new Map<string, { id: number; tf: number }[]>();
	private readonly lengths = new Map<number, number>();
	private readonly averageLength: number;

	constructor(
		documents: readonly Bm25Document[],
		private readonly k1 = 1.2,
		private readonly b = 0.75,
	) {
		let total = 0;
		for (const document of documents) {
			this.lengths.set(document.id, document.terms.length);
			total += document.terms.length;
			const counts = new Map<string, number>();
			for (const term of document.terms) {
				counts.set(term, (counts.get(term) ?? 0) + 1);
			}
			for (const [term, tf] of counts) {
				let list = this.postings.get(term);
				if (list === undefined) {
					list = [];
					this.postings.set(term, list);
				}
				list.push({ id: document.id, tf });
			}
		}
		this.averageLength = documents.length === 0 ? 0 : total / documents.length;
	}

	get size(): number {
		return this.lengths.size;
	}

	/** Documents scoring above 0 for the query's terms, best first (ties by id, so results are deterministic). */
	search(queryTerms: readonly string[], limit: number): Bm25Hit[] {
		const n = this.lengths.size;
		const scores = new Map<number, number>();
		for (const term of new Set(queryTerms)) {
			const list = this.postings.get(term);
			if (list === undefined) {
				continue;
			}
			// The "plus one" IDF variant (Lucene's): never negative, even for a term in most documents.
			const idf = Math.log(1 + (n - list.length + 0.5) / (list.length + 0.5));
			for (const { id, tf } of list) {
				const length = this.lengths.get(id) ?? 0;
				const norm = tf + this.k1 * (1 - this.b + (this.b * length) / (this.averageLength || 1));
				scores.set(id, (scores.get(id) ?? 0) + (idf * tf * (this.k1 + 1)) / norm);
			}
		}
		return [...scores.entries()]
			.map(([id, score]) => ({ id, score }))
			.sort((x, y) => y.score - x.score || x.id - y.id)
			.slice(0, limit);
	}
}
