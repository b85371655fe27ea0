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

	test('a warm-up for a prompt the cache starts with keeps what follows it (the active file\'s part the next completion reuses)', async () => {
		const repoPart = fimPrompt.slice(0, fimPrompt.indexOf('<|file_sep|>src/main.ts'));
		const first = await model.complete({ prompt: fimPrompt, maxTokens: 4, reusePrefix: true });
		const warm = await model.complete({ prompt: repoPart, maxTokens: 0, reusePrefix: true });
		assert.equal(warm.tokens.reused, warm.tokens.prompt - 1, 'nothing to evaluate, nothing erased');
		const next = await model.complete({ prompt: fimPrompt, maxTokens: 4, reusePrefix: true });
		assert.equal(next.tokens.reused, next.tokens.prompt - 1, 'the whole prompt but its last token is reused');
		assert.equal(next.text, first.text);
	});
});

describe('native engine (the default): progress, abort and KV reconfiguration between requests', () => {
	let model;
	before(async () => {
		const engine = await sidecar.loadEngine('native');
		model = await engine.loadModel({ modelPath: targetModelPath, threads: 1, contextSize: 2048, kvCache: { policy: 'snapkv', budgetPercent: 12, precision: 'mixed' } });
	});
	after(() => model?.dispose());
	const longPrompt = fimPrompt.replace('<|file_sep|>src/main.ts', `<|file_sep|>src/filler.ts\n${'export const filler = [1, 2, 3];\n'.repeat(120)}<|file_sep|>src/main.ts`);

	test('prefills in chunks, reporting progress; an abort stops it within a chunk and keeps what was evaluated', async () => {
		const progress = [];
		const controller = new AbortController();
		const result = await model.complete({
			prompt: longPrompt,
			maxTokens: 8,
			onPrefillProgress: (done, total) => {
				progress.push([done, total]);
				if (done > 0) controller.abort();
			},
			signal: controller.signal,
		});
		assert.equal(result.stopReason, 'aborted');
		assert.equal(result.tokens.generated, 0);
		assert.deepEqual(progress.map(([done]) => done), [0, 512], 'one chunk, then stopped');
		// the next request reuses the evaluated chunk (the master copy kept it)
		const next = await model.complete({ prompt: longPrompt, maxTokens: 8, reusePrefix: true });
		assert.equal(next.tokens.reused, 512);
		assert.ok(next.tokens.generated > 0);
	});

	test('configureKv changes the next request\'s compression without a reload', async () => {
		await model.complete({ prompt: longPrompt, maxTokens: 4, reusePrefix: true });
		const at12 = model.kvStats();
		await model.configureKv({ policy: 'snapkv', budgetPercent: 6, precision: 'mixed' });
		await model.complete({ prompt: longPrompt, maxTokens: 4, reusePrefix: true });
		const at6 = model.kvStats();
		assert.equal(at6.policy, 'snapkv+mixed');
		assert.ok(at6.bytes < 0.6 * at12.bytes, `${at6.bytes} vs ${at12.bytes}`);
		assert.ok(at6.bytes <= 0.06 * at6.fp16Bytes, `${at6.bytes} of ${at6.fp16Bytes}`);
		// f16 storage has another staging of the master copy: it is prefilled afresh, not reused
		await model.configureKv({ policy: 'snapkv', budgetPercent: 12, precision: 'f16' });
		const fresh = await model.complete({ prompt: longPrompt, maxTokens: 4, reusePrefix: true });
		assert.equal(fresh.tokens.reused, 0);
		assert.equal(model.kvStats().policy, 'snapkv');
	});
});

describe('native engine, SpecKV: a request that changes only the end of the prompt keeps the selection', () => {
	let model;
	before(async () => {
		const engine = await sidecar.loadEngine('native');
		model = await engine.loadModel({ modelPath: targetModelPath, threads: 1, contextSize: 4096, kvCache: { policy: 'speckv', budgetPercent: 12, precision: 'mixed' } });
	});
	after(() => model?.dispose());
	const repoBlock = `<|file_sep|>src/math.ts\nexport function clamp(value: number, low: number, high: number): number {\n  return Math.min(Math.max(value, low), high);\n}\n<|file_sep|>src/filler.ts\n${'export const filler = [1, 2, 3];\n'.repeat(150)}`;
	// typing after the cursor: a trailing comment grows at the end of the suffix
	const promptWith = (comment, fillerEdit = '') =>
		`${repoBlock}${fillerEdit}<|file_sep|>src/main.ts\n<|fim_prefix|>import { clamp } from './math';\n\nexport function percent(value: number): number {\n  return <|fim_suffix|>;\n}\n${comment}<|fim_middle|>`;
	const tierTokens = (stats, tier) => stats.tiers?.[tier]?.tokens ?? 0;

	test('the suffix grows by a few tokens: kept (no draft, scoring or compaction), the tiers stay, the new tokens are fp16', async () => {
		const first = await model.complete({ prompt: promptWith('// a'), maxTokens: 8, reusePrefix: true });
		assert.equal(first.selection, 'fresh');
		assert.ok(first.timings.draftMs !== undefined && first.timings.scoringMs !== undefined);
		const selected = model.kvStats();
		const fp16Bytes = selected.fp16Bytes;
		const next = await model.complete({ prompt: promptWith('// ab'), maxTokens: 8, reusePrefix: true });
		assert.equal(next.selection, 'kept');
		assert.equal(next.timings.draftMs, undefined);
		assert.equal(next.timings.scoringMs, undefined);
		assert.ok(next.tokens.reused >= next.tokens.prompt - 8, `reused ${next.tokens.reused} of ${next.tokens.prompt}`);
		assert.ok(next.tokens.generated > 0);
		const kept = model.kvStats();
		assert.equal(kept.policy, 'speckv+mixed');
		for (const tier of ['kivi4', 'onebit']) {
			assert.equal(tierTokens(kept, tier), tierTokens(selected, tier), `${tier}: the selection's packed tiers are untouched`);
		}
		// the fp16 tier lost the first request's generated tokens and its changed tail, and gained the new tail and
		// this request's generated tokens: at most the growth bound (8 positions) per head more than a fresh selection
		const heads = kept.layers.length * kept.layers[0].heads.length;
		const grown = next.tokens.prompt - first.tokens.prompt;
		assert.ok(tierTokens(kept, 'f16') <= tierTokens(selected, 'f16') - first.tokens.generated * heads + (grown + next.tokens.generated) * heads + heads, `${tierTokens(kept, 'f16')} vs ${tierTokens(selected, 'f16')}`);
		assert.ok(kept.bytes <= 0.12 * fp16Bytes * 1.1, `${kept.bytes} of ${fp16Bytes}`);
	});

	test('a warm-up for a prompt the cache starts with (the repository block) keeps what follows it', async () => {
		await model.complete({ prompt: promptWith('// x'), maxTokens: 8, reusePrefix: true });
		const warm = await model.complete({ prompt: repoBlock, maxTokens: 0, reusePrefix: true });
		assert.equal(warm.tokens.reused, warm.tokens.prompt - 1, 'nothing to evaluate');
		const next = await model.complete({ prompt: promptWith('// xy'), maxTokens: 8, reusePrefix: true });
		assert.equal(next.selection, 'kept');
	});

	test('an edit before the recent window, a prompt grown past the bound, or new KV settings select afresh', async () => {
		await model.complete({ prompt: promptWith('// p'), maxTokens: 8, reusePrefix: true });
		const earlier = await model.complete({ prompt: promptWith('// p', 'export const extra = 1;\n'), maxTokens: 8, reusePrefix: true });
		assert.equal(earlier.selection, 'fresh');
		assert.ok(earlier.timings.scoringMs !== undefined);
		const grown = await model.complete({ prompt: promptWith(`// p ${'word '.repeat(20)}`, 'export const extra = 1;\n'), maxTokens: 8, reusePrefix: true });
		assert.equal(grown.selection, 'fresh', 'grew past keptSelectionGrowthTokens');
		await model.configureKv({ policy: 'speckv', budgetPercent: 12, precision: 'mixed' });
		const reconfigured = await model.complete({ prompt: promptWith(`// p ${'word '.repeat(20)}.`, 'export const extra = 1;\n'), maxTokens: 8, reusePrefix: true });
		assert.equal(reconfigured.selection, 'fresh');
	});

	test('typing at the cursor what was completed keeps the selection; typing something else selects afresh', async () => {
		// the needle fixture ends at its cursor (`assert.equal(RETRY_LIMIT_MS, `): the target completes 4817 (src/config.ts)
		const snapshot = await sidecar.readWorkspace(needleWorkspace);
		const main = snapshot.files.find((file) => file.path === 'src/main.ts').text;
		const cursor = main.endsWith('\n') ? main.length - 1 : main.length;
		const promptTyping = (typed) =>
			sidecar.buildCompletionPrompt({
				files: snapshot.files.filter((file) => file.path !== 'src/main.ts'),
				activePath: 'src/main.ts',
				activeText: `${main.slice(0, cursor)}${typed}${main.slice(cursor)}`,
				cursorOffset: cursor + typed.length,
				specialTokens: model.specialTokens,
				counter: new sidecar.CachingCounter(model),
				budgetTokens: 4096 - 64 - 1,
				orderFiles: sidecar.orderStableFirst,
			}).text;
		const first = await model.complete({ prompt: promptTyping(''), maxTokens: 8, reusePrefix: true });
		assert.equal(first.selection, 'fresh');
		assert.ok(first.text.startsWith('4817'), `the needle: ${JSON.stringify(first.text)}`);
		const typed4 = await model.complete({ prompt: promptTyping('4'), maxTokens: 8, reusePrefix: true });
		assert.equal(typed4.selection, 'kept', 'typed the first character of the completion');
		const typed48 = await model.complete({ prompt: promptTyping('48'), maxTokens: 8, reusePrefix: true });
		assert.equal(typed48.selection, 'kept');
		assert.ok(typed48.tokens.generated > 0 && typed48.tokens.reused >= typed48.tokens.prompt - 8);
		const other = await model.complete({ prompt: promptTyping('x'), maxTokens: 8, reusePrefix: true });
		assert.equal(other.selection, 'fresh', 'typed neither the completion nor the draft\'s guess');
	});

	test('an abort while prefilling the changed tail drops the kept store; the next request selects afresh and completes', async () => {
		await model.complete({ prompt: promptWith('// q'), maxTokens: 8, reusePrefix: true });
		const controller = new AbortController();
		controller.abort();
		const aborted = await model.complete({ prompt: promptWith('// qr'), maxTokens: 8, reusePrefix: true, signal: controller.signal });
		assert.equal(aborted.stopReason, 'aborted');
		const next = await model.complete({ prompt: promptWith('// qrs'), maxTokens: 8, reusePrefix: true });
		assert.equal(next.selection, 'fresh');
		assert.ok(next.tokens.generated > 0);
	});
});

function repokv(...args) {
	const result = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 120_000 });
	return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('repokv complete on the needle workspace', () => {
	const needle = ['complete', '--workspace', needleWorkspace, '--file', 'src/main.ts', '--line', '10', '--column', '32', '--model', targetModelPath];

	test('--json retrieves RETRY_LIMIT_MS = 4817 from src/config.ts, and secrets never reach the prompt', () => {
		const result = repokv(...needle, '--json', '--show-prompt', '--threads', '1');
		assert.equal(result.code, 0, result.stderr);
		const output = JSON.parse(result.stdout);
		assert.ok(output.completion.startsWith('4817'), `completion: ${JSON.stringify(output.completion)} (raw ${JSON.stringify(output.raw)})`);
		assert.ok(output.tokens.context > 1000 && output.tokens.generated > 0);
		for (const key of ['loadMs', 'readWorkspaceMs', 'tokenizeMs', 'prefillMs', 'decodeMs', 'totalMs']) {
			assert.ok(typeof output.timings[key] === 'number' && output.timings[key] >= 0, key);
		}
		// compressed by default: the native engine, SpecKV with the bundled draft, mixed tiers at 12 % of fp16
		assert.equal(output.model.engine, 'native');
		assert.deepEqual(output.kv, { policy: 'speckv', budgetPercent: 12, precision: 'mixed', draft: output.kv.draft });
		assert.equal(output.cache.policy, 'speckv+mixed');
		assert.equal(output.cache.split, 'uniform');
		assert.ok(output.timings.draftMs > 0 && output.timings.scoringMs > 0);
		// fp16Bytes: a full fp16 cache of the same positions (6 layers x 2 KV heads x 64 dims x 2 (K, V) x 2 bytes)
		assert.equal(output.cache.fp16Bytes, output.cache.tokens * 6 * 2 * 64 * 4);
		assert.ok(output.cache.bytes <= 0.12 * output.cache.fp16Bytes, `${output.cache.bytes} of ${output.cache.fp16Bytes}`);
		// residentBytes: the tiers, the master copy kept apart for the next request, and the draft's own cache
		assert.equal(output.cache.residentBytes, output.cache.bytes + output.cache.masterBytes + output.cache.draft.bytes);
		assert.ok(output.cache.draft.tokens > 1000 && output.cache.draft.bytes > 0);
		assert.equal(output.model.threads, 1);
		assert.ok(output.files.included.includes('src/config.ts'));
		assert.ok(!output.files.included.includes('deploy-token.json') && !output.files.included.includes('.env'));
		assert.doesNotMatch(output.prompt, /FAKE-DEPLOY-TOKEN|FAKE-ENV-KEY/);
		assert.ok(output.prompt.endsWith('  assert.equal(RETRY_LIMIT_MS, <|fim_suffix|>\n<|fim_middle|>'));
	});

	test('runs with one thread too (on 2 cores it may decode faster) and prints text with timings and KV bytes per tier', () => {
		const result = repokv(...needle, '--threads', '1');
		assert.equal(result.code, 0, result.stderr);
		assert.match(result.stdout, /^completion: "4817/);
		assert.match(result.stdout, /1 thread\b/);
		assert.match(result.stdout, /timings +load .* prefill .* draft .* scoring .* decode .* total/);
		assert.match(result.stdout, /kv cache {2}speckv, mixed 4-bit \+ 1\.x-bit tiers at 12 % of the fp16 KV bytes/);
		assert.match(result.stdout, /attended [\d.]+ MiB \([\d.]+ % of fp16\) .* a full fp16 cache: [\d.]+ MiB/);
		assert.match(result.stdout, /resident [\d.]+ MiB .* master copy .* draft cache/);
		for (const tier of ['f16', 'kivi4', 'onebit']) assert.match(result.stdout, new RegExp(`^  ${tier} +\\d+ token·heads +[\\d.]+ MiB$`, 'm'));
		assert.equal(result.stderr, '', 'no warning: the bundled draft pairs with the bundled target');
	});

	test('--engine llama is the reference: a full cache, said so', () => {
		const result = repokv(...needle, '--threads', '1', '--engine', 'llama', '--json');
		assert.equal(result.code, 0, result.stderr);
		const output = JSON.parse(result.stdout);
		assert.equal(output.model.engine, 'llama');
		assert.match(output.completion, /^4817/);
		assert.equal(output.cache, undefined);
		assert.equal(output.kv, undefined);
	});

	test('a draft with another vocabulary: one stderr line with the fix, --json says it, the cache is still compressed', async (t) => {
		const { writeGguf, GGUF } = await import('../../native/test-fixtures/gguf-writer.mjs');
		const draft = path.join(await tempFolder(t), 'other-vocabulary.gguf');
		writeGguf(draft, [
			{ key: 'general.architecture', type: GGUF.STRING, value: 'llama' },
			{ key: 'tokenizer.ggml.model', type: GGUF.STRING, value: 'gpt2' },
			{ key: 'tokenizer.ggml.tokens', type: GGUF.ARRAY, itemType: GGUF.STRING, value: ['a', 'b', 'c'] },
			{ key: 'tokenizer.ggml.token_type', type: GGUF.ARRAY, itemType: GGUF.INT32, value: [1, 1, 1] },
		], []);
		const result = repokv(...needle, '--threads', '1', '--json', '--draft', draft);
		assert.equal(result.code, 0, result.stderr);
		const lines = result.stderr.trim().split('\n');
		assert.equal(lines.length, 1, result.stderr);
		assert.match(lines[0], /^repokv: SpecKV is off: the draft model .*other-vocabulary\.gguf cannot be paired with the target .*target\.gguf: the target has \d+ tokens and the draft 3\. Serving snapkv, mixed .* at 12 % .*; to fix it, set --draft to a GGUF draft with the target's vocabulary/);
		const output = JSON.parse(result.stdout);
		assert.equal(output.kv.policy, 'snapkv');
		assert.equal(output.kv.fallback.requested, 'speckv');
		assert.match(output.kv.fallback.fixHint, /--draft/);
		assert.equal(output.cache.policy, 'snapkv+mixed', 'compressed, never silently full');
		assert.match(output.completion, /^4817/);
		const missing = repokv(...needle, '--threads', '1', '--json', '--draft', path.join(path.dirname(draft), 'absent.gguf'));
		assert.equal(missing.code, 0, missing.stderr);
		assert.match(missing.stderr, /SpecKV is off: draft model file not found: .*absent\.gguf/);
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
