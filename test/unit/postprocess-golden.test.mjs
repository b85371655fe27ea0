// Post-processing rules against golden fixtures (test/fixtures/postprocess/*.golden; format in its README.md).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { repoRoot, sidecar } from '../support/sidecar.mjs';

const { postprocessCompletion, postprocessContextAt } = sidecar;
const folder = path.join(repoRoot, 'test', 'fixtures', 'postprocess');
const cursor = '\u2551';

function parseGolden(text) {
	const [title = '', ...rest] = text.split('\n');
	const sections = {};
	let current;
	for (const line of rest) {
		const marker = /^=== (\w+)$/.exec(line);
		if (marker !== null) {
			current = marker[1];
			sections[current] = [];
		} else if (current !== undefined) {
			sections[current].push(line);
		}
	}
	const join = (lines = []) => {
		const copy = [...lines];
		while (copy.length > 0 && copy.at(-1) === '') {
			copy.pop();
		}
		return copy.join('\n');
	};
	return { title: title.replace(/^#\s*/, ''), document: join(sections.document), raw: join(sections.raw), expected: join(sections.expected) };
}

const files = readdirSync(folder).filter((name) => name.endsWith('.golden')).sort();

describe('post-processing golden fixtures', () => {
	test('there is a fixture for every rule', () => {
		const titles = files.map((name) => parseGolden(readFileSync(path.join(folder, name), 'utf8')).title);
		for (const rule of ['mode', 'block end', 'repetition', 'next lines', 'suffix']) {
			assert.ok(titles.some((title) => title.startsWith(`${rule}:`)), `a fixture for rule "${rule}"`);
		}
	});

	for (const name of files) {
		const golden = parseGolden(readFileSync(path.join(folder, name), 'utf8'));
		test(`${name}: ${golden.title}`, () => {
			const offset = golden.document.indexOf(cursor);
			assert.ok(offset !== -1, 'the document marks the cursor with ║');
			const text = golden.document.slice(0, offset) + golden.document.slice(offset + 1);
			const context = postprocessContextAt(text, offset);
			assert.equal(postprocessCompletion(golden.raw, context), golden.expected);
		});
	}
});
