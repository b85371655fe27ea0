// The language server end to end: `node bin/repokv.js serve --stdio` spawned and driven over real stdio LSP with
// vscode-jsonrpc (the library vscode-languageclient uses), on the bundled models and the needle workspace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { CancellationTokenSource } from 'vscode-jsonrpc/node';

import { startServer, workspaceFiles } from '../support/lsp-client.mjs';
import { cliPath, needleWorkspace, tempFolder } from '../support/sidecar.mjs';

const mainText = readFileSync(path.join(needleWorkspace, 'src/main.ts'), 'utf8');
/** `src/main.ts` line 10, column 32 (1-based) as an LSP position (0-based). */
const needlePosition = { line: 9, character: 31 };

function inlineParams(server, relative, position, triggerKind = 1) {
	return { textDocument: { uri: server.uri(relative) }, position, context: { triggerKind } };
}

/** Process ids of a process's children ('' when none). */
function childrenOf(pid) {
	return spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).stdout.trim();
}

function firstInsertText(result) {
	return result?.items?.[0]?.insertText ?? '';
}

describe('repokv serve --stdio (bundled models, needle workspace, the llama reference engine)', () => {
	let server;
	let version = 1;
	const open = (relative, text) => server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri(relative), languageId: 'typescript', version: version++, text } });
	const change = (relative, text) => server.connection.sendNotification('textDocument/didChange', { textDocument: { uri: server.uri(relative), version: version++ }, contentChanges: [{ text }] });
	const status = () => server.connection.sendRequest('repokv/status');

	before(async () => {
		// No idle warm-up here: these tests measure the first request's prefill against the next one's. The llama
		// engine (the reference, not the default): its full fp16 cache is what the snapshot computes from the model shape.
		server = await startServer({ settings: { threads: 1, engine: 'llama', completion: { debounceMinMs: 50, debounceMaxMs: 200, prewarm: false, timeoutMs: 120_000 } } });
		await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error');
		// Every file of the folder, .env and the git-ignored token included: the server must apply the rules itself.
		const files = await workspaceFiles(needleWorkspace);
		const half = Math.ceil(files.length / 2);
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: files.slice(0, half), batch: { index: 0, count: 2, totalFiles: files.length }, reset: true });
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: files.slice(half), batch: { index: 1, count: 2, totalFiles: files.length }, reset: true });
		await open('src/main.ts', mainText);
	});
	after(() => server?.stop());

	test('initialize advertises inline completion and incremental document sync', () => {
		assert.equal(server.initialize.capabilities.inlineCompletionProvider, true);
		assert.equal(server.initialize.capabilities.textDocumentSync.change, 2);
		assert.equal(server.initialize.serverInfo.name, 'repokv');
	});

	test('status: starting → loadingModel → ready; the mirror refused the secret and the ignored file', async () => {
		const states = server.statuses.map((s) => s.state);
		assert.equal(states[0], 'starting');
		assert.ok(states.indexOf('loadingModel') > 0 && states.lastIndexOf('ready') > states.indexOf('loadingModel'), states.join(' → '));
		const current = await status();
		assert.equal(current.engine.name, 'llama');
		assert.equal(current.engine.threads, 1);
		assert.equal(current.engine.contextSize, 4096);
		assert.equal(current.workspace.skipped.secret, 1, '.env');
		assert.equal(current.workspace.skipped.ignored, 1, 'deploy-token.json (.gitignore)');
		assert.equal(current.workspace.files, 9);
	});

	let first;
	test('an inline completion at src/main.ts:10:32 begins with 4817 (defined only in src/config.ts)', async () => {
		const result = await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition));
		const text = firstInsertText(result);
		assert.match(text, /^4817/, JSON.stringify(result));
		assert.deepEqual(result.items[0].range, { start: needlePosition, end: needlePosition });
		first = (await status()).latencies;
		assert.ok(first.lastPrefillTokens > 2000, `the first request prefills the whole prompt (${first.lastPrefillTokens} tokens)`);
	});

	test('the next request reuses the KV of the repository block: far fewer prefill tokens', async () => {
		// An edit above the cursor: the FIM prompt changes, the repository block before it does not.
		const edited = mainText.replace('function checkRetryPolicy', '// checked at start-up\nfunction checkRetryPolicy');
		await change('src/main.ts', edited);
		const result = await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', { line: 10, character: 31 }));
		assert.match(firstInsertText(result), /^4817/);
		const second = (await status()).latencies;
		assert.ok(second.lastReusedTokens > 2000, `reused ${second.lastReusedTokens} tokens`);
		assert.ok(second.lastPrefillTokens * 4 < first.lastPrefillTokens, `prefill ${first.lastPrefillTokens} → ${second.lastPrefillTokens} tokens`);
		assert.ok(second.lastCompletionMs < first.lastCompletionMs, `latency ${first.lastCompletionMs} → ${second.lastCompletionMs} ms`);
		await change('src/main.ts', mainText);
	});

	test('the completion respects the suffix: no second `);`', async () => {
		const withSuffix = mainText.replace('assert.equal(RETRY_LIMIT_MS, ', 'assert.equal(RETRY_LIMIT_MS, );');
		await change('src/main.ts', withSuffix);
		const result = await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition));
		const text = firstInsertText(result);
		assert.match(text, /^4817/);
		assert.ok(!text.endsWith(');'), JSON.stringify(text));
		await change('src/main.ts', mainText);
	});

	test('editing a streamed file changes the next completion', async () => {
		const config = readFileSync(path.join(needleWorkspace, 'src/config.ts'), 'utf8');
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: [{ path: 'src/config.ts', text: config.replace('4817', '6392'), version: 2 }] });
		const result = await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition));
		assert.match(firstInsertText(result), /^6392/, JSON.stringify(result));
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: [{ path: 'src/config.ts', text: config, version: 3 }] });
	});

	test('a storm of 200 requests in 2 s with cancellations computes at most a few and answers the last', async () => {
		const before = await status();
		const pending = [];
		let text = mainText;
		for (let index = 0; index < 200; index++) {
			// Typing: each request a new version; most are cancelled by the client as the next keystroke comes.
			text = mainText.replace('assert.equal(RETRY_LIMIT_MS, ', `assert.equal(RETRY_LIMIT_MS, ${' '.repeat(index % 2)}`);
			await change('src/main.ts', text);
			const source = new CancellationTokenSource();
			const position = { line: 9, character: 31 + (index % 2) };
			pending.push(server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', position, 2), source.token).catch(() => null));
			if (index < 199 && index % 3 !== 0) {
				source.cancel();
			}
			await new Promise((resolve) => setTimeout(resolve, 10));
		}
		const results = await Promise.all(pending);
		const after = await status();
		const computed = after.completions.computed - before.completions.computed;
		assert.ok(computed <= 6, `computed ${computed} of 200`);
		assert.match(firstInsertText(results.at(-1)), /^4817/, 'the last request is answered');
		assert.ok(after.completions.requested - before.completions.requested <= 200);
		await change('src/main.ts', mainText);
	});

	test('repokv/repo/ask streams partial results through $/progress and cites lines that exist', async () => {
		const token = 'ask-1';
		const result = await server.connection.sendRequest('repokv/repo/ask', { question: 'Where is RETRY_LIMIT_MS defined?', partialResultToken: token, workDoneToken: 'ask-work', maxTokens: 16 });
		assert.ok(result.citations.length > 0);
		for (const citation of result.citations) {
			const lines = readFileSync(path.join(needleWorkspace, citation.file), 'utf8').split('\n');
			assert.ok(citation.line >= 1 && citation.line <= lines.length, `${citation.file}:${citation.line}`);
			assert.equal(citation.preview, lines[citation.line - 1].trim().slice(0, 200));
		}
		assert.ok(result.citations.some((c) => c.file === 'src/config.ts' && /RETRY_LIMIT_MS = 4817/.test(c.preview)), JSON.stringify(result.citations));
		assert.equal(result.context.mode, 'whole');
		const partials = server.progress.get(token) ?? [];
		assert.deepEqual(partials[0]?.citations, result.citations, 'citations stream first');
		assert.equal(partials.map((p) => p.textDelta ?? '').join(''), result.answer, 'the deltas add up to the answer');
		// The answer's prompt starts with the last completion's repository block: its KV is reused.
		const snapshot = await server.connection.sendRequest('repokv/cache/snapshot', {});
		assert.equal(snapshot.request, 'ask');
		assert.ok(snapshot.latency.reusedTokens > 2000, `ask reused ${snapshot.latency.reusedTokens} tokens`);
		const workDone = server.progress.get('ask-work') ?? [];
		assert.equal(workDone[0]?.kind, 'begin');
		assert.equal(workDone.at(-1)?.kind, 'end');
	});

	test('cache snapshot: full-KV numbers from the model shape, files and token ranges, latency split', async () => {
		await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition));
		await change('src/main.ts', `${mainText}\n`);
		await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition));
		const snapshot = await server.connection.sendRequest('repokv/cache/snapshot', {});
		assert.equal(snapshot.request, 'completion');
		assert.equal(snapshot.source, 'modelShape');
		assert.deepEqual(snapshot.model, { path: snapshot.model.path, architecture: 'llama', contextSize: 4096, layers: 6, kvHeads: 2, headDim: 64 });
		assert.equal(snapshot.layers.length, 6);
		assert.equal(snapshot.layers[5].heads.length, 2);
		const tokens = snapshot.totals.contextTokens;
		assert.equal(snapshot.totals.kvBytes, tokens * 2 * 64 * 2 * 2 * 6);
		assert.equal(snapshot.totals.compressionRatio, 1);
		assert.equal(snapshot.totals.bitsPerElement, 16);
		assert.equal(snapshot.files.at(-1).path, 'src/main.ts');
		assert.equal(snapshot.files.at(-1).role, 'active');
		assert.ok(snapshot.files.some((f) => f.path === 'src/config.ts'));
		for (let index = 1; index < snapshot.files.length; index++) {
			assert.equal(snapshot.files[index].startToken, snapshot.files[index - 1].endToken, 'contiguous token ranges');
		}
		assert.ok(snapshot.latency.reusedTokens > 2000);
		const summary = await server.connection.sendRequest('repokv/cache/snapshot', { summaryOnly: true });
		assert.deepEqual(summary.layers[0].heads, []);
		await new Promise((resolve) => setTimeout(resolve, 600));
		assert.ok(server.snapshots.length > 0 && server.snapshots.at(-1).sequence === snapshot.sequence, 'pushed as repokv/cache/didChange');
		await change('src/main.ts', mainText);
	});

	test('$/cancelRequest of an in-flight completion reaches the engine and answers empty at once', async () => {
		// Another active file reorders the repository block (its neighbours go last): a long prefill to interrupt.
		await open('src/orders.ts', readFileSync(path.join(needleWorkspace, 'src/orders.ts'), 'utf8'));
		const before = await status();
		const source = new CancellationTokenSource();
		const pending = server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/orders.ts', { line: 3, character: 0 }), source.token);
		await new Promise((resolve) => setTimeout(resolve, 400));
		const started = Date.now();
		source.cancel();
		const result = await pending.catch((error) => ({ cancelledError: error.message }));
		const after = await status();
		// Within one 256-token prefill chunk (about 1 s here; more when the machine is busy).
		assert.ok(Date.now() - started < 5000, `answered ${Date.now() - started} ms after the cancel`);
		assert.equal(after.completions.cancelled, before.completions.cancelled + 1, JSON.stringify(result));
		assert.equal(firstInsertText(result), '');
	});

	test('bad input gets an error or is refused, and the server stays up', async () => {
		await assert.rejects(server.connection.sendRequest('repokv/repo/ask', { question: '' }), /non-empty question/);
		await assert.rejects(server.connection.sendRequest('repokv/no/such/method', {}), /Unhandled method|not found/i);
		const big = 'x'.repeat(50 * 1024 * 1024);
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: [{ path: 'huge.js', text: big }, { path: 'bin.dat', text: 'a\u0000b' }, { path: '../escape.ts', text: 'x' }] });
		const current = await status();
		assert.equal(current.workspace.skipped.tooLarge, 1);
		assert.equal(current.workspace.skipped.binary, 1);
		assert.equal(current.workspace.skipped.invalidPath, 1);
		assert.equal(current.workspace.files, 9);
		// A completion for a document the server never saw: empty, not an error.
		const unknown = await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'nope.ts', { line: 0, character: 0 }));
		assert.deepEqual(unknown, { items: [] });
		// A position past the end of the document is clamped, not a crash.
		// (src/orders.ts: the active file of the previous test, whose prompt prefix is still in the KV cache.)
		const clamped = await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/orders.ts', { line: 999, character: 999 }));
		assert.ok(Array.isArray(clamped.items));
		assert.equal((await status()).state, 'ready');
	});
});

describe('repokv serve --stdio: cache warm-up', () => {
	test('opening a document prefills the repository block while idle; the first completion only evaluates its FIM prompt', async (t) => {
		const server = await startServer({ settings: { threads: 1 } });
		t.after(() => server.stop());
		await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error');
		const files = await workspaceFiles(needleWorkspace);
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: files, batch: { index: 0, count: 1, totalFiles: files.length } });
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		await server.waitForStatus((s) => s.state === 'prefilling' && /warming/.test(s.message));
		// Ready again after the last warm-up status.
		const deadline = Date.now() + 60_000;
		while (server.statuses.at(-1).state !== 'ready' || !server.logs.some((line) => line.startsWith('prewarm src/main.ts') && !line.includes('interrupted'))) {
			assert.ok(Date.now() < deadline, `warm-up did not finish: ${server.logs.join('\n')}`);
			await new Promise((resolve) => setTimeout(resolve, 50));
		}
		const result = await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition));
		assert.match(firstInsertText(result), /^4817/);
		const { latencies } = await server.connection.sendRequest('repokv/status');
		assert.ok(latencies.lastReusedTokens > 2000, `reused ${latencies.lastReusedTokens}`);
		assert.ok(latencies.lastPrefillTokens < 300, `prefilled ${latencies.lastPrefillTokens}`);
	});
});

describe('repokv serve --stdio: native engine', () => {
	test('completes through the native addon, reuses the prefix, and snapshots its real per-head KV bytes', async (t) => {
		// policy full: the engine's own bytes can be checked against the fp16 arithmetic
		const server = await startServer({ settings: { threads: 1, engine: 'native', kv: { policy: 'full' }, completion: { prewarm: false } } });
		t.after(() => server.stop());
		const ready = await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error');
		assert.equal(ready.state, 'ready', JSON.stringify(ready));
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: await workspaceFiles(needleWorkspace) });
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		assert.match(firstInsertText(await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition))), /^4817/);
		await server.connection.sendNotification('textDocument/didChange', { textDocument: { uri: server.uri('src/main.ts'), version: 2 }, contentChanges: [{ text: `${mainText}\n` }] });
		assert.match(firstInsertText(await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition))), /^4817/);
		const snapshot = await server.connection.sendRequest('repokv/cache/snapshot', {});
		assert.equal(snapshot.engine, 'native');
		assert.equal(snapshot.source, 'engineStats');
		assert.ok(snapshot.latency.reusedTokens > 2000, `reused ${snapshot.latency.reusedTokens}`);
		const headBytes = snapshot.layers.flatMap((layer) => layer.heads).reduce((sum, head) => sum + head.bytes, 0);
		assert.equal(headBytes, snapshot.totals.kvBytes, 'totals are the sum of the engine-reported heads');
		assert.equal(snapshot.budget.policy, 'full');
		// fp16 keys and values plus the engine's per-token metadata (positions): within 5 % of the fp16 estimate.
		assert.ok(Math.abs(snapshot.totals.kvBytes / snapshot.totals.fp16Bytes - 1) < 0.05, JSON.stringify(snapshot.totals));
		// per file, measured: under full every token of every file is fp16 in every layer and head
		for (const file of snapshot.files) {
			assert.deepEqual(file.keptTokens, { f16: file.endToken - file.startToken, q8: 0, kivi4: 0, kivi2: 0, onebit: 0, dropped: 0 }, file.path);
			assert.equal(file.keptFraction, 1);
		}
	});
});

describe('repokv serve --stdio: native engine with SpecKV at 12 %', () => {
	/** A native-engine server with these kv settings completes the needle; returns the cache snapshot after it. */
	async function needleSnapshot(t, kv) {
		const server = await startServer({ settings: { threads: 1, engine: 'native', kv, completion: { prewarm: false } } });
		t.after(() => server.stop());
		const ready = await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error');
		assert.equal(ready.state, 'ready', JSON.stringify(ready));
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: await workspaceFiles(needleWorkspace) });
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		assert.match(firstInsertText(await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition))), /^4817/);
		return server.connection.sendRequest('repokv/cache/snapshot', {});
	}

	test('the kv settings reach the engine: the needle is still found, and the snapshot shows what was dropped', async (t) => {
		// f16 storage: the budget buys tokens, so the ratio is about the budget
		const snapshot = await needleSnapshot(t, { policy: 'speckv', budgetPercent: 12, precision: 'f16' });
		assert.equal(snapshot.source, 'engineStats');
		assert.equal(snapshot.budget.policy, 'speckv');
		// 12 % of the fp16 bytes, with a little slack for the tokens decoded after the selection.
		const ratio = snapshot.totals.kvBytes / snapshot.totals.fp16Bytes;
		assert.ok(ratio > 0.05 && ratio < 0.2, JSON.stringify(snapshot.totals));
		const dropped = snapshot.layers.flatMap((layer) => layer.heads).reduce((sum, head) => sum + head.tiers.dropped.tokens, 0);
		assert.ok(dropped > 0, 'some tokens were dropped');
	});

	test('kv.precision mixed: the same bytes hold 4-bit and 1.x-bit tiers, the needle is still found', async (t) => {
		const snapshot = await needleSnapshot(t, { policy: 'speckv', budgetPercent: 12, precision: 'mixed' });
		assert.equal(snapshot.budget.policy, 'speckv+mixed');
		const heads = snapshot.layers.flatMap((layer) => layer.heads);
		const tokens = (tier) => heads.reduce((sum, head) => sum + head.tiers[tier].tokens, 0);
		assert.ok(tokens('kivi4') > 0 && tokens('onebit') > 0 && tokens('f16') > 0, JSON.stringify(heads[0].tiers));
		assert.ok(tokens('onebit') > tokens('f16'), 'most kept tokens are at 1.x bits');
		assert.equal(tokens('q8') + tokens('kivi2'), 0, 'mixed stores no q8 or kivi2');
		// per file, measured per position: the files' kivi4 and 1.x-bit cells are the heads' (the tokens generated after
		// the prompt are f16, BOS a sink), and files are kept differently (not one overall share applied to each)
		const cells = snapshot.model.layers * snapshot.model.kvHeads;
		for (const tier of ['kivi4', 'onebit']) {
			const files = snapshot.files.reduce((sum, file) => sum + file.keptTokens[tier], 0);
			assert.ok(Math.abs(files * cells - tokens(tier)) < 0.01 * snapshot.files.length * cells, `${tier}: files ${files * cells}, heads ${tokens(tier)}`);
		}
		for (const file of snapshot.files) {
			const sum = Object.values(file.keptTokens).reduce((a, b) => a + b, 0);
			assert.ok(Math.abs(sum - (file.endToken - file.startToken)) < 0.01, `${file.path}: tiers sum to the span`);
		}
		const fractions = new Set(snapshot.files.map((file) => file.keptFraction));
		assert.ok(fractions.size > 1, `per-file kept fractions all ${[...fractions]}`);
		// the engine reserves the completion's tokens inside the budget: at most 12 % of the fp16 bytes after decoding
		const ratio = snapshot.totals.kvBytes / snapshot.totals.fp16Bytes;
		assert.ok(ratio > 0.06 && ratio <= 0.12, JSON.stringify(snapshot.totals));
	});

	test('kv.precision kivi2: the inspector shows the kivi2 tier under its own name, folded into no other', async (t) => {
		const snapshot = await needleSnapshot(t, { policy: 'speckv', budgetPercent: 12, precision: 'kivi2' });
		const heads = snapshot.layers.flatMap((layer) => layer.heads);
		const tokens = (tier) => heads.reduce((sum, head) => sum + head.tiers[tier].tokens, 0);
		assert.ok(tokens('kivi2') > 0 && tokens('f16') > 0, JSON.stringify(heads[0].tiers));
		assert.equal(tokens('q8') + tokens('kivi4') + tokens('onebit'), 0, JSON.stringify(heads[0].tiers));
		assert.ok(snapshot.files.some((file) => file.keptTokens.kivi2 > 0), JSON.stringify(snapshot.files.map((file) => file.keptTokens)));
	});
});

/** A GGUF whose vocabulary is not the bundled models': three tokens, no weights (only its header is read). */
async function foreignVocabularyGguf(t) {
	const { writeGguf, GGUF } = await import('../../native/test-fixtures/gguf-writer.mjs');
	const file = path.join(await tempFolder(t), 'other-vocabulary.gguf');
	writeGguf(file, [
		{ key: 'general.architecture', type: GGUF.STRING, value: 'llama' },
		{ key: 'tokenizer.ggml.model', type: GGUF.STRING, value: 'gpt2' },
		{ key: 'tokenizer.ggml.tokens', type: GGUF.ARRAY, itemType: GGUF.STRING, value: ['a', 'b', 'c'] },
		{ key: 'tokenizer.ggml.token_type', type: GGUF.ARRAY, itemType: GGUF.INT32, value: [1, 1, 1] },
	], []);
	return file;
}

describe('repokv serve --stdio: default settings (native engine, SpecKV, mixed tiers, 12 %)', () => {
	test('the default serves the compressed cache; a kv change applies to the next request without reloading the model', async (t) => {
		// Only what every test passes: the defaults are under test. `settings` also answers workspace/configuration.
		const settings = { threads: 1, completion: { prewarm: false } };
		const server = await startServer({ settings });
		t.after(() => server.stop());
		const ready = await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error');
		assert.equal(ready.state, 'ready', JSON.stringify(ready));
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: await workspaceFiles(needleWorkspace) });
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		const complete = async () => firstInsertText(await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition)));

		assert.match(await complete(), /^4817/);
		const current = await server.connection.sendRequest('repokv/status');
		assert.equal(current.engine.name, 'native');
		assert.deepEqual(current.kvCache, { policy: 'speckv', budgetPercent: 12, precision: 'mixed', draft: current.kvCache.draft });
		assert.match(current.kvCache.draft, /models[/\\]draft\.gguf$/);
		const first = await server.connection.sendRequest('repokv/cache/snapshot', {});
		assert.equal(first.engine, 'native');
		assert.equal(first.source, 'engineStats', 'the real engine\'s per-layer, per-head tiers');
		assert.equal(first.budget.policy, 'speckv+mixed');
		assert.equal(first.budget.allocation, 'uniform');
		assert.equal(first.budget.budgetPercent, 12);
		assert.ok(first.latency.draftMs > 0 && first.latency.scoringMs > 0, `real draft and scoring times: ${JSON.stringify(first.latency)}`);
		const heads = first.layers.flatMap((layer) => layer.heads);
		assert.ok(heads.every((head) => head.tiers.kivi4.tokens > 0 && head.tiers.onebit.tokens > 0 && head.tiers.dropped.tokens > 0));
		assert.ok(first.totals.kvBytes <= 0.12 * first.totals.fp16Bytes, JSON.stringify(first.totals));
		assert.ok(first.totals.residentBytes > first.totals.kvBytes, 'resident: the master copy and the draft\'s cache on top of the tiers');
		const loadsBefore = server.statuses.filter((s) => s.state === 'loadingModel').length;

		// budget 12 → 6: the next completion's snapshot shows it, and the model was not reloaded
		const seen = server.statuses.length;
		settings.kv = { budgetPercent: 6 };
		await server.connection.sendNotification('workspace/didChangeConfiguration', { settings: null });
		// The server pulls workspace/configuration, then logs the KV cache it applies: the next request runs with it.
		await waitForLog(server, /kv cache: speckv, mixed .* at 6 %/);
		await change(server, `${mainText}\n`, 2);
		assert.match(await complete(), /^4817/);
		const halved = await server.connection.sendRequest('repokv/cache/snapshot', {});
		assert.equal(halved.budget.budgetPercent, 6);
		assert.ok(halved.totals.kvBytes <= 0.06 * halved.totals.fp16Bytes && halved.totals.kvBytes < 0.6 * first.totals.kvBytes, JSON.stringify(halved.totals));
		assert.ok(halved.latency.reusedTokens > 2000, 'the master copy survived the change: its prefix was reused');
		assert.deepEqual(server.statuses.slice(seen).filter((s) => s.state === 'loadingModel'), [], 'no model load');

		// SpecKV off (snapkv): the draft is dropped, the target stays; the next request has no draft time
		settings.kv = { budgetPercent: 6, policy: 'snapkv' };
		await server.connection.sendNotification('workspace/didChangeConfiguration', { settings: null });
		await waitForLog(server, /kv cache: snapkv, mixed .* at 6 %/);
		await change(server, mainText, 3);
		await complete();
		const snap = await server.connection.sendRequest('repokv/cache/snapshot', {});
		assert.equal(snap.budget.policy, 'snapkv+mixed');
		assert.equal(snap.latency.draftMs, 0);
		assert.equal(server.statuses.filter((s) => s.state === 'loadingModel').length, loadsBefore, 'still no model load');
		assert.equal((await server.connection.sendRequest('repokv/status')).kvCache.policy, 'snapkv');
	});

	test('a draft with another vocabulary: SpecKV falls back to snapkv, said once with the fix; completions still work', async (t) => {
		const draft = await foreignVocabularyGguf(t);
		const server = await startServer({ settings: { threads: 1, model: { draft }, completion: { prewarm: false } } });
		t.after(() => server.stop());
		const ready = await server.waitForStatus((s) => s.state === 'ready' && /SpecKV is off/.test(s.message));
		assert.match(ready.message, /other-vocabulary\.gguf cannot be paired with the target .*target\.gguf: the target has \d+ tokens and the draft 3/);
		assert.match(ready.fixHint, /set repokv\.model\.draft to a GGUF draft with the target's vocabulary/);
		const current = await server.connection.sendRequest('repokv/status');
		assert.equal(current.kvCache.policy, 'snapkv');
		assert.equal(current.kvCache.fallback.requested, 'speckv');
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: await workspaceFiles(needleWorkspace) });
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		assert.match(firstInsertText(await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition))), /^4817/);
		const snapshot = await server.connection.sendRequest('repokv/cache/snapshot', {});
		assert.equal(snapshot.budget.policy, 'snapkv+mixed', 'still compressed, never silently full');
		assert.match(snapshot.budget.description, /SpecKV is off/);
		assert.equal(server.logs.filter((line) => /SpecKV is off/.test(line)).length, 1, 'logged once');
	});
});

/** Wait until the server logged a line matching `pattern` (window/logMessage). */
async function waitForLog(server, pattern, timeoutMs = 30_000) {
	const deadline = Date.now() + timeoutMs;
	while (!server.logs.some((line) => pattern.test(line))) {
		assert.ok(Date.now() < deadline, `no log line matching ${pattern}: ${server.logs.join('\n')}`);
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
}

/** Replace src/main.ts's text (the open document) with `text` at `version`. */
function change(server, text, version) {
	return server.connection.sendNotification('textDocument/didChange', { textDocument: { uri: server.uri('src/main.ts'), version }, contentChanges: [{ text }] });
}

describe('repokv serve --stdio: failures', () => {
	test('a broken GGUF: status error with a fix hint, completions answer empty, the server stays up', async (t) => {
		const folder = await tempFolder(t);
		const broken = path.join(folder, 'broken.gguf');
		writeFileSync(broken, 'GGUF but not really, just text');
		const server = await startServer({ settings: { threads: 1, model: { target: broken } } });
		t.after(() => server.stop());
		const error = await server.waitForStatus((s) => s.state === 'error');
		assert.match(error.message, /broken\.gguf/);
		assert.ok(error.fixHint.length > 0);
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		const result = await server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition));
		assert.deepEqual(result, { items: [] });
		assert.equal((await server.connection.sendRequest('repokv/status')).state, 'error');
	});

	test('an hf: model that cannot be downloaded: a clear error within the time-out, not a hang', async (t) => {
		const folder = await tempFolder(t);
		const server = await startServer({ settings: { threads: 1, model: { target: 'hf:repokv-test/missing/missing.gguf', downloadTimeoutSeconds: 3, downloadFolder: folder } }, allowNetwork: true });
		t.after(() => server.stop());
		const started = Date.now();
		const error = await server.waitForStatus((s) => s.state === 'error', 20_000);
		assert.match(error.message, /download/);
		assert.match(error.fixHint, /download|network/);
		assert.ok(Date.now() - started < 15_000);
	});

	test('a malformed message does not crash the server', async (t) => {
		const server = await startServer({ settings: { threads: 1 }, lazyModelLoad: true });
		t.after(() => server.stop());
		await server.waitForStatus((s) => s.state === 'ready');
		const body = '{"jsonrpc":"2.0","id":99,"method":';
		server.child.stdin.write(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
		const reply = await server.connection.sendRequest('repokv/status');
		assert.equal(reply.state, 'ready');
		assert.equal(server.child.exitCode, null);
	});

	test('killing the client (closing stdio) ends the server, leaving no process behind', async (t) => {
		const server = await startServer({ settings: { threads: 1 } });
		t.after(() => server.child.kill('SIGKILL'));
		await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error');
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		// A request in flight, then the client vanishes without shutdown/exit.
		void server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition)).catch(() => undefined);
		await new Promise((resolve) => setTimeout(resolve, 200));
		const pid = server.child.pid;
		server.connection.dispose();
		server.child.stdin.end();
		const timer = setTimeout(() => server.child.kill('SIGKILL'), 10_000);
		const { code, signal } = await server.exited;
		clearTimeout(timer);
		assert.equal(signal, null, 'exited on its own, not killed');
		// LSP: exit code 1 when the connection ends without shutdown/exit.
		assert.equal(code, 1);
		assert.equal(childrenOf(pid), '', 'no orphaned child processes');
	});

	test('SIGKILL mid-request leaves no child process of the server', async (t) => {
		const server = await startServer({ settings: { threads: 1 } });
		t.after(() => server.child.kill('SIGKILL'));
		await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error');
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		void server.connection.sendRequest('textDocument/inlineCompletion', inlineParams(server, 'src/main.ts', needlePosition)).catch(() => undefined);
		await new Promise((resolve) => setTimeout(resolve, 300));
		const pid = server.child.pid;
		const before = childrenOf(pid);
		server.child.kill('SIGKILL');
		await server.exited;
		server.connection.dispose();
		assert.equal(before, '', 'the server runs no child processes while serving');
	});
});

describe('repokv ask (CLI)', () => {
	test('--json: retrieval picks the context when the workspace exceeds it, and citations exist', () => {
		const run = spawnSync(process.execPath, [cliPath, 'ask', '--workspace', needleWorkspace, '--question', 'What is RETRY_LIMIT_MS?', '--json', '--threads', '1', '--max-tokens', '8', '--context', '1024'], { encoding: 'utf8', timeout: 120_000 });
		assert.equal(run.status, 0, run.stderr);
		const result = JSON.parse(run.stdout);
		assert.equal(result.context.mode, 'retrieved');
		assert.ok(result.context.tokens <= 1024);
		assert.ok(result.context.chunksSearched > 0);
		assert.ok(result.citations.some((c) => c.file === 'src/config.ts' && /4817/.test(c.preview)), JSON.stringify(result.citations));
		for (const citation of result.citations) {
			const lines = readFileSync(path.join(needleWorkspace, citation.file), 'utf8').split('\n');
			assert.equal(citation.preview, lines[citation.line - 1].trim().slice(0, 200));
		}
		assert.equal(typeof result.answer, 'string');
		assert.ok(result.timings.totalMs > 0);
	});

	test('usage errors: a missing question exits 2; serve without --stdio exits 2', () => {
		const ask = spawnSync(process.execPath, [cliPath, 'ask', '--workspace', needleWorkspace], { encoding: 'utf8' });
		assert.equal(ask.status, 2);
		assert.match(ask.stderr, /--question/);
		const serve = spawnSync(process.execPath, [cliPath, 'serve'], { encoding: 'utf8' });
		assert.equal(serve.status, 2);
		assert.match(serve.stderr, /--stdio/);
	});
});
