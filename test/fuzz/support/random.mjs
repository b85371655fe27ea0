// Seeded randomness and argument reading shared by the fuzzers: the same seed replays the same run.

/** mulberry32: a small, fast, seeded PRNG returning numbers in [0, 1). */
export function rng(seed) {
	let state = seed >>> 0;
	return () => {
		state = (state + 0x6d2b79f5) >>> 0;
		let t = state;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

/** `--name value` from the command line, or the fallback. */
export function argValue(name, fallback) {
	const index = process.argv.indexOf(name);
	return index === -1 ? fallback : process.argv[index + 1];
}
