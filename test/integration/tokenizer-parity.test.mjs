// The recipe's tokenizer (models/recipe/bpe.py, used to build the training data) and llama.cpp's tokenizer
// (node-llama-cpp reading the GGUF) must agree token for token: otherwise the models see different ids at
// inference than in training. bpe.py uses only Python's standard library, so any python3 runs it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';

import { draftModelPath, repoRoot, sidecar, targetModelPath } from '../support/sidecar.mjs';

const strings = JSON.parse(await readFile(path.join(repoRoot, 'test', 'fixtures', 'tokenizer-strings.json'), 'utf8'));

/** Token ids from the recipe's tokenizer, special tokens enabled (as the sidecar tokenizes prompts). */
function recipeTokenize(texts) {
	const out = execFileSync('python3', [path.join(repoRoot, 'models', 'recipe', 'bpe.py'), 'encode', path.join(repoRoot, 'models', 'tokenizer.json')], {
		input: JSON.stringify(texts),
		encoding: 'utf8',
	});
	return JSON.parse(out);
}

describe('tokenizer parity: recipe (Python) vs llama.cpp', () => {
	let llama;
	let expected;
	before(async () => {
		llama = await sidecar.getLlamaFor({ threads: 2, logLevel: 'error' });
		// Add a slice of real code from the repository itself: long, mixed, not in the training data.
		const own = await readFile(path.join(repoRoot, 'models', 'recipe', 'data.py'), 'utf8');
		strings.push(own.slice(0, 4000));
		// Spaces before ? ! . , and around ' are code, not prose: a "clean up spaces" detokenizer would break these.
		strings.push("const y = a ? b : c , d . e ; s = ' x ' ; t = x 's !");
		expected = recipeTokenize(strings);
	});

	for (const [role, file] of [['target', targetModelPath], ['draft', draftModelPath]]) {
		test(`${role}: identical token ids on ${strings.length + 1} fixed strings`, async () => {
			const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
			try {
				strings.forEach((text, i) => {
					assert.deepEqual(Array.from(model.tokenize(text, true)), expected[i], `string ${i}: ${JSON.stringify(text.slice(0, 60))}`);
				});
				// And back: decoding llama.cpp's ids gives the text again.
				for (const text of strings) {
					assert.equal(model.detokenize(model.tokenize(text, true), true), text);
				}
			} finally {
				await model.dispose();
			}
		});
	}
});
