// The fidelity benchmark's statistics and checks (bench/stats.ts) on made-up per-prompt rows: every check can fail,
// passes only when the paired interval decides it, and reports ties at the floor or the ceiling as "not resolved".
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { importBench } from '../support/bundles.mjs';

const { bootstrapMean, pairedDifference, comparePair, orderingCheck, withinMargin } = await importBench();

const TOP1 = { floor: 0, ceiling: 100 };
const KL = { floor: Infinity, ceiling: 0 };

/** config → prompt id → value, from config → array of per-prompt values (prompt i is `p<i>`). */
function rows(byConfig) {
	return new Map(Object.entries(byConfig).map(([cfg, values]) => [cfg, new Map(values.map((v, i) => [`p${i}`, v]))]));
}

/** n prompts: a per-prompt base (what prompts share) plus a config's offset and a little noise, deterministic. */
function series(n, offset, noise = 1, seed = 1) {
	let s = seed;
	const next = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
	return Array.from({ length: n }, (_, i) => 50 + 20 * Math.sin(i) + offset + noise * next());
}

describe('bootstrap intervals', () => {
	test('seeded: the same values and seed give the same interval; the interval holds the mean and narrows with n', () => {
		const v = series(40, 0, 5);
		assert.deepEqual(bootstrapMean(v, 7), bootstrapMean(v, 7));
		const i = bootstrapMean(v, 7);
		assert.ok(i.lo < i.mean && i.mean < i.hi);
		assert.equal(i.n, 40);
		const wide = bootstrapMean(v.slice(0, 10), 7);
		assert.ok(wide.hi - wide.lo > i.hi - i.lo);
	});

	test('paired: a constant offset on the same prompts has a zero-width interval, whatever the prompts spread', () => {
		const a = new Map(series(30, 3, 0).map((v, i) => [`p${i}`, v]));
		const b = new Map(series(30, 0, 0).map((v, i) => [`p${i}`, v]));
		const d = pairedDifference(a, b, 1);
		assert.ok(Math.abs(d.mean - 3) < 1e-9 && Math.abs(d.lo - 3) < 1e-9 && Math.abs(d.hi - 3) < 1e-9);
		// unpaired, the same data would overlap: the rows' own intervals are wide
		const ia = bootstrapMean([...a.values()], 1);
		const ib = bootstrapMean([...b.values()], 1);
		assert.ok(ia.lo < ib.hi);
	});

	test('paired only on the prompts both have', () => {
		const d = pairedDifference(new Map([['x', 10], ['y', 20]]), new Map([['y', 15], ['z', 0]]), 1);
		assert.equal(d.n, 1);
		assert.equal(d.mean, 5);
	});
});

describe('ordering check', () => {
	const order = ['speckv', 'snapkv', 'h2o', 'window'];

	test('holds when every adjacent paired interval is above 0', () => {
		const o = orderingCheck(order, rows({ speckv: series(50, 9), snapkv: series(50, 6), h2o: series(50, 3), window: series(50, 0) }), true, TOP1, 1);
		assert.equal(o.verdict, 'holds');
		assert.ok(o.pairs.every((p) => p.verdict === 'holds'));
	});

	test('fails when one pair is reversed beyond its interval', () => {
		const o = orderingCheck(order, rows({ speckv: series(50, 9), snapkv: series(50, 6), h2o: series(50, 0), window: series(50, 3) }), true, TOP1, 1);
		assert.equal(o.verdict, 'fails');
		assert.equal(o.pairs[2].verdict, 'fails');
	});

	test('not resolved when a pair is within noise', () => {
		const o = orderingCheck(order, rows({ speckv: series(50, 9), snapkv: series(50, 0, 10, 3), h2o: series(50, 0, 10, 4), window: series(50, -9) }), true, TOP1, 1);
		assert.equal(o.verdict, 'not resolved');
		assert.equal(o.pairs[1].reason, 'interval contains 0');
	});

	test('a tie at the floor (h2o and window both 0 everywhere) is not resolved, never a pass', () => {
		const zeros = Array(50).fill(0);
		const o = orderingCheck(order, rows({ speckv: series(50, 9), snapkv: series(50, 6), h2o: zeros, window: zeros }), true, TOP1, 1);
		assert.equal(o.pairs[2].verdict, 'not resolved');
		assert.equal(o.pairs[2].reason, 'tie at floor');
		assert.equal(o.verdict, 'not resolved');
	});

	test('a tie at the ceiling is not resolved', () => {
		const full = Array(20).fill(100);
		const p = comparePair('a', 'b', rows({ a: full, b: full }), true, TOP1, 1);
		assert.equal(p.verdict, 'not resolved');
		assert.equal(p.reason, 'tie at ceiling');
	});

	test('too few paired prompts decide nothing, however far apart they are', () => {
		const p = comparePair('a', 'b', rows({ a: [90, 91, 92], b: [10, 11, 12] }), true, TOP1, 1);
		assert.equal(p.verdict, 'not resolved');
		assert.equal(p.reason, 'too few prompts');
	});

	test('lower is better (KL): the orientation flips', () => {
		const kl = rows({ speckv: series(40, 0.1, 0.01).map((v) => v / 100), snapkv: series(40, 5, 0.01).map((v) => v / 100) });
		assert.equal(comparePair('speckv', 'snapkv', kl, false, KL, 1).verdict, 'holds');
		assert.equal(comparePair('snapkv', 'speckv', kl, false, KL, 1).verdict, 'fails');
	});
});

describe('within a margin of full', () => {
	const full = Array(60).fill(100);

	test('holds when the whole interval is above −margin', () => {
		const close = Array.from({ length: 60 }, (_, i) => 98 + (i % 3)); // 1 point below full on average
		assert.equal(withinMargin('default', 'full', rows({ default: close, full }), 3, true, TOP1, 1).verdict, 'holds');
	});

	test('fails when the whole interval is below −margin', () => {
		assert.equal(withinMargin('default', 'full', rows({ default: Array(60).fill(90), full }), 3, true, TOP1, 1).verdict, 'fails');
	});

	test('not resolved when the interval straddles −margin', () => {
		const straddle = series(60, 0, 40, 9).map((v, i) => (i % 2 === 0 ? 100 : 94) + (v - 50) / 100);
		const r = withinMargin('default', 'full', rows({ default: straddle, full }), 3, true, TOP1, 1);
		assert.equal(r.verdict, 'not resolved', JSON.stringify(r.difference));
	});

	test('a floor tie (nothing found by either) is not resolved', () => {
		const zeros = Array(30).fill(0);
		assert.equal(withinMargin('default', 'full', rows({ default: zeros, full: zeros }), 3, true, TOP1, 1).verdict, 'not resolved');
	});
});
