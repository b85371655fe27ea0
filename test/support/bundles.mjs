// The tests' one way into the built bundles. They import dist/*.mjs (what ships, on plain Node), and these imports
// carry the types of the bundles' entry points, so `tsc -p test` checks every use of the sidecar's and the
// benchmarks' exports against the TypeScript sources. Importing this module loads nothing: a test that must set
// something first (test/native's useTestAddon) calls importSidecar() after it.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist');
export const sidecarBundlePath = path.join(dist, 'sidecar.mjs');
export const benchBundlePath = path.join(dist, 'bench.mjs');

/**
 * dist/sidecar.mjs: the CLI's `main` and the sidecar's library surface (sidecar/src/api.ts).
 * @returns {Promise<typeof import('../../sidecar/src/cli/main')>}
 */
export function importSidecar() {
	return import(pathToFileURL(sidecarBundlePath).href);
}

/**
 * dist/bench.mjs: the benchmarks' command, fidelity tasks and statistics. It loads dist/sidecar.mjs beside it.
 * @returns {Promise<typeof import('../../bench/main')>}
 */
export function importBench() {
	return import(pathToFileURL(benchBundlePath).href);
}
