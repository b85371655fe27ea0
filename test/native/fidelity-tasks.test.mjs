// The fidelity benchmark's tasks (bench/tasks.ts): deterministic, exactly the asked context length, in the
// retrieval format the bundled models were trained on; the edit similarity used to score code lines.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import { root } from './helpers.mjs';

const { TaskBuilder, editSimilarity } = await import(path.join(root, 'dist', 'bench.mjs'));
const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');

test('edit similarity is 2 * LCS / (|a| + |b|)', () => {
	assert.equal(editSimilarity('', ''), 1);
	assert.equal(editSimilarity('abc', 'abc'), 1);
	assert.equal(editSimilarity('abcd', 'abxd'), 0.75);
	assert.equal(editSimilarity('abc', ''), 0);
});

test('needle and code tasks: seeded, exact context length, the trained retrieval format', async (t) => {
	const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
	const vocab = await llama.loadModel({ modelPath: path.join(root, 'models', 'target.gguf'), vocabOnly: true });
	t.after(() => vocab.dispose());
	const tok = { tokenize: (s, special) => vocab.tokenize(s, special).map(Number), detokenize: (ids) => vocab.detokenize(ids) };
	const a = new TaskBuilder(tok);
	const b = new TaskBuilder(tok);
	const [fimPrefix, fimSuffix, fimMiddle] = ['<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>'].map((t) => tok.tokenize(t, true)[0]);
	for (const task of ['single', 'multikey', 'multivalue', 'vt', 'fimsingle']) {
		const x = a.needle(task, 1024, 3, 42);
		assert.deepEqual(x.tokens, b.needle(task, 1024, 3, 42).tokens);
		assert.notDeepEqual(x.tokens, a.needle(task, 1024, 4, 42).tokens);
		assert.equal(x.tokens.length, 1024);
		let usage = x.tokens;
		if (task === 'fimsingle') {
			// the test file FIM-ordered, the hole at the value: the prefix is checked like a plain usage line
			assert.equal(x.tokens.at(-1), fimMiddle);
			const suffixAt = x.tokens.lastIndexOf(fimSuffix);
			assert.equal(tok.detokenize(x.tokens.slice(suffixAt + 1, -1)), ');\n});\n');
			usage = x.tokens.slice(0, suffixAt).filter((t) => t !== fimPrefix);
		}
		const text = tok.detokenize(usage);
		assert.match(text, task === 'multivalue' ? /assert\.deepEqual\([A-Z_]+, \[$/ : /assert\.equal\([A-Z_]+, $/);
		const name = text.match(/assert\.(?:deep)?[eE]qual\(([A-Z_]+), \[?$/)[1];
		if (task === 'vt') {
			assert.ok(text.includes(`export const ${name} = `));
		} else {
			assert.ok(text.includes(`export const ${name} = ${task === 'multivalue' ? `[${x.answer}]` : x.answer};`), `${task}: ${name}`);
		}
	}
	for (const task of ['nextline', 'fim']) {
		const x = a.code(task, 2048, 1, 42);
		assert.equal(x.tokens.length, 2048);
		assert.ok(x.answer.length >= 8);
		assert.ok(!x.answer.includes('\n'));
		assert.deepEqual(x.tokens, b.code(task, 2048, 1, 42).tokens);
		if (task === 'fim') assert.equal(x.tokens.at(-1), tok.tokenize('<|fim_middle|>', true)[0]);
	}
});
