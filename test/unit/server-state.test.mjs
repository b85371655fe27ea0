// Cache snapshots (full-KV numbers from the model shape; engine stats when present), settings sanitising, and the
// status reporter's throttling.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { sidecar } from '../support/sidecar.mjs';

const { buildCacheSnapshot, fp16BytesPerHeadToken, reloadNeeded, resolveSettings, StatusReporter, protocol } = sidecar;

const shape = { layers: 6, kvHeads: 2, headDim: 64 };
/** @type {Parameters<typeof buildCacheSnapshot>[0]} */
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
		assert.deepEqual(snapshot.layers[0].heads[1].tiers.f16, { tokens: 1001, bytes: 1001 * 256 });
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
		/** @type {import('../../sidecar/src/api').EngineKvStats} */
		const kvStats = {
			policy: 'speckv',
			split: 'uniform',
			tokens: 1001,
			bytes: 0,
			layers: Array.from({ length: 6 }, () => ({
				heads: [head(1001, [{ tier: 'f16', tokens: 101, bytes: 101 * 256 }, { tier: 'onebit', tokens: 900, bytes: 900 * 24 }]), head(500, [{ tier: 'kivi4', tokens: 400, bytes: 400 * 72 }, { tier: 'kivi2', tokens: 100, bytes: 100 * 40 }])],
			})),
		};
		const snapshot = buildCacheSnapshot({ ...base, engine: 'native', kvStats });
		assert.equal(snapshot.source, 'engineStats');
		assert.equal(snapshot.budget.policy, 'speckv');
		assert.equal(snapshot.budget.allocation, 'uniform');
		// the split the engine used is the budget rule shown, not a fixed 'uniform'
		const pyramid = buildCacheSnapshot({ ...base, engine: 'native', kvStats: { ...kvStats, policy: 'pyramidkv+mixed', split: 'pyramid' }, kv: { policy: 'pyramidkv', budgetPercent: 6, precision: 'mixed' } });
		assert.equal(pyramid.budget.allocation, 'pyramid');
		assert.equal(pyramid.budget.budgetPercent, 6);
		assert.equal(pyramid.budget.precision, 'mixed');
		assert.match(pyramid.budget.description, /pyramidkv.*6 %.*pyramid split/);
		// a prompt within the budget is not compressed: the engine still says `full`, and the rule says why
		const small = buildCacheSnapshot({ ...base, engine: 'native', kvStats: { ...kvStats, policy: 'full', split: 'uniform' }, kv: { policy: 'speckv', budgetPercent: 12, precision: 'mixed' } });
		assert.equal(small.budget.allocation, 'none');
		assert.match(small.budget.description, /compresses only a prompt larger than its budget/);
		const [h0, h1] = snapshot.layers[2].heads;
		assert.deepEqual(h0.tiers.onebit, { tokens: 900, bytes: 900 * 24 });
		assert.equal(h0.bytes, 101 * 256 + 900 * 24);
		// every engine tier under its own name: kivi2 is not folded into onebit, nor kivi4 renamed
		assert.deepEqual(h1.tiers.kivi4, { tokens: 400, bytes: 400 * 72 });
		assert.deepEqual(h1.tiers.kivi2, { tokens: 100, bytes: 100 * 40 });
		assert.deepEqual(h1.tiers.onebit, { tokens: 0, bytes: 0 });
		assert.deepEqual(h1.tiers.dropped, { tokens: 501, bytes: 0 });
		assert.deepEqual(Object.keys(h1.tiers), [...protocol.storageTiers, 'dropped']);
		assert.ok(snapshot.totals.compressionRatio > 1);
		assert.ok(snapshot.totals.bitsPerElement < 16);
		assert.ok(snapshot.files[0].keptFraction < 1);
	});

	test('per file: the engine\'s per-position tier counts (cells / layers x heads), not the overall share', () => {
		const cells = shape.layers * shape.kvHeads;
		/** @type {import('../../sidecar/src/api').EngineKvStats} */
		const kvStats = {
			policy: 'speckv',
			split: 'uniform',
			tokens: 1001,
			bytes: 0,
			layers: Array.from({ length: 6 }, () => ({ heads: Array.from({ length: 2 }, () => ({ tokens: 700, bytes: 0, segments: [{ tier: 'f16', tokens: 100, bytes: 0 }, { tier: 'kivi4', tokens: 300, bytes: 0 }, { tier: 'onebit', tokens: 300, bytes: 0 }] })) })),
		};
		const asked = [];
		const rangeTiers = (bounds) => {
			asked.push([...bounds]);
			// a.ts: mostly 1-bit; main.ts (the active file): mostly fp16 and kivi4, some kivi2
			return [{ f16: 10 * cells, q8: 0, kivi4: 50 * cells, kivi2: 0, onebit: 290 * cells }, { f16: 90 * cells, q8: 0, kivi4: 250 * cells, kivi2: 10 * cells, onebit: 0 }];
		};
		const snapshot = buildCacheSnapshot({ ...base, engine: 'native', kvStats, rangeTiers });
		assert.deepEqual(asked, [[1, 601, 995]], 'the spans\' boundaries, after BOS');
		const [a, main] = snapshot.files;
		assert.deepEqual(a.keptTokens, { f16: 10, q8: 0, kivi4: 50, kivi2: 0, onebit: 290, dropped: 250 });
		assert.equal(a.keptFraction, 0.1);
		assert.deepEqual(main.keptTokens, { f16: 90, q8: 0, kivi4: 250, kivi2: 10, onebit: 0, dropped: 44 });
		assert.equal(main.keptFraction, Math.round((340 / 394) * 1000) / 1000);
		assert.notEqual(a.keptFraction, main.keptFraction);
		// without per-position counts (node-llama-cpp) the overall share stays, the same for every file
		const uniform = buildCacheSnapshot({ ...base, engine: 'native', kvStats });
		assert.equal(uniform.files[0].keptFraction, uniform.files[1].keptFraction);
	});
});

describe('resolveSettings', () => {
	test('defaults, and invalid values fall back instead of reaching the engine', () => {
		const defaults = resolveSettings(undefined);
		// compressed by default: the native engine, SpecKV, mixed tiers, 12 % of the fp16 bytes
		assert.equal(defaults.engine, 'native');
		assert.deepEqual(defaults.kv, { policy: 'speckv', budgetPercent: 12, split: undefined, precision: 'mixed', draftLayout: 'prefix-last', masterPrecision: protocol.defaultKvSettings.masterPrecision });
		assert.equal(defaults.kv.budgetPercent, protocol.defaultKvSettings.budgetPercent);
		assert.match(defaults.model.target, /models[/\\]target\.gguf$/);
		assert.ok(defaults.threads >= 1);
		const bad = resolveSettings({ engine: 'gpu', threads: -3, completion: { maxTokens: 'many', debounceMinMs: 100, debounceMaxMs: 10 }, limits: { maxFileBytes: 0 } });
		assert.equal(bad.engine, 'native');
		assert.equal(resolveSettings({ engine: 'llama' }).engine, 'llama');
		const badKv = resolveSettings({ kv: { policy: 'gpt', budgetPercent: 0, split: 'diagonal', precision: 'int3', draftLayout: 'suffix-first', masterPrecision: 'onebit' } }).kv;
		assert.deepEqual(badKv, defaults.kv);
		assert.equal(resolveSettings({ kv: { budgetPercent: 101 } }).kv.budgetPercent, 12);
		assert.equal(resolveSettings({ kv: { budgetPercent: 5 } }).kv.budgetPercent, 5);
		// window and full rank nothing: they store f16 whatever precision is set (the default mixed never breaks them)
		assert.equal(resolveSettings({ kv: { policy: 'window' } }).kv.precision, 'f16');
		assert.equal(resolveSettings({ kv: { policy: 'full', precision: 'q8' } }).kv.precision, 'f16');
		assert.equal(resolveSettings({ kv: { policy: 'snapkv', precision: 'q8' } }).kv.precision, 'q8');
		assert.equal(bad.threads, defaults.threads);
		assert.equal(bad.completion.maxTokens, 64);
		assert.equal(bad.completion.debounceMaxMs, 100, 'max is never below min');
		assert.equal(bad.limits.maxFileBytes, defaults.limits.maxFileBytes);
		assert.equal(resolveSettings({ engine: 'native', model: { target: 'hf:user/repo/model.gguf' } }).model.target, 'hf:user/repo/model.gguf');
	});

	test('kv.draftLayout: prefix-last by default and for unknown values', () => {
		assert.equal(resolveSettings(undefined).kv.draftLayout, 'prefix-last');
		assert.equal(resolveSettings({ kv: { draftLayout: 'suffix-first' } }).kv.draftLayout, 'prefix-last');
		assert.equal(resolveSettings({ kv: { draftLayout: 'fim' } }).kv.draftLayout, 'fim');
	});

	test('kv.masterPrecision: one of q8, kivi4, kivi2; the default for anything else', () => {
		assert.deepEqual(protocol.kvMasterPrecisions, ['q8', 'kivi4', 'kivi2']);
		for (const m of protocol.kvMasterPrecisions) assert.equal(resolveSettings({ kv: { masterPrecision: m } }).kv.masterPrecision, m);
		for (const bad of ['onebit', 'f16', 4, null]) assert.equal(resolveSettings({ kv: { masterPrecision: bad } }).kv.masterPrecision, protocol.defaultKvSettings.masterPrecision);
	});
});

describe('reloadNeeded: what a settings change costs', () => {
	const native = (extra = {}) => resolveSettings({ engine: 'native', threads: 1, ...extra });
	test('model settings reload the target', () => {
		assert.equal(reloadNeeded(native(), native({ threads: 2 })), 'model');
		assert.equal(reloadNeeded(native(), native({ contextSize: 2048 })), 'model');
		assert.equal(reloadNeeded(native(), native({ model: { target: '/elsewhere.gguf' } })), 'model');
		assert.equal(reloadNeeded(native(), native({ engine: 'llama' })), 'model');
	});
	test('budget, precision, split, layout and draft-free policies only reconfigure the next request', () => {
		assert.equal(reloadNeeded(native(), native({ kv: { budgetPercent: 6 } })), 'kv');
		assert.equal(reloadNeeded(native(), native({ kv: { precision: 'q8' } })), 'kv');
		assert.equal(reloadNeeded(native(), native({ kv: { split: 'pyramid' } })), 'kv');
		assert.equal(reloadNeeded(native(), native({ kv: { draftLayout: 'fim' } })), 'kv');
		const other = protocol.kvMasterPrecisions.find((m) => m !== protocol.defaultKvSettings.masterPrecision);
		assert.equal(reloadNeeded(native(), native({ kv: { masterPrecision: other } })), 'kv');
		assert.equal(reloadNeeded(native({ kv: { policy: 'snapkv' } }), native({ kv: { policy: 'adakv' } })), 'kv');
	});
	test('turning SpecKV on or off, or another draft, loads or drops only the draft', () => {
		assert.equal(reloadNeeded(native(), native({ kv: { policy: 'snapkv' } })), 'draft');
		assert.equal(reloadNeeded(native({ kv: { policy: 'full' } }), native()), 'draft');
		assert.equal(reloadNeeded(native(), native({ model: { draft: '/other-draft.gguf' } })), 'draft');
		// without SpecKV the draft file does not matter
		assert.equal(reloadNeeded(native({ kv: { policy: 'snapkv' } }), native({ kv: { policy: 'snapkv' }, model: { draft: '/other.gguf' } })), 'none');
	});
	test("the native engine's device reloads the model; under the llama engine it does nothing", () => {
		assert.equal(native().device, 'auto');
		assert.equal(reloadNeeded(native(), native({ device: 'cpu' })), 'model');
		assert.equal(native({ device: 'gpu' }).device, 'auto', 'an unknown value falls back to the default');
		const llama = (extra = {}) => resolveSettings({ engine: 'llama', threads: 1, ...extra });
		assert.equal(reloadNeeded(llama(), llama({ device: 'cuda' })), 'none');
	});
	test('nothing for settings the engine does not hold, or KV settings under the llama engine', () => {
		assert.equal(reloadNeeded(native(), native({ completion: { maxTokens: 8 } })), 'none');
		const llama = (extra = {}) => resolveSettings({ engine: 'llama', threads: 1, ...extra });
		assert.equal(reloadNeeded(llama(), llama({ kv: { policy: 'snapkv', budgetPercent: 3 } })), 'none');
	});
});

describe('settings defined once', () => {
	test("package.json's contributed enums and defaults are the protocol's lists and defaults", async () => {
		const { readFile } = await import('node:fs/promises');
		const manifest = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'));
		const properties = Object.assign({}, ...manifest.contributes.configuration.map((group) => group.properties));
		const sorted = (list) => [...list].sort();
		const p = protocol;
		assert.deepEqual(sorted(properties['repokv.engine'].enum), sorted(p.engineSettings));
		assert.equal(properties['repokv.engine'].default, p.defaultEngine);
		assert.deepEqual(sorted(properties['repokv.device'].enum), sorted(p.deviceSettings));
		assert.equal(properties['repokv.device'].default, p.defaultDevice);
		assert.deepEqual(sorted(properties['repokv.kv.policy'].enum), sorted(p.kvPolicies));
		assert.equal(properties['repokv.kv.policy'].default, p.defaultKvSettings.policy);
		assert.deepEqual(sorted(properties['repokv.kv.precision'].enum), sorted(p.kvPrecisions));
		assert.equal(properties['repokv.kv.precision'].default, p.defaultKvSettings.precision);
		assert.deepEqual(sorted(properties['repokv.kv.split'].enum), sorted(['default', ...p.kvSplits]));
		assert.deepEqual(sorted(properties['repokv.kv.draftLayout'].enum), sorted(p.draftLayouts));
		assert.equal(properties['repokv.kv.draftLayout'].default, p.defaultKvSettings.draftLayout);
		assert.deepEqual(sorted(properties['repokv.kv.masterPrecision'].enum), sorted(p.kvMasterPrecisions));
		assert.equal(properties['repokv.kv.masterPrecision'].default, p.defaultKvSettings.masterPrecision);
		assert.equal(properties['repokv.kv.budgetPercent'].default, p.defaultKvSettings.budgetPercent);
		assert.equal(properties['repokv.kv.budgetPercent'].minimum, p.kvBudgetPercentRange.min);
		assert.equal(properties['repokv.kv.budgetPercent'].maximum, p.kvBudgetPercentRange.max);
		assert.equal(properties['repokv.completion.maxTokens'].default, p.defaultCompletionSettings.maxTokens);
		for (const [name, property] of Object.entries(properties)) {
			if (property.enum !== undefined) {
				assert.equal(property.enumDescriptions?.length, property.enum.length, `${name}: one description per value`);
			}
			assert.ok(property.description ?? property.markdownDescription, `${name} has a description`);
		}
		assert.ok(properties['repokv.model.draft']);
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
