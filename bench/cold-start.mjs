#!/usr/bin/env node
// First-completion and warm latency over LSP (the real `repokv serve --stdio`, as an editor drives it), on the
// needle fixture at src/main.ts:10:32, one thread. For each engine: start the server, wait for `ready`, feed the
// workspace (or, with --disk, let the server read it), open src/main.ts and ask at once (the first request after
// start: the warm-up is still running or has just started; --settle MS waits first), then ask 10 more times, each
// after an edit below the cursor (a new trailing comment: the LRU misses, the repository block's KV is reused), and report the first latency and result, p50/p95.
//
// Usage: node bench/cold-start.mjs [--engines native,llama,native-full] [--warm 10] [--edit after|typing] [--disk] [--settle MS] [--timeout MS] [--cli OTHER/bin/repokv.js] [--json FILE]
// Needs the bundle: `npm run build`.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import { startServer, workspaceFiles } from '../test/support/lsp-client.mjs';
import { needleWorkspace } from '../test/support/sidecar.mjs';

const argument = (name, fallback) => {
	const index = process.argv.indexOf(name);
	return index > 0 ? process.argv[index + 1] : fallback;
};
const engines = argument('--engines', 'native,llama').split(',');
const warmCount = Number(argument('--warm', '10'));
const disk = process.argv.includes('--disk');
const jsonOut = argument('--json', undefined);
// Wait this long after opening the document before the first request (the warm-up runs meanwhile); default 0.
const settleMs = Number(argument('--settle', '0'));
// completion.timeoutMs for the server (default: the server's own, 10 s).
const timeoutMs = argument('--timeout', undefined);
// Another build's launcher (bin/repokv.js next to its dist/), to compare before and after a change.
const cli = argument('--cli', undefined);
// What happens between warm requests: `after` (default) a new trailing comment below the cursor; `typing` the user types
// the needle's answer at the cursor, one more character each time (4, 48, 481, 4817, 4817), then again from 4).
const editMode = argument('--edit', 'after');

const configurations = {
	native: { engine: 'native', threads: 1, kv: { policy: 'speckv', precision: 'mixed', budgetPercent: 12 } },
	'native-full': { engine: 'native', threads: 1, kv: { policy: 'full' } },
	llama: { engine: 'llama', threads: 1 },
	// SpecKV with a 16-token lookahead (the lookahead is min(64, completion.maxTokens)): what the draft and scoring cost.
	'native-mt16': { engine: 'native', threads: 1, kv: { policy: 'speckv', precision: 'mixed', budgetPercent: 12 }, completion: { maxTokens: 16 } },
};
const quantile = (values, q) => {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
};

const mainText = readFileSync(path.join(needleWorkspace, 'src/main.ts'), 'utf8');
const position = { line: 9, character: 31 };
const results = [];
for (const name of engines) {
	const settings = { ...configurations[name], ...(timeoutMs === undefined ? {} : { completion: { timeoutMs: Number(timeoutMs) } }) };
	const server = await startServer({ settings, feedsWorkspace: !disk, ...(cli === undefined ? {} : { cli: path.resolve(cli) }) });
	try {
		await server.waitForStatus((status) => status.state === 'ready', 120_000);
		if (!disk) {
			const files = await workspaceFiles(needleWorkspace);
			await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: files, batch: { index: 0, count: 1, totalFiles: files.length }, reset: true });
		}
		const uri = server.uri('src/main.ts');
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'typescript', version: 1, text: mainText } });
		const ask = async (version, at = position) => {
			const started = performance.now();
			const result = await server.connection.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: at, context: { triggerKind: 1 } });
			const ms = performance.now() - started;
			return { ms, text: result?.items?.[0]?.insertText ?? '', version };
		};
		await new Promise((resolve) => setTimeout(resolve, settleMs));
		const first = await ask(1);
		const statusAfterFirst = server.statuses.filter((status) => status.message !== undefined).slice(-3).map((status) => `${status.state}: ${status.message}`);
		const warm = [];
		for (let version = 2; version < 2 + warmCount; version++) {
			if (editMode === 'typing') {
				const typed = '4817)'.slice(0, ((version - 2) % 5) + 1);
				const lines = mainText.split('\n');
				lines[position.line] = `${lines[position.line].slice(0, position.character)}${typed}${lines[position.line].slice(position.character)}`;
				await server.connection.sendNotification('textDocument/didChange', { textDocument: { uri, version }, contentChanges: [{ text: lines.join('\n') }] });
				warm.push(await ask(version, { line: position.line, character: position.character + typed.length }));
			} else {
				// Typing after the cursor's line: a new trailing comment each time (the suffix changes, the prefix stays).
				await server.connection.sendNotification('textDocument/didChange', { textDocument: { uri, version }, contentChanges: [{ text: `${mainText}// edit ${version}\n` }] });
				warm.push(await ask(version));
			}
		}
		const ms = warm.map((entry) => entry.ms);
		// Where a warm request's time goes (the server's own split, from the cache snapshots), median per phase.
		const splits = server.snapshots.slice(-warmCount).map((snapshot) => snapshot.latency ?? {});
		const phase = (name) => Math.round(quantile(splits.map((split) => split[name] ?? 0), 0.5));
		const row = {
			engine: name,
			settings,
			edit: editMode,
			first: { ms: Math.round(first.ms), text: first.text },
			statusAfterFirst,
			warm: {
				p50: Math.round(quantile(ms, 0.5)),
				p95: Math.round(quantile(ms, 0.95)),
				texts: [...new Set(warm.map((entry) => entry.text))],
				all: ms.map(Math.round),
				medianSplit: { prefillMs: phase('prefillMs'), draftMs: phase('draftMs'), scoringMs: phase('scoringMs'), decodeMs: phase('decodeMs'), prefillTokens: phase('prefillTokens'), reusedTokens: phase('reusedTokens') },
			},
		};
		results.push(row);
		console.log(`${name}: first ${row.first.ms} ms ${JSON.stringify(row.first.text)}; warm p50 ${row.warm.p50} ms, p95 ${row.warm.p95} ms (${JSON.stringify(row.warm.texts)}) [${row.warm.all.join(', ')}]`);
		console.log(`  statuses after the first: ${statusAfterFirst.join(' | ')}`);
		console.log(`  warm median split: ${JSON.stringify(row.warm.medianSplit)}`);
	} finally {
		await server.stop();
	}
}
if (jsonOut !== undefined) {
	writeFileSync(jsonOut, `${JSON.stringify({ command: `node bench/cold-start.mjs ${process.argv.slice(2).join(' ')}`, date: new Date().toISOString(), results }, null, '\t')}\n`);
}
