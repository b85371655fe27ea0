// End to end with the real bundled target: the engine completes FIM prompts, and `repokv complete` retrieves a
// value defined in another file of the fixture workspace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, open } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { cliPath, needleWorkspace, sidecar, targetModelPath, tempFolder } from '../support/sidecar.mjs';

const fimPrompt =
	'<|file_sep|>src/math.ts\nexport function clamp(value: number, low: number, high: number): number {\n  return Math.min(Math.max(value, low), high);\n}\n' +
	'<|file_sep|>src/main.ts\n<|fim_prefix|>import { clamp } from \'./math\';\n\nexport function percent(value: number): number {\n  return <|fim_suffix|>;\n}\n<|fim_middle|>';

describe('llama engine', () => {
	let model;
	before(async () => {
		const engine = await sidecar.loadEngine('llama');
		model = await engine.loadModel({ modelPath: targetModelPath, threads: 2, contextSize: 2048 });
	});
	after(() => model?.dispose());

	test('reports the model and the explicit thread count', () => {
		assert.equal(model.info.threads, 2);
		assert.equal(model.info.contextSize, 2048);
		assert.equal(model.specialTokens.fimPrefix, '<|fim_prefix|>');
		assert.equal(model.specialTokens.fileSeparator, '<|file_sep|>');
		assert.equal(model.countTokens('<|fim_prefix|>'), 1);
	});

	test('a FIM completion returns text, token counts and timings', async () => {
		const result = await model.complete({ prompt: fimPrompt, maxTokens: 24 });
		assert.ok(result.tokens.generated > 0, 'generated tokens');
		assert.ok(result.text.length > 0, `text: ${JSON.stringify(result.text)}`);
		assert.equal(result.tokens.prompt, model.countTokens(fimPrompt));
		for (const key of ['tokenizeMs', 'prefillMs', 'decodeMs']) {
			assert.ok(Number.isFinite(result.timings[key]) && result.timings[key] >= 0, key);
		}
		assert.doesNotMatch(result.text, /<\|/, 'no special token text in the output');
	});

	test('is deterministic (greedy) and respects maxTokens', async () => {
		const a = await model.complete({ prompt: fimPrompt, maxTokens: 3 });
		const b = await model.complete({ prompt: fimPrompt, maxTokens: 3 });
		assert.ok(a.tokens.generated <= 3);
		assert.deepEqual(a.text, b.text);
	});

	test('an aborted request returns what it has', async () => {
		const controller = new AbortController();
		controller.abort();
		const result = await model.complete({ prompt: fimPrompt, maxTokens: 24, signal: controller.signal });
		assert.equal(result.stopReason, 'aborted');
		assert.equal(result.tokens.generated, 0);
	});

	test('a prompt that does not fit the context is refused, not shifted', async () => {
		await assert.rejects(model.complete({ prompt: 'x '.repeat(3000), maxTokens: 8 }), /do not fit the context/);
	});
});

function repokv(...args) {
	const result = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 120_000 });
	return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('repokv complete on the needle workspace', () => {
	const needle = ['complete', '--workspace', needleWorkspace, '--file', 'src/main.ts', '--line', '10', '--column', '32', '--model', targetModelPath];

	test('--json retrieves RETRY_LIMIT_MS = 4817 from src/config.ts, and secrets never reach the prompt', () => {
		const result = repokv(...needle, '--json', '--show-prompt');
		assert.equal(result.code, 0, result.stderr);
		const output = JSON.parse(result.stdout);
		assert.ok(output.completion.startsWith('4817'), `completion: ${JSON.stringify(output.completion)} (raw ${JSON.stringify(output.raw)})`);
		assert.ok(output.tokens.context > 1000 && output.tokens.generated > 0);
		for (const key of ['loadMs', 'readWorkspaceMs', 'tokenizeMs', 'prefillMs', 'decodeMs', 'totalMs']) {
			assert.ok(typeof output.timings[key] === 'number' && output.timings[key] >= 0, key);
		}
		assert.equal(output.model.engine, 'llama');
		assert.equal(output.model.threads > 0, true);
		assert.ok(output.files.included.includes('src/config.ts'));
		assert.ok(!output.files.included.includes('deploy-token.json') && !output.files.included.includes('.env'));
		assert.doesNotMatch(output.prompt, /FAKE-DEPLOY-TOKEN|FAKE-ENV-KEY/);
		assert.ok(output.prompt.endsWith('  assert.equal(RETRY_LIMIT_MS, <|fim_suffix|>\n<|fim_middle|>'));
	});

	test('runs with one thread too (on 2 cores it may decode faster) and prints text with timings', () => {
		const result = repokv(...needle, '--threads', '1');
		assert.equal(result.code, 0, result.stderr);
		assert.match(result.stdout, /^completion: "4817/);
		assert.match(result.stdout, /1 thread\b/);
		assert.match(result.stdout, /timings +load .* prefill .* decode .* total/);
	});

	test('a truncated model file is named, without a stack trace', async (t) => {
		const folder = await tempFolder(t);
		const truncated = path.join(folder, 'truncated.gguf');
		await copyFile(targetModelPath, truncated);
		const handle = await open(truncated, 'r+');
		await handle.truncate(64 * 1024);
		await handle.close();
		const result = repokv(...needle.slice(0, -1), truncated);
		assert.equal(result.code, 1);
		assert.match(result.stderr, /truncated\.gguf/);
		assert.doesNotMatch(result.stderr, /\n\s+at /);
	});
});
