/** mulberry32 (bench/random.mjs): numbers in [0, 1) from a 32-bit seed, the same on every machine. */
export function seededRandom(seed: number): () => number;
