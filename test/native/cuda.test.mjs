// The GPU side (docs/gpu.md), tested where it can be on this machine:
// - the device layout's bytes (native/src/cuda/device_layout.h) equal the CPU's allocations for every tier, and the
//   kernels' element decoders (native/src/cuda/decode.h, compiled by g++ here) read back what the CPU dequantizes;
// - device selection (`--device`, `repokv.device`): a pure function of the request and a probe, and the CLI's report;
// - the opt-in CUDA build's architecture choice (native/cuda-build.mjs);
// - the CUDA kernels against the CPU's portable kernels: compiled by g++ against a CPU emulation of CUDA
//   (native/build/cuda-emu/cuda-check, built by --cuda-emu), and by nvcc on a CUDA device (native/build/cuda/cuda-check,
//   built by --cuda): each SKIPPED where it is not built or there is no device, saying which.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

import { chooseArchs, fatbinArchs, findNvcc, gencodeFlags } from '../../native/cuda-build.mjs';
import { importSidecar } from '../support/bundles.mjs';
import { root, testAddonPath } from './helpers.mjs';

const run = promisify(execFile);
const Q = createRequire(import.meta.url)(testAddonPath).quant;
const PACKED = ['q8', 'kivi4', 'kivi2', 'onebit'];

function rng(seed) {
	let s = seed >>> 0;
	return () => {
		s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
		return s / 2 ** 32 - 0.5;
	};
}

describe('device layout: a segment on the device takes the bytes it takes on the CPU', () => {
	test('packed tiers: key, value and metadata bytes = the quantized segment allocation; positions 4 bytes a token', () => {
		const rand = rng(3);
		for (const D of [64, 128]) {
			for (const f of PACKED) {
				for (const n of [1, 31, 32, 33, 127, 128, 129, 300, 1000]) {
					const K = Float32Array.from({ length: n * D }, rand);
					const V = Float32Array.from({ length: n * D }, rand);
					const { allocated } = Q.info(Q.quantize(f, D, K, V));
					const dev = Q.deviceBytes(f, D, n);
					assert.deepEqual({ key: dev.key, value: dev.value, meta: dev.meta }, { key: allocated.key, value: allocated.value, meta: allocated.meta }, `${f} D=${D} n=${n}`);
					assert.equal(dev.pos, 4 * n);
					assert.equal(dev.total, allocated.total + 4 * n);
				}
			}
		}
	});
	test("f16: keys token-major, values in whole 8-token blocks (kv_store.h's layout)", () => {
		for (const n of [1, 7, 8, 9, 1000]) {
			const dev = Q.deviceBytes('f16', 128, n);
			assert.deepEqual(dev, { key: n * 128 * 2, value: Math.ceil(n / 8) * 8 * 128 * 2, meta: 0, pos: 4 * n, total: n * 256 + Math.ceil(n / 8) * 8 * 256 + 4 * n });
		}
		assert.equal(Q.deviceBytes('onebit', 128, 0).total, 0);
	});
});

describe("the CUDA kernels' decoders (native/src/cuda/decode.h), run on the CPU", () => {
	test('every packed tier: values, and the keys of q8 and kivi, equal the CPU reference dequantizer exactly', () => {
		const rand = rng(5);
		for (const D of [64, 128]) {
			for (const f of PACKED) {
				for (const n of [1, 33, 129, 300]) {
					const K = Float32Array.from({ length: n * D }, () => rand() * (1 + Math.abs(rand()) * 8));
					const V = Float32Array.from({ length: n * D }, rand);
					const seg = Q.quantize(f, D, K, V);
					const ref = Q.dequantize(seg);
					assert.deepEqual(Q.deviceDecode(seg, 'v'), ref.v, `${f} values D=${D} n=${n}`);
					if (f === 'onebit') assert.throws(() => Q.deviceDecode(seg, 'k'), /no element decoder/);
					else assert.deepEqual(Q.deviceDecode(seg, 'k'), ref.k, `${f} keys D=${D} n=${n}`);
				}
			}
		}
	});
});

describe('device selection', async () => {
	const { resolveDevice, describeDevice } = await importSidecar();
	test('cpu is the CPU; auto is the GPU only when the CUDA engine is built and a GPU is visible', () => {
		const probes = [
			{ cudaEngine: false, gpuVisible: false },
			{ cudaEngine: false, gpuVisible: true },
			{ cudaEngine: true, gpuVisible: false },
			{ cudaEngine: true, gpuVisible: true },
		];
		for (const probe of probes) {
			assert.deepEqual(resolveDevice('cpu', probe), { requested: 'cpu', used: 'cpu' });
			assert.deepEqual(resolveDevice('auto', probe), { requested: 'auto', used: probe.cudaEngine && probe.gpuVisible ? 'cuda' : 'cpu' }, 'auto never complains');
		}
		assert.deepEqual(resolveDevice('cuda', probes[3]), { requested: 'cuda', used: 'cuda' });
	});
	test('cuda where it cannot run: the CPU, with one reason naming what is missing', () => {
		const notBuilt = resolveDevice('cuda', { cudaEngine: false, gpuVisible: true });
		assert.equal(notBuilt.used, 'cpu');
		assert.match(notBuilt.reason, /CUDA path is not built/);
		assert.doesNotMatch(notBuilt.reason, /no NVIDIA GPU/);
		assert.match(resolveDevice('cuda', { cudaEngine: false, gpuVisible: false }).reason, /not built.*no NVIDIA GPU is visible/);
		const noGpu = resolveDevice('cuda', { cudaEngine: true, gpuVisible: false });
		assert.equal(noGpu.used, 'cpu');
		assert.match(noGpu.reason, /no NVIDIA GPU is visible/);
		assert.match(describeDevice(noGpu), /^device cuda requested: running on the CPU \(/);
		assert.equal(describeDevice({ requested: 'auto', used: 'cpu' }), 'device cpu');
	});
	test('repokv complete --device cuda runs on the CPU, says why once on stderr and names the device in --json', async () => {
		const cli = path.join(root, 'bin', 'repokv.js');
		const args = ['complete', '--workspace', path.join(root, 'test', 'fixtures', 'workspace-needle'), '--file', 'src/main.ts', '--line', '10', '--column', '32', '--threads', '1', '--json', '--policy', 'full', '--max-tokens', '2'];
		const cuda = await run(process.execPath, [cli, ...args, '--device', 'cuda']);
		const r = JSON.parse(cuda.stdout);
		assert.equal(r.device.requested, 'cuda');
		assert.equal(r.device.used, 'cpu');
		assert.ok(r.device.reason.length > 0);
		assert.equal(cuda.stderr.split('\n').filter((line) => line.includes('device cuda requested')).length, 1, cuda.stderr);
		const auto = await run(process.execPath, [cli, ...args]);
		assert.deepEqual(JSON.parse(auto.stdout).device, { requested: 'auto', used: 'cpu' });
		assert.doesNotMatch(auto.stderr, /device/);
		/** @param {any} error the rejected execFile's error (code, stderr) */
		const usageError = (error, pattern) => error.code === 2 && pattern.test(error.stderr);
		await assert.rejects(run(process.execPath, [cli, ...args, '--device', 'gpu']), (error) => usageError(error, /--device must be one of auto, cuda, cpu/));
		await assert.rejects(run(process.execPath, [cli, ...args.filter((a) => a !== '--policy' && a !== 'full'), '--engine', 'llama', '--device', 'cpu']), (error) => usageError(error, /--device cpu needs --engine native/));
	});
});

describe('CUDA build (opt-in)', () => {
	const nlcCuda = path.join(root, 'node_modules', '@node-llama-cpp', 'linux-x64-cuda', 'bins', 'linux-x64-cuda', 'libggml-cuda.so');
	test("the architectures come from node-llama-cpp's CUDA build of ggml when it is installed", (t) => {
		if (!fs.existsSync(nlcCuda)) return t.skip('SKIPPED: @node-llama-cpp/linux-x64-cuda is not installed');
		const archs = fatbinArchs(nlcCuda);
		assert.ok(archs.sass.length + archs.ptx.length > 0, JSON.stringify(archs));
		// an H200 (sm_90) runs it: SASS for sm_90, or PTX for compute_90 or below
		assert.ok(archs.sass.includes(90) || archs.ptx.some((sm) => sm <= 90), JSON.stringify(archs));
		console.log(`node-llama-cpp's libggml-cuda.so: SASS ${archs.sass.join(' ')}; PTX ${archs.ptx.join(' ')}`);
	});
	test('REPOKV_CUDA_ARCHS overrides the list, each as SASS and PTX; gencode flags per kind', (t) => {
		const found = findNvcc();
		if (!found) return t.skip('SKIPPED: no nvcc');
		const saved = process.env.REPOKV_CUDA_ARCHS;
		process.env.REPOKV_CUDA_ARCHS = 'sm_90,86';
		try {
			const archs = chooseArchs({ nvcc: found.nvcc });
			assert.deepEqual([archs.sass, archs.ptx, archs.source], [[90, 86], [90, 86], 'REPOKV_CUDA_ARCHS']);
			assert.deepEqual(gencodeFlags({ sass: [90], ptx: [80] }), ['-gencode=arch=compute_90,code=sm_90', '-gencode=arch=compute_80,code=compute_80']);
		} finally {
			if (saved === undefined) delete process.env.REPOKV_CUDA_ARCHS;
			else process.env.REPOKV_CUDA_ARCHS = saved;
		}
	});
});

describe('CUDA kernels in the CPU emulation (native/src/cuda/cuda_emu.h) against the CPU kernels', () => {
	const harness = path.join(root, 'native', 'build', 'cuda-emu', 'cuda-check');
	test('every tier: scores, values, device bytes, and whole-head attention with the LSE merge (--quick)', (t) => {
		// not built by default (a thread per CUDA thread: about a minute on 2 cores); node native/build.mjs --cuda-emu
		if (!fs.existsSync(harness)) {
			console.log('SKIPPED: the emulation is not built (node native/build.mjs --cuda-emu)');
			return t.skip('SKIPPED: the emulation is not built (node native/build.mjs --cuda-emu)');
		}
		const r = spawnSync(harness, ['--quick'], { encoding: 'utf8', timeout: 600_000 });
		const out = JSON.parse(r.stdout);
		for (const c of out.checks ?? []) if (!c.ok) console.log(JSON.stringify(c));
		assert.equal(r.status, 0, r.stdout + r.stderr);
		assert.equal(out.ok, true);
		assert.ok(out.checks.some((c) => c.kernel === 'attention-masked' && c.tier.includes('onebit')), 'the mixed-tier attention ran');
		const worst = Math.max(...out.checks.map((c) => c.relDiff));
		console.log(`${out.device}: ${out.checks.length} checks, worst relative difference ${worst.toExponential(2)} (tolerance ${out.tolerance})`);
	});
});

describe('CUDA kernels against the CPU kernels', () => {
	const harness = path.join(root, 'native', 'build', 'cuda', 'cuda-check');
	test('every tier: scores, values, device bytes, and whole-head attention with the LSE merge', (t) => {
		if (!fs.existsSync(harness)) {
			console.log('SKIPPED: not built with --cuda (node native/build.mjs --cuda, with nvcc)');
			return t.skip('SKIPPED: not built with --cuda (node native/build.mjs --cuda, with nvcc)');
		}
		const r = spawnSync(harness, [], { encoding: 'utf8', timeout: 300_000 });
		if (r.status === 77) {
			const why = JSON.parse(r.stdout).reason;
			console.log(`SKIPPED: no CUDA device (${why})`);
			return t.skip(`SKIPPED: no CUDA device (${why})`);
		}
		const out = JSON.parse(r.stdout);
		for (const c of out.checks ?? []) if (!c.ok) console.log(JSON.stringify(c));
		assert.equal(r.status, 0, r.stdout + r.stderr);
		assert.equal(out.ok, true);
		const worst = Math.max(...out.checks.map((c) => c.relDiff));
		console.log(`${out.device}: ${out.checks.length} checks, worst relative difference ${worst.toExponential(2)} (tolerance ${out.tolerance})`);
	});
});
