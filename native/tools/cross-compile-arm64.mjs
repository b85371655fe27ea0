#!/usr/bin/env node
// Compiles the addon's own C++ sources for linux-arm64 with Debian's cross compiler (g++-aarch64-linux-gnu), to object
// files only: the product addon's sources for arm64 (native/sources.mjs: the portable and NEON kernels, no x86 files)
// and the test addon's. Linking the addon needs node-llama-cpp's arm64 ggml libraries (@node-llama-cpp/linux-arm64),
// which an x64 install does not have, so this checks that the addon builds for arm64, not that it runs there. The
// kernels alone do run: native/tools/kernel-check.cpp (every kernel table against the portable one, no Node or ggml),
// linked statically and run under qemu-aarch64 when it is installed (Debian's qemu-user).
//
// usage: node native/tools/cross-compile-arm64.mjs   (after node native/build.mjs, which extracts the ggml headers)
// CXX_ARM64 overrides the compiler (default aarch64-linux-gnu-g++). Objects go to native/build/arm64/.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { addonSources, srcDir } from '../sources.mjs';

const native = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.dirname(native);
const require = createRequire(import.meta.url);
const cxx = process.env.CXX_ARM64 ?? 'aarch64-linux-gnu-g++';
const llamaSrc = path.join(native, 'build', 'llama-src');
const outDir = path.join(native, 'build', 'arm64');

function fail(message) {
	console.error(`cross-compile-arm64: ${message}`);
	process.exit(1);
}
try {
	execFileSync(cxx, ['--version'], { stdio: 'ignore' });
} catch {
	fail(`${cxx} not found; install Debian's cross compiler: apt-get install g++-aarch64-linux-gnu`);
}
if (!fs.existsSync(path.join(llamaSrc, 'ggml', 'include', 'ggml.h'))) fail(`${llamaSrc} has no ggml headers; run \`node native/build.mjs\` first`);
const paths = JSON.parse(fs.readFileSync(path.join(native, 'build', 'paths.json'), 'utf8'));
let napiInclude = require('node-addon-api').include_dir;
if (!path.isAbsolute(napiInclude)) napiInclude = path.resolve(root, napiInclude);
const nodeInclude = [path.resolve(path.dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node'].find((d) => fs.existsSync(path.join(d, 'node_api.h')));
if (!nodeInclude) fail("Node's C headers (node_api.h) not found");

// the flags of native/build.mjs, for aarch64 (armv8-a: NEON is part of the base ISA)
const flags = ['-std=c++17', '-O2', '-fPIC', '-fvisibility=hidden', '-Wall', '-Wextra', '-Werror', '-Wno-unused-parameter', '-Wno-missing-field-initializers',
	'-I', path.join(llamaSrc, 'ggml', 'include'), '-I', path.join(llamaSrc, 'include'), `-DREPOKV_LLAMA_TAG="${paths.llamaTag}"`,
	'-I', nodeInclude, '-I', napiInclude, '-DNAPI_VERSION=8', '-DNODE_ADDON_API_DISABLE_DEPRECATED', '-DNAPI_CPP_EXCEPTIONS'];

const { product, test } = addonSources('arm64');
const jobs = [
	...product.map((file) => ({ file, extra: [] })),
	{ file: 'addon.cpp', extra: ['-DREPOKV_TEST_ADDON'], obj: 'addon_test.o' },
	...test.map((file) => ({ file, extra: [] })),
];
fs.rmSync(outDir, { recursive: true, force: true });
fs.mkdirSync(outDir, { recursive: true });

function compile({ file, extra, obj }) {
	const out = path.join(outDir, obj ?? file.replace(/\.cpp$/, '.o').replaceAll('/', '_'));
	return new Promise((resolve, reject) => {
		const child = spawn(cxx, [...flags, ...extra, '-c', path.join(srcDir, file), '-o', out], { stdio: ['ignore', 'inherit', 'inherit'] });
		child.on('error', reject);
		child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${file}: ${cxx} exited with ${code}`))));
	});
}

const started = Date.now();
const width = Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, 4));
const queue = [...jobs];
const objects = [];
const errors = [];
await Promise.all(Array.from({ length: width }, async () => {
	for (let job = queue.shift(); job; job = queue.shift()) {
		try {
			objects.push(await compile(job));
		} catch (error) {
			errors.push(error.message);
		}
	}
}));
if (errors.length) fail(`compilation failed:\n  ${errors.join('\n  ')}`);
// every object is an AArch64 ELF object
for (const obj of objects) {
	const machine = /Machine:\s*(.*)/.exec(execFileSync('readelf', ['-h', obj]).toString())?.[1]?.trim();
	if (machine !== 'AArch64') fail(`${obj} is not an AArch64 object (${machine})`);
}
// the kernel check, linked statically (no arm64 libraries needed), run under qemu-aarch64 if present
const kernelCheck = path.join(outDir, 'kernel-check');
const kernelSources = ['storage_format.cpp', ...product.filter((f) => f.startsWith('quant/') || f.startsWith('kernels/'))].map((f) => path.join(srcDir, f));
try {
	execFileSync(cxx, [...flags.filter((f) => !f.startsWith('-DNAPI') && f !== '-fvisibility=hidden'), '-static', '-I', srcDir, path.join(native, 'tools', 'kernel-check.cpp'), ...kernelSources, '-o', kernelCheck], { stdio: 'inherit' });
} catch {
	fail('building tools/kernel-check.cpp for arm64 failed');
}
let qemu;
for (const candidate of ['qemu-aarch64', 'qemu-aarch64-static']) {
	try {
		execFileSync(candidate, ['--version'], { stdio: 'ignore' });
		qemu = candidate;
		break;
	} catch {
		// not installed
	}
}
if (qemu) {
	try {
		process.stdout.write(`cross-compile-arm64: ${qemu} ${path.relative(root, kernelCheck)}: ${execFileSync(qemu, [kernelCheck]).toString()}`);
	} catch (error) {
		process.stdout.write(error.stdout?.toString() ?? '');
		fail('the arm64 kernel check failed under qemu');
	}
} else {
	console.log(`cross-compile-arm64: ${path.relative(root, kernelCheck)} built, not run (no qemu-aarch64; apt-get install qemu-user)`);
}
console.log(`cross-compile-arm64: ${objects.length} objects (${product.length} product sources, the test addon's ${test.length + 1}) compiled for AArch64 with ${cxx} in ${((Date.now() - started) / 1000).toFixed(0)} s, into ${path.relative(root, outDir)}/`);
console.log('cross-compile-arm64: not linked: that needs node-llama-cpp\'s linux-arm64 ggml libraries, which this x64 install lacks');
