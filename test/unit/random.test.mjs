// The tests' and benchmarks' one seeded PRNG (bench/random.mjs): benchmark tasks, fuzz runs and synthetic test data
// replay from their seeds only while its sequence stays exactly mulberry32's.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { seededRandom } from '../../bench/random.mjs';

test('seededRandom is mulberry32: a seed gives the same numbers, in [0, 1)', () => {
	const r = seededRandom(1);
	assert.deepEqual([r(), r(), r()], [0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
	const a = seededRandom(2 ** 32 + 1);
	const b = seededRandom(1);
	const values = Array.from({ length: 10000 }, () => a());
	assert.deepEqual(values.slice(0, 100), Array.from({ length: 100 }, () => b()), 'seeds are taken mod 2^32');
	assert.ok(values.every((x) => x >= 0 && x < 1));
	const mean = values.reduce((s, x) => s + x, 0) / values.length;
	assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
});
