// Building the long-context FIM prompt: layout, ordering, fitting the budget by whole files, capping prefix/suffix.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { fakeCounter, sidecar } from '../support/sidecar.mjs';

const { buildCompletionPrompt, defaultSpecialTokenTexts: special, keepFirstTokens, keepLastTokens, resolveImports, ContextBudgetError } = sidecar;
const counter = fakeCounter();

const activeText = "import { LIMIT } from './config';\nimport { helper } from '../lib/helper.js';\n\nexport function run() {\n  return LIMIT + \n}\n";
const cursorOffset = activeText.indexOf('LIMIT + ') + 'LIMIT + '.length;
const files = [
	{ path: 'src/main.ts', text: 'stale disk copy of the active file' },
	{ path: 'src/config.ts', text: 'export const LIMIT = 42;\n' },
	{ path: 'src/util.ts', text: 'export const id = (x) => x;\n' },
	{ path: 'lib/helper.ts', text: 'export function helper() {}\n' },
	{ path: 'README.md', text: '# demo\n' },
	{ path: 'docs/guide.md', text: 'a guide\n' },
];
const build = (overrides = {}) =>
	buildCompletionPrompt({ files, activePath: 'src/main.ts', activeText, cursorOffset, specialTokens: special, counter, budgetTokens: 10_000, ...overrides });

describe('buildCompletionPrompt', () => {
	test('lays out the repository block, then the FIM prompt with the model special tokens', () => {
		const prompt = build();
		const prefix = activeText.slice(0, cursorOffset);
		const suffix = activeText.slice(cursorOffset);
		const fim = `<|file_sep|>src/main.ts\n<|fim_prefix|>${prefix}<|fim_suffix|>${suffix}<|fim_middle|>`;
		assert.equal(prompt.fimPrompt, fim);
		assert.ok(prompt.text.endsWith(fim));
		assert.equal(
			prompt.text,
			'<|file_sep|>README.md\n# demo\n' +
				'<|file_sep|>docs/guide.md\na guide\n' +
				'<|file_sep|>src/util.ts\nexport const id = (x) => x;\n' +
				'<|file_sep|>src/config.ts\nexport const LIMIT = 42;\n' +
				'<|file_sep|>lib/helper.ts\nexport function helper() {}\n' +
				fim,
		);
		assert.equal(prompt.tokenCount, counter.countTokens(prompt.text));
	});

	test('orders stable-first: other files by path, then the same folder, then imports nearest the cursor', () => {
		const prompt = build();
		assert.deepEqual(prompt.included, ['README.md', 'docs/guide.md', 'src/util.ts', 'src/config.ts', 'lib/helper.ts']);
		// The active file appears only once, as the FIM prompt, never as a stale copy.
		assert.ok(!prompt.included.includes('src/main.ts'));
		assert.doesNotMatch(prompt.text, /stale disk copy/);
	});

	test('uses the special token texts it is given (read from the model)', () => {
		const custom = { fimPrefix: '<PRE>', fimSuffix: '<SUF>', fimMiddle: '<MID>', fileSeparator: '<FILE>', endOfText: '<EOT>' };
		const prompt = buildCompletionPrompt({ files: [], activePath: 'a.ts', activeText: 'ab', cursorOffset: 1, specialTokens: custom, counter: fakeCounter(custom), budgetTokens: 100 });
		assert.equal(prompt.text, '<FILE>a.ts\n<PRE>a<SUF>b<MID>');
	});

	test('drops whole files, least relevant first, to fit the budget; never cuts a file or the FIM prompt', () => {
		const full = build();
		const fimTokens = counter.countTokens(full.fimPrompt);
		const piece = (file) => counter.countTokens(`<|file_sep|>${file.path}\n${file.text}`);
		const byPath = Object.fromEntries(files.map((file) => [file.path, file]));
		// Room for the FIM prompt and the two imported files only.
		const budget = fimTokens + piece(byPath['lib/helper.ts']) + piece(byPath['src/config.ts']);
		const prompt = build({ budgetTokens: budget });
		assert.deepEqual(prompt.included, ['src/config.ts', 'lib/helper.ts']);
		assert.deepEqual(prompt.dropped, ['src/util.ts', 'docs/guide.md', 'README.md']);
		assert.ok(prompt.tokenCount <= budget);
		assert.equal(prompt.fimPrompt, full.fimPrompt);
		for (const path of prompt.included) {
			assert.ok(prompt.text.includes(`<|file_sep|>${path}\n${byPath[path].text}`), `${path} is whole`);
		}
	});

	test('a file too large for what is left is skipped, and smaller less relevant ones still fill the space', () => {
		const big = { path: 'src/big.ts', text: 'x'.repeat(4000) };
		const prompt = build({ files: [...files, big], budgetTokens: 400 });
		assert.ok(prompt.dropped.includes('src/big.ts'));
		assert.ok(prompt.included.includes('README.md'));
	});

	test('with a budget that fits only the FIM prompt, every file is dropped and the FIM prompt is intact', () => {
		const full = build();
		const prompt = build({ budgetTokens: counter.countTokens(full.fimPrompt) });
		assert.deepEqual(prompt.included, []);
		assert.equal(prompt.dropped.length, 5);
		assert.equal(prompt.text, full.fimPrompt);
	});

	test('a budget smaller than the FIM prompt is an error, not a cut prompt', () => {
		assert.throws(() => build({ budgetTokens: 5 }), ContextBudgetError);
	});

	test('caps the prefix to its last lines and the suffix to its first lines', () => {
		const lines = Array.from({ length: 400 }, (_, i) => `const line${i} = ${i};\n`);
		const text = lines.join('');
		const cursor = lines.slice(0, 300).join('').length;
		const prompt = buildCompletionPrompt({
			files: [],
			activePath: 'long.ts',
			activeText: text,
			cursorOffset: cursor,
			specialTokens: special,
			counter,
			budgetTokens: 100_000,
			maxPrefixTokens: 100,
			maxSuffixTokens: 40,
		});
		assert.ok(counter.countTokens(prompt.prefix) <= 100);
		assert.ok(counter.countTokens(prompt.suffix) <= 40);
		assert.ok(text.slice(0, cursor).endsWith(prompt.prefix), 'prefix ends at the cursor');
		assert.ok(text.slice(cursor).startsWith(prompt.suffix), 'suffix starts at the cursor');
		assert.match(prompt.prefix, /^const line\d+ = \d+;\n/, 'prefix starts at a line start');
		assert.match(prompt.suffix, /\n$/, 'suffix ends at a line end');
		// Whole lines: one more line would not fit.
		const previousLine = lines[299 - prompt.prefix.split('\n').length + 1];
		assert.ok(counter.countTokens(previousLine + prompt.prefix) > 100);
	});

	test('keepLastTokens / keepFirstTokens cut inside a single huge line when they must', () => {
		const line = 'y'.repeat(1000);
		assert.equal(keepLastTokens(line, 10, counter), 'y'.repeat(40));
		assert.equal(keepFirstTokens(line, 10, counter), 'y'.repeat(40));
		assert.equal(keepLastTokens('short', 10, counter), 'short');
	});

	test('neutralises special token texts inside file contents so they cannot inject prompt structure', () => {
		const tricky = { path: 'src/tokens.ts', text: "export const SEP = '<|file_sep|>';\nconst end = '<|endoftext|>';\n" };
		const prompt = build({ files: [tricky], activeText: "const x = '<|fim_middle|>';\n", cursorOffset: 0 });
		assert.equal(prompt.text.split('<|file_sep|>').length - 1, 2, 'only the two structural separators');
		assert.equal(prompt.text.split('<|fim_middle|>').length - 1, 1);
		assert.equal(prompt.text.split('<|endoftext|>').length - 1, 0);
		assert.ok(prompt.text.includes('<\u200b|file_sep|>'));
	});
});

describe('resolveImports', () => {
	test('resolves relative imports with TypeScript and Node rules, ignoring packages', () => {
		const known = new Set(['src/a.ts', 'src/b/index.ts', 'lib/c.js', 'src/d.tsx', 'src/e.mts']);
		const text = [
			"import { a } from './a';",
			"import b from './b';",
			"const c = require('../lib/c.js');",
			"export * from './d.js';",
			"const e = await import('./e.mjs');",
			"import fs from 'node:fs';",
			"import { x } from './missing';",
		].join('\n');
		assert.deepEqual(resolveImports('src/main.ts', text, known), ['src/a.ts', 'src/b/index.ts', 'lib/c.js', 'src/d.tsx', 'src/e.mts']);
	});
});
