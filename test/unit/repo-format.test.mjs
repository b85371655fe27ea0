// The repository-level prompt format: Qwen2.5-Coder's `<|repo_name|>name\n` header and `<|file_sep|>path\ncontent\n`
// files before the active file's FIM prompt, chosen from the vocabulary (control tokens `<|repo_name|>` and
// `<|file_sep|>`); models without it (the bundled ones) keep their format, byte for byte.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { sidecar } from '../support/sidecar.mjs';

const { buildCompletionPrompt, defaultSpecialTokenTexts, hasRepoLevelFormat, specialTokenTextsOf, repoPieceText, defaultRepoName, ContextBudgetError } = sidecar;
const qwen = { ...defaultSpecialTokenTexts, repoName: '<|repo_name|>' };

/** Like test/support's fakeCounter, with `<|repo_name|>` also one token: special texts 1 token, else 1 per 4 chars. */
function counterFor(special) {
	const texts = [special.fimPrefix, special.fimSuffix, special.fimMiddle, special.fileSeparator, special.endOfText, special.repoName].filter(Boolean);
	const splitter = new RegExp(texts.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
	return {
		countTokens(text) {
			const segments = text.split(splitter);
			return segments.length - 1 + segments.reduce((sum, s) => sum + Math.ceil(s.length / 4), 0);
		},
	};
}

const activeText = 'export function run() {\n  return LIMIT + \n}\n';
const cursorOffset = activeText.indexOf('LIMIT + ') + 'LIMIT + '.length;
const files = [
	{ path: 'src/config.ts', text: 'export const LIMIT = 42;\n' },
	{ path: 'README.md', text: '# demo' }, // no final newline
];
const build = (special, overrides = {}) =>
	buildCompletionPrompt({ files, activePath: 'src/main.ts', activeText, cursorOffset, specialTokens: special, counter: counterFor(special), budgetTokens: 10_000, repoName: 'needle', ...overrides });

describe('repository-level prompt format', () => {
	test("Qwen2.5-Coder's layout: <|repo_name|>name, then <|file_sep|>path blocks ending in a newline, then the FIM prompt", () => {
		const prompt = build(qwen);
		const fim = `<|file_sep|>src/main.ts\n<|fim_prefix|>${activeText.slice(0, cursorOffset)}<|fim_suffix|>${activeText.slice(cursorOffset)}<|fim_middle|>`;
		assert.equal(prompt.text, '<|repo_name|>needle\n' + '<|file_sep|>README.md\n# demo\n' + '<|file_sep|>src/config.ts\nexport const LIMIT = 42;\n' + fim);
		assert.equal(prompt.fimPrompt, fim);
		assert.equal(prompt.text.split('<|repo_name|>').length - 1, 1);
		assert.equal(prompt.text.split('<|file_sep|>').length - 1, files.length + 1);
	});

	test('the header is counted: token count and spans add up to the whole prompt', () => {
		const prompt = build(qwen);
		const counter = counterFor(qwen);
		assert.equal(prompt.tokenCount, counter.countTokens(prompt.text));
		assert.equal(prompt.spans.reduce((sum, s) => sum + s.tokens, 0), prompt.tokenCount);
		assert.equal(prompt.spans[0].tokens, counter.countTokens('<|repo_name|>needle\n') + counter.countTokens(repoPieceText(files[1], qwen)));
	});

	test('with no repository files the header still leads, counted in the active span', () => {
		const prompt = build(qwen, { files: [] });
		assert.ok(prompt.text.startsWith('<|repo_name|>needle\n<|file_sep|>src/main.ts\n<|fim_prefix|>'));
		assert.equal(prompt.spans.length, 1);
		assert.equal(prompt.spans[0].tokens, prompt.tokenCount);
	});

	test('the header is part of the budget: files are dropped for it, and a budget without room for it is an error', () => {
		const counter = counterFor(qwen);
		const full = build(qwen);
		const smaller = build(qwen, { budgetTokens: full.tokenCount - 1 });
		assert.ok(smaller.tokenCount <= full.tokenCount - 1);
		assert.ok(smaller.dropped.length > 0);
		const fimOnly = counter.countTokens(full.fimPrompt);
		assert.throws(() => build(qwen, { budgetTokens: fimOnly }), ContextBudgetError);
	});

	test('the repository name is one line, and special token texts inside files and names are neutralised', () => {
		const prompt = build(qwen, { repoName: 'a<|repo_name|>b\nsecond line', files: [{ path: 'x.ts', text: 'see <|repo_name|> here\n' }] });
		assert.equal(prompt.text.split('<|repo_name|>').length - 1, 1);
		assert.ok(prompt.text.startsWith('<|repo_name|>a<\u200b|repo_name|>b\n<|file_sep|>x.ts\nsee <\u200b|repo_name|> here\n'));
	});

	test('the default repository name is used when the caller has none', () => {
		assert.ok(build(qwen, { repoName: undefined }).text.startsWith(`<|repo_name|>${defaultRepoName}\n`));
	});

	test('models without the format (the bundled ones) keep their layout: no header, files as they are', () => {
		const prompt = build(defaultSpecialTokenTexts);
		assert.ok(!prompt.text.includes('<|repo_name|>'));
		assert.ok(prompt.text.startsWith('<|file_sep|>README.md\n# demo<|file_sep|>src/config.ts\n'));
	});
});

describe('detecting the format from the vocabulary', () => {
	// A stand-in for node-llama-cpp's LlamaModel: `specials` maps texts to [id, control].
	const vocab = (specials) => ({
		tokenize: (text, special) => (special && specials[text] ? [specials[text][0]] : [...text].map((c) => c.charCodeAt(0))),
		getTokenAttributes: (id) => ({ control: Object.values(specials).some(([i, control]) => i === id && control) }),
		tokens: { infill: { prefixString: '<|fim_prefix|>', suffixString: '<|fim_suffix|>', middleString: '<|fim_middle|>' }, eosString: '<|endoftext|>' },
	});

	test('both <|repo_name|> and <|file_sep|> as control tokens: repository-level format', () => {
		const v = vocab({ '<|repo_name|>': [151663, true], '<|file_sep|>': [151664, true] });
		assert.equal(hasRepoLevelFormat(v), true);
		assert.equal(specialTokenTextsOf(v).repoName, '<|repo_name|>');
	});

	test('only <|file_sep|> (the bundled models), or the repo token not a control token: no header', () => {
		assert.equal(hasRepoLevelFormat(vocab({ '<|file_sep|>': [2047, true] })), false);
		assert.equal(specialTokenTextsOf(vocab({ '<|file_sep|>': [2047, true] })).repoName, undefined);
		assert.equal(hasRepoLevelFormat(vocab({ '<|repo_name|>': [5, false], '<|file_sep|>': [6, true] })), false);
	});
});
