// One name per storage format across the N-API boundary: protocol.ts `storageTiers` (what the engine wrapper, the
// cache snapshot and the inspector use) is the native addon's tier table, name for name and in the addon's index
// order (the layout of its per-range tier counts). Checked against the real addon and the bundled target model.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { sidecar, targetModelPath } from '../support/sidecar.mjs';

const { loadNativeAddon, protocol } = sidecar;

describe('storage tier names', () => {
	test('protocol.storageTiers is the addon\'s table: every name, in its order, and nothing else', () => {
		const addon = loadNativeAddon();
		const model = addon.loadModel(targetModelPath, { threads: 1 });
		const session = addon.createSession(model, { contextSize: 256, batchSize: 64 });
		try {
			const { nLayer, nHeadKv } = model.info();
			const cells = nLayer * nHeadKv;
			session.evalSync(Int32Array.from({ length: 200 }, (_, i) => 100 + ((i * 37) % 500)), false);
			// the addon counts one entry per tier of its table for each range
			assert.equal(session.rangeTiers(Int32Array.from([0, 200])).length, protocol.storageTiers.length, 'the addon has as many tiers as the protocol names');
			// tier i of the protocol's list gets (i + 1) * 10 positions in every head; the addon reports each segment
			// and total under its own name, and counts it at its own index
			const keep = {};
			let from = 0;
			protocol.storageTiers.forEach((tier, i) => {
				const n = (i + 1) * 10;
				const positions = Int32Array.from({ length: n }, (_, k) => from + k);
				keep[tier] = Array.from({ length: cells }, () => positions);
				from += n;
			});
			session.compress(keep, 8, 'tiers', false);
			const stats = session.stats();
			assert.deepEqual(Object.keys(stats.tiers).sort(), [...protocol.storageTiers].sort(), 'the addon\'s names for the tiers it holds');
			const counts = session.rangeTiers(Int32Array.from([0, 200]));
			protocol.storageTiers.forEach((tier, i) => {
				assert.equal(stats.tiers[tier].tokens, (i + 1) * 10 * cells, tier);
				assert.equal(counts[i], (i + 1) * 10 * cells, `${tier} at index ${i} of the addon's counts`);
			});
			for (const segment of stats.layers[0].heads[0].segments) assert.ok(protocol.storageTiers.includes(segment.tier), segment.tier);
			// a name outside the table (the protocol's old `fp16`/`q4`) is refused, not folded
			for (const name of ['fp16', 'q4']) assert.throws(() => session.compress({ [name]: keep.f16 }, 8, 'tiers', false), /unknown tier/);
			// the addon's exported table (native/src/storage_format.h `kTiers`, exported as `storageFormats`)
			assert.deepEqual([...addon.storageFormats].map((entry) => entry.name), [...protocol.storageTiers]);
			// the settings' precisions are the tiers plus `mixed`
			assert.deepEqual(protocol.kvPrecisions, [...protocol.storageTiers, 'mixed']);
			assert.deepEqual(protocol.kvTiers, [...protocol.storageTiers, 'dropped']);
		} finally {
			session.dispose();
			model.dispose();
		}
	});
});
