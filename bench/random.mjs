// The one seeded PRNG of the tests and benchmarks: the same seed gives the same numbers on every machine, so a
// benchmark's tasks, a fuzzer's run and a test's synthetic data can be replayed. Plain JavaScript, so the .mjs tests
// and fuzzers import it without a build; bench/random.d.mts types it for the TypeScript benchmarks.

/**
 * mulberry32: a small, fast generator of numbers in [0, 1) from a 32-bit seed (not for anything secret).
 * @param {number} seed
 * @returns {() => number}
 */
export function seededRandom(seed) {
	let state = seed >>> 0;
	return () => {
		state = (state + 0x6d2b79f5) >>> 0;
		let t = state;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}
