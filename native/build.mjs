#!/usr/bin/env node
// Builds repokv's native addon (native/build/repokv.node, what ships), the test addon (native/build/repokv-test.node:
// the same engine plus test-only bindings, for test/native) and the parity reference tool (native/build/llama-ref).
//
// - ggml/llama headers come from the llama.cpp source that node-llama-cpp bundles
//   (node_modules/node-llama-cpp/llama/gitRelease.bundle); only the include folders are extracted, into
//   native/build/llama-src. Nothing of llama.cpp is committed.
// - The addon links the prebuilt shared libraries node-llama-cpp ships (libggml-base.so, libggml.vX.so, and for the
//   reference tool libllama.vX.so) with an rpath to their folder.
// - Plain g++ invocations (no node-gyp, no network): node headers from Node's own include folder, node-addon-api's
//   headers from its package. Incremental: an object is rebuilt only when its source or a local header is newer.
//
// Usage: node native/build.mjs [--force] [--quiet] [--asan] [--cuda] [--cuda-emu]
//   --cuda (or REPOKV_CUDA=1): also the CUDA attention kernels and their harness (native/cuda-build.mjs, docs/gpu.md),
//           when nvcc is present; without it the default build is unchanged and this file never loads cuda-build.mjs
//   --cuda-emu: the same kernels compiled by g++ against a CPU emulation of CUDA (src/cuda/cuda_emu.h), linked into the
//           harness native/build/cuda-emu/cuda-check (no nvcc, no GPU; test/native/cuda.test.mjs runs it)
//   --asan: the addon alone, built with AddressSanitizer (-fsanitize=address, -O1 -g) into native/build/asan/repokv.node,
//           for the GGUF loader fuzz (test/fuzz/gguf.fuzz.mjs --asan); run it with LD_PRELOAD=$(g++ -print-file-name=libasan.so)
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { addonHeaders, addonSources, srcDir } from './sources.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const asan = process.argv.includes('--asan');
const buildDir = asan ? path.join(here, 'build', 'asan') : path.join(here, 'build');
const objDir = path.join(buildDir, 'obj');
const llamaSrc = path.join(here, 'build', 'llama-src');
const force = process.argv.includes('--force');
const quiet = process.argv.includes('--quiet');
const require = createRequire(import.meta.url);

function fail(message) {
	console.error(`native/build.mjs: ${message}`);
	process.exit(1);
}
function log(message) {
	if (!quiet) console.log(`native: ${message}`);
}

// ---- locate inputs ---------------------------------------------------------------------------------------------
if (process.platform !== 'linux' || process.arch !== 'x64') {
	fail(`only linux-x64 is supported for now (this is ${process.platform}-${process.arch})`);
}
// A package's folder, found from its resolved entry point (some packages do not export package.json).
function packageDir(name) {
	let dir;
	try {
		dir = path.dirname(require.resolve(name, { paths: [root] }));
	} catch {
		return undefined;
	}
	for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
		const pj = path.join(dir, 'package.json');
		if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, 'utf8')).name === name) return dir;
	}
	return undefined;
}
const platformPkg = `@node-llama-cpp/${process.platform}-${process.arch}`;
const platformDir = packageDir(platformPkg);
if (!platformDir) fail(`cannot find ${platformPkg} (node-llama-cpp's prebuilt binaries); run \`npm ci\` first`);
const binsDir = path.join(platformDir, 'bins', `${process.platform}-${process.arch}`);
const nlcDir = packageDir('node-llama-cpp');
if (!nlcDir) fail('cannot find node-llama-cpp; run `npm ci` first');
const nlcVersion = JSON.parse(fs.readFileSync(path.join(nlcDir, 'package.json'), 'utf8')).version;
const llamaTag = JSON.parse(fs.readFileSync(path.join(nlcDir, 'llama', 'llama.cpp.info.json'), 'utf8')).tag; // e.g. v0.4.0
const libGgml = `libggml.${llamaTag}.so`;
const libLlama = `libllama.${llamaTag}.so`;
for (const lib of ['libggml-base.so', libGgml, libLlama]) {
	if (!fs.existsSync(path.join(binsDir, lib))) fail(`${lib} is missing from ${binsDir} (node-llama-cpp ${nlcVersion}); reinstall with \`npm ci\``);
}
const bundle = path.join(nlcDir, 'llama', 'gitRelease.bundle');
if (!fs.existsSync(bundle)) fail(`llama.cpp source bundle not found at ${bundle}`);

let napiInclude;
try {
	napiInclude = require('node-addon-api').include_dir;
	if (!path.isAbsolute(napiInclude)) napiInclude = path.resolve(root, napiInclude);
} catch {
	fail('cannot find node-addon-api; run `npm ci` first');
}
const nodeIncludeCandidates = [
	process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
	path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
	path.join(os.homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
	'/usr/include/node',
	'/usr/local/include/node',
].filter(Boolean);
const nodeInclude = nodeIncludeCandidates.find((dir) => fs.existsSync(path.join(dir, 'node_api.h')));
if (!nodeInclude) fail(`Node's C headers (node_api.h) not found; looked in ${nodeIncludeCandidates.join(', ')}. Install them (e.g. \`npx node-gyp install\`) or set npm_config_nodedir.`);

const cxx = process.env.CXX || 'g++';
try {
	execFileSync(cxx, ['--version'], { stdio: 'ignore' });
} catch {
	fail(`C++ compiler \`${cxx}\` not found; install g++ (C++17) or set CXX`);
}

fs.mkdirSync(objDir, { recursive: true });

// ---- headers from the bundle ------------------------------------------------------------------------------------
const bundleStat = fs.statSync(bundle);
const stampFile = path.join(llamaSrc, '.stamp');
const stamp = `${llamaTag} ${bundleStat.size} ${bundleStat.mtimeMs}`;
if (force || !fs.existsSync(stampFile) || fs.readFileSync(stampFile, 'utf8') !== stamp) {
	log(`extracting ggml/llama headers from node-llama-cpp's llama.cpp ${llamaTag} bundle`);
	fs.rmSync(llamaSrc, { recursive: true, force: true });
	const tmp = fs.mkdtempSync(path.join(buildDir, 'bundle-'));
	try {
		execFileSync('git', ['clone', '--quiet', '--no-checkout', bundle, tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
		fs.mkdirSync(llamaSrc, { recursive: true });
		const tar = execFileSync('git', ['-C', tmp, 'archive', '--format=tar', 'HEAD', 'ggml/include', 'include'], { maxBuffer: 64 << 20 });
		execFileSync('tar', ['-x', '-C', llamaSrc], { input: tar });
	} catch (error) {
		fail(`could not extract headers from ${bundle} (needs git and tar): ${error.message}`);
	} finally {
		fs.rmSync(tmp, { recursive: true, force: true });
	}
	fs.writeFileSync(stampFile, stamp);
}

// ---- compile -----------------------------------------------------------------------------------------------------
const sanitize = asan ? ['-fsanitize=address', '-fno-omit-frame-pointer', '-g'] : [];
const common = [
	'-std=c++17', asan ? '-O1' : '-O3', ...sanitize, '-fPIC', '-fvisibility=hidden', '-Wall', '-Wextra', '-Wno-unused-parameter', '-Wno-missing-field-initializers',
	'-I', path.join(llamaSrc, 'ggml', 'include'), '-I', path.join(llamaSrc, 'include'),
];
const addonFlags = [...common, `-DREPOKV_LLAMA_TAG="${llamaTag}"`, '-I', nodeInclude, '-I', napiInclude, '-DNAPI_VERSION=8', '-DNODE_ADDON_API_DISABLE_DEPRECATED', '-DNAPI_CPP_EXCEPTIONS'];

// src/**/*.cpp for this target (sources.mjs); objects named after their path (kernels/x86/avx2_f16.cpp ->
// kernels_x86_avx2_f16.o). addon.cpp is compiled twice: for the product addon, and with REPOKV_TEST_ADDON for the test
// addon, which adds src/test/*.cpp.
const { product: productSources, test: testSources } = addonSources('x64');
const newestHeader = Math.max(0, ...addonHeaders().map((h) => fs.statSync(h).mtimeMs), fs.statSync(path.join(here, 'build.mjs')).mtimeMs);

function mtime(file) {
	try {
		return fs.statSync(file).mtimeMs;
	} catch {
		return -1;
	}
}

function run(cmd, args) {
	return new Promise((resolve, reject) => {
		const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
		child.on('error', reject);
		child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}`))));
	});
}

async function pool(jobs, width) {
	const queue = [...jobs];
	const errors = [];
	await Promise.all(Array.from({ length: width }, async () => {
		for (let job = queue.shift(); job; job = queue.shift()) {
			try {
				await job();
			} catch (error) {
				errors.push(error);
			}
		}
	}));
	if (errors.length) throw errors[0];
}

const jobs = [];
function compile(file, obj, extra = []) {
	const src = path.join(srcDir, file);
	if (force || mtime(obj) < Math.max(mtime(src), newestHeader)) {
		jobs.push(async () => {
			log(`compiling ${file}${extra.length ? ` (${extra.join(' ')})` : ''}`);
			await run(cxx, [...addonFlags, ...extra, '-c', src, '-o', obj]);
		});
	}
	return obj;
}
const objName = (file) => path.join(objDir, file.replace(/\.cpp$/, '.o').replaceAll('/', '_'));
const objects = productSources.map((file) => compile(file, objName(file)));
// the test addon: the product's objects but addon.o, addon.cpp with the test bindings, src/test/*.cpp
const testObjects = asan
	? []
	: [
			...objects.filter((o) => o !== objName('addon.cpp')),
			compile('addon.cpp', path.join(objDir, 'addon_test.o'), ['-DREPOKV_TEST_ADDON']),
			...testSources.map((file) => compile(file, objName(file))),
		];
const width = Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, 4));
try {
	await pool(jobs, width);
} catch (error) {
	fail(`compilation failed (${error.message}); see the compiler output above`);
}

// rpath: relative to the addon first (survives moving or packaging the whole folder), then absolute.
const relBins = `$ORIGIN/${path.relative(buildDir, binsDir)}`;
// Only libggml-base.so is linked: the registry library (libggml.<variant>.<release>.so) is found at run time.
const linkFlags = ['-L', binsDir, '-l:libggml-base.so', `-Wl,-rpath,${relBins}`, `-Wl,-rpath,${binsDir}`, '-ldl', '-pthread'];
async function link(file, objs) {
	if (force || jobs.length || mtime(file) < Math.max(...objs.map(mtime))) {
		log(`linking ${path.basename(file)}`);
		try {
			await run(cxx, ['-shared', '-o', file, ...objs, ...sanitize, ...linkFlags]);
		} catch (error) {
			fail(`linking failed (${error.message})`);
		}
	}
}
// The product addon (what the .vsix ships) and the test addon (tests only; test/native/product-addon.test.mjs checks
// that the product has none of its test exports and symbols).
await link(path.join(buildDir, 'repokv.node'), objects);
if (!asan) await link(path.join(buildDir, 'repokv-test.node'), testObjects);

// Reference tool: raw llama.cpp logits for the parity tests (links libllama from the same release).
// It loads the CPU variant the addon would (src/cpu_variant.cpp: REPOKV_GGML_CPU_VARIANT), so both compare like with like.
const refSrc = path.join(here, 'tools', 'llama-ref.cpp');
const refBin = path.join(buildDir, 'llama-ref');
const refDeps = [refSrc, path.join(srcDir, 'cpu_variant.cpp'), path.join(srcDir, 'cpu_variant.h'), path.join(here, 'build.mjs')];
if (!asan && fs.existsSync(refSrc) && (force || mtime(refBin) < Math.max(...refDeps.map(mtime)))) {
	log('building llama-ref (parity reference)');
	try {
		await run(cxx, [...common, refSrc, path.join(srcDir, 'cpu_variant.cpp'), '-o', refBin, '-L', binsDir, `-l:${libLlama}`, '-l:libggml-base.so', `-l:${libGgml}`, `-Wl,-rpath,${binsDir}`, '-ldl', '-pthread']);
	} catch (error) {
		fail(`building llama-ref failed (${error.message})`);
	}
}

// Fixture tool: K-quant versions of the generated test models (ggml's own quantizers).
const requantSrc = path.join(here, 'tools', 'gguf-requant.cpp');
const requantBin = path.join(buildDir, 'gguf-requant');
if (!asan && fs.existsSync(requantSrc) && (force || mtime(requantBin) < Math.max(mtime(requantSrc), fs.statSync(path.join(here, 'build.mjs')).mtimeMs))) {
	log('building gguf-requant (test fixtures)');
	try {
		await run(cxx, [...common, requantSrc, '-o', requantBin, '-L', binsDir, '-l:libggml-base.so', `-Wl,-rpath,${binsDir}`]);
	} catch (error) {
		fail(`building gguf-requant failed (${error.message})`);
	}
}

const cudaWanted = process.argv.includes('--cuda') || process.env.REPOKV_CUDA === '1';
if (!asan && (cudaWanted || process.argv.includes('--cuda-emu'))) {
	const { buildCuda, buildCudaEmulation } = await import('./cuda-build.mjs');
	const cpuObjects = productSources.filter((f) => f.startsWith('quant/') || f.startsWith('kernels/') || f === 'storage_format.cpp').map(objName);
	const options = { here, buildDir, binsDir, cxx, commonFlags: common, cpuObjects, force, log, fail };
	if (cudaWanted) await buildCuda(options);
	if (process.argv.includes('--cuda-emu')) await buildCudaEmulation(options);
}

fs.writeFileSync(path.join(buildDir, 'paths.json'), JSON.stringify({ binsDir, llamaTag, nodeLlamaCpp: nlcVersion }, null, 2) + '\n');
if (!jobs.length) log('up to date');
