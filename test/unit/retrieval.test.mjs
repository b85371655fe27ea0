// Repository Q&A retrieval: code-aware terms, BM25, line chunks, citations that exist, and streaming hold-back.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { needleWorkspace, sidecar } from '../support/sidecar.mjs';

const { terms, Bm25Index, chunkFile, RetrievalIndex, citationsFrom, holdBack, readWorkspace } = sidecar;

describe('terms', () => {
	test('identifiers whole and by their camelCase / snake_case parts; stop words dropped', () => {
		assert.deepEqual(terms('Where is RETRY_LIMIT_MS defined?'), ['retry_limit_ms', 'retry', 'limit', 'ms']);
		assert.deepEqual(terms('retryDelay(20)'), ['retrydelay', 'retry', 'delay', '20']);
		assert.deepEqual(terms('parseHTTPResponse'), ['parsehttpresponse', 'parse', 'http', 'response']);
	});
});

describe('Bm25Index', () => {
	test('ranks by term rarity and frequency, length-normalised, deterministic on ties', () => {
		const index = new Bm25Index([
			{ id: 0, terms: ['retry', 'limit', 'common'] },
			{ id: 1, terms: ['common', 'common', 'other'] },
			{ id: 2, terms: ['retry', 'common'] },
			{ id: 3, terms: ['unrelated'] },
		]);
		const hits = index.search(['retry', 'limit'], 10);
		assert.deepEqual(hits.map((h) => h.id), [0, 2]);
		assert.ok(hits[0].score > hits[1].score);
		assert.deepEqual(index.search(['absent'], 10), []);
		assert.equal(index.search(['common'], 2).length, 2);
	});
});

describe('chunkFile', () => {
	test('overlapping windows with 1-based inclusive line ranges; blank windows skipped', () => {
		const text = Array.from({ length: 70 }, (_, i) => `line ${i + 1}`).join('\n');
		const chunks = chunkFile('a.ts', text, 100, { lines: 30, overlap: 5 });
		assert.deepEqual(chunks.map((c) => [c.id, c.startLine, c.endLine]), [[100, 1, 30], [101, 26, 55], [102, 51, 70]]);
		assert.equal(chunks[1].text.split('\n')[0], 'line 26');
		assert.deepEqual(chunkFile('b.ts', '\n\n\n', 0), []);
	});

	test('a very long line is cut to maxChars', () => {
		const [chunk] = chunkFile('min.js', 'x'.repeat(10_000), 0, { maxChars: 2000 });
		assert.equal(chunk.text.length, 2000);
	});
});

describe('RetrievalIndex on the needle workspace', () => {
	test('finds the definition and cites lines that exist with their text', async () => {
		const snapshot = await readWorkspace(needleWorkspace);
		const index = new RetrievalIndex();
		index.update(snapshot.files);
		const hits = index.search('where is RETRY_LIMIT_MS defined?', 8);
		const citations = citationsFrom(hits, 5);
		assert.ok(citations.length > 0);
		const definition = citations.find((c) => c.file === 'src/config.ts');
		assert.ok(definition !== undefined, JSON.stringify(citations));
		for (const citation of citations) {
			const lines = readFileSync(path.join(needleWorkspace, citation.file), 'utf8').split('\n');
			assert.ok(citation.line >= 1 && citation.line <= lines.length, `${citation.file}:${citation.line} exists`);
			assert.equal(citation.preview, lines[citation.line - 1].trim().slice(0, 200));
			assert.ok(citation.endLine >= citation.line);
		}
		assert.match(definition.preview, /RETRY_LIMIT_MS = 4817/);
	});

	test('updates incrementally: a changed file is re-chunked, a removed one leaves', () => {
		const index = new RetrievalIndex();
		index.update([{ path: 'a.ts', text: 'const alpha = 1;' }, { path: 'b.ts', text: 'const beta = 2;' }]);
		assert.equal(index.search('beta', 5)[0].chunk.path, 'b.ts');
		index.update([{ path: 'a.ts', text: 'const beta = 3;' }]);
		const hits = index.search('beta', 5);
		assert.deepEqual(hits.map((h) => h.chunk.path), ['a.ts']);
		assert.equal(hits[0].line, 1);
		assert.deepEqual(index.search('the what where', 5), [], 'only stop words: nothing');
	});
});

describe('holdBack', () => {
	test('never streams a stop string or the start of one', () => {
		const stops = ['\n\n', 'Question:'];
		assert.equal(holdBack('It is in config.ts\n\nQuestion', stops), 'It is in config.ts');
		assert.equal(holdBack('It is in config.ts Ques', stops), 'It is in config.ts ');
		assert.equal(holdBack('It is\n', stops), 'It is');
		assert.equal(holdBack('plain', stops), 'plain');
	});
});
