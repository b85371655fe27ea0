// SpecKV's draft prompt (engine/draft-prompt.ts): `prefix-last` gives the draft a FIM-ordered active file as plain
// text ending at the cursor; every other prompt, and the `fim` layout, pass through unchanged.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { sidecar } from '../support/sidecar.mjs';

const { draftPromptFor, draftLayouts } = sidecar;
const fim = { prefix: 901, suffix: 903, middle: 902 };
const SEP = 904;

test('prefix-last: the text before <|fim_prefix|>, then the prefix; the suffix and the FIM tokens are dropped', () => {
	const prompt = [SEP, 1, 2, SEP, 3, fim.prefix, 10, 11, 12, fim.suffix, 20, 21, fim.middle];
	assert.deepEqual(draftPromptFor(prompt, 'prefix-last', fim), [SEP, 1, 2, SEP, 3, 10, 11, 12]);
});

test('prefix-last: an empty prefix or suffix', () => {
	assert.deepEqual(draftPromptFor([7, fim.prefix, fim.suffix, 20, fim.middle], 'prefix-last', fim), [7]);
	assert.deepEqual(draftPromptFor([7, fim.prefix, 10, fim.suffix, fim.middle], 'prefix-last', fim), [7, 10]);
});

test('prefix-last: FIM tokens earlier in the context (a file that mentions them) do not move the cut', () => {
	const prompt = [fim.prefix, 1, fim.suffix, 2, fim.prefix, 10, fim.suffix, 20, fim.middle];
	assert.deepEqual(draftPromptFor(prompt, 'prefix-last', fim), [fim.prefix, 1, fim.suffix, 2, 10]);
});

test('unchanged: a plain prompt, a prompt not ending at <|fim_middle|>, no FIM tokens known, or the fim layout', () => {
	const plain = [SEP, 1, 2, 3];
	assert.equal(draftPromptFor(plain, 'prefix-last', fim), plain);
	const generating = [fim.prefix, 10, fim.suffix, 20, fim.middle, 30];
	assert.equal(draftPromptFor(generating, 'prefix-last', fim), generating);
	const noPrefix = [10, fim.suffix, 20, fim.middle];
	assert.equal(draftPromptFor(noPrefix, 'prefix-last', fim), noPrefix);
	const fimPrompt = [fim.prefix, 10, fim.suffix, 20, fim.middle];
	assert.equal(draftPromptFor(fimPrompt, 'prefix-last', undefined), fimPrompt);
	assert.equal(draftPromptFor(fimPrompt, 'fim', fim), fimPrompt);
	assert.deepEqual([...draftLayouts], ['prefix-last', 'fim']);
});
