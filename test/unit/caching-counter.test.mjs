// The token-count cache the completion prompt is built with (sidecar/src/server/engine-host.ts CachingCounter):
// exact counts, hits without the tokenizer, the repository's pieces kept while one keystroke's texts go, and a bound
// on memory: a document being edited must not stay alive once per keystroke through the slices cut from it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { fakeCounter, sidecar } from '../support/sidecar.mjs';

const { CachingCounter, buildCompletionPrompt, defaultSpecialTokenTexts } = sidecar;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

/** A fake tokenizer that counts its calls per text (not for the edited document's texts: keeping them would hold it). */
function countingInner() {
	const inner = fakeCounter();
	const calls = new Map();
	return {
		calls,
		countTokens(text) {
			if (!text.includes('handler(')) calls.set(text, (calls.get(text) ?? 0) + 1);
			return inner.countTokens(text);
		},
	};
}

const line = 'export function handler(request: Request): Response { return new Response(String(request.url)); }\n';

describe('CachingCounter', () => {
	test('counts as the tokenizer does, and a text counted before costs no tokenizer call', () => {
		const inner = countingInner();
		const counter = new CachingCounter(inner);
		const text = 'const retries = 3;\n'.repeat(8);
		assert.equal(counter.countTokens(text), fakeCounter().countTokens(text));
		assert.equal(counter.countTokens(`${text}`), fakeCounter().countTokens(text));
		assert.equal(inner.calls.get(text), 1);
		const lone = `\ud800${text}é`;
		assert.equal(counter.countTokens(lone), fakeCounter().countTokens(lone));
		assert.equal(counter.countTokens(lone), fakeCounter().countTokens(lone));
		assert.equal(inner.calls.get(lone), 1, 'two-byte text with a lone surrogate is cached exactly too');
	});

	test('editing a 1 MiB file keeps neither one document per keystroke nor more than its bound; the repository stays cached', () => {
		const inner = countingInner();
		const maxChars = 8 * 1024 * 1024;
		const counter = new CachingCounter(inner, 20_000, maxChars);
		const files = [{ path: 'src/a.ts', text: 'export const A = 1;\n'.repeat(200) }];
		let doc = line.repeat(Math.ceil((1 << 20) / line.length));
		gc();
		const before = process.memoryUsage().heapUsed;
		for (let keystroke = 0; keystroke < 100; keystroke++) {
			const at = doc.length >> 1;
			doc = `${doc.slice(0, at)}${keystroke % 10}${doc.slice(at)}`;
			buildCompletionPrompt({ files, activePath: 'src/big.ts', activeText: doc, cursorOffset: at + 1, specialTokens: defaultSpecialTokenTexts, counter, budgetTokens: 4000 });
		}
		gc();
		const grownMiB = (process.memoryUsage().heapUsed - before) / 1048576;
		// Holding each version through its slices, as before, grew the heap by about 100 MiB here.
		assert.ok(grownMiB < 40, `the heap grew by ${grownMiB.toFixed(1)} MiB over 100 keystrokes`);
		assert.ok(counter.cachedChars <= maxChars, `${counter.cachedChars} characters cached`);
		const piece = [...inner.calls.keys()].find((text) => text.includes('export const A = 1;'));
		assert.equal(inner.calls.get(piece), 1, 'the repository piece was counted once, then always found');
	});

	test('bounded by entries too, least recently used first out', () => {
		const inner = countingInner();
		const counter = new CachingCounter(inner, 3);
		const texts = ['a', 'b', 'c', 'd'].map((letter) => letter.repeat(100));
		for (const text of texts.slice(0, 3)) counter.countTokens(text);
		counter.countTokens(texts[0]);
		counter.countTokens(texts[3]);
		assert.equal(counter.size, 3);
		counter.countTokens(texts[0]);
		assert.equal(inner.calls.get(texts[0]), 1, 'used recently: kept');
		counter.countTokens(texts[1]);
		assert.equal(inner.calls.get(texts[1]), 2, 'least recently used: evicted');
	});
});
