#!/usr/bin/env node
// Fuzz of the native engine's GGUF loader: mutated and truncated copies of the bundled models (models/target.gguf,
// models/draft.gguf) and of generated fixtures (native/test-fixtures/make-fixture.mjs: qwen2 F16, llama Q8_0, a
// target-shaped Q4_0 model, and a K-quant one from native/build/gguf-requant), each loaded by the addon's loadModel in a
// child process (gguf-worker.mjs). Every file must end in a load (then two tokens are evaluated) or a clear error; a
// child that dies (signal, AddressSanitizer report) or takes longer than the per-file timeout is a crash or a hang,
// and its input is kept. The child's RSS is sampled after every file: growth after the warm-up is a leak.
//
// usage: node test/fuzz/gguf.fuzz.mjs [--n 10000] [--seed 1] [--timeout-ms 20000] [--asan] [--small]
//                                     [--json bench/results/fuzz-gguf.json]
//   --asan   use native/build/asan/repokv.node (node native/build.mjs --asan) with libasan preloaded
//   --small  fixtures only (no bundled models): the seeded subset test/native/gguf-fuzz.test.mjs runs
// `npm run fuzz` runs the defaults and writes bench/results/fuzz-gguf.json. Exit status 1 on any crash, hang or leak.
import { execFileSync, fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { FIXTURES, makeFixture } from '../../native/test-fixtures/make-fixture.mjs';
import { GGML } from '../../native/test-fixtures/gguf-writer.mjs';
import { layout, mutate, rng } from './gguf-mutate.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

/** An error message reduced to its kind: quoted names, numbers and paths replaced. */
export function errorKind(result) {
	if (result.code) return result.code;
	return String(result.message ?? result.evalError ?? '')
		.replace(/'[^']*'/g, "'…'")
		.replace(/\d+/g, 'N')
		.slice(0, 90);
}

function buildBases(dir, small) {
	const bases = [];
	const fixture = (name, cfg) => {
		const file = path.join(dir, `${name}.gguf`);
		makeFixture(file, cfg);
		bases.push({ name, file, weight: 1 });
	};
	fixture('qwen2-f16', { ...FIXTURES.qwen2, weightType: GGML.F16 });
	fixture('llama-q8_0', { ...FIXTURES.llama, weightType: GGML.Q8_0, seed: 5 });
	fixture('targetlike-q4_0', { ...FIXTURES.targetLike, weightType: GGML.Q4_0, seed: 6 });
	if (!small) {
		for (const name of ['draft', 'target']) {
			const file = path.join(root, 'models', `${name}.gguf`);
			if (fs.existsSync(file)) bases.push({ name, file, weight: name === 'target' ? 0.6 : 1 });
		}
		// Real code models' shapes and tokenizers (Qwen2.5-Coder's 151,936-token vocabulary: ~5 MB of metadata), two
		// layers, when the real-shape tests have generated them (native/test-fixtures/real-shapes.mjs caches them).
		for (const name of ['qwen2.5-coder-0.5b-2L-Q8_0-s1-v1', 'qwen2.5-coder-1.5b-2L-Q4_K_M-s1-v1']) {
			const file = path.join(root, 'native', 'build', 'real-shapes', `${name}.gguf`);
			if (fs.existsSync(file)) bases.push({ name, file, weight: 0.4 });
		}
	}
	return bases;
}

/**
 * Runs the fuzz; returns the report (see the JSON file). Options: n, seed, timeoutMs, asan, small, log (a function
 * for progress lines), workDir.
 * @param {{ n?: number, seed?: number, timeoutMs?: number, asan?: boolean, small?: boolean, log?: (line: string) => void }} [options]
 */
export async function runGgufFuzz({ n = 10000, seed = 1, timeoutMs = 20000, asan = false, small = false, log = () => {} } = {}) {
	const addon = path.join(root, 'native', 'build', asan ? 'asan' : '', 'repokv.node');
	if (!fs.existsSync(addon)) throw new Error(`${addon} is missing: run \`node native/build.mjs${asan ? ' --asan' : ''}\``);
	const baseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'repokv-fuzz-bases-'));
	const scratch = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'repokv-fuzz-'));
	const crashDir = path.join(root, 'bench', 'results', 'fuzz-gguf-crashes');
	// the K-quant fixture is requantized from an F16 one
	const f16src = path.join(baseDir, 'llama-f16-src.gguf');
	makeFixture(f16src, { ...FIXTURES.llama, weightType: GGML.F16, seed: 5 });
	/** @type {{ name: string, file: string, weight: number, size?: number, buf?: Buffer, layout?: ReturnType<typeof layout> }[]} */
	const bases = buildBases(baseDir, small).filter((b) => fs.existsSync(b.file));
	const requant = path.join(root, 'native', 'build', 'gguf-requant');
	if (fs.existsSync(requant)) {
		const k = path.join(baseDir, 'llama-q4_k_m.gguf');
		execFileSync(requant, [f16src, k, 'Q4_K_M'], { stdio: 'ignore' });
		bases.push({ name: 'llama-q4_k_m', file: k, weight: 1 });
	}
	// Large files are held as a prefix (header, metadata and the first tensor bytes); a mutated copy is the prefix
	// written over a copy of the original (fuzzCase below).
	for (const b of bases) {
		b.size = fs.statSync(b.file).size;
		const fd = fs.openSync(b.file, 'r');
		let want = Math.min(b.size, 1 << 20);
		for (;;) {
			b.buf = Buffer.alloc(want);
			fs.readSync(fd, b.buf, 0, want, 0);
			try {
				b.layout = layout(b.buf);
				if (b.layout.dataStart <= want) break;
			} catch {
				// RangeError: the header goes on past the prefix
			}
			if (want === b.size) throw new Error(`${b.file}: cannot read its GGUF header`);
			want = Math.min(b.size, want * 4);
		}
		fs.closeSync(fd);
		if (b.size > b.buf.length) b.buf = b.buf.subarray(0, Math.min(b.size, b.layout.dataStart + (256 << 10)));
	}
	const totalWeight = bases.reduce((a, b) => a + b.weight, 0);

	const env = { ...process.env, REPOKV_FUZZ_ADDON: addon };
	if (asan) {
		const libasan = execFileSync(process.env.CXX || 'g++', ['-print-file-name=libasan.so']).toString().trim();
		// node itself is not built with ASan: its own allocations are not leak-checked, only memory errors in the addon
		// and in the ggml libraries it calls are reported (abort_on_error makes them a crash of the child)
		Object.assign(env, { LD_PRELOAD: libasan, ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:allocator_may_return_null=1' });
	}

	const started = Date.now();
	const report = {
		command: `node test/fuzz/gguf.fuzz.mjs --n ${n} --seed ${seed}${asan ? ' --asan' : ''}${small ? ' --small' : ''}`,
		date: new Date().toISOString(),
		files: 0,
		seed,
		asan,
		bases: bases.map((b) => ({ name: b.name, bytes: b.size, headerBytes: b.layout.dataStart })),
		outcomes: { loaded: 0, error: 0, crash: 0, hang: 0 },
		loadedButEvalFailed: 0,
		byKind: {},
		byBase: {},
		examples: {},
		crashes: [],
		hangs: [],
		unclearMessages: [],
		rss: {},
		workerRestarts: 0,
	};

	/** @type {import('node:child_process').ChildProcess} */
	let child;
	let stderr = '';
	const pending = new Map();
	let nextId = 0;
	const rssSeries = [];
	const startChild = () =>
		new Promise((resolve, reject) => {
			stderr = '';
			child = fork(path.join(here, 'gguf-worker.mjs'), [], { env, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
			child.stderr.on('data', (d) => {
				stderr = (stderr + d).slice(-8000);
			});
			child.once('message', (/** @type {any} */ m) => (m.ready ? resolve() : reject(new Error('worker did not start'))));
			child.once('exit', (code, signal) => {
				for (const [, p] of pending) p({ died: true, code, signal });
				pending.clear();
				reject(new Error(`worker exited at start (${code ?? signal}): ${stderr}`));
			});
			child.on('message', (/** @type {any} */ m) => {
				const p = pending.get(m.id);
				if (p) {
					pending.delete(m.id);
					p(m);
				}
			});
		});
	const send = (file) =>
		new Promise((resolve) => {
			const id = nextId++;
			const timer = setTimeout(() => {
				pending.delete(id);
				resolve({ hung: true });
			}, timeoutMs);
			pending.set(id, (m) => {
				clearTimeout(timer);
				resolve(m);
			});
			child.send({ id, file });
		});
	await startChild();

	const r = rng(seed);
	const file = path.join(scratch, 'case.gguf');
	try {
		for (let i = 0; i < n; i++) {
			let w = r() * totalWeight;
			const base = bases.find((b) => (w -= b.weight) < 0) ?? bases[0];
			const { buf, length, how } = mutate(base.buf, base.layout, r, base.size);
			if (length <= buf.length) {
				fs.writeFileSync(file, buf.subarray(0, length));
			} else {
				fs.copyFileSync(base.file, file);
				const fd = fs.openSync(file, 'r+');
				fs.writeSync(fd, buf, 0, buf.length, 0);
				fs.ftruncateSync(fd, length);
				fs.closeSync(fd);
			}
			const res = await send(file);
			report.files++;
			const byBase = (report.byBase[base.name] ??= { files: 0, loaded: 0, error: 0, crash: 0, hang: 0 });
			byBase.files++;
			if (res.hung || res.died) {
				const kind = res.hung ? 'hang' : 'crash';
				report.outcomes[kind]++;
				byBase[kind]++;
				fs.mkdirSync(crashDir, { recursive: true });
				const saved = path.join(crashDir, `${kind}-${seed}-${i}.gguf`);
				fs.copyFileSync(file, saved);
				const entry = { index: i, base: base.name, how, file: path.relative(root, saved), exit: res.died ? (res.signal ?? res.code) : undefined, stderr: stderr.slice(-3000) };
				report[kind === 'hang' ? 'hangs' : 'crashes'].push(entry);
				log(`${kind.toUpperCase()} #${i} ${base.name} ${how} (${entry.file})`);
				// the child is gone or stuck: start a fresh one
				child.removeAllListeners('exit');
				child.kill('SIGKILL');
				report.workerRestarts++;
				await startChild();
				continue;
			}
			report.outcomes[res.outcome]++;
			byBase[res.outcome]++;
			const kind = res.outcome === 'loaded' ? (res.evalError ? `loaded, eval: ${errorKind(res)}` : 'loaded') : errorKind(res);
			if (res.evalError) report.loadedButEvalFailed++;
			report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
			if (!report.examples[kind] && (res.message || res.evalError)) report.examples[kind] = `${base.name} ${how}: ${res.message ?? res.evalError}`.slice(0, 400);
			// a clear error: one line, not empty, not a flood
			const msg = res.message ?? res.evalError;
			if (msg !== undefined && (!msg.trim() || msg.includes('\n') || msg.length > 1000) && report.unclearMessages.length < 20)
				report.unclearMessages.push({ index: i, base: base.name, how, message: msg.slice(0, 300) });
			rssSeries.push(res.rss);
			if ((i + 1) % 1000 === 0) log(`${i + 1}/${n} files, ${((Date.now() - started) / 1000).toFixed(0)} s, RSS ${(res.rss / 2 ** 20).toFixed(0)} MiB, ${JSON.stringify(report.outcomes)}`);
		}
	} finally {
		child.removeAllListeners('exit');
		child.kill('SIGKILL');
		fs.rmSync(scratch, { recursive: true, force: true });
		fs.rmSync(baseDir, { recursive: true, force: true });
	}

	// leak check: RSS of the (longest-lived) worker after a warm-up of 10% of the files vs at the end
	const warm = Math.min(rssSeries.length - 1, Math.max(0, Math.floor(rssSeries.length / 10)));
	const mib = (b) => Math.round((b / 2 ** 20) * 10) / 10;
	report.rss = {
		afterWarmupMiB: mib(rssSeries[warm] ?? 0),
		endMiB: mib(rssSeries.at(-1) ?? 0),
		maxMiB: mib(Math.max(0, ...rssSeries)),
		growthAfterWarmupMiB: mib((rssSeries.at(-1) ?? 0) - (rssSeries[warm] ?? 0)),
		note: report.workerRestarts ? 'the worker was restarted after a crash or hang: the series spans several processes' : 'one worker process for the whole run',
	};
	// A leak of even 1 KiB per file shows as ~10 MiB over 10,000 files; allocator caching of a 20 MB model load is
	// below 64 MiB once warm.
	report.leak = report.rss.growthAfterWarmupMiB > Math.max(64, n / 100);
	report.wallSeconds = Math.round((Date.now() - started) / 100) / 10;
	report.byKind = Object.fromEntries(Object.entries(report.byKind).sort((a, b) => b[1] - a[1]));
	return report;
}

function arg(name, def) {
	const i = process.argv.indexOf(name);
	return i >= 0 ? process.argv[i + 1] : def;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
	const report = await runGgufFuzz({
		n: Number(arg('--n', 10000)),
		seed: Number(arg('--seed', 1)),
		timeoutMs: Number(arg('--timeout-ms', 20000)),
		asan: process.argv.includes('--asan'),
		small: process.argv.includes('--small'),
		log: (line) => console.log(line),
	});
	const out = arg('--json', path.join('bench', 'results', report.asan ? 'fuzz-gguf-asan.json' : 'fuzz-gguf.json'));
	fs.mkdirSync(path.dirname(path.resolve(root, out)), { recursive: true });
	fs.writeFileSync(path.resolve(root, out), JSON.stringify(report, null, 2) + '\n');
	console.log(`\nGGUF loader fuzz: ${report.files} files in ${report.wallSeconds} s${report.asan ? ' (AddressSanitizer)' : ''}`);
	console.log(`  loaded ${report.outcomes.loaded} (eval failed on ${report.loadedButEvalFailed}), clear errors ${report.outcomes.error}, crashes ${report.outcomes.crash}, hangs ${report.outcomes.hang}`);
	console.log(`  RSS after warm-up ${report.rss.afterWarmupMiB} MiB, at the end ${report.rss.endMiB} MiB (growth ${report.rss.growthAfterWarmupMiB} MiB${report.leak ? ': LEAK' : ''})`);
	console.log('  by kind:');
	for (const [kind, count] of Object.entries(report.byKind)) console.log(`    ${String(count).padStart(6)}  ${kind}`);
	console.log(`  report: ${out}`);
	if (report.unclearMessages.length) console.log(`  unclear messages: ${JSON.stringify(report.unclearMessages, null, 2)}`);
	process.exit(report.outcomes.crash || report.outcomes.hang || report.leak || report.unclearMessages.length ? 1 : 0);
}
