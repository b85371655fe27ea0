#!/usr/bin/env node
// `npm run test:e2e`: repokv in a real VS Code (code-server, driven by Debian's Chromium through playwright-core;
// docs/e2e.md). Steps, each time-boxed, each reported as passed, failed (with the reason) or skipped (never a pass):
//   setup     Node 24 + code-server cached under .cache/<name>-<version> (minutes once, then instant)
//   package   npm run package: the .vsix under test
//   webview   the cache inspector in Chromium at 64 layers × 32 heads, screenshots
//   ui        code-server + the installed .vsix on the needle fixture: ghost text `4817` accepted with Tab and saved,
//             the inspector with the last completion's numbers, Ask the Repository with a citation; screenshots
//   restricted the .vsix in an untrusted workspace: nothing streamed, and the status bar and log say so
//   exthost   the mocha suite (test/e2e/suite) inside code-server's extension host: commands, settings, restart
//   faults    test/e2e/suite/faults.test.cjs in the extension host: the sidecar killed (SIGKILL) mid-completion comes
//             back by itself and sees an edit made while it was down; no network attempt or socket from the
//             sidecar, and no secret or ignored file's text in any prompt it was given
//   electron  the same suite under @vscode/test-electron, which needs to download VS Code (skipped offline)
// Screenshots and logs: .test-output/e2e/ (gitignored).
//
// Usage: node test/e2e/run.mjs [--only step,step] [--no-package]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runElectron } from './electron.mjs';
import { runExtensionHostSuite } from './exthost.mjs';
import { CodeServer } from './lib/code-server.mjs';
import { ensureTools } from './lib/setup.mjs';
import { Skip, Steps, waitFor } from './lib/steps.mjs';
import { Ui } from './ui.mjs';
import { testWebview } from './webview.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const outDir = path.join(root, '.test-output', 'e2e');
const onlyArg = process.argv.indexOf('--only');
const only = onlyArg > 0 ? new Set(process.argv[onlyArg + 1].split(',')) : undefined;
const want = (name) => !only || only.has(name);
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const vsix = path.join(root, `repokv-${manifest.version}-linux-x64.vsix`);
const fixture = path.join(root, 'test', 'fixtures', 'workspace-needle');

function copyFixture(to) {
	fs.rmSync(to, { recursive: true, force: true });
	fs.cpSync(fixture, to, { recursive: true });
	return to;
}

const steps = new Steps();
const started = Date.now();
fs.mkdirSync(outDir, { recursive: true });
let tools;

await steps.run('setup: Node 24, code-server, Chromium', () => {
	tools = ensureTools(root, (line) => { console.log(line); });
	return `code-server ${path.relative(root, tools.codeServerEntry)}`;
}, { timeoutMs: 15 * 60000 });

if (want('package') && !process.argv.includes('--no-package')) {
	await steps.run('package: npm run package', () => {
		const output = execFileSync('npm', ['run', '--silent', 'package'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
		return output.trim().split('\n').find((line) => line.includes('.vsix:')) ?? 'packaged';
	}, { timeoutMs: 5 * 60000 });
}

if (want('webview')) {
	await steps.run('webview: cache inspector in Chromium (64 layers × 32 heads)', () => testWebview({ root, outDir }), { timeoutMs: 120000 });
}

if (want('ui')) {
	const runDir = path.join(outDir, 'ui');
	const shots = path.join(runDir, 'screenshots');
	/** @type {CodeServer | undefined} */
	let server;
	let ui;
	const ok = await steps.run('ui: install the .vsix and open the needle workspace in code-server', async () => {
		if (!tools) throw new Skip('setup failed');
		if (!fs.existsSync(vsix)) throw new Error(`${path.relative(root, vsix)} is missing (npm run package)`);
		server = new CodeServer({ tools, runDir, env: { REPOKV_E2E_STATE_FILE: path.join(runDir, 'state.json') } });
		fs.mkdirSync(shots, { recursive: true });
		const installed = server.installExtension(vsix);
		if (!/successfully installed/i.test(installed)) throw new Error(`install failed: ${installed}`);
		const workspace = copyFixture(path.join(runDir, 'ws'));
		await server.start({ folder: workspace });
		const browser = await server.openBrowser(path.join(runDir, 'chromium'));
		const page = browser.pages()[0] ?? await browser.newPage();
		await page.setViewportSize({ width: 1400, height: 900 });
		ui = new Ui({ server, page, workspace, stateFile: path.join(runDir, 'state.json'), shots, root });
		return ui.openWorkbench();
	}, { timeoutMs: 180000 });
	if (ok) {
		await steps.run('ui: the sidecar starts, loads the bundled model and takes the workspace', () => ui.waitSidecarReady(150000), { timeoutMs: 160000 });
		await steps.run('ui: typing at src/main.ts 10:32 shows ghost text beginning with 4817 (automatic trigger)', () => ui.typedGhostText(), { timeoutMs: 150000 });
		await steps.run('ui: Alt+\\ at src/main.ts 10:32 shows ghost text beginning with 4817; Tab accepts; saved to disk', () => ui.ghostText(), { timeoutMs: 200000 });
		await steps.run('ui: cache inspector shows the last completion', () => ui.inspector(), { timeoutMs: 90000 });
		await steps.run('ui: Ask the Repository answers with a clickable citation', () => ui.ask(), { timeoutMs: 300000 });
	}
	await server?.stop();
}

if (want('restricted')) {
	await steps.run('restricted mode: an untrusted workspace streams nothing and the status bar says so', async () => {
		if (!tools) throw new Skip('setup failed');
		if (!fs.existsSync(vsix)) throw new Error(`${path.relative(root, vsix)} is missing (npm run package)`);
		const runDir = path.join(outDir, 'restricted');
		const stateFile = path.join(runDir, 'state.json');
		const server = new CodeServer({ tools, runDir, env: { REPOKV_E2E_STATE_FILE: stateFile }, settings: { 'security.workspace.trust.enabled': true, 'security.workspace.trust.startupPrompt': 'never', 'security.workspace.trust.emptyWindow': false } });
		try {
			server.installExtension(vsix);
			await server.start({ folder: copyFixture(path.join(runDir, 'ws')), trust: true });
			const browser = await server.openBrowser(path.join(runDir, 'chromium'));
			const page = browser.pages()[0] ?? await browser.newPage();
			await page.setViewportSize({ width: 1400, height: 900 });
			const ui = new Ui({ server, page, workspace: path.join(runDir, 'ws'), stateFile, shots: runDir, root });
			await ui.openWorkbench();
			const state = await waitFor(() => {
				const current = ui.state();
				return current?.view?.kind === 'running' ? current : false;
			}, { timeoutMs: 60000, what: 'the sidecar to run' });
			const shot = await ui.shot('restricted');
			if (state.feed !== null) throw new Error(`the feed ran in restricted mode: ${JSON.stringify(state.feed)}`);
			if (!state.status.text.includes('$(shield)') || !/Restricted mode/.test(state.status.tooltip)) throw new Error(`the status bar does not say so: ${state.status.text} / ${state.status.tooltip}`);
			if (!/restricted mode/.test(ui.logTail(40))) throw new Error('the log does not say so');
			return `no file fed; status "${state.status.text}"; ${shot}`;
		} finally {
			await server.stop();
		}
	}, { timeoutMs: 180000 });
}

if (want('exthost')) {
	await steps.run('exthost: mocha suite in code-server\'s extension host (commands, settings, restart)', () => {
		if (!tools) throw new Skip('setup failed');
		return runExtensionHostSuite({ root, tools, outDir, workspace: copyFixture(path.join(outDir, 'exthost-ws')) });
	}, { timeoutMs: 360000 });
}

if (want('faults')) {
	await steps.run('faults: SIGKILLed sidecar restarted and fed again; no network, no secret in a prompt (extension host)', () => {
		if (!tools) throw new Skip('setup failed');
		return runExtensionHostSuite({ root, tools, outDir, workspace: copyFixture(path.join(outDir, 'faults-ws')), files: ['faults.test.cjs'], name: 'faults', timeoutMs: 420000 });
	}, { timeoutMs: 480000 });
}

if (want('electron')) {
	await steps.run('electron: the same suite under @vscode/test-electron', async () => {
		const outcomes = await runElectron();
		const failed = outcomes.filter((o) => o.outcome === 'fail');
		if (failed.length > 0) throw new Error(failed.map((o) => `${o.version}: ${o.message}`).join('; '));
		const skipped = outcomes.find((o) => o.outcome === 'skip');
		if (skipped) throw new Skip(`could not download VS Code ${skipped.version} here (${skipped.message}); run it where update.code.visualstudio.com is reachable`);
		return outcomes.map((o) => `${o.version} passed`).join(', ');
	}, { timeoutMs: 90000 });
}

const { text, failed } = steps.summary();
console.log(text);
console.log(`E2E took ${((Date.now() - started) / 1000).toFixed(0)} s; screenshots and logs under ${path.relative(root, outDir)}/`);
process.exit(failed > 0 ? 1 : 0);
