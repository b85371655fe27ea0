// The TypeScript sources' import graph (sidecar/src, extension/src, webview/src, bench): no file imports itself back
// through others, the sidecar and the extension never import the benchmarks, and the benchmarks reach the sidecar only
// through its public API (sidecar/src/api.ts). Every import counts, `import type`, `export ... from` and `import()`
// included: a type-only cycle still ties two files together. Then the bundles themselves, from esbuild's metafile:
// dist/sidecar.mjs (which the extension runs) holds no benchmark code, and dist/bench.mjs no copy of the sidecar.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';
import ts from 'typescript';

import { targets } from '../../esbuild.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const sourceFolders = ['sidecar/src', 'extension/src', 'webview/src', 'bench'];

function tsFilesUnder(folder) {
	const out = [];
	for (const entry of readdirSync(path.join(root, folder), { withFileTypes: true })) {
		const relative = `${folder}/${entry.name}`;
		if (entry.isDirectory()) {
			out.push(...tsFilesUnder(relative));
		} else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
			out.push(relative);
		}
	}
	return out;
}

/** The file a relative specifier names, as esbuild and tsc (moduleResolution "bundler") resolve it; else undefined. */
function resolveRelative(from, specifier) {
	const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
	for (const candidate of [base, `${base}.ts`, `${base}/index.ts`, base.replace(/\.js$/, '.ts')]) {
		const file = path.join(root, candidate);
		if (statSync(file, { throwIfNoEntry: false })?.isFile() === true) {
			return candidate;
		}
	}
	return undefined;
}

/** file -> the files of this tree it imports (packages and node: built-ins left out). */
function importGraph() {
	const graph = new Map();
	for (const file of sourceFolders.flatMap(tsFilesUnder)) {
		const { importedFiles } = ts.preProcessFile(readFileSync(path.join(root, file), 'utf8'), true, true);
		const targets = new Set();
		for (const { fileName } of importedFiles) {
			if (!fileName.startsWith('.')) {
				continue;
			}
			const target = resolveRelative(file, fileName);
			assert.ok(target !== undefined, `${file} imports '${fileName}', which names no file`);
			targets.add(target);
		}
		graph.set(file, [...targets].sort());
	}
	return graph;
}

/** The cycles of a graph, one each per strongly connected component (Tarjan), as paths `a -> b -> ... -> a`. */
function findCycles(graph) {
	let next = 0;
	const index = new Map();
	const low = new Map();
	const stack = [];
	const onStack = new Set();
	const components = [];
	const visit = (v) => {
		index.set(v, next);
		low.set(v, next);
		next++;
		stack.push(v);
		onStack.add(v);
		for (const w of graph.get(v) ?? []) {
			if (!index.has(w)) {
				visit(w);
				low.set(v, Math.min(low.get(v), low.get(w)));
			} else if (onStack.has(w)) {
				low.set(v, Math.min(low.get(v), index.get(w)));
			}
		}
		if (low.get(v) === index.get(v)) {
			const component = [];
			let w;
			do {
				w = stack.pop();
				onStack.delete(w);
				component.push(w);
			} while (w !== v);
			if (component.length > 1 || (graph.get(v) ?? []).includes(v)) {
				components.push(new Set(component));
			}
		}
	};
	for (const v of [...graph.keys()].sort()) {
		if (!index.has(v)) {
			visit(v);
		}
	}
	// One concrete loop per component: the shortest way back to its first file (breadth-first inside it).
	return components.map((component) => {
		const start = [...component].sort()[0];
		const previous = new Map();
		const queue = [start];
		while (queue.length > 0) {
			const v = queue.shift();
			for (const w of graph.get(v) ?? []) {
				if (!component.has(w)) continue;
				if (w === start) {
					const loop = [start];
					for (let at = v; at !== start; at = previous.get(at)) loop.splice(1, 0, at);
					return [...loop, start].join(' -> ');
				}
				if (!previous.has(w)) {
					previous.set(w, v);
					queue.push(w);
				}
			}
		}
		throw new Error(`no loop found in a strongly connected component at ${start}`);
	});
}

const graph = importGraph();
const edges = [...graph].flatMap(([from, tos]) => tos.map((to) => [from, to]));

describe('the TypeScript import graph', () => {
	test('is read whole: every source file, with its type-only and dynamic imports', () => {
		for (const folder of sourceFolders) {
			assert.ok([...graph.keys()].filter((file) => file.startsWith(`${folder}/`)).length >= 5, `files of ${folder}/ read`);
		}
		const has = (from, to) => (graph.get(from) ?? []).includes(to);
		assert.ok(has('sidecar/src/cli/main.ts', 'sidecar/src/api.ts'), 'export * from');
		assert.ok(has('bench/command.ts', 'bench/fidelity.ts'), 'import()');
		assert.ok(has('sidecar/src/engine/native-policy.ts', 'sidecar/src/engine/native.ts'), 'import type');
	});

	test('the cycle finder names a loop, type-only or not, and passes a tree', () => {
		assert.deepEqual(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a', 'd']], ['d', []]])), ['a -> b -> c -> a']);
		assert.deepEqual(findCycles(new Map([['a', ['a']]])), ['a -> a']);
		assert.deepEqual(findCycles(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), []);
	});

	test('has no cycles', () => {
		const cycles = findCycles(graph);
		assert.deepEqual(cycles, [], `import cycles:\n  ${cycles.join('\n  ')}`);
	});

	test('the sidecar, the extension and the webview never import the benchmarks', () => {
		const wrong = edges.filter(([from, to]) => !from.startsWith('bench/') && to.startsWith('bench/'));
		assert.deepEqual(wrong.map((e) => e.join(' -> ')), []);
	});

	test('the benchmarks reach the sidecar only through its public API, sidecar/src/api.ts', () => {
		const wrong = edges.filter(([from, to]) => from.startsWith('bench/') && to.startsWith('sidecar/') && to !== 'sidecar/src/api.ts');
		assert.deepEqual(wrong.map((e) => e.join(' -> ')), []);
		assert.ok(edges.some(([from, to]) => from.startsWith('bench/') && to === 'sidecar/src/api.ts'));
	});
});

describe('the bundles', () => {
	/** The source files esbuild puts into a target's bundle. */
	async function inputsOf(target) {
		const result = await esbuild.build({ ...targets[target], write: false, metafile: true, logLevel: 'silent' });
		return Object.keys(result.metafile.inputs);
	}

	test('dist/sidecar.mjs, which the extension runs, carries no benchmark code', async () => {
		const inputs = await inputsOf('sidecar');
		assert.ok(inputs.includes('sidecar/src/server/server.ts'), 'the metafile lists the sidecar sources');
		assert.deepEqual(inputs.filter((file) => file.startsWith('bench/')), []);
	});

	test('dist/extension.js carries no benchmark code', async () => {
		assert.deepEqual((await inputsOf('extension')).filter((file) => file.startsWith('bench/')), []);
	});

	test('dist/bench.mjs carries the benchmarks and no copy of the sidecar: it imports ./sidecar.mjs', async () => {
		const result = await esbuild.build({ ...targets.bench, write: false, metafile: true, logLevel: 'silent' });
		const inputs = Object.keys(result.metafile.inputs);
		assert.ok(inputs.includes('bench/command.ts'));
		assert.deepEqual(inputs.filter((file) => file.startsWith('sidecar/')), []);
		const output = result.metafile.outputs['dist/bench.mjs'];
		assert.ok(output.imports.some((i) => i.path === './sidecar.mjs' && i.external === true), 'imports the sidecar bundle');
	});
});
