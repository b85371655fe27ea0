// ggml CPU variants (native/src/cpu_variant.h): by default the addon runs the best variant this CPU supports (the one
// ggml's own loader picks); REPOKV_GGML_CPU_VARIANT forces one in the addon and in the parity reference, and a name
// that is not shipped or that this CPU cannot run is a clear error. native/tools/variant-tests.mjs runs all native
// tests under chosen variants (CI: .ci/run).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, test } from 'node:test';

import { FIXTURES, makeFixture } from '../../native/test-fixtures/make-fixture.mjs';
import { GGML } from '../../native/test-fixtures/gguf-writer.mjs';
import { llamaRef, randomTokens, root, tempDir } from './helpers.mjs';

const addonPath = path.join(root, 'native', 'build', 'repokv.node');
const addon = createRequire(import.meta.url)(addonPath);
const variants = addon.cpuVariants();
const forced = process.env.REPOKV_GGML_CPU_VARIANT;
const dir = tempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs a snippet with the addon as `a` in a child with REPOKV_GGML_CPU_VARIANT=variant; returns { status, out, err }. */
function child(variant, code) {
	const env = { ...process.env, REPOKV_GGML_CPU_VARIANT: variant };
	const r = spawnSync(process.execPath, ['-e', `const a = require(${JSON.stringify(addonPath)}); ${code}`], { env, encoding: 'utf8' });
	return { status: r.status, out: r.stdout, err: r.stderr };
}

test('the addon runs the best variant for this CPU unless one is forced', () => {
	const info = addon.runtimeInfo();
	assert.ok(variants.length >= 2, 'node-llama-cpp ships several CPU variants');
	const best = variants.reduce((a, b) => (b.score > a.score ? b : a));
	if (forced) {
		assert.equal(info.cpuVariant, forced);
		assert.equal(info.cpuVariantForced, true);
	} else {
		assert.equal(info.cpuVariant, best.name, `ggml's highest-scoring variant is ${best.name}`);
		assert.equal(info.cpuVariantForced, false);
	}
	assert.ok(variants.find((v) => v.name === info.cpuVariant).score > 0);
});

test('an unknown or unsupported variant is a clear error, in the addon and in llama-ref', () => {
	const unknown = child('pentium2', 'try { a.runtimeInfo(); } catch (e) { console.log(e.code, e.message); }');
	assert.match(unknown.out, /ERR_CPU_VARIANT REPOKV_GGML_CPU_VARIANT=pentium2: no such ggml CPU variant .*\(shipped: .*haswell/);
	const tokens = path.join(dir, 'tokens.bin');
	fs.writeFileSync(tokens, Buffer.from(Int32Array.from([1, 2]).buffer));
	const ref = spawnSync(llamaRef, ['/nonexistent.gguf', tokens, path.join(dir, 'out.bin')], { env: { ...process.env, REPOKV_GGML_CPU_VARIANT: 'pentium2' }, encoding: 'utf8' });
	assert.equal(ref.status, 1);
	assert.match(ref.stderr, /llama-ref: REPOKV_GGML_CPU_VARIANT=pentium2: no such ggml CPU variant/);
	const unsupported = variants.find((v) => v.score === 0);
	if (!unsupported) return; // this CPU runs every shipped variant
	const r = child(unsupported.name, 'try { a.runtimeInfo(); } catch (e) { console.log(e.message); }');
	assert.match(r.out, new RegExp(`this CPU cannot run ggml's '${unsupported.name}' variant .*this CPU runs: `));
});

test('a forced lower variant loads and computes the same next tokens (portable x64 vs the default)', () => {
	const file = path.join(dir, 'qwen2.gguf');
	makeFixture(file, { ...FIXTURES.qwen2, weightType: GGML.F16 });
	const tokens = Array.from(randomTokens(48, 259));
	const code = `const m = a.loadModel(${JSON.stringify(file)}, { threads: 1 }); const s = a.createSession(m, { contextSize: 64 });
		s.evalSync(Int32Array.from(${JSON.stringify(tokens)}), true); const l = s.logits('all');
		console.log(JSON.stringify({ variant: a.runtimeInfo().cpuVariant, logits: Array.from(l) }));`;
	const low = child('x64', code);
	assert.equal(low.status, 0, low.err);
	const high = spawnSync(process.execPath, ['-e', `const a = require(${JSON.stringify(addonPath)}); ${code}`], { encoding: 'utf8' });
	assert.equal(high.status, 0, high.stderr);
	const a = JSON.parse(low.out), b = JSON.parse(high.stdout);
	assert.equal(a.variant, 'x64');
	const nv = a.logits.length / tokens.length;
	let maxDiff = 0, maxAbs = 0, top1 = 0;
	for (let i = 0; i < tokens.length; i++) {
		let ia = 0, ib = 0;
		for (let v = 0; v < nv; v++) {
			maxDiff = Math.max(maxDiff, Math.abs(a.logits[i * nv + v] - b.logits[i * nv + v]));
			maxAbs = Math.max(maxAbs, Math.abs(b.logits[i * nv + v]));
			if (a.logits[i * nv + v] > a.logits[i * nv + ia]) ia = v;
			if (b.logits[i * nv + v] > b.logits[i * nv + ib]) ib = v;
		}
		if (ia === ib) top1++;
	}
	console.log(`  x64 vs ${b.variant}: max |logit diff| ${maxDiff.toExponential(2)} of max |logit| ${maxAbs.toFixed(2)}, top-1 ${top1}/${tokens.length}`);
	// F16 weights: only summation order differs between the variants' kernels
	assert.ok(maxDiff <= 2e-3 * maxAbs, `x64 and ${b.variant} logits differ by ${maxDiff}`);
	assert.ok(top1 >= tokens.length - 1);
});

test('llama-ref loads the forced variant too', { skip: !fs.existsSync(llamaRef) && 'llama-ref not built' }, () => {
	// the reference's variant is not observable from outside, but a forced one must still produce logits
	const file = path.join(dir, 'qwen2-ref.gguf');
	makeFixture(file, { ...FIXTURES.qwen2, weightType: GGML.F16 });
	const tokens = path.join(dir, 'tokens2.bin');
	fs.writeFileSync(tokens, Buffer.from(randomTokens(8, 259).buffer));
	const out = path.join(dir, 'ref.bin');
	execFileSync(llamaRef, [file, tokens, out, '--ctx', '64'], { env: { ...process.env, REPOKV_GGML_CPU_VARIANT: 'x64' }, stdio: ['ignore', 'ignore', 'pipe'] });
	assert.equal(new Int32Array(fs.readFileSync(out).buffer.slice(0, 12))[1], 8);
});
