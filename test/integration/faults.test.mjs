// Faults survived, with nothing lost: the model file vanishing or changing under a loaded model, a disk that fills
// while a model downloads (from a local HTTP server), a context that does not fit in memory, and the sidecar killed
// (SIGKILL) mid-completion and mid-indexing, then restarted with the extension's backoff and fed again by the
// extension's real workspace feed (extension/src/feed.ts under the vscode stub): the completion after the restart
// sees the edits made while it was down (checked on the prompt itself, REPOKV_TRACE_PROMPTS).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import http from 'node:http';
import path from 'node:path';
import { describe, test } from 'node:test';

import { feedConfig, loadBackoff, loadFeed } from '../fuzz/support/feed-bundle.mjs';
import { startServer } from '../support/lsp-client.mjs';
import { draftModelPath, needleWorkspace, sidecar, targetModelPath, tempFolder } from '../support/sidecar.mjs';

const fimDoc = "import { RETRY_LIMIT_MS } from './config';\nconst x = ";

let version = 1;
/** A keystroke (a new document version, so no cached answer), then an explicit completion request. */
async function completeOnce(server, relative = 'src/main.ts') {
	version++;
	await server.connection.sendNotification('textDocument/didChange', { textDocument: { uri: server.uri(relative), version }, contentChanges: [{ text: `${fimDoc}${' '.repeat(version % 3)}` }] });
	return server.connection.sendRequest('textDocument/inlineCompletion', { textDocument: { uri: server.uri(relative) }, position: { line: 1, character: 10 }, context: { triggerKind: 1 } });
}

describe('faults: the model file', () => {
	test('vanishes, comes back, is replaced, is truncated in place while loaded: clear errors, reloads, no crash', async (t) => {
		const folder = await tempFolder(t, 'repokv-model-fault-');
		const model = path.join(folder, 'target.gguf');
		await copyFile(targetModelPath, model);
		const server = await startServer({ settings: { threads: 1, completion: { maxTokens: 4 }, model: { target: model } } });
		t.after(() => server.stop());
		await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error', 120_000);
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: fimDoc } });
		assert.ok(Array.isArray((await completeOnce(server)).items));
		const status = () => server.connection.sendRequest('repokv/status');

		// Vanishes: the next request reloads, fails with a clear error and a fix hint; the server stays up.
		await rm(model);
		assert.deepEqual(await completeOnce(server), { items: [] });
		const gone = await status();
		assert.equal(gone.state, 'error', JSON.stringify(gone));
		assert.match(gone.message, /model file not found/);
		assert.match(gone.fixHint, /repokv\.model\.target/);
		assert.equal(server.child.exitCode, null);

		// Comes back: the next request loads it and completes.
		await copyFile(targetModelPath, model);
		const back = await completeOnce(server);
		assert.ok(Array.isArray(back.items));
		assert.notEqual((await status()).state, 'error');
		assert.ok(server.logs.some((line) => /changed on disk; reloading/.test(line)), server.logs.join('\n'));

		// Replaced by another GGUF (renamed over it, as a download or copy tool does): reloaded, still serving.
		const reloadsBefore = server.logs.filter((line) => /changed on disk/.test(line)).length;
		await copyFile(draftModelPath, `${model}.new`);
		await rename(`${model}.new`, model);
		assert.ok(Array.isArray((await completeOnce(server)).items));
		assert.equal(server.logs.filter((line) => /changed on disk/.test(line)).length, reloadsBefore + 1);

		// Truncated in place (a broken copy over the loaded file): a clear error, not a SIGBUS.
		await truncate(model, 1000);
		assert.deepEqual(await completeOnce(server), { items: [] });
		const broken = await status();
		assert.equal(broken.state, 'error', JSON.stringify(broken));
		assert.match(broken.message, /GGUF|model/i);
		assert.equal(server.child.exitCode, null);
		assert.equal(server.child.signalCode, null);
	});

	test("SpecKV's draft vanishes, comes back, is replaced while loaded: the draft-free fallback, then SpecKV again; the target stays loaded", async (t) => {
		const folder = await tempFolder(t, 'repokv-draft-fault-');
		const draft = path.join(folder, 'draft.gguf');
		await copyFile(draftModelPath, draft);
		const server = await startServer({ settings: { threads: 1, engine: 'native', completion: { maxTokens: 4 }, kv: { policy: 'speckv' }, model: { draft } } });
		t.after(() => server.stop());
		await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error', 120_000);
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: fimDoc } });
		const kvCache = async () => (await server.connection.sendRequest('repokv/status')).kvCache;
		assert.ok(Array.isArray((await completeOnce(server)).items));
		const serving = await kvCache();
		assert.equal(serving.policy, 'speckv', JSON.stringify(serving));
		assert.equal(serving.draft, draft);
		const noticed = () => server.logs.filter((line) => /SpecKV's draft .* changed on disk/.test(line)).length;

		// Vanishes: the next request notices, and serves without SpecKV, saying why.
		await rm(draft);
		assert.ok(Array.isArray((await completeOnce(server)).items));
		const gone = await kvCache();
		assert.notEqual(gone.policy, 'speckv', JSON.stringify(gone));
		assert.match(gone.fallback?.reason ?? '', /not found/, JSON.stringify(gone));
		assert.equal(noticed(), 1, server.logs.join('\n'));

		// Comes back: SpecKV again, from the next request.
		await copyFile(draftModelPath, draft);
		assert.ok(Array.isArray((await completeOnce(server)).items));
		const back = await kvCache();
		assert.equal(back.policy, 'speckv', JSON.stringify(back));
		assert.equal(back.fallback, undefined);

		// Replaced (renamed over) by a GGUF of another vocabulary: the pairing check runs again and refuses it.
		const { writeGguf, GGUF } = await import('../../native/test-fixtures/gguf-writer.mjs');
		writeGguf(`${draft}.new`, [
			{ key: 'general.architecture', type: GGUF.STRING, value: 'llama' },
			{ key: 'tokenizer.ggml.model', type: GGUF.STRING, value: 'gpt2' },
			{ key: 'tokenizer.ggml.tokens', type: GGUF.ARRAY, itemType: GGUF.STRING, value: ['a', 'b', 'c'] },
			{ key: 'tokenizer.ggml.token_type', type: GGUF.ARRAY, itemType: GGUF.INT32, value: [1, 1, 1] },
		], []);
		await rename(`${draft}.new`, draft);
		assert.ok(Array.isArray((await completeOnce(server)).items));
		const foreign = await kvCache();
		assert.notEqual(foreign.policy, 'speckv', JSON.stringify(foreign));
		assert.match(foreign.fallback?.reason ?? '', /cannot be paired/, JSON.stringify(foreign));

		// Put right again: SpecKV serves again.
		await copyFile(draftModelPath, `${draft}.new`);
		await rename(`${draft}.new`, draft);
		const answer = await completeOnce(server);
		assert.ok(Array.isArray(answer.items));
		assert.equal((await kvCache()).policy, 'speckv');
		assert.equal(noticed(), 4, server.logs.join('\n'));
		// Only the draft was loaded again: the target never was.
		assert.ok(!server.logs.some((line) => /model file .* changed on disk/.test(line)), server.logs.join('\n'));
		assert.equal(server.child.exitCode, null);
	});
});

/** A local HTTP server for one model file; `chunked` leaves out Content-Length (no size known before writing). */
async function modelServer(t, file) {
	const requests = [];
	const server = http.createServer((request, response) => {
		requests.push(request.url);
		const chunked = request.url.includes('chunked');
		response.writeHead(200, { 'Content-Type': 'application/octet-stream', ...(chunked ? {} : { 'Content-Length': statSync(file).size }) });
		createReadStream(file).pipe(response);
	});
	await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
	t.after(() => new Promise((resolve) => server.close(resolve)));
	return { requests, url: (name) => `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}/${name}` };
}

/** A 4 MiB tmpfs (the bundled target is 20 MB), or undefined where this user cannot mount one. */
async function smallDisk(t) {
	const folder = await mkdtemp(path.join(tmpdir(), 'repokv-full-disk-'));
	const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', folder], { encoding: 'utf8' });
	t.after(async () => {
		if (mount.status === 0) spawnSync('umount', ['-l', folder]);
		await rm(folder, { recursive: true, force: true });
	});
	return mount.status === 0 ? folder : undefined;
}

describe('faults: disk full while downloading a model', () => {
	test('size known: refused before the first byte; size unknown: ENOSPC mid-write; both a clear error, no file left; then it downloads elsewhere and serves', async (t) => {
		const disk = await smallDisk(t);
		if (disk === undefined) {
			t.skip('mounting a small tmpfs needs root');
			return;
		}
		const models = await modelServer(t, targetModelPath);
		const roomy = await tempFolder(t, 'repokv-roomy-');
		for (const name of ['target.gguf', 'chunked/target.gguf']) {
			const settings = { threads: 1, completion: { maxTokens: 4 }, model: { target: models.url(name), downloadFolder: disk, downloadTimeoutSeconds: 60 } };
			const server = await startServer({ settings, allowNetwork: true });
			const error = await server.waitForStatus((s) => s.state === 'error' || s.state === 'ready', 60_000);
			assert.equal(error.state, 'error', JSON.stringify(error));
			assert.match(error.message, /disk is full/, name);
			assert.match(error.fixHint, /downloadFolder/);
			assert.deepEqual(readdirSync(disk), [], `${name}: a partial file was left in the download folder`);
			assert.equal(server.child.exitCode, null);
			if (name.startsWith('chunked')) {
				// The same server, pointed at a disk with room: downloads, loads and completes.
				settings.model.downloadFolder = roomy;
				await server.connection.sendNotification('workspace/didChangeConfiguration', { settings: null });
				await server.waitForStatus((s) => s.state === 'ready' && s.message === 'ready', 120_000);
				assert.ok(existsSync(path.join(roomy, 'target.gguf')));
				assert.equal(statSync(path.join(roomy, 'target.gguf')).size, statSync(targetModelPath).size);
				await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: fimDoc } });
				assert.ok(Array.isArray((await completeOnce(server)).items));
			}
			// Only the download the test asked for, to the local server.
			const attempts = server.privacy().attempts;
			assert.ok(attempts.length > 0 && attempts.every((attempt) => attempt.kind === 'connect' && ['127.0.0.1', undefined].includes(attempt.target.host)), JSON.stringify(attempts));
			await server.stop();
		}
		assert.ok(models.requests.length >= 3, JSON.stringify(models.requests));
	});
});

describe('faults: the sidecar killed (SIGKILL), restarted with backoff, the mirror resent', () => {
	/**
	 * The extension's recovery, run with its own parts: the real feed (extension/src/feed.ts under the vscode stub)
	 * and the real restart policy (extension/src/backoff.ts). When the process dies, sidecar.ts disposes the feed,
	 * waits the backoff, starts a new process and a new feed whose rescan sends the workspace as it is on disk then.
	 */
	async function killAndRestart(t, { killWhen, files = [] }) {
		const { WorkspaceFeed, vscode } = await loadFeed();
		const { RestartBackoff, backoffMs } = await loadBackoff();
		const root = await tempFolder(t, 'repokv-restart-');
		await cp(needleWorkspace, root, { recursive: true });
		for (const [relative, text] of files) {
			await mkdir(path.dirname(path.join(root, relative)), { recursive: true });
			await writeFile(path.join(root, relative), text);
		}
		const trace = `${root}-prompts.jsonl`;
		t.after(() => rm(trace, { force: true }));
		const env = { REPOKV_TRACE_PROMPTS: trace, REPOKV_TEST_HOOKS: '1' };
		const settings = { threads: 1, completion: { maxTokens: 6 } };
		const mainText = await readFile(path.join(root, 'src/main.ts'), 'utf8');
		const open = async (server) => {
			await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: mainText } });
		};
		const request = (server) => server.connection.sendRequest('textDocument/inlineCompletion', { textDocument: { uri: server.uri('src/main.ts') }, position: { line: 9, character: 31 }, context: { triggerKind: 1 } });
		const startWithFeed = async () => {
			const server = await startServer({ settings, workspace: root, env });
			const feed = new WorkspaceFeed(vscode.Uri.file(root), feedConfig(), (params) => server.connection.sendNotification('repokv/workspace/didChangeFiles', params), vscode.logChannel());
			return { server, feed };
		};

		const first = await startWithFeed();
		const startedAt = Date.now();
		await first.server.waitForStatus((s) => s.state === 'ready' || s.state === 'error', 120_000);
		await first.feed.rescan();
		await open(first.server);
		const inFlight = killWhen === 'completion' ? request(first.server).then(() => 'answered', () => 'connection lost') : undefined;
		if (killWhen === 'completion') {
			await first.server.waitForStatus((s) => s.state === 'prefilling', 60_000);
		} else {
			await first.server.waitForStatus((s) => s.state === 'indexing', 60_000);
		}
		first.child = first.server.child;
		first.child.kill('SIGKILL');
		const exit = await first.server.exited;
		assert.equal(exit.signal, 'SIGKILL');
		// sidecar.ts: the connection closed (the client disposes it, failing what was pending), the feed is disposed,
		// a restart is scheduled.
		first.feed.dispose();
		first.server.connection.dispose();
		if (inFlight !== undefined) assert.equal(await inFlight, 'connection lost');
		const backoff = new RestartBackoff();
		const delay = backoff.next(startedAt);
		assert.equal(delay, backoffMs[0]);
		// Edits while it is down: a new value in another file, a new file, a deleted one.
		await writeFile(path.join(root, 'src/config.ts'), (await readFile(path.join(root, 'src/config.ts'), 'utf8')).replace('4817', '5923'));
		await writeFile(path.join(root, 'src/added-while-down.ts'), 'export const ADDED_WHILE_DOWN = true;\n');
		await rm(path.join(root, 'src/orders.ts'), { force: true });
		const downAt = Date.now();
		await new Promise((resolve) => setTimeout(resolve, delay));

		const second = await startWithFeed();
		t.after(() => second.server.stop());
		t.after(() => second.feed.dispose());
		assert.ok(Date.now() - downAt >= backoffMs[0]);
		await second.server.waitForStatus((s) => s.state === 'ready' || s.state === 'error', 120_000);
		await second.feed.rescan();
		await open(second.server);
		const mirror = await second.server.connection.sendRequest('repokv/debug/mirror', {});
		const paths = mirror.files.map((file) => file.path);
		assert.ok(paths.includes('src/added-while-down.ts') && !paths.includes('src/orders.ts'), JSON.stringify(paths));
		const result = await request(second.server);
		const prompts = readFileSync(trace, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line).prompt);
		const last = prompts.at(-1);
		assert.match(last, /RETRY_LIMIT_MS = 5923/, 'the completion after the restart does not see the edit made while it was down');
		assert.doesNotMatch(last, /4817/);
		return { completion: result.items[0]?.insertText ?? '', restartDelayMs: delay };
	}

	test('mid-completion: restarted after the first backoff step; the next completion sees the edits made while it was down', async (t) => {
		const { completion } = await killAndRestart(t, { killWhen: 'completion' });
		assert.match(completion, /^5923/);
	});

	test('mid-indexing: the same, with a workspace large enough to be caught indexing', async (t) => {
		const files = Array.from({ length: 600 }, (_, index) => [`gen/module${index}.ts`, `export const value${index} = ${index};\n`.repeat(20)]);
		await killAndRestart(t, { killWhen: 'indexing', files });
	});
});

describe('faults: not enough memory for the requested context', () => {
	test('a clear error naming the largest context that fits, before anything is allocated; that context then loads', async (t) => {
		// A machine with little memory left, simulated: room for the weights, the buffers and about 1,000 tokens of KV.
		const { kvBytesPerToken, overheadBytes } = sidecar.memoryCheck;
		const weights = statSync(targetModelPath).size + statSync(draftModelPath).size;
		const info = await import('node-llama-cpp').then(({ readGgufFileInfo }) => readGgufFileInfo(targetModelPath, { readTensorInfo: false }));
		// The bundled target is llama-family: one KV head count for every layer.
		const arch = /** @type {{ block_count: number, embedding_length: number, attention: { head_count: number, head_count_kv: number, key_length?: number } }} */ (info.metadata[info.metadata.general.architecture]);
		const perToken = kvBytesPerToken({ layers: arch.block_count, kvHeads: arch.attention.head_count_kv, headDim: arch.attention.key_length ?? arch.embedding_length / arch.attention.head_count });
		const limit = weights + overheadBytes + perToken * 1100;
		const settings = { threads: 1, contextSize: 1 << 20 };
		const server = await startServer({ settings, env: { REPOKV_MEMORY_LIMIT_BYTES: String(limit) } });
		t.after(() => server.stop());
		const error = await server.waitForStatus((s) => s.state === 'error' || s.state === 'ready', 60_000);
		assert.equal(error.state, 'error', JSON.stringify(error));
		assert.match(error.message, /not enough memory for a context of \d+ tokens/);
		const largest = Number(/largest context that fits is about (\d+) tokens/.exec(error.message)?.[1]);
		// About 1,100 tokens of room (more when SpecKV's draft is not loaded: its weights are then room too), in steps of 256.
		assert.ok(largest >= 1024 && largest < 4096 && largest % 256 === 0, error.message);
		assert.match(error.fixHint, new RegExp(`repokv\\.contextSize to ${largest}`));
		assert.equal(server.child.exitCode, null);
		// The user follows the hint: that context loads and completes.
		settings.contextSize = largest;
		await server.connection.sendNotification('workspace/didChangeConfiguration', { settings: null });
		await server.waitForStatus((s) => s.state === 'ready' && s.message === 'ready', 60_000);
		const status = await server.connection.sendRequest('repokv/status');
		assert.ok(status.engine.contextSize <= largest, JSON.stringify(status.engine));
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: fimDoc } });
		assert.ok(Array.isArray((await completeOnce(server)).items));
	});
});
