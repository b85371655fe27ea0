// Short, seeded subsets of the fuzzers in test/fuzz/ (`npm run fuzz` runs them at full size): the real server on the
// bundled models gets a few hundred malformed and adversarial LSP messages and must answer every request; random
// edit, rename and delete sequences go through the extension's feed to the mirror in-process and to the running
// server, and both must equal the disk after every step.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { runLspFuzz } from '../fuzz/lsp.fuzz.mjs';
import { runWorkspaceFuzz } from '../fuzz/workspace.fuzz.mjs';
import { startServer } from '../support/lsp-client.mjs';

describe('fuzz (seeded subsets)', () => {
	test('LSP: 400 malformed or adversarial messages, every request answered, exit 0 after shutdown', async () => {
		const result = await runLspFuzz({ messages: 400, seed: 20261203, responseTimeoutMs: 60_000 });
		assert.equal(result.crashes, 0);
		assert.ok(result.messages >= 400, JSON.stringify(result));
		assert.ok(result.byKind.responses > 50, JSON.stringify(result.byKind));
		assert.ok(result.byKind.framingGarbage > 0 && result.byKind.completion > 0, JSON.stringify(result.byKind));
	});

	test('a broken header followed by a request in the same write: the request is still answered', async (t) => {
		const server = await startServer({ settings: { threads: 1 }, lazyModelLoad: true });
		t.after(() => server.stop());
		await server.waitForStatus((s) => s.state === 'ready');
		const body = JSON.stringify({ jsonrpc: '2.0', id: 'after-bad-header', method: 'repokv/status' });
		let answered = false;
		server.child.stdout.on('data', (chunk) => {
			answered ||= chunk.includes('after-bad-header');
		});
		// vscode-jsonrpc's own reader leaves the second message unread until the client writes again.
		server.child.stdin.write(`Content-Length 10\r\nhello\r\n\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
		const deadline = Date.now() + 5000;
		while (!answered && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
		assert.ok(answered, 'the request after a broken header was not answered');
	});

	test('a document opened with text that is not a string: its completions answer empty and never reset the engine', async (t) => {
		const server = await startServer({ settings: { threads: 1, completion: { maxTokens: 4 } } });
		t.after(() => server.stop());
		await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error', 120_000);
		for (const [index, text] of [null, 5, [1, 'a'], { a: 1 }].entries()) {
			const uri = server.uri(`src/junk${index}.ts`);
			await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'typescript', version: 1, text } });
			const answer = await server.connection.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 0, character: 0 }, context: { triggerKind: 1 } });
			assert.deepEqual(answer, { items: [] }, JSON.stringify(text));
		}
		// Each used to throw inside the engine job, which reloads the model as if the engine had failed (the LSP
		// fuzz's RSS grew with the reloads).
		assert.deepEqual(server.logs.filter((line) => /engine reset|failed/.test(line)), []);
		assert.equal((await server.connection.sendRequest('repokv/status')).state, 'ready');
	});

	test('workspace feed: 150 random edit/rename/delete steps; the mirror (in-process and the server\'s) equals the disk after each', async (t) => {
		const server = await startServer({ settings: { threads: 1, limits: { maxFileBytes: 2048 } }, lazyModelLoad: true, env: { REPOKV_TEST_HOOKS: '1' } });
		t.after(() => server.stop());
		await server.waitForStatus((s) => s.state === 'ready');
		const counts = await runWorkspaceFuzz({ steps: 150, seed: 20261203, server });
		assert.equal(counts.steps, 150);
		assert.ok(counts.rename + counts.renameFolder > 0 && counts.deleteFolder > 0 && counts.writeIgnore > 0, JSON.stringify(counts));
	});
});
