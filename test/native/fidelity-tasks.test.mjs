// The fidelity benchmark's tasks (bench/tasks.ts): needles deterministic, exactly the asked context length, in the
// retrieval format the bundled models were trained on or (needle-novel) in formats they were not; the held-out
// code prompts come from repositories outside the training corpus, one repository per prompt.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { importBench } from '../support/bundles.mjs';
import { root } from './helpers.mjs';

const { TaskBuilder, HeldoutCode } = await importBench();
const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');

async function tokenizer(t) {
	const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
	const vocab = await llama.loadModel({ modelPath: path.join(root, 'models', 'target.gguf'), vocabOnly: true });
	t.after(() => vocab.dispose());
	return { tokenize: (s, special) => vocab.tokenize(s, special).map(Number), detokenize: (ids) => vocab.detokenize(ids) };
}

test('needle tasks: seeded, exact context length, the trained retrieval format', async (t) => {
	const tok = await tokenizer(t);
	const a = new TaskBuilder(tok);
	const b = new TaskBuilder(tok);
	const [fimPrefix, fimSuffix, fimMiddle] = ['<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>'].map((s) => tok.tokenize(s, true)[0]);
	for (const task of /** @type {const} */ (['single', 'multikey', 'multivalue', 'vt', 'fimsingle'])) {
		const x = a.needle(task, 1024, 3, 42);
		assert.equal(x.suite, 'needle');
		assert.deepEqual(x.tokens, b.needle(task, 1024, 3, 42).tokens);
		assert.notDeepEqual(x.tokens, a.needle(task, 1024, 4, 42).tokens);
		assert.equal(x.tokens.length, 1024);
		let usage = x.tokens;
		if (task === 'fimsingle') {
			// the test file FIM-ordered, the hole at the value: the prefix is checked like a plain usage line
			assert.equal(x.tokens.at(-1), fimMiddle);
			const suffixAt = x.tokens.lastIndexOf(fimSuffix);
			assert.equal(tok.detokenize(x.tokens.slice(suffixAt + 1, -1)), ');\n});\n');
			usage = x.tokens.slice(0, suffixAt).filter((id) => id !== fimPrefix);
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
});

test('novel needle formats: the value reachable only through the new form, never as the trained `export const NAME = VALUE`', async (t) => {
	const tok = await tokenizer(t);
	const a = new TaskBuilder(tok);
	for (const task of /** @type {const} */ (['renamed', 'comment', 'json', 'yaml', 'twohop'])) {
		const x = a.needle(task, 2048, 1, 42);
		assert.equal(x.suite, 'needle-novel');
		assert.equal(x.tokens.length, 2048);
		assert.deepEqual(x.tokens, new TaskBuilder(tok).needle(task, 2048, 1, 42).tokens);
		const text = tok.detokenize(x.tokens);
		const asked = text.match(/assert\.equal\(([\w.]+), $/)?.[1];
		assert.ok(asked !== undefined, `${task}: ends in the query`);
		if (task === 'renamed') {
			const original = text.match(new RegExp(`import \\{ ([A-Z_]+) as ${asked} \\}`))?.[1];
			assert.ok(original !== undefined && text.includes(`export const ${original} = ${x.answer};`));
			assert.ok(!text.includes(`export const ${asked} =`));
		} else if (task === 'comment') {
			assert.ok(text.includes(`// ${asked} defaults to ${x.answer};`));
			assert.ok(!text.includes(`export const ${asked} = ${x.answer}`));
		} else if (task === 'json') {
			assert.ok(text.includes(`"${asked.slice('config.'.length)}": ${x.answer}`));
		} else if (task === 'yaml') {
			assert.ok(text.includes(`\n${asked.slice('config.'.length)}: ${x.answer}\n`));
		} else {
			// C = B, B = A, A = value: two alias files
			const b = text.match(new RegExp(`export const ${asked} = ([A-Z_]+);`))?.[1];
			const a0 = b && text.match(new RegExp(`export const ${b} = ([A-Z_]+);`))?.[1];
			assert.ok(a0 !== undefined && text.includes(`export const ${a0} = ${x.answer};`), text.slice(-400));
		}
	}
});

test('held-out code: repositories outside the training corpus, one per prompt, windows that do not overlap', async (t) => {
	const tok = await tokenizer(t);
	const code = new HeldoutCode(tok);
	const trained = new Set(Object.keys(JSON.parse(readFileSync(path.join(root, 'models', 'recipe', 'corpus-manifest.json'), 'utf8')).packages));
	for (const r of code.repositories) {
		for (const p of r.packages) assert.ok(!trained.has(p.name), `${p.name} was trained on`);
		for (const p of r.packages) assert.ok(typeof p.license === 'string' && p.license !== '', `${p.name}: licence recorded`);
	}
	const prompts = code.schedule(code.repositories.length + 3, 1024, 64);
	assert.equal(prompts.length, code.repositories.length + 3);
	// interleaved: window 0 of every repository before any window 1
	assert.equal(new Set(prompts.slice(0, code.repositories.length).map((p) => p.repository)).size, code.repositories.length);
	for (const p of prompts) {
		assert.equal(p.prompt.length, 1024 - 64);
		assert.equal(p.held.length, 64);
	}
	const again = new HeldoutCode(tok).schedule(3, 1024, 64);
	assert.deepEqual(again.map((p) => p.prompt), prompts.slice(0, 3).map((p) => p.prompt));
	// the second window of a repository starts where its first ended
	const r0 = prompts[0].repository;
	const second = prompts.find((p) => p.repository === r0 && p.id.endsWith('#1'));
	if (second !== undefined) assert.notDeepEqual(second.prompt.slice(0, 64), prompts[0].prompt.slice(0, 64));
});
