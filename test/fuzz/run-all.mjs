// `npm run fuzz`: runs every test/fuzz/*.fuzz.mjs in its own process, one after the other, with their default sizes
// (override with FUZZ_ARGS, e.g. FUZZ_ARGS="--seed 7"). Each prints one JSON line of figures; a crash, hang or
// broken invariant makes it exit non-zero, and then this script does too. Not part of `npm test`, which runs short,
// seeded subsets (test/integration/fuzz.test.mjs and the GGUF loader's own).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const fuzzers = readdirSync(here)
	.filter((name) => name.endsWith('.fuzz.mjs'))
	.filter((name) => only.length === 0 || only.some((wanted) => name.includes(wanted)))
	.sort();
const extra = (process.env.FUZZ_ARGS ?? '').split(' ').filter(Boolean);
let failed = 0;
for (const name of fuzzers) {
	const started = Date.now();
	console.log(`== ${name}`);
	const result = spawnSync(process.execPath, [path.join(here, name), ...extra], { stdio: 'inherit' });
	const seconds = ((Date.now() - started) / 1000).toFixed(1);
	if (result.status === 0) {
		console.log(`== ${name}: passed in ${seconds} s`);
	} else {
		failed++;
		console.log(`== ${name}: FAILED (exit ${result.status ?? result.signal}) after ${seconds} s`);
	}
}
console.log(`${fuzzers.length - failed}/${fuzzers.length} fuzzers passed`);
process.exitCode = failed === 0 ? 0 : 1;
