// The native engine through the CLI: `repokv bench parity|speed --json` and `repokv complete --engine native`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { FIXTURES, makeFixture } from '../../native/test-fixtures/make-fixture.mjs';
import { root, tempDir } from './helpers.mjs';

const run = promisify(execFile);
const cli = path.join(root, 'bin', 'repokv.js');
const dir = tempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const fixture = path.join(dir, 'qwen2.gguf');
makeFixture(fixture, FIXTURES.qwen2);
const target = path.join(root, 'models', 'target.gguf');

describe('repokv bench (native engine)', () => {
	test('bench parity --json on the qwen2 fixture', async () => {
		const { stdout } = await run(process.execPath, [cli, 'bench', 'parity', '--model', fixture, '--json', '--threads', '1', '--prompt-tokens', '256', '--greedy', '16']);
		const r = JSON.parse(stdout);
		assert.equal(r.model, fixture);
		assert.equal(r.greedyMatch, '16/16');
		assert.equal(r.promptTokens, 256);
		assert.ok(r.maxAbsLogitDiff <= 2e-3 * r.maxAbsRefLogit, JSON.stringify(r));
		if (r.bitExactExpected) assert.equal(r.identicalLogits, true, JSON.stringify(r));
	});

	test('the portable (non-AVX2) attention kernels agree within the stated tolerance', async () => {
		const { stdout } = await run(process.execPath, [cli, 'bench', 'parity', '--model', fixture, '--json', '--threads', '1', '--prompt-tokens', '256', '--greedy', '16'], {
			env: { ...process.env, REPOKV_NATIVE_SCALAR: '1' },
		});
		const r = JSON.parse(stdout);
		assert.equal(r.bitExactExpected, false);
		assert.ok(r.maxAbsLogitDiff <= 2e-3 * r.maxAbsRefLogit, JSON.stringify(r));
		assert.equal(r.greedyMatch, '16/16');
	});

	test('bench speed --json prints a row per engine configuration and the ratios', async () => {
		const { stdout } = await run(process.execPath, [cli, 'bench', 'speed', '--model', fixture, '--json', '--threads', '1', '--contexts', '128', '--repeats', '1', '--decode-tokens', '4']);
		const r = JSON.parse(stdout);
		assert.deepEqual(r.rows.map((row) => row.config), ['repokv-full', 'repokv-default', 'llama-f16', 'llama-f16-fa', 'llama-q4_0-fa']);
		assert.deepEqual(r.rows.map((row) => `${row.impl}/${row.kv}/${row.flashAttention}`), ['repokv/full-f16/null', 'repokv/speckv+mixed@12%/null', 'node-llama-cpp/f16/false', 'node-llama-cpp/f16/true', 'node-llama-cpp/q4_0/true']);
		for (const row of r.rows) {
			for (const key of ['context', 'impl', 'kv', 'prefillTokPerS', 'decodeTokPerS', 'kvBytes', 'kvRatio', 'peakRssMb', 'rssBeforePromptMb']) assert.ok(key in row, key);
			assert.ok(row.prefillTokPerS > 0 && row.decodeTokPerS > 0);
			assert.ok(row.peakRssMb >= row.rssBeforePromptMb);
		}
		// the default: within 12 % of the f16 bytes after decoding (the decoded tokens are reserved in the budget)
		assert.ok(r.rows[1].kvRatio <= 0.12, String(r.rows[1].kvRatio));
		assert.ok(r.rows[1].draftMs >= 0 && r.rows[1].compressMs >= 0);
		const native = r.rows[0];
		// 2 layers x 2 KV heads x tokens (128 prompt + 4 decoded) x (32 dims x 2 bytes x K,V + 4-byte position)
		assert.equal(native.kvBytes, 2 * 2 * 132 * (32 * 2 * 2 + 4));
		assert.equal(r.summary.length, 1);
		const s = r.summary[0];
		assert.ok(s.full.prefillRatio > 0 && s.full.decodeRatio > 0 && s.defaultDecodeOverF16 > 0 && s.defaultDecodeOverQ4Fa > 0, JSON.stringify(s));
	});

	test('bench speed with only some configurations gives the ratios those rows allow', async () => {
		const { stdout } = await run(process.execPath, [cli, 'bench', 'speed', '--model', fixture, '--json', '--threads', '1', '--contexts', '128', '--repeats', '1', '--decode-tokens', '4', '--configs', 'repokv-default,llama-q4_0-fa']);
		const r = JSON.parse(stdout);
		assert.deepEqual(r.rows.map((row) => row.config), ['repokv-default', 'llama-q4_0-fa']);
		assert.equal(r.summary.length, 1);
		const s = r.summary[0];
		assert.equal(s.full, undefined);
		assert.equal(s.defaultDecodeOverF16, undefined);
		assert.equal(s.defaultDecodeOverQ4Fa, Math.round((r.rows[0].decodeTokPerS / r.rows[1].decodeTokPerS) * 1000) / 1000);
		assert.ok(/^[0-9a-f]{12}$/.test(r.modelSha256) && /^[0-9a-f]{12}$/.test(r.draftSha256), `${r.modelSha256} ${r.draftSha256}`);
	});
});

describe('repokv complete --engine native', { skip: !fs.existsSync(target) && 'models/target.gguf not built yet' }, () => {
	test('completes on the needle workspace with the same text as the llama engine', async () => {
		const args = ['complete', '--workspace', path.join(root, 'test', 'fixtures', 'workspace-needle'), '--file', 'src/main.ts', '--line', '10', '--column', '32', '--threads', '1', '--json'];
		const native = JSON.parse((await run(process.execPath, [cli, ...args, '--engine', 'native'])).stdout);
		const llama = JSON.parse((await run(process.execPath, [cli, ...args, '--engine', 'llama'])).stdout);
		assert.equal(native.model.engine, 'native');
		assert.equal(native.completion, llama.completion);
		assert.equal(native.tokens.generated, llama.tokens.generated);
	});

	test('--policy speckv --budget 12 --precision f16 reports kept tokens and bytes per layer and KV head, and the draft/scoring timings', async () => {
		const args = ['complete', '--workspace', path.join(root, 'test', 'fixtures', 'workspace-needle'), '--file', 'src/main.ts', '--line', '10', '--column', '32', '--threads', '1', '--json'];
		const r = JSON.parse((await run(process.execPath, [cli, ...args, '--engine', 'native', '--policy', 'speckv', '--budget', '12', '--precision', 'f16'])).stdout);
		assert.equal(r.cache.policy, 'speckv');
		assert.equal(r.cache.layers.length, 6);
		const m = r.tokens.context - 1;
		const C = Math.round(0.12 * m);
		for (const layer of r.cache.layers) {
			assert.equal(layer.heads.length, 2);
			for (const head of layer.heads) {
				// C kept + the generated tokens (the last prompt token is re-fed, the last generated one is not evaluated)
				assert.equal(head.tokens, C + r.tokens.generated);
				assert.equal(head.bytes, head.tokens * (64 * 4 + 4));
			}
		}
		assert.equal(r.cache.masterTokens, m);
		assert.ok(r.cache.bytes < 0.2 * r.cache.masterBytes);
		for (const key of ['prefillMs', 'draftMs', 'scoringMs', 'compressMs', 'decodeMs']) assert.ok(r.timings[key] >= 0, key);
		// the llama engine (the reference) keeps the full cache: a KV policy for it is a usage error
		await assert.rejects(run(process.execPath, [cli, ...args, '--engine', 'llama', '--policy', 'speckv']), /needs --engine native/);
	});
});
