// Faults and privacy inside the real extension host (code-server; test/e2e/run.mjs step `faults`), on a copy of the
// needle workspace. The sidecar the extension spawns inherits the extension host's environment, so the suite sets,
// before restarting it, the net-guard preload (test/support/net-guard.mjs: every connect, listen, UDP and DNS call
// logged with its pid) and REPOKV_TRACE_PROMPTS (every prompt an engine is given). Then:
// - secret and git-ignored files, even open in an editor and asked for a completion, never reach a prompt;
// - the sidecar killed with SIGKILL mid-completion comes back by itself after the extension's backoff, and the new
//   process, fed again, completes with an edit made on disk while the old one was down;
// - no sidecar process attempted a network call or held an inet or listening socket (its sockets in /proc are
//   sampled every 250 ms throughout).
'use strict';
/* global suite, suiteSetup, suiteTeardown, test -- mocha's tdd interface */

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const vscode = require('vscode');

const id = 'repokv.repokv';
const repoRoot = path.join(__dirname, '..', '..', '..');
/** Markers of the fixture's private files: `.env` (secret) and `deploy-token.json` (in its .gitignore). */
const secretMarkers = ['FAKE-ENV-KEY-5f3d8e21', 'FAKE-DEPLOY-TOKEN-7c1e9a2b'];

async function until(predicate, timeoutMs, what) {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		const value = await predicate();
		if (value) return value;
		await new Promise((resolve) => setTimeout(resolve, 200));
	}
	throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

suite('repokv faults and privacy in the extension host', () => {
	let api;
	let privacy;
	const stamp = `${process.pid}-${Date.now()}`;
	const netLog = path.join(os.tmpdir(), `repokv-e2e-net-${stamp}.jsonl`);
	const promptLog = path.join(os.tmpdir(), `repokv-e2e-prompts-${stamp}.jsonl`);
	/** Every sidecar process seen, and what /proc showed of their sockets. */
	const sidecarPids = new Set();
	const sockets = [];
	let sampler;
	const root = () => vscode.workspace.workspaceFolders[0].uri;
	const sidecarPid = () => {
		const running = api.sidecar.running();
		return 'client' in running ? running.client.serverProcess?.pid : undefined;
	};
	const ready = () => api.sidecar.view.kind === 'running' && api.sidecar.view.status.state === 'ready' && api.sidecar.feedStats !== undefined;
	const prompts = () => (fs.existsSync(promptLog) ? fs.readFileSync(promptLog, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line).prompt) : []);

	/** Ghost text at a position, through the language client's own provider (repokv's middleware included). */
	async function complete(document, position) {
		const running = api.sidecar.running();
		if (!('client' in running)) return '';
		const provider = running.client.getFeature('textDocument/inlineCompletion').getProvider(document);
		if (!provider) return '';
		const result = await provider.provideInlineCompletionItems(document, position, { triggerKind: vscode.InlineCompletionTriggerKind.Invoke, selectedCompletionInfo: undefined }, new vscode.CancellationTokenSource().token);
		const items = Array.isArray(result) ? result : result?.items ?? [];
		return items.map((item) => (typeof item.insertText === 'string' ? item.insertText : item.insertText.value)).join('|');
	}

	/** The first request after a document opens can come back empty while the server prefills: retry for a minute. */
	async function completeUntilAnswered(document, position) {
		const deadline = Date.now() + 90000;
		let text = '';
		while (text === '' && Date.now() < deadline) {
			text = await complete(document, position).catch(() => '');
			if (text === '') await new Promise((resolve) => setTimeout(resolve, 1000));
		}
		return text;
	}

	suiteSetup(async function () {
		this.timeout(240000);
		privacy = await import(pathToFileURL(path.join(repoRoot, 'test', 'support', 'privacy.mjs')).href);
		api = await vscode.extensions.getExtension(id).activate();
		// The language client forks the sidecar with this process's environment: the next one runs guarded and traced.
		Object.assign(process.env, privacy.guardEnv(netLog), { REPOKV_TRACE_PROMPTS: promptLog });
		await api.sidecar.restart();
		await until(ready, 180000, 'a ready sidecar with the workspace fed, after the restart');
		const environ = fs.readFileSync(`/proc/${sidecarPid()}/environ`, 'utf8');
		assert.ok(environ.includes(privacy.netGuardPath), 'the sidecar runs with the net-guard preload');
		assert.ok(environ.includes(`REPOKV_TRACE_PROMPTS=${promptLog}`), 'the sidecar traces its prompts');
		sampler = setInterval(() => {
			const pid = sidecarPid();
			if (pid === undefined) return;
			sidecarPids.add(pid);
			const { inet, listening } = privacy.socketsOf(pid);
			sockets.push(...inet.map((entry) => ({ pid, ...entry })), ...listening.map((entry) => ({ pid, ...entry })));
		}, 250);
	});

	suiteTeardown(() => {
		clearInterval(sampler);
		fs.rmSync(netLog, { force: true });
		fs.rmSync(promptLog, { force: true });
	});

	test('secret and git-ignored files never reach a prompt, even open and asked for a completion', async function () {
		this.timeout(240000);
		const main = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(root(), 'src', 'main.ts'));
		await vscode.window.showTextDocument(main);
		assert.match(await completeUntilAnswered(main, new vscode.Position(9, 31)), /^4817/, 'the needle from src/config.ts');
		for (const name of ['.env', 'deploy-token.json']) {
			const document = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(root(), name));
			await vscode.window.showTextDocument(document);
			const end = document.lineAt(document.lineCount - 1).range.end;
			assert.equal(await complete(document, end), '', `no completion inside ${name}`);
			assert.equal(await complete(document, new vscode.Position(0, 4)), '', `no completion inside ${name}`);
		}
		const traced = prompts();
		assert.ok(traced.length >= 1, 'prompts were traced');
		assert.ok(traced.some((prompt) => prompt.includes('RETRY_LIMIT_MS = 4817')), 'the public files are in the prompts (the check can fail)');
		for (const marker of secretMarkers) {
			assert.ok(!traced.some((prompt) => prompt.includes(marker)), `${marker} is in a prompt`);
		}
	});

	test('SIGKILL mid-completion: the sidecar comes back after the backoff and sees an edit made while it was down', async function () {
		this.timeout(300000);
		const main = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(root(), 'src', 'main.ts'));
		await vscode.window.showTextDocument(main);
		const seen = [];
		const subscription = api.sidecar.onDidChangeView((view) => seen.push(view.kind === 'running' ? `running:${view.status.state}` : view.kind === 'restarting' ? `restarting:${view.inSeconds}s` : view.kind));
		const config = path.join(root().fsPath, 'src', 'config.ts');
		const original = fs.readFileSync(config, 'utf8');
		try {
			const pid = sidecarPid();
			assert.ok(pid, 'the sidecar has a process');
			// A completion in flight when the process dies (another cursor than the first test's, so no cached answer):
			// it must settle (empty or an error), not hang.
			const before = prompts().length;
			const inFlight = complete(main, new vscode.Position(9, 30)).then((text) => `answered ${JSON.stringify(text)}`, (error) => `failed: ${error.message}`);
			await until(() => prompts().length > before, 30000, 'the completion to reach the engine');
			process.kill(pid, 'SIGKILL');
			await until(() => api.sidecar.view.kind === 'restarting', 15000, 'the restarting state');
			// Edited on disk while no sidecar runs (not through the editor: nothing is open on it).
			fs.writeFileSync(config, original.replace('RETRY_LIMIT_MS = 4817', 'RETRY_LIMIT_MS = 5923'));
			assert.equal(api.sidecar.view.kind, 'restarting', 'the edit was made while the sidecar was down');
			const settled = await Promise.race([inFlight, new Promise((resolve) => setTimeout(() => resolve('still pending'), 30000))]);
			assert.notEqual(settled, 'still pending', 'the completion in flight settles');
			await until(() => ready() && sidecarPid() !== pid, 180000, `ready again with a new process (views: ${seen.join(' → ')})`);
			assert.ok(seen.some((view) => view.startsWith('restarting:')), `a visible backoff: ${seen.join(' → ')}`);
			const afterRestart = prompts().length;
			assert.match(await completeUntilAnswered(main, new vscode.Position(9, 31)), /^5923/, 'the new process has the edit');
			const last = prompts().slice(afterRestart).at(-1) ?? '';
			assert.ok(last.includes('RETRY_LIMIT_MS = 5923') && !last.includes('4817'), 'its prompt has the new value and not the old');
		} finally {
			subscription.dispose();
			fs.writeFileSync(config, original);
		}
	});

	test('no sidecar attempted a network call or held an inet or listening socket', () => {
		clearInterval(sampler);
		// The guard works under this host's Node: a child with the same environment that connects is recorded.
		const probe = require('node:child_process').spawnSync(process.execPath, ['-e', "require('node:net').connect(9, '127.0.0.1').on('error', () => {})"], { env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' }, timeout: 20000 });
		assert.ok(privacy.networkAttempts(netLog).some((attempt) => attempt.pid === probe.pid && attempt.kind === 'connect'), `the guard recorded the probe's connect (status ${probe.status}, ${String(probe.stderr)})`);
		assert.ok(sidecarPids.size >= 2, `sampled ${sidecarPids.size} sidecar processes (before and after the kill)`);
		const attempts = privacy.networkAttempts(netLog).filter((attempt) => sidecarPids.has(attempt.pid));
		assert.deepEqual(attempts, [], 'network attempts by the sidecar');
		assert.deepEqual(sockets, [], 'inet or listening sockets of the sidecar');
		const environ = fs.readFileSync(`/proc/${sidecarPid()}/environ`, 'utf8');
		assert.ok(environ.includes(privacy.netGuardPath), 'the restarted sidecar ran guarded too');
	});
});
