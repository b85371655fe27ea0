// The product addon (native/build/repokv.node, what the .vsix ships) against the test addon
// (native/build/repokv-test.node): the product has no test-only exports or code, and gives the sidecar what it needs
// through its own API (the storage-format table and formatBytes, which tierCost uses).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';

import { testOnlyContent } from '../../native/tools/check-product-addon.mjs';
import { root, testAddonPath } from './helpers.mjs';

const productPath = path.join(root, 'native', 'build', 'repokv.node');
const product = createRequire(import.meta.url)(productPath);

test('the product addon has no test-only exports, methods or symbols; the test addon has them', () => {
	assert.deepEqual(testOnlyContent(productPath), []);
	assert.equal(product.quant, undefined);
	assert.equal(product.scoreAttention, undefined);
	assert.equal(product.NativeSession.prototype.dequantizeActive, undefined);
	// the check finds what the test addon adds (so it can fail)
	const found = testOnlyContent(testAddonPath);
	for (const item of ['export "dequantizeActive"', 'export "scoreAttention"', 'export "dumpKv"', 'symbol Session::dequantize_active', 'symbol register_test_bindings']) assert.ok(found.includes(item), item);
});

test('storageFormats is the engine\'s one table of storage format names, in tier order', () => {
	assert.deepEqual(product.storageFormats.map((f) => f.name), ['f16', 'q8', 'kivi4', 'kivi2', 'onebit']);
	assert.deepEqual(product.storageFormats.map((f) => f.packed), [false, true, true, true, true]);
	assert.deepEqual(product.storageFormats.map((f) => f.tokenBlock), [1, 1, 32, 32, 128]);
});

test('formatBytes is the allocation formula the test binding reports (quant.bytes), f16 at 2 bytes per element', () => {
	// one addon per process for engine work; this only reads the byte formulas of both
	const Q = createRequire(import.meta.url)(testAddonPath).quant;
	for (const D of [64, 128])
		for (const name of ['q8', 'kivi4', 'kivi2', 'onebit'])
			for (const n of [0, 1, 31, 32, 127, 128, 129, 1000]) {
				const b = product.formatBytes(name, D, n);
				assert.deepEqual({ ...b, bitsPerElement: undefined }, { ...Q.bytes(name, D, n), bitsPerElement: undefined }, `${name} D=${D} n=${n}`);
			}
	assert.deepEqual(product.formatBytes('f16', 64, 10), { key: 1280, value: 1280, meta: 0, total: 2560, bitsPerElement: 16 });
	assert.throws(() => product.formatBytes('q3', 64, 1), /unknown storage format 'q3'/);
	assert.throws(() => product.formatBytes('onebit', 96, 1), /does not support head dim 96/);
});
