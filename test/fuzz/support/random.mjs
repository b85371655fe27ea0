// Seeded randomness and argument reading shared by the fuzzers: the same seed replays the same run.

/** The tests' and benchmarks' seeded PRNG (mulberry32), numbers in [0, 1). */
export { seededRandom as rng } from '../../../bench/random.mjs';

/** `--name value` from the command line, or the fallback. */
export function argValue(name, fallback) {
	const index = process.argv.indexOf(name);
	return index === -1 ? fallback : process.argv[index + 1];
}
