// Which KV compression a native-engine request runs with (sidecar/src/engine/kv-choice.ts): defaults filled in, and
// SpecKV's draft checked against the target before anything runs. Only GGUF headers are read: no model is loaded.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { writeGguf, GGUF } from '../../native/test-fixtures/gguf-writer.mjs';
import { sidecar, targetModelPath, draftModelPath, tempFolder } from '../support/sidecar.mjs';

const { masterPrecision } = sidecar.protocol.defaultKvSettings;

const { chooseKvCache, resolveKvSettings, describeFallback } = sidecar;
const defaults = resolveKvSettings({});

/** A vocabulary-only GGUF (no weights): `tokens` and, to make it larger, `padding` bytes of metadata. */
function vocabularyGguf(file, tokens, padding = 0) {
	writeGguf(file, [
		{ key: 'general.architecture', type: GGUF.STRING, value: 'llama' },
		{ key: 'general.description', type: GGUF.STRING, value: 'x'.repeat(padding) },
		{ key: 'tokenizer.ggml.model', type: GGUF.STRING, value: 'gpt2' },
		{ key: 'tokenizer.ggml.tokens', type: GGUF.ARRAY, itemType: GGUF.STRING, value: tokens },
		{ key: 'tokenizer.ggml.token_type', type: GGUF.ARRAY, itemType: GGUF.INT32, value: tokens.map(() => 1) },
	], []);
	return file;
}

describe('chooseKvCache', () => {
	test('the default: speckv, mixed tiers at 12 %, with the bundled draft when it pairs', async () => {
		const choice = await chooseKvCache(targetModelPath, defaults, { automatic: {} }, '--draft');
		assert.deepEqual(choice.status, { policy: 'speckv', budgetPercent: 12, precision: 'mixed', draft: draftModelPath });
		assert.deepEqual(choice.kvCache, { policy: 'speckv', budgetPercent: 12, precision: 'mixed', masterPrecision, draftPath: draftModelPath, draftLayout: 'prefix-last' });
		assert.equal(describeFallback(choice.status), undefined);
	});

	test('a draft of another vocabulary, or a missing one, falls back to snapkv with the same budget and tiers', async (t) => {
		const folder = await tempFolder(t);
		const foreign = vocabularyGguf(path.join(folder, 'foreign.gguf'), ['a', 'b', 'c']);
		const choice = await chooseKvCache(targetModelPath, defaults, { path: foreign }, 'repokv.model.draft');
		assert.equal(choice.status.policy, 'snapkv');
		assert.deepEqual(choice.kvCache, { policy: 'snapkv', budgetPercent: 12, precision: 'mixed', masterPrecision });
		assert.match(choice.status.fallback.reason, /foreign\.gguf cannot be paired with the target .*target\.gguf: the target has \d+ tokens and the draft 3/);
		assert.match(choice.status.fallback.fixHint, /^set repokv\.model\.draft to a GGUF draft with the target's vocabulary/);
		assert.match(describeFallback(choice.status), /^SpecKV is off: .* Serving snapkv, mixed 4-bit \+ 1\.x-bit tiers at 12 % of the fp16 KV bytes instead; to fix it, set repokv\.model\.draft/);
		const missing = await chooseKvCache(targetModelPath, defaults, { path: path.join(folder, 'absent.gguf') }, '--draft');
		assert.match(missing.status.fallback.reason, /draft model file not found: .*absent\.gguf/);
		const unavailable = await chooseKvCache(targetModelPath, defaults, { unavailable: 'downloading hf:x/y/z.gguf timed out' }, '--draft');
		assert.equal(unavailable.status.fallback.reason, 'downloading hf:x/y/z.gguf timed out');
	});

	test('automatic: without a draft setting, the smallest GGUF with the target\'s vocabulary next to the target is found', async (t) => {
		const folder = await tempFolder(t);
		const tokens = ['<s>', 'def', 'return', 'x'];
		const target = vocabularyGguf(path.join(folder, 'coder-7b.gguf'), tokens, 4096);
		const draft = vocabularyGguf(path.join(folder, 'coder-0.5b.gguf'), tokens, 1024);
		vocabularyGguf(path.join(folder, 'coder-3b.gguf'), tokens, 2048);
		vocabularyGguf(path.join(folder, 'other-family.gguf'), ['a', 'b'], 0);
		const emptyDownloads = await tempFolder(t);
		const found = await chooseKvCache(target, defaults, { automatic: { downloadFolder: emptyDownloads } }, '--draft');
		assert.equal(found.status.policy, 'speckv');
		assert.equal(found.status.draft, draft);
		// none in reach: the bundled draft's mismatch and the search are both said
		const alone = await tempFolder(t);
		const lonely = vocabularyGguf(path.join(alone, 'lonely.gguf'), ['only', 'these']);
		const none = await chooseKvCache(lonely, defaults, { automatic: { downloadFolder: emptyDownloads } }, '--draft');
		assert.equal(none.status.policy, 'snapkv');
		assert.match(none.status.fallback.reason, /cannot be paired .* and no smaller GGUF with the target's vocabulary was found/);
	});

	test('policies without a draft, and full, need no draft; window and full store f16', async () => {
		const snap = await chooseKvCache(targetModelPath, resolveKvSettings({ policy: 'pyramidkv', budgetPercent: 6 }), { automatic: {} }, '--draft');
		assert.deepEqual(snap.kvCache, { policy: 'pyramidkv', budgetPercent: 6, precision: 'mixed', masterPrecision });
		const full = await chooseKvCache(targetModelPath, resolveKvSettings({ policy: 'full' }), { automatic: {} }, '--draft');
		assert.equal(full.kvCache, undefined);
		assert.equal(full.status.precision, 'f16');
		assert.equal(resolveKvSettings({ policy: 'window', precision: 'mixed' }).precision, 'f16');
	});

	test('a target that cannot be read is the target\'s error, not a fallback', async () => {
		await assert.rejects(chooseKvCache('/no/such/target.gguf', defaults, { automatic: {} }, '--draft'), /model file not found: \/no\/such\/target\.gguf/);
	});
});
