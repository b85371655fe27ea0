#!/usr/bin/env node
// Does keeping the previous selection (only the end of the prompt changed; docs/kv-policies.md, "Keeping a selection
// while only the end of the prompt changes") change what the model writes? For each workspace and cursor, a person
// types a trailing comment at the end of the file, one character per request (the FIM suffix grows at its end). Three
// engines read the same prompts:
//  - `kept`: the product (native, SpecKV + mixed tiers at 12 %, prefix reuse; it keeps the selection where it can);
//  - `fresh`: the same settings, but a fresh selection for every request (configureKv before each clears the kept one);
//  - `full`: the native engine with the full fp16 cache (what the target itself writes).
// Reported: how often kept's greedy completion (up to 16 tokens) equals fresh's and full's, and fresh's agreement with
// full for comparison, with the share of requests that kept the selection.
//
// Usage: node bench/kept-selection.mjs [--steps 12] [--threads 1] [--json FILE]. Needs the bundle (`npm run build`).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sidecar = await import(path.join(root, 'dist', 'sidecar.mjs'));
const argument = (name, fallback) => {
	const index = process.argv.indexOf(name);
	return index > 0 ? process.argv[index + 1] : fallback;
};
const steps = Number(argument('--steps', '12'));
const threads = Number(argument('--threads', '1'));
const jsonOut = argument('--json', undefined);
const maxTokens = 16;
const kv = { policy: 'speckv', budgetPercent: 12, precision: 'mixed' };

// Workspaces and cursors: the needle fixture at its needle, and this repository's context builder sources at three
// lines each (a line's end, inside a function body).
const workspaces = [
	{ folder: path.join(root, 'test', 'fixtures', 'workspace-needle'), cursors: [['src/main.ts', 9, 31]] },
	{ folder: path.join(root, 'sidecar', 'src', 'context'), cursors: [['builder.ts', 100, 1], ['stable-order.ts', 20, 1], ['repo-format.ts', 30, 1]] },
];

const modelPath = sidecar.bundledModelPath('target');
const engine = await sidecar.loadEngine('native');
const load = (kvCache) => engine.loadModel({ modelPath, threads, contextSize: 4096, kvCache });
const kept = await load(kv);
const fresh = await load(kv);
const full = await load({ policy: 'full' });
const started = Date.now();
const rows = [];
try {
	for (const { folder, cursors } of workspaces) {
		const snapshot = await sidecar.readWorkspace(folder);
		for (const [activePath, line, character] of cursors) {
			const original = snapshot.files.find((file) => file.path === activePath)?.text;
			if (original === undefined) throw new Error(`${activePath} is not in ${folder}`);
			const lines = original.split('\n');
			const cursorOffset = lines.slice(0, line).reduce((sum, text) => sum + text.length + 1, 0) + Math.min(character, lines[line].length);
			const others = snapshot.files.filter((file) => file.path !== activePath);
			let comment = '// ';
			for (let step = 0; step < steps; step++) {
				comment += 'abcdefghijklmnopqrstuvwxyz'[step % 26];
				const activeText = `${original}${original.endsWith('\n') ? '' : '\n'}${comment}\n`;
				const prompt = sidecar.buildCompletionPrompt({
					files: others,
					activePath,
					activeText,
					cursorOffset,
					specialTokens: kept.specialTokens,
					counter: new sidecar.CachingCounter(kept),
					budgetTokens: 4096 - 64 - 1,
					orderFiles: sidecar.orderStableFirst,
				}).text;
				const request = { prompt, maxTokens, reusePrefix: true };
				const a = await kept.complete(request);
				await fresh.configureKv(kv);
				const b = await fresh.complete(request);
				const c = await full.complete(request);
				rows.push({ workspace: path.relative(root, folder), activePath, step, selection: a.selection, kept: a.text, fresh: b.text, full: c.text, keptMs: Math.round(a.timings.prefillMs + a.timings.decodeMs + (a.timings.draftMs ?? 0) + (a.timings.scoringMs ?? 0) + (a.timings.compressMs ?? 0)), freshMs: Math.round(b.timings.prefillMs + b.timings.decodeMs + (b.timings.draftMs ?? 0) + (b.timings.scoringMs ?? 0) + (b.timings.compressMs ?? 0)) });
			}
		}
	}
} finally {
	await Promise.all([kept.dispose(), fresh.dispose(), full.dispose()]);
}
const share = (predicate, subset = rows) => `${subset.filter(predicate).length}/${subset.length}`;
const keptRows = rows.filter((row) => row.selection === 'kept');
const summary = {
	requests: rows.length,
	keptSelection: share((row) => row.selection === 'kept'),
	keptEqualsFresh: share((row) => row.kept === row.fresh),
	keptEqualsFreshWhereKept: share((row) => row.kept === row.fresh, keptRows),
	keptEqualsFull: share((row) => row.kept === row.full),
	freshEqualsFull: share((row) => row.fresh === row.full),
	keptEqualsFullWhereKept: share((row) => row.kept === row.full, keptRows),
	freshEqualsFullWhereKept: share((row) => row.fresh === row.full, keptRows),
	medianMsWhereKept: { kept: median(keptRows.map((row) => row.keptMs)), fresh: median(keptRows.map((row) => row.freshMs)) },
};
console.log(JSON.stringify(summary, null, 2));
for (const row of rows.filter((r) => r.kept !== r.fresh)) console.log(`differs: ${row.workspace}/${row.activePath} step ${row.step} (${row.selection}): kept ${JSON.stringify(row.kept)} fresh ${JSON.stringify(row.fresh)} full ${JSON.stringify(row.full)}`);
if (jsonOut !== undefined) {
	const sha256 = createHash('sha256').update(readFileSync(modelPath)).digest('hex').slice(0, 12);
	writeFileSync(jsonOut, `${JSON.stringify({ command: `node bench/kept-selection.mjs ${process.argv.slice(2).join(' ')}`, date: new Date().toISOString(), model: path.relative(root, modelPath), modelSha256: sha256, threads, wallSeconds: Math.round((Date.now() - started) / 1000), summary, rows }, null, '\t')}\n`);
}

function median(values) {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted.length === 0 ? undefined : sorted[Math.floor((sorted.length - 1) / 2)];
}
