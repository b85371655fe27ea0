// The extension-host suite: commands, settings and the sidecar's restart, through the real VS Code API.
'use strict';
/* global suite, suiteSetup, test -- mocha's tdd interface */

const assert = require('node:assert/strict');
const vscode = require('vscode');

const id = 'repokv.repokv';
const commands = ['repokv.askRepository', 'repokv.showCacheInspector', 'repokv.restartSidecar', 'repokv.toggleCompletions', 'repokv.triggerCompletion'];

async function until(predicate, timeoutMs, what) {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		const value = predicate();
		if (value) return value;
		await new Promise((resolve) => setTimeout(resolve, 200));
	}
	throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

suite('repokv extension host', () => {
	let api;

	suiteSetup(async () => {
		const extension = vscode.extensions.getExtension(id);
		assert.ok(extension, `extension ${id} is loaded`);
		api = await extension.activate();
	});

	test('activates and exports its API', () => {
		assert.ok(api.sidecar, 'api.sidecar');
		assert.match(api.statusText().text, /repokv/);
	});

	test('registers every contributed command', async () => {
		const all = new Set(await vscode.commands.getCommands(true));
		for (const command of commands) assert.ok(all.has(command), command);
		const manifest = vscode.extensions.getExtension(id).packageJSON;
		const contributed = manifest.contributes.commands.map((command) => command.command);
		for (const command of contributed) assert.ok(all.has(command), `contributed ${command} is registered`);
		assert.ok(manifest.contributes.keybindings.some((binding) => binding.key === 'alt+\\' && binding.command === 'repokv.triggerCompletion'), 'Alt+\\ triggers');
	});

	test('contributes at most a dozen grouped settings, each with its default', () => {
		const groups = vscode.extensions.getExtension(id).packageJSON.contributes.configuration;
		const keys = groups.flatMap((group) => Object.keys(group.properties));
		assert.ok(groups.length >= 2, 'grouped');
		assert.ok(keys.length <= 12, `${keys.length} settings`);
		const config = vscode.workspace.getConfiguration('repokv');
		assert.equal(config.get('completion.enabled'), true);
		assert.equal(config.get('completion.trigger'), 'automatic');
		assert.equal(config.get('engine'), 'llama');
		assert.equal(api.sidecar.config.completion.maxTokens, 64);
	});

	test('a wrongly typed setting falls back to its default', async () => {
		const config = vscode.workspace.getConfiguration('repokv');
		await config.update('completion.maxTokens', 'many', vscode.ConfigurationTarget.Global);
		try {
			await until(() => vscode.workspace.getConfiguration('repokv').get('completion.maxTokens') === 'many', 5000, 'the setting to apply');
			assert.equal(api.sidecar.config.completion.maxTokens, 64);
			await config.update('completion.maxTokens', 32, vscode.ConfigurationTarget.Global);
			await until(() => api.sidecar.config.completion.maxTokens === 32, 5000, 'maxTokens 32 in the typed config');
		} finally {
			await config.update('completion.maxTokens', undefined, vscode.ConfigurationTarget.Global);
		}
	});

	test('Toggle Completions flips the setting and the status bar says so', async () => {
		await vscode.commands.executeCommand('repokv.toggleCompletions');
		await until(() => api.sidecar.config.completion.enabled === false, 5000, 'completions off');
		await until(() => api.statusText().text.includes('$(circle-slash)'), 5000, 'the status bar to show completions off');
		await vscode.commands.executeCommand('repokv.toggleCompletions');
		await until(() => api.sidecar.config.completion.enabled === true, 5000, 'completions on again');
		assert.ok(!api.statusText().text.includes('$(circle-slash)'));
	});

	test('commands explain themselves while the sidecar is stopped', async () => {
		await api.sidecar.stop('stopped by the test');
		const running = api.sidecar.running();
		assert.ok('reason' in running, 'no client while stopped');
		assert.match(running.reason, /not running \(stopped by the test\)/);
		assert.match(api.statusText().text, /stopped/);
		// Ask must not throw or hang while the sidecar is down.
		await vscode.commands.executeCommand('repokv.askRepository', 'anything');
	});

	test('Restart Sidecar brings the sidecar back to ready', async function () {
		this.timeout(180000);
		const seen = [];
		const subscription = api.sidecar.onDidChangeView((view) => seen.push(view.kind === 'running' ? `running:${view.status.state}` : view.kind));
		try {
			await vscode.commands.executeCommand('repokv.restartSidecar');
			await until(() => {
				const view = api.sidecar.view;
				if (view.kind === 'failed' || view.kind === 'restarting') throw new Error(`the sidecar did not start: ${view.reason} (views: ${seen.join(' → ')})`);
				return view.kind === 'running' && view.status.state === 'ready';
			}, 150000, 'state ready after restart');
			assert.ok(seen.includes('starting'), `went through starting: ${seen.join(' → ')}`);
			assert.ok('client' in api.sidecar.running());
		} finally {
			subscription.dispose();
		}
	});
});
