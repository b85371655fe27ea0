// Privacy, proven on the prompts themselves: the sidecar (and the CLI) run with REPOKV_TRACE_PROMPTS, which appends
// every prompt an engine receives to a file, and with the net-guard preload (test/support/net-guard.mjs). The client
// here is hostile: it sends every file of the workspace, secrets and ignored files included, opens them in the
// editor and asks for completions inside them. No prompt may contain a line of any of them; the public files must
// be there (so the check can fail); no network attempt and no inet or listening socket (checked in stop() as well).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';

import { startServer, workspaceFiles } from '../support/lsp-client.mjs';
import { guardEnv, networkAttempts } from '../support/privacy.mjs';
import { cliPath, tempFolder } from '../support/sidecar.mjs';

const publicMarker = 'PUBLIC_RETRY_LIMIT_MS = 4817';
/** Files that must never reach a prompt, each with its own marker. */
const hidden = {
	'.env': 'API_KEY=SECRET_MARKER_DOTENV_91',
	'config/secrets.json': '{"token": "SECRET_MARKER_JSON_92"}',
	id_rsa: '-----BEGIN OPENSSH PRIVATE KEY----- SECRET_MARKER_KEY_93',
	'.ssh/config': 'Host x IdentityFile SECRET_MARKER_SSH_94',
	'deploy/prod.pem': 'SECRET_MARKER_PEM_95',
	'private/notes.ts': 'export const IGNORED_MARKER_GITIGNORE_96 = 1;',
	'src/generated.ts': 'export const IGNORED_MARKER_REPOKVIGNORE_97 = 2;',
	'node_modules/pkg/index.js': 'module.exports = "IGNORED_MARKER_NODE_MODULES_98";',
};
const markers = Object.values(hidden).map((text) => /(SECRET|IGNORED)_MARKER_[A-Z_]+_\d+/.exec(text)[0]);

async function makeWorkspace(t) {
	const root = await tempFolder(t, 'repokv-privacy-');
	const files = {
		'.gitignore': 'private/\n',
		'.repokvignore': 'src/generated.ts\n',
		'src/config.ts': `export const ${publicMarker};\n`,
		'src/main.ts': "import { PUBLIC_RETRY_LIMIT_MS } from './config';\n\nexport function retry() {\n\treturn PUBLIC_RETRY_LIMIT_MS + \n}\n",
		...hidden,
	};
	for (const [relative, text] of Object.entries(files)) {
		await mkdir(path.dirname(path.join(root, relative)), { recursive: true });
		await writeFile(path.join(root, relative), text);
	}
	return root;
}

function tracedPrompts(traceFile) {
	assert.ok(existsSync(traceFile), 'no prompt was traced: REPOKV_TRACE_PROMPTS is not wired');
	return readFileSync(traceFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line).prompt);
}

function assertClean(prompts) {
	for (const [index, prompt] of prompts.entries()) {
		for (const marker of markers) {
			assert.ok(!prompt.includes(marker), `prompt ${index} contains ${marker}:\n${prompt.slice(0, 3000)}`);
		}
	}
}

describe('privacy: no secret or ignored file in any prompt, no network', () => {
	test('language server: a client that sends and opens every file, and asks for completions inside secrets', async (t) => {
		const root = await makeWorkspace(t);
		const traceFile = path.join(root, '..', `${path.basename(root)}-prompts.jsonl`);
		t.after(() => spawnSync('rm', ['-f', traceFile]));
		const server = await startServer({ settings: { threads: 1, completion: { maxTokens: 8 }, ask: { maxTokens: 8 } }, workspace: root, env: { REPOKV_TRACE_PROMPTS: traceFile } });
		t.after(() => server.stop());
		await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error');
		assert.notEqual(server.statuses.at(-1).state, 'error', JSON.stringify(server.statuses.at(-1)));
		const files = await workspaceFiles(root);
		assert.equal(files.length, 12, 'the client sends everything, hidden files included');
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: files, batch: { index: 0, count: 1, totalFiles: files.length }, reset: true });
		// The user opens the secrets too (an open document overlays the mirror).
		for (const relative of Object.keys(hidden)) {
			await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri(relative), languageId: 'plaintext', version: 1, text: `${hidden[relative]}\n` } });
		}
		const main = files.find((file) => file.path === 'src/main.ts');
		await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri: server.uri('src/main.ts'), languageId: 'typescript', version: 1, text: main.text } });
		const complete = (relative, position) => server.connection.sendRequest('textDocument/inlineCompletion', { textDocument: { uri: server.uri(relative) }, position, context: { triggerKind: 1 } });
		await complete('src/main.ts', { line: 3, character: 31 });
		for (const relative of Object.keys(hidden)) {
			const inside = await complete(relative, { line: 0, character: 5 });
			assert.deepEqual(inside, { items: [] }, `a completion inside ${relative} was answered`);
		}
		await server.connection.sendRequest('repokv/repo/ask', { question: 'where is the API key and PUBLIC_RETRY_LIMIT_MS?', maxTokens: 4 });
		await complete('src/main.ts', { line: 3, character: 31 });

		const prompts = tracedPrompts(traceFile);
		assert.ok(prompts.length >= 3, `only ${prompts.length} prompts traced`);
		assert.ok(prompts.some((prompt) => prompt.includes(publicMarker)), 'the public file is in no prompt: the check could not fail');
		assertClean(prompts);
		const seen = server.privacy();
		assert.deepEqual(seen.attempts, [], 'network attempts');
		assert.deepEqual(seen.sockets, [], 'inet or listening sockets');
	});

	test('command line: repokv complete and repokv ask read the workspace without secrets and touch no network', async (t) => {
		const root = await makeWorkspace(t);
		const traceFile = path.join(root, '..', `${path.basename(root)}-cli-prompts.jsonl`);
		const netLog = path.join(root, '..', `${path.basename(root)}-cli-net.jsonl`);
		t.after(() => spawnSync('rm', ['-f', traceFile, netLog]));
		const env = { ...process.env, ...guardEnv(netLog), REPOKV_TRACE_PROMPTS: traceFile };
		for (const args of [
			['complete', '--workspace', root, '--file', 'src/main.ts', '--line', '4', '--column', '32', '--threads', '1', '--max-tokens', '8'],
			['complete', '--workspace', root, '--file', '.env', '--line', '1', '--column', '3', '--threads', '1', '--max-tokens', '8'],
			['ask', '--workspace', root, '--question', 'what is the API key?', '--threads', '1', '--max-tokens', '4'],
		]) {
			const result = spawnSync(process.execPath, [cliPath, ...args], { env, encoding: 'utf8', timeout: 180_000 });
			if (args.includes('.env')) {
				assert.notEqual(result.status, 0, `completing inside .env ran: ${result.stdout}`);
				assert.match(result.stderr, /secret|ignored/i);
			} else {
				assert.equal(result.status, 0, result.stderr);
			}
		}
		const prompts = tracedPrompts(traceFile);
		assert.ok(prompts.length >= 2 && prompts.some((prompt) => prompt.includes(publicMarker)), `${prompts.length} prompts`);
		assertClean(prompts);
		assert.deepEqual(networkAttempts(netLog), []);
	});
});
