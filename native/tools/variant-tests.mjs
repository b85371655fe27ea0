#!/usr/bin/env node
// Runs the native engine's tests (node --test test/native) under chosen ggml CPU variants (native/src/cpu_variant.h):
// REPOKV_GGML_CPU_VARIANT makes the addon and the parity reference (native/build/llama-ref) load that variant only.
// A variant this CPU cannot run prints SKIPPED (it is never counted as a pass). Under a variant without AVX2 the
// addon's own kernels are forced to their portable paths too (REPOKV_NATIVE_SCALAR=1), as on a CPU without AVX2.
//
// usage: node native/tools/variant-tests.mjs [variant...]   (default: haswell sandybridge skylakex)
// Exit status: 1 if a run failed; 0 otherwise (skips included, listed in the summary).
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const addonPath = path.join(root, 'native', 'build', 'repokv.node');
const variants = process.argv.slice(2).length ? process.argv.slice(2) : ['haswell', 'sandybridge', 'skylakex'];
const shipped = createRequire(import.meta.url)(addonPath).cpuVariants();
const runnable = shipped.filter((v) => v.score > 0).map((v) => v.name);

const summary = [];
let failed = false;
for (const name of variants) {
	const v = shipped.find((x) => x.name === name);
	if (!v) {
		console.log(`variant ${name}: FAILED (not shipped; shipped: ${shipped.map((x) => x.name).join(', ')})`);
		summary.push(`${name}: FAILED (not shipped)`);
		failed = true;
		continue;
	}
	if (v.score === 0) {
		const line = `${name}: SKIPPED (this CPU cannot run it; it runs ${runnable.join(', ')})`;
		console.log(`variant ${line}`);
		summary.push(line);
		continue;
	}
	const env = { ...process.env, REPOKV_GGML_CPU_VARIANT: name };
	delete env.REPOKV_NATIVE_SCALAR;
	// the variant's own features, as ggml reports them once it is loaded
	const features = JSON.parse(execFileSync(process.execPath, ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(addonPath)}).runtimeInfo().cpuFeatures))`], { env }).toString());
	if (features.AVX2 !== '1') env.REPOKV_NATIVE_SCALAR = '1';
	const label = `${name} (${Object.keys(features).filter((f) => features[f] === '1').join(' ')}${env.REPOKV_NATIVE_SCALAR ? '; portable repokv kernels' : ''})`;
	console.log(`\n=== native tests under ggml CPU variant ${label}`);
	const started = Date.now();
	const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', 'test/native'], { cwd: root, env, stdio: 'inherit' });
	const secs = ((Date.now() - started) / 1000).toFixed(0);
	const line = `${label}: ${r.status === 0 ? 'passed' : `FAILED (exit ${r.status ?? r.signal})`} in ${secs} s`;
	summary.push(line);
	if (r.status !== 0) failed = true;
}
console.log('\nCPU variant runs:');
for (const line of summary) console.log(`  ${line}`);
process.exit(failed ? 1 : 0);
