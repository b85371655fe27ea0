// The GGUF loader against hostile files: targeted cases for each bound the pre-parser (native/src/gguf_check.cpp)
// and the model checks (model.cpp) enforce, then a seeded subset of the loader fuzz (test/fuzz/gguf.fuzz.mjs: 200
// mutated and truncated fixtures, each loaded in a child process). `npm run fuzz` runs the full 10,000.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { FIXTURES, makeFixture } from '../../native/test-fixtures/make-fixture.mjs';
import { GGML, GGUF } from '../../native/test-fixtures/gguf-writer.mjs';
import { runGgufFuzz } from '../fuzz/gguf.fuzz.mjs';
import { layout } from '../fuzz/gguf-mutate.mjs';
import { root, tempDir } from './helpers.mjs';

const addon = createRequire(import.meta.url)(path.join(root, 'native', 'build', 'repokv.node'));
const dir = tempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const good = path.join(dir, 'good.gguf');
makeFixture(good, { ...FIXTURES.qwen2, weightType: GGML.F16 });
const goodBuf = fs.readFileSync(good);
const goodLayout = layout(goodBuf);

/** The good fixture with one field (found by layout()) overwritten. */
function withField(name, pick, value) {
	const f = goodLayout.fields.find(pick);
	assert.ok(f, `no field for ${name}`);
	const buf = Buffer.from(goodBuf);
	if (f.width === 8) buf.writeBigUInt64LE(BigInt(value), f.at);
	else buf.writeUInt32LE(Number(value), f.at);
	const file = path.join(dir, `${name}.gguf`);
	fs.writeFileSync(file, buf);
	return file;
}
function variant(name, transform) {
	const file = path.join(dir, `${name}.gguf`);
	makeFixture(file, { ...FIXTURES.qwen2, transform });
	return file;
}
function rejects(file, code, message) {
	assert.throws(() => addon.loadModel(file, { threads: 1 }), (/** @type {any} */ e) => {
		if (code) assert.equal(e.code, code, e.message);
		if (message) assert.match(e.message, message);
		assert.ok(!e.message.includes('\n') && e.message.length < 1000, 'one short line');
		return true;
	});
}

describe('GGUF loader: hostile files are clear errors', () => {
	test('counts the file cannot hold', () => {
		rejects(withField('kv-count', (f) => f.what === 'n_kv', 2n ** 40n), 'ERR_GGUF_COUNT', /metadata key count/);
		const cut = path.join(dir, 'tensor-count.gguf');
		fs.writeFileSync(cut, fs.readFileSync(withField('tensor-count-src', (f) => f.what === 'n_tensors', 8000)).subarray(0, 4000));
		rejects(cut, 'ERR_GGUF_COUNT', /8000 tensors cannot fit in the 3976 bytes that follow the header/);
		rejects(withField('tensor-count-neg', (f) => f.what === 'n_tensors', 2n ** 64n - 1n), 'ERR_GGUF_COUNT', /tensor count -1/);
	});
	// ggml compares every key and tensor name with all earlier ones (quadratic): 65,536 took 9-12 s to parse
	test('more keys or tensors than the limits, cheap to write, are rejected before ggml parses them', () => {
		const many = (nTensors, nKv, name) => {
			const str = (x) => {
				const b = Buffer.from(x);
				const len = Buffer.alloc(8);
				len.writeBigUInt64LE(BigInt(b.length));
				return [len, b];
			};
			const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
			const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
			const parts = [Buffer.from('GGUF'), u32(3), u64(nTensors), u64(nKv), ...str('general.architecture'), u32(8), ...str('llama')];
			for (let i = 1; i < nKv; i++) parts.push(...str(`k.${i}`), u32(4), u32(i));
			for (let i = 0; i < nTensors; i++) parts.push(...str(`t.${i}`), u32(1), u64(0), u32(0), u64(0));
			const file = path.join(dir, `${name}.gguf`);
			fs.writeFileSync(file, Buffer.concat([...parts, Buffer.alloc(32)]));
			return file;
		};
		for (const [file, what] of [[many(65536, 1, 'many-tensors'), /tensor count 65536 is out of range \(0\.\.8192\)/], [many(0, 65536, 'many-keys'), /metadata key count 65536 is out of range \(0\.\.4096\)/]]) {
			const t0 = performance.now();
			rejects(file, 'ERR_GGUF_COUNT', what);
			assert.ok(performance.now() - t0 < 1000, 'rejected without parsing the entries');
		}
		// at the limits the file is parsed (ggml's quadratic checks included) and fails on the model checks
		const t0 = performance.now();
		rejects(many(8192, 4096, 'at-limits'), undefined, /llama\.embedding_length' is missing/);
		console.log(`  8,192 tensors and 4,096 keys parsed and rejected in ${(performance.now() - t0).toFixed(0)} ms`);
	});
	test('string and array lengths beyond the file or the limits', () => {
		rejects(withField('key-len', (f) => f.what === 'key_len', 2n ** 62n), 'ERR_GGUF_KEY');
		rejects(withField('str-len', (f) => f.what === 'str_len', 2n ** 30n), 'ERR_GGUF_STRING_LENGTH', /limit/);
		rejects(withField('str-len-file', (f) => f.what === 'str_len', 2n ** 20n), 'ERR_GGUF_TRUNCATED');
		rejects(withField('arr-len', (f) => f.what === 'arr_len' && f.key === 'tokenizer.ggml.tokens', 2n ** 29n), 'ERR_GGUF_ARRAY_LENGTH', /tokenizer\.ggml\.tokens/);
		rejects(withField('arr-len-huge', (f) => f.what === 'arr_len', 2n ** 63n), 'ERR_GGUF_ARRAY_LENGTH');
	});
	test('types, names, shapes and offsets of the tensor table', () => {
		rejects(withField('value-type', (f) => f.what === 'type', 13), 'ERR_GGUF_VALUE_TYPE');
		rejects(withField('ggml-type', (f) => f.what === 'ggml_type', 4), 'ERR_GGUF_TENSOR_TYPE', /invalid ggml type 4/);
		rejects(withField('n-dims', (f) => f.what === 'n_dims', 5), 'ERR_GGUF_TENSOR_DIMS');
		rejects(withField('ne-overflow', (f) => f.what === 'ne', 2n ** 62n), undefined, /int64|size|truncated|offset/);
		rejects(withField('offset', (f) => f.what === 'offset' && f.at > goodLayout.fields.find((g) => g.what === 'offset').at, 0), 'ERR_GGUF_TENSOR_OFFSET', /expected/);
		rejects(withField('name-len', (f) => f.what === 'tensor_name_len', 64), 'ERR_GGUF_TENSOR_NAME');
	});
	test('alignment and duplicates', () => {
		rejects(withField('align', (f) => f.key === 'general.alignment' && f.what === 'value', 48), 'ERR_GGUF_ALIGNMENT', /power of 2/);
		rejects(variant('dup-key', ({ kv }) => kv.push({ ...kv.find((e) => e.key === 'general.name') })), 'ERR_GGUF_DUPLICATE_KEY', /general\.name/);
		rejects(variant('dup-tensor', ({ tensors }) => tensors.push({ ...tensors.find((t) => t.name === 'output_norm.weight') })), 'ERR_GGUF_DUPLICATE_TENSOR');
	});
	test('metadata that sizes allocations or aborts in ggml', () => {
		// gguf_get_arr_data asserts on an array of strings: the model checks the element type first
		rejects(variant('str-array-count', ({ kv }) => Object.assign(kv.find((e) => e.key === 'qwen2.block_count'), { type: GGUF.ARRAY, itemType: GGUF.STRING, value: ['2', '2'] })), undefined, /block_count' has an unsupported array type/);
		rejects(variant('layers', ({ kv }) => (kv.find((e) => e.key === 'qwen2.block_count').value = 1e9)), undefined, /block_count 1000000000 is more layers/);
		rejects(variant('ctx', ({ kv }) => (kv.find((e) => e.key === 'qwen2.context_length').value = 4e9)), undefined, /context_length 4000000000 is out of range/);
		rejects(variant('arch', ({ kv }) => (kv.find((e) => e.key === 'general.architecture').value = 'x'.repeat(5000))), undefined, /unsupported model architecture 'x{64}\.\.\.'/);
		// a type ggml knows (I16: 2 bytes, like F16, so the file stays consistent) that no matmul of the graph takes
		rejects(withField('i16', (f) => f.what === 'ggml_type' && goodBuf.readUInt32LE(f.at) === GGML.F16, 25), undefined, /token_embd\.weight' has unsupported type i16/);
	});
});

describe('native engine: token ids are checked before they reach ggml', () => {
	test('ids outside the vocabulary, negative, non-integer or beyond int32 are errors naming the id', () => {
		const model = addon.loadModel(good, { threads: 1 });
		const nVocab = model.info().nVocab;
		const s = addon.createSession(model, { contextSize: 16 });
		assert.throws(() => s.evalSync(Int32Array.from([1, nVocab])), new RegExp(`token id ${nVocab} is out of range \\(vocabulary size ${nVocab}\\)`));
		assert.throws(() => s.evalSync(Int32Array.from([-1])), /token id -1 is out of range/);
		assert.throws(() => s.evalSync(Uint32Array.from([2 ** 32 - 1])), /token id 4294967295 is out of range/);
		assert.throws(() => s.evalSync([2 ** 32 + 1]), /token id 4294967297 is not an integer id/);
		assert.throws(() => s.evalSync([1.5]), /token id 1\.5 is not an integer id/);
		assert.equal(s.nPast(), 0, 'nothing was evaluated');
		s.evalSync(Int32Array.from([1, nVocab - 1]));
		assert.equal(s.nPast(), 2);
		s.dispose();
		model.dispose();
	});
});

describe('GGUF loader fuzz, seeded subset', () => {
	test('200 mutated and truncated fixtures: each loads (and runs) or is a clear error; no crash, hang or unclear message', async () => {
		const report = await runGgufFuzz({ n: 200, seed: 20251203, small: true, timeoutMs: 20000 });
		console.log(`  ${JSON.stringify(report.outcomes)}, ${Object.keys(report.byKind).length} kinds, ${report.wallSeconds} s`);
		assert.deepEqual(report.crashes, []);
		assert.deepEqual(report.hangs, []);
		assert.deepEqual(report.unclearMessages, []);
		assert.equal(report.outcomes.loaded + report.outcomes.error, 200);
		assert.equal(report.loadedButEvalFailed, 0);
		// the mutations reach past the pre-parser: some files load, some fail the model's own checks
		assert.ok(report.outcomes.loaded > 0 && Object.keys(report.byKind).some((k) => !k.startsWith('ERR_GGUF_') && k !== 'loaded'));
	});
});
