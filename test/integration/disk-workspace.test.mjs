// The server reads the workspace from disk for a client that does not feed it (any editor but repokv's extension),
// with the CLI's rules, and follows the disk with its own watcher; a client that says it feeds the workspace
// (initializationOptions.feedsWorkspace, as the extension does) gets no disk reading at all. No model is loaded
// (lazyModelLoad); the mirror is read through the test hook (REPOKV_TEST_HOOKS=1).
import assert from 'node:assert/strict';
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

import { startServer } from '../support/lsp-client.mjs';
import { needleWorkspace, sidecar, tempFolder } from '../support/sidecar.mjs';

const hooks = { REPOKV_TEST_HOOKS: '1' };

async function mirrorFiles(server) {
	const { files } = await server.connection.sendRequest('repokv/debug/mirror');
	return new Map(files.map((file) => [file.path, file.text]));
}

async function until(predicate, what, timeoutMs = 15_000) {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const value = await predicate();
		if (value) {
			return value;
		}
		if (Date.now() > deadline) {
			throw new Error(`timed out waiting for ${what}`);
		}
		await new Promise((resolve) => setTimeout(resolve, 100));
	}
}

test('without a feed the server reads the workspace from disk with the CLI rules, and follows edits, new files and deletions', async (t) => {
	const folder = await tempFolder(t, 'repokv-disk-');
	const workspace = path.join(folder, 'ws');
	await cp(needleWorkspace, workspace, { recursive: true });
	await mkdir(path.join(workspace, 'dist'));
	await writeFile(path.join(workspace, 'dist', 'bundle.js'), 'ignored by .gitignore');
	const server = await startServer({ workspace, lazyModelLoad: true, feedsWorkspace: false, env: hooks, settings: { threads: 1 } });
	t.after(() => server.stop());
	const expected = (await sidecar.readWorkspace(workspace)).files.map((file) => file.path).sort();
	const files = await until(async () => {
		const current = await mirrorFiles(server);
		return current.size > 0 ? current : undefined;
	}, 'the first disk read');
	assert.deepEqual([...files.keys()].sort(), expected, 'the same files as `repokv complete` reads');
	assert.ok(files.has('src/config.ts'));
	for (const left of ['.env', 'deploy-token.json', 'dist/bundle.js']) {
		assert.ok(!files.has(left), `${left} is left out`);
	}

	// An edit, a new file in a new folder, a deletion: the watcher sees them (debounced), the mirror follows.
	await writeFile(path.join(workspace, 'src', 'config.ts'), files.get('src/config.ts').replace('4817', '5123'));
	await mkdir(path.join(workspace, 'src', 'extra'));
	await writeFile(path.join(workspace, 'src', 'extra', 'new.ts'), 'export const NEW = 1;\n');
	await rm(path.join(workspace, 'src', 'queue.ts'));
	await until(async () => {
		const current = await mirrorFiles(server);
		return current.get('src/config.ts')?.includes('5123') && current.has('src/extra/new.ts') && !current.has('src/queue.ts');
	}, 'the edit, the new file and the deletion');

	// An open document overlays the disk text, also after the disk changes again.
	const uri = server.uri('src/config.ts');
	await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'typescript', version: 1, text: 'export const BUFFER = 1;\n' } });
	await until(async () => (await mirrorFiles(server)).get('src/config.ts') === 'export const BUFFER = 1;\n', 'the overlay');
	await writeFile(path.join(workspace, 'src', 'config.ts'), 'export const DISK = 2;\n');
	await new Promise((resolve) => setTimeout(resolve, 1500));
	assert.equal((await mirrorFiles(server)).get('src/config.ts'), 'export const BUFFER = 1;\n', 'the buffer wins over the disk');
});

test('a client that can watch files registers workspace/didChangeWatchedFiles, and its events drive the re-read', async (t) => {
	const folder = await tempFolder(t, 'repokv-disk-');
	const workspace = path.join(folder, 'ws');
	await cp(needleWorkspace, workspace, { recursive: true });
	const server = await startServer({ workspace, lazyModelLoad: true, feedsWorkspace: false, watchesFiles: true, env: hooks, settings: { threads: 1 } });
	t.after(() => server.stop());
	await until(async () => (await mirrorFiles(server)).has('src/config.ts'), 'the first disk read');
	const registration = await until(() => server.registrations.find((entry) => entry.method === 'workspace/didChangeWatchedFiles'), 'the registration');
	assert.deepEqual(registration.registerOptions.watchers.map((watcher) => watcher.globPattern), ['**/*']);
	// No own watcher: an edit on disk shows only after the client reports it.
	await writeFile(path.join(workspace, 'src', 'config.ts'), 'export const RETRY_LIMIT_MS = 5123;\n');
	await new Promise((resolve) => setTimeout(resolve, 1000));
	assert.match((await mirrorFiles(server)).get('src/config.ts'), /4817/, 'the server did not watch by itself');
	await server.connection.sendNotification('workspace/didChangeWatchedFiles', { changes: [{ uri: server.uri('src/config.ts'), type: 2 }] });
	await until(async () => (await mirrorFiles(server)).get('src/config.ts')?.includes('5123'), 'the re-read after the client event');
});

test('a client that feeds the workspace (the extension) gets no disk reading', async (t) => {
	const server = await startServer({ lazyModelLoad: true, feedsWorkspace: true, env: hooks, settings: { threads: 1 } });
	t.after(() => server.stop());
	await new Promise((resolve) => setTimeout(resolve, 1500));
	assert.equal((await mirrorFiles(server)).size, 0);
});
