// Cache snapshots (full-KV numbers from the model shape; engine stats when present), settings sanitising, and the
// status reporter's throttling.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { sidecar } from '../support/sidecar.mjs';

const { buildCacheSnapshot, fp16BytesPerHeadToken, needsReload, resolveSettings, StatusReporter, protocol } = sidecar;

const shape = { layers: 6, kvHeads: 2, headDim: 64 };
const base = {
	sequence: 1,
	request: 'completion',
	engine: 'llama',
	model: { path: 'm.gguf', architecture: 'llama', contextSize: 4096 },
	shape,
	contextTokens: 1001,
	spans: [
		{ path: 'a.ts', role: 'repo', tokens: 600 },
		{ path: 'main.ts', role: 'active', tokens: 394 },
	],
	bos: true,
	latency: { prefillMs: 10, draftMs: 0, scoringMs: 0, decodeMs: 5, totalMs: 15, prefillTokens: 995, reusedTokens: 0, generatedTokens: 6 },
};

describe('buildCacheSnapshot', () => {
	test('full KV from the model shape: 2 x headDim x 2 bytes per token, head and layer', () => {
		const snapshot = buildCacheSnapshot(base);
		assert.equal(fp16BytesPerHeadToken(shape), 256);
		assert.equal(snapshot.source, 'modelShape');
		assert.equal(snapshot.layers.length, 6);
		assert.equal(snapshot.layers[0].heads.length, 2);
		assert.deepEqual(snapshot.layers[0].heads[1].tiers.fp16, { tokens: 1001, bytes: 1001 * 256 });
		assert.equal(snapshot.totals.kvBytes, 1001 * 256 * 2 * 6);
		assert.equal(snapshot.totals.fp16Bytes, snapshot.totals.kvBytes);
		assert.equal(snapshot.totals.bitsPerElement, 16);
		assert.equal(snapshot.totals.compressionRatio, 1);
		assert.equal(snapshot.budget.policy, 'full');
		assert.deepEqual(snapshot.files.map((f) => [f.path, f.startToken, f.endToken, f.keptFraction]), [['a.ts', 1, 601, 1], ['main.ts', 601, 995, 1]]);
		for (const tier of protocol.kvTiers) {
			assert.ok(tier in snapshot.layers[3].tiers, tier);
		}
	});

	test('engine stats give real per-head bytes and tiers; missing tokens count as dropped', () => {
		const head = (tokens, segments) => ({ tokens, bytes: segments.reduce((s, x) => s + x.bytes, 0), segments });
		const kvStats = {
			policy: 'speckv',
			tokens: 1001,
			bytes: 0,
			layers: Array.from({ length: 6 }, () => ({
				heads: [head(1001, [{ tier: 'f16', tokens: 101, bytes: 101 * 256 }, { tier: 'onebit', tokens: 900, bytes: 900 * 24 }]), head(500, [{ tier: 'q4', tokens: 500, bytes: 500 * 72 }])],
			})),
		};
		const snapshot = buildCacheSnapshot({ ...base, engine: 'native', kvStats });
		assert.equal(snapshot.source, 'engineStats');
		assert.equal(snapshot.budget.policy, 'speckv');
		const [h0, h1] = snapshot.layers[2].heads;
		assert.deepEqual(h0.tiers.onebit, { tokens: 900, bytes: 900 * 24 });
		assert.equal(h0.bytes, 101 * 256 + 900 * 24);
		assert.deepEqual(h1.tiers.dropped, { tokens: 501, bytes: 0 });
		assert.ok(snapshot.totals.compressionRatio > 1);
		assert.ok(snapshot.totals.bitsPerElement < 16);
		assert.ok(snapshot.files[0].keptFraction < 1);
	});
});

describe('resolveSettings', () => {
	test('defaults, and invalid values fall back instead of reaching the engine', () => {
		const defaults = resolveSettings(undefined);
		assert.equal(defaults.engine, 'llama');
		assert.match(defaults.model.target, /models[/\\]target\.gguf$/);
		assert.ok(defaults.threads >= 1);
		const bad = resolveSettings({ engine: 'gpu', threads: -3, completion: { maxTokens: 'many', debounceMinMs: 100, debounceMaxMs: 10 }, limits: { maxFileBytes: 0 } });
		assert.equal(bad.engine, 'llama');
		assert.equal(bad.threads, defaults.threads);
		assert.equal(bad.completion.maxTokens, 64);
		assert.equal(bad.completion.debounceMaxMs, 100, 'max is never below min');
		assert.equal(bad.limits.maxFileBytes, defaults.limits.maxFileBytes);
		assert.equal(resolveSettings({ engine: 'native', model: { target: 'hf:user/repo/model.gguf' } }).model.target, 'hf:user/repo/model.gguf');
	});

	test('kv.draftLayout: prefix-last by default and for unknown values; a change reloads the model', () => {
		assert.equal(resolveSettings(undefined).kv.draftLayout, 'prefix-last');
		assert.equal(resolveSettings({ kv: { draftLayout: 'suffix-first' } }).kv.draftLayout, 'prefix-last');
		const fim = resolveSettings({ engine: 'native', kv: { policy: 'speckv', draftLayout: 'fim' } });
		assert.equal(fim.kv.draftLayout, 'fim');
		assert.ok(needsReload(fim, resolveSettings({ engine: 'native', kv: { policy: 'speckv' } })));
		assert.ok(!needsReload(fim, resolveSettings({ engine: 'native', kv: { policy: 'speckv', draftLayout: 'fim' } })));
	});
});

describe('StatusReporter', () => {
	test('state changes push at once; progress is throttled with a trailing push', async () => {
		const pushed = [];
		const status = new StatusReporter((s) => pushed.push(s));
		status.set('indexing', 'indexing 1/100 files', { progress: { done: 1, total: 100, unit: 'files' } });
		for (let done = 2; done <= 50; done++) {
			status.set('indexing', `indexing ${done}/100 files`, { progress: { done, total: 100, unit: 'files' } });
		}
		assert.equal(pushed.length, 1);
		await new Promise((resolve) => setTimeout(resolve, 300));
		assert.equal(pushed.length, 2);
		assert.equal(pushed[1].progress.done, 50, 'the latest progress is never lost');
		status.set('error', 'cannot load the model', { fixHint: 'set repokv.model.target' });
		assert.equal(pushed.at(-1).state, 'error');
		assert.equal(pushed.at(-1).fixHint, 'set repokv.model.target');
		assert.equal(pushed.at(-1).progress, undefined);
		status.dispose();
	});
});
