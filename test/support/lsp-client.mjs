// A real LSP client for the integration tests: spawns `node bin/repokv.js serve --stdio` and talks JSON-RPC to it
// with vscode-jsonrpc's Node connection, the same library vscode-languageclient is built on.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';

import { guardEnv, networkAttempts, socketsOf } from './privacy.mjs';
import { cliPath, needleWorkspace } from './sidecar.mjs';

/**
 * Start the server and initialize it. Returns the connection, the child process, collected notifications, and
 * helpers. `settings` go to initializationOptions (and answer workspace/configuration).
 */
export async function startServer({ settings = {}, workspace = needleWorkspace, lazyModelLoad = false, env = {}, allowNetwork = false, feedsWorkspace = true, cli = cliPath, watchesFiles = false } = {}) {
	// Privacy, checked for every server the integration tests start (test/support/privacy.mjs): the net-guard preload
	// logs every network attempt, and the kernel's view of its sockets is sampled while it runs. `stop()` fails the
	// test on any attempt, inet socket or listening socket, unless the test asked for a download (`allowNetwork`).
	const netLog = path.join(tmpdir(), `repokv-net-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.jsonl`);
	const child = spawn(process.execPath, [cli, 'serve', '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...guardEnv(netLog), ...env } });
	const observedSockets = [];
	const sampler = setInterval(() => {
		const { inet, listening } = socketsOf(child.pid);
		observedSockets.push(...inet, ...listening.filter((entry) => entry.table === 'unix'));
	}, 250);
	sampler.unref();
	child.once('exit', () => clearInterval(sampler));
	const privacy = () => ({ attempts: networkAttempts(netLog), sockets: [...observedSockets, ...socketsOf(child.pid).inet, ...socketsOf(child.pid).listening] });
	let stderr = '';
	child.stderr.on('data', (chunk) => {
		stderr += chunk;
	});
	const connection = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
	const statuses = [];
	const snapshots = [];
	const logs = [];
	const progress = new Map();
	connection.onNotification('repokv/status/didChange', (params) => void statuses.push(params));
	connection.onNotification('repokv/cache/didChange', (params) => void snapshots.push(params));
	connection.onNotification('window/logMessage', (params) => void logs.push(params.message));
	connection.onNotification('$/progress', ({ token, value }) => {
		if (!progress.has(token)) {
			progress.set(token, []);
		}
		progress.get(token).push(value);
	});
	connection.onRequest('workspace/configuration', (params) => params.items.map(() => settings));
	const registrations = [];
	connection.onRequest('client/registerCapability', (params) => {
		registrations.push(...(params?.registrations ?? []));
		return null;
	});
	connection.onRequest('window/workDoneProgress/create', () => null);
	connection.listen();
	const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

	const rootUri = pathToFileURL(workspace).href;
	const initialize = await connection.sendRequest('initialize', {
		processId: process.pid,
		rootUri,
		workspaceFolders: [{ uri: rootUri, name: 'workspace' }],
		// `watchesFiles`: the client offers to register workspace/didChangeWatchedFiles (and then must send it).
		capabilities: { workspace: { configuration: true, ...(watchesFiles ? { didChangeWatchedFiles: { dynamicRegistration: true } } : {}) }, window: { workDoneProgress: true } },
		// `feedsWorkspace`: the tests send the files themselves (repokv/workspace/didChangeFiles), as the extension
		// does; `false` makes the server read the workspace folder from disk, as for any other editor.
		initializationOptions: { settings, lazyModelLoad, feedsWorkspace },
	});
	await connection.sendNotification('initialized', {});

	return {
		connection,
		child,
		initialize,
		statuses,
		snapshots,
		registrations,
		logs,
		progress,
		exited,
		stderr: () => stderr,
		uri: (relative) => pathToFileURL(path.join(workspace, relative)).href,
		/** Wait until a status notification satisfies `predicate` (or time out). */
		async waitForStatus(predicate, timeoutMs = 60_000) {
			const deadline = Date.now() + timeoutMs;
			for (;;) {
				const found = statuses.find(predicate);
				if (found !== undefined) {
					return found;
				}
				if (Date.now() > deadline) {
					throw new Error(`no matching status in ${timeoutMs} ms; got ${JSON.stringify(statuses.map((s) => s.state))}; stderr: ${stderr}`);
				}
				await new Promise((resolve) => setTimeout(resolve, 50));
			}
		},
		/** Network attempts (from the guard's log) and inet or listening sockets seen so far. */
		privacy,
		async stop() {
			const seen = privacy();
			rmSync(netLog, { force: true });
			try {
				await Promise.race([connection.sendRequest('shutdown'), new Promise((resolve) => setTimeout(resolve, 5000))]);
				await connection.sendNotification('exit');
			} catch {
				// Already gone.
			}
			const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
			await exited;
			clearTimeout(timer);
			connection.dispose();
			if (!allowNetwork && (seen.attempts.length > 0 || seen.sockets.length > 0)) {
				throw new Error(`privacy: the sidecar used the network: ${JSON.stringify(seen).slice(0, 2000)}`);
			}
		},
	};
}

/** Every file of a folder (recursive, no filtering: the server must apply the rules), as protocol file contents. */
export async function workspaceFiles(root) {
	const out = [];
	const walk = async (folder) => {
		for (const entry of await readdir(path.join(root, folder), { withFileTypes: true })) {
			const relative = folder === '' ? entry.name : `${folder}/${entry.name}`;
			if (entry.isDirectory()) {
				await walk(relative);
			} else if (entry.isFile()) {
				out.push({ path: relative, text: await readFile(path.join(root, relative), 'utf8'), version: 1, mtimeMs: 0 });
			}
		}
	};
	await walk('');
	return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}
