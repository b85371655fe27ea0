// The opt-in CUDA part of native/build.mjs (`node native/build.mjs --cuda`, or REPOKV_CUDA=1): compiles the CUDA
// attention kernels (src/cuda/kernels.cu) with nvcc and links the harness that checks them against the CPU's portable
// kernels (test-cuda/cuda-check.cpp -> build/cuda/cuda-check). Nothing of the addon depends on it; without --cuda
// build.mjs never loads this file, and without nvcc it says so and builds nothing more.
//
// Architectures: REPOKV_CUDA_ARCHS ("90" or "86,90": SASS and PTX of each), else the ones node-llama-cpp's CUDA build
// of ggml carries, read from its libggml-cuda.so (the fatbin's entries: SASS for some, PTX for others), so the
// kernels run wherever node-llama-cpp's CUDA backend runs; else (that package absent) the same list as of
// node-llama-cpp 3.21.1. Only the ones this nvcc can target are used; the build prints what it chose.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

// node-llama-cpp 3.21.1's @node-llama-cpp/linux-x64-cuda (CUDA 13): SASS sm_86, 89, 120, 121; PTX compute_75, 80, 90
const FALLBACK_ARCHS = { sass: [86, 89, 120, 121], ptx: [75, 80, 90] };

export function findNvcc() {
	const candidates = [process.env.NVCC, 'nvcc', '/usr/local/cuda/bin/nvcc'].filter(Boolean);
	for (const nvcc of candidates) {
		try {
			const out = execFileSync(nvcc, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
			const release = /release ([0-9.]+)/.exec(out)?.[1];
			return { nvcc, release };
		} catch {
			// next candidate
		}
	}
	return undefined;
}

/** The fatbin entries of a CUDA shared library: { sass: [sm...], ptx: [sm...] } (empty when none are found). */
export function fatbinArchs(file) {
	const buf = fs.readFileSync(file);
	const magic = Buffer.from([0x50, 0xed, 0x55, 0xba]); // 0xBA55ED50, little-endian
	const sass = new Set();
	const ptx = new Set();
	for (let i = buf.indexOf(magic); i >= 0 && i + 16 <= buf.length; i = buf.indexOf(magic, i + 4)) {
		if (buf.readUInt16LE(i + 6) !== 16) continue; // header size
		const size = Number(buf.readBigUInt64LE(i + 8));
		const end = Math.min(buf.length, i + 16 + size);
		for (let p = i + 16; p + 32 <= end; ) {
			const kind = buf.readUInt16LE(p);
			const headerSize = buf.readUInt32LE(p + 4);
			const payload = Number(buf.readBigUInt64LE(p + 8));
			const sm = buf.readUInt32LE(p + 28);
			if (kind === 1) ptx.add(sm);
			else if (kind === 2) sass.add(sm);
			else break;
			if (!headerSize) break;
			p += headerSize + payload;
		}
	}
	const sorted = (s) => [...s].sort((a, b) => a - b);
	return { sass: sorted(sass), ptx: sorted(ptx) };
}

function nvccTargets(nvcc) {
	try {
		const list = (flag) => execFileSync(nvcc, [flag], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map((s) => Number(s.replace(/^(sm|compute)_/, '')));
		return { sass: new Set(list('--list-gpu-code')), ptx: new Set(list('--list-gpu-arch')) };
	} catch {
		return undefined;
	}
}

/**
 * The architectures to build for and where the list came from.
 * @param {{ nvcc: string, cudaLib?: string }} options cudaLib: node-llama-cpp's libggml-cuda.so, when installed
 */
export function chooseArchs({ nvcc, cudaLib }) {
	let archs;
	let source;
	if (process.env.REPOKV_CUDA_ARCHS) {
		const list = process.env.REPOKV_CUDA_ARCHS.split(/[\s,;]+/).filter(Boolean).map((s) => Number(s.replace(/^(sm_|compute_)/, '')));
		archs = { sass: list, ptx: list };
		source = 'REPOKV_CUDA_ARCHS';
	} else if (cudaLib && fs.existsSync(cudaLib)) {
		archs = fatbinArchs(cudaLib);
		source = `@node-llama-cpp/${path.basename(path.dirname(path.dirname(path.dirname(cudaLib))))}'s libggml-cuda.so`;
		if (!archs.sass.length && !archs.ptx.length) {
			archs = FALLBACK_ARCHS;
			source = 'node-llama-cpp 3.21.1 (no fatbin entries found in its libggml-cuda.so)';
		}
	} else {
		archs = FALLBACK_ARCHS;
		source = 'node-llama-cpp 3.21.1 (its CUDA package is not installed)';
	}
	const can = nvccTargets(nvcc);
	const dropped = [];
	if (can) {
		for (const sm of archs.sass) if (!can.sass.has(sm)) dropped.push(`sm_${sm}`);
		for (const sm of archs.ptx) if (!can.ptx.has(sm)) dropped.push(`compute_${sm}`);
		archs = { sass: archs.sass.filter((sm) => can.sass.has(sm)), ptx: archs.ptx.filter((sm) => can.ptx.has(sm)) };
	}
	return { ...archs, source, dropped };
}

export function gencodeFlags({ sass, ptx }) {
	return [...sass.map((sm) => `-gencode=arch=compute_${sm},code=sm_${sm}`), ...ptx.map((sm) => `-gencode=arch=compute_${sm},code=compute_${sm}`)];
}

function run(cmd, args) {
	return new Promise((resolve, reject) => {
		const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
		child.on('error', reject);
		child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}`))));
	});
}

function mtime(file) {
	try {
		return fs.statSync(file).mtimeMs;
	} catch {
		return -1;
	}
}

/**
 * Builds build/cuda/kernels.o and build/cuda/cuda-check. `cpuObjects`: the addon's objects of src/quant, src/kernels and
 * storage_format (the harness's CPU reference). Returns false (after saying why) when nvcc is missing.
 */
export async function buildCuda({ here, buildDir, binsDir, cxx, commonFlags, cpuObjects, force, log, fail }) {
	const found = findNvcc();
	if (!found) {
		log('--cuda: nvcc not found (PATH, $NVCC, /usr/local/cuda/bin): the CUDA kernels are not built; the addon is CPU-only as usual');
		return false;
	}
	const { nvcc, release } = found;
	// nvcc says where its toolkit is (it may be a wrapper script elsewhere): TOP=... in its dry run
	let top;
	try {
		const dry = execFileSync(nvcc, ['--dryrun', '-c', '-x', 'cu', '/dev/null', '-o', '/dev/null'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
		top = /^#\$ TOP=(.*)$/m.exec(dry)?.[1];
	} catch (error) {
		top = /^#\$ TOP=(.*)$/m.exec(String(error.stderr ?? ''))?.[1];
	}
	const roots = [top, process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter(Boolean);
	const cudaLibDir = roots.flatMap((r) => ['lib64', 'targets/x86_64-linux/lib', 'lib'].map((d) => path.resolve(r, d))).find((d) => fs.existsSync(path.join(d, 'libcudart_static.a')));
	if (!cudaLibDir) fail(`--cuda: libcudart_static.a not found under ${roots.join(', ')}`);
	// @node-llama-cpp/linux-x64/bins/linux-x64 -> @node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda (an optional dependency of node-llama-cpp)
	const nlcCuda = path.resolve(binsDir, '..', '..', '..', 'linux-x64-cuda', 'bins', 'linux-x64-cuda', 'libggml-cuda.so');
	const archs = chooseArchs({ nvcc, cudaLib: nlcCuda });
	if (!archs.sass.length && !archs.ptx.length) fail(`--cuda: nvcc ${release} can target none of the architectures (${archs.dropped.join(' ')})`);
	log(
		`CUDA (nvcc ${release}): ${archs.sass.map((s) => `sm_${s}`).join(' ') || 'no'} SASS, ${archs.ptx.map((s) => `compute_${s}`).join(' ') || 'no'} PTX, from ${archs.source}` +
			(archs.dropped.length ? `; this nvcc cannot target ${archs.dropped.join(' ')}` : ''),
	);

	const srcCuda = path.join(here, 'src', 'cuda');
	const outDir = path.join(buildDir, 'cuda');
	fs.mkdirSync(outDir, { recursive: true });
	const stampFile = path.join(outDir, 'archs.json');
	const stamp = JSON.stringify({ release, sass: archs.sass, ptx: archs.ptx });
	const archsChanged = !fs.existsSync(stampFile) || fs.readFileSync(stampFile, 'utf8') !== stamp;
	const deps = [
		...fs.readdirSync(srcCuda).map((f) => path.join(srcCuda, f)),
		path.join(here, 'src', 'quant', 'layout.h'),
		path.join(here, 'src', 'storage_format.h'),
		path.join(here, 'cuda-build.mjs'),
	];
	const kernelsObj = path.join(outDir, 'kernels.o');
	if (force || archsChanged || mtime(kernelsObj) < Math.max(...deps.map(mtime))) {
		log('compiling cuda/kernels.cu (nvcc)');
		try {
			await run(nvcc, ['-std=c++17', '-O3', '-Xcompiler', '-fPIC,-Wall,-Wextra,-Wno-unused-parameter', ...gencodeFlags(archs), '-c', path.join(srcCuda, 'kernels.cu'), '-o', kernelsObj]);
		} catch (error) {
			fail(`nvcc failed (${error.message}); see its output above`);
		}
		fs.writeFileSync(stampFile, stamp);
	}
	const checkSrc = path.join(here, 'test-cuda', 'cuda-check.cpp');
	const checkObj = path.join(outDir, 'cuda-check.o');
	const headers = [...deps, ...fs.readdirSync(path.join(here, 'src', 'quant')).map((f) => path.join(here, 'src', 'quant', f)), path.join(here, 'src', 'kernels', 'kernels.h')];
	if (force || mtime(checkObj) < Math.max(mtime(checkSrc), ...headers.map(mtime))) {
		log('compiling test-cuda/cuda-check.cpp');
		try {
			await run(cxx, [...commonFlags, '-c', checkSrc, '-o', checkObj]);
		} catch (error) {
			fail(`compiling the CUDA harness failed (${error.message})`);
		}
	}
	const bin = path.join(outDir, 'cuda-check');
	const inputs = [kernelsObj, checkObj, ...cpuObjects];
	if (force || mtime(bin) < Math.max(...inputs.map(mtime))) {
		log('linking cuda-check (the CUDA kernels against the CPU kernels)');
		try {
			await run(cxx, ['-o', bin, ...inputs, '-L', binsDir, '-l:libggml-base.so', `-Wl,-rpath,$ORIGIN/${path.relative(outDir, binsDir)}`, `-Wl,-rpath,${binsDir}`, '-L', cudaLibDir, '-l:libcudart_static.a', '-ldl', '-lrt', '-pthread']);
		} catch (error) {
			fail(`linking cuda-check failed (${error.message})`);
		}
	}
	fs.writeFileSync(path.join(outDir, 'info.json'), JSON.stringify({ nvcc: release, sass: archs.sass, ptx: archs.ptx, archSource: archs.source, harness: bin }, null, 2) + '\n');
	return true;
}

/**
 * `node native/build.mjs --cuda-emu`: the same kernels compiled by g++ against cuda_emu.h (a CPU emulation of the CUDA
 * they use) and linked into the same harness, build/cuda-emu/cuda-check, so that the kernels' arithmetic runs
 * against the CPU kernels on machines without a GPU (test/native/cuda.test.mjs builds it when it is missing). No nvcc.
 */
export async function buildCudaEmulation({ here, buildDir, binsDir, cxx, commonFlags, cpuObjects, force, log, fail }) {
	const srcCuda = path.join(here, 'src', 'cuda');
	const outDir = path.join(buildDir, 'cuda-emu');
	fs.mkdirSync(outDir, { recursive: true });
	const deps = [
		...fs.readdirSync(srcCuda).map((f) => path.join(srcCuda, f)),
		...fs.readdirSync(path.join(here, 'src', 'quant')).map((f) => path.join(here, 'src', 'quant', f)),
		path.join(here, 'src', 'storage_format.h'),
		path.join(here, 'src', 'kernels', 'kernels.h'),
		path.join(here, 'cuda-build.mjs'),
	];
	const newest = Math.max(...deps.map(mtime));
	const kernelsObj = path.join(outDir, 'kernels.o');
	const checkSrc = path.join(here, 'test-cuda', 'cuda-check.cpp');
	const checkObj = path.join(outDir, 'cuda-check.o');
	const flags = [...commonFlags.map((f) => (f === '-std=c++17' ? '-std=c++20' : f === '-O3' ? '-O2' : f)), '-Wno-unknown-pragmas'];
	const jobs = [];
	if (force || mtime(kernelsObj) < newest) {
		jobs.push(async () => {
			log('compiling cuda/kernels.cu for the CPU emulation (g++, REPOKV_CUDA_EMU)');
			await run(cxx, [...flags, '-pthread', '-DREPOKV_CUDA_EMU', '-x', 'c++', '-c', path.join(srcCuda, 'kernels.cu'), '-o', kernelsObj]);
		});
	}
	if (force || mtime(checkObj) < Math.max(newest, mtime(checkSrc))) {
		jobs.push(async () => {
			log('compiling test-cuda/cuda-check.cpp (emulation)');
			await run(cxx, [...flags, '-c', checkSrc, '-o', checkObj]);
		});
	}
	try {
		await Promise.all(jobs.map((job) => job()));
	} catch (error) {
		fail(`compiling the CUDA emulation failed (${error.message})`);
	}
	const bin = path.join(outDir, 'cuda-check');
	const inputs = [kernelsObj, checkObj, ...cpuObjects];
	if (force || mtime(bin) < Math.max(...inputs.map(mtime))) {
		log('linking cuda-emu/cuda-check (the CUDA kernels, emulated on the CPU, against the CPU kernels)');
		try {
			await run(cxx, ['-o', bin, ...inputs, '-L', binsDir, '-l:libggml-base.so', `-Wl,-rpath,$ORIGIN/${path.relative(outDir, binsDir)}`, `-Wl,-rpath,${binsDir}`, '-pthread']);
		} catch (error) {
			fail(`linking the CUDA emulation failed (${error.message})`);
		}
	}
	return bin;
}
