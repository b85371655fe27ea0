// The extension-host suite: commands, settings and the sidecar's restart, through the real VS Code API.
'use strict';
/* global suite, suiteSetup, teardown, test -- mocha's tdd interface */

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

	test('contributes grouped settings, each with its default and description; the compressed engine by default', () => {
		const groups = vscode.extensions.getExtension(id).packageJSON.contributes.configuration;
		const properties = Object.assign({}, ...groups.map((group) => group.properties));
		assert.ok(groups.length >= 2, 'grouped');
		// the twelve of the first release and the six KV settings of the native engine (issue 14): a new setting is
		// added here deliberately, not by accident
		assert.deepEqual(Object.keys(properties).sort(), [
			'repokv.completion.disabledLanguages', 'repokv.completion.enabled', 'repokv.completion.maxTokens', 'repokv.completion.trigger',
			'repokv.contextSize', 'repokv.device', 'repokv.engine',
			'repokv.kv.budgetPercent', 'repokv.kv.draftLayout', 'repokv.kv.masterPrecision', 'repokv.kv.policy', 'repokv.kv.precision', 'repokv.kv.split',
			'repokv.model.draft', 'repokv.model.target', 'repokv.threads', 'repokv.trace.server', 'repokv.workspace.exclude', 'repokv.workspace.maxFileKB', 'repokv.workspace.maxTotalMB',
		]);
		for (const [key, property] of Object.entries(properties)) {
			assert.ok('default' in property && (property.description || property.markdownDescription), `${key}: a default and a description`);
		}
		const config = vscode.workspace.getConfiguration('repokv');
		assert.equal(config.get('completion.enabled'), true);
		assert.equal(config.get('completion.trigger'), 'automatic');
		assert.equal(config.get('engine'), 'native');
		assert.equal(config.get('kv.policy'), 'speckv');
		assert.equal(config.get('kv.budgetPercent'), 12);
		assert.equal(config.get('kv.precision'), 'mixed');
		assert.equal(api.sidecar.config.completion.maxTokens, 64);
		assert.deepEqual(api.sidecar.config.kv, { policy: 'speckv', budgetPercent: 12, split: 'default', precision: 'mixed', draftLayout: 'prefix-last', masterPrecision: 'kivi4' });
	});

	test('a KV setting reaches the sidecar and applies without a model reload', async function () {
		this.timeout(180000);
		const config = vscode.workspace.getConfiguration('repokv');
		const status = () => (api.sidecar.view.kind === 'running' ? api.sidecar.view.status : undefined);
		await until(() => status()?.state === 'ready' && status()?.kvCache !== undefined, 150000, 'the sidecar ready with its KV cache in the status');
		const states = [];
		const subscription = api.sidecar.onDidChangeView((view) => states.push(view.kind === 'running' ? view.status.state : view.kind));
		try {
			await config.update('kv.budgetPercent', 6, vscode.ConfigurationTarget.Global);
			// the server's own status says what it applied: the setting went through toServerSettings and workspace/configuration
			await until(() => status()?.kvCache?.budgetPercent === 6, 30000, 'kvCache.budgetPercent 6 in the sidecar status');
			assert.ok(!states.includes('loadingModel'), `no model load: ${states.join(' → ')}`);
		} finally {
			subscription.dispose();
			await config.update('kv.budgetPercent', undefined, vscode.ConfigurationTarget.Global);
		}
		await until(() => status()?.kvCache?.budgetPercent === 12, 30000, 'back to 12');
	});

	test('a draft of another vocabulary: the status bar warns that SpecKV is off, with the fix', async function () {
		this.timeout(180000);
		const os = require('node:os');
		const path = require('node:path');
		const { writeGguf, GGUF } = await import(path.join(__dirname, '..', '..', '..', 'native', 'test-fixtures', 'gguf-writer.mjs'));
		const draft = path.join(os.tmpdir(), `repokv-e2e-foreign-${process.pid}.gguf`);
		writeGguf(draft, [
			{ key: 'general.architecture', type: GGUF.STRING, value: 'llama' },
			{ key: 'tokenizer.ggml.model', type: GGUF.STRING, value: 'gpt2' },
			{ key: 'tokenizer.ggml.tokens', type: GGUF.ARRAY, itemType: GGUF.STRING, value: ['a', 'b', 'c'] },
			{ key: 'tokenizer.ggml.token_type', type: GGUF.ARRAY, itemType: GGUF.INT32, value: [1, 1, 1] },
		], []);
		const config = vscode.workspace.getConfiguration('repokv');
		const status = () => (api.sidecar.view.kind === 'running' ? api.sidecar.view.status : undefined);
		await until(() => status()?.state === 'ready' && status()?.kvCache !== undefined, 150000, 'the sidecar ready');
		try {
			await config.update('model.draft', draft, vscode.ConfigurationTarget.Global);
			await until(() => status()?.kvCache?.fallback !== undefined, 30000, 'kvCache.fallback in the sidecar status');
			assert.equal(status().kvCache.policy, 'snapkv', 'still compressed');
			const shown = api.statusText();
			assert.match(shown.text, /\$\(warning\)/);
			assert.match(shown.tooltip, /SpecKV is off: the draft model .*repokv-e2e-foreign.*cannot be paired with the target/);
			assert.match(shown.tooltip, /Fix: set repokv\.model\.draft to a GGUF draft with the target's vocabulary/);
		} finally {
			await config.update('model.draft', undefined, vscode.ConfigurationTarget.Global);
		}
		await until(() => status()?.kvCache?.policy === 'speckv' && status()?.kvCache?.fallback === undefined, 60000, 'SpecKV back with the bundled draft');
		assert.doesNotMatch(api.statusText().text, /\$\(warning\)/);
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
	test('a crashed sidecar comes back by itself, after a visible backoff', async function () {
		this.timeout(180000);
		const seen = [];
		const subscription = api.sidecar.onDidChangeView((view) => seen.push(view.kind === 'running' ? `running:${view.status.state}` : view.kind === 'restarting' ? `restarting:${view.inSeconds}s` : view.kind));
		try {
			const { client } = api.sidecar.running();
			const pid = client.serverProcess?.pid;
			assert.ok(pid, 'the sidecar has a process');
			process.kill(pid, 'SIGKILL');
			await until(() => seen.some((kind) => kind.startsWith('restarting:')), 15000, 'the restarting state');
			assert.match(api.statusText().text, /restarting in/);
			await until(() => api.sidecar.view.kind === 'running' && api.sidecar.view.status.state === 'ready', 150000, `ready again (views: ${seen.join(' → ')})`);
			assert.notEqual(api.sidecar.running().client.serverProcess?.pid, pid, 'a new process');
		} finally {
			subscription.dispose();
		}
	});
});

suite('repokv workspace feed', () => {
	let api;

	suiteSetup(async () => {
		api = await vscode.extensions.getExtension(id).activate();
		await until(() => api.sidecar.view.kind === 'running' && api.sidecar.view.status.state === 'ready' && api.sidecar.feedStats, 150000, 'a ready sidecar with the workspace fed');
	});

	test('leaves out secret-looking and git-ignored files', () => {
		// The needle fixture has a .env (secret) and deploy-token.json (listed in its .gitignore).
		const { skipped, files } = api.sidecar.feedStats;
		assert.ok((skipped.secret ?? 0) >= 1, `secret skipped: ${JSON.stringify(skipped)}`);
		assert.ok((skipped.ignored ?? 0) >= 1, `ignored skipped: ${JSON.stringify(skipped)}`);
		assert.ok(files >= 6, `${files} files fed`);
	});

	test('a new file reaches the sidecar as a delta, a deleted one leaves it', async () => {
		const root = vscode.workspace.workspaceFolders[0].uri;
		const mirrored = () => (api.sidecar.view.kind === 'running' ? api.sidecar.view.status.workspace?.files : undefined);
		const before = await until(() => mirrored(), 10000, 'the mirror size in the status');
		const file = vscode.Uri.joinPath(root, 'src', 'e2e-extra.ts');
		await vscode.workspace.fs.writeFile(file, new TextEncoder().encode('export const EXTRA = 1;\n'));
		await until(() => mirrored() === before + 1, 20000, `the mirror to grow from ${before} files`);
		await vscode.workspace.fs.delete(file);
		await until(() => mirrored() === before, 20000, `the mirror to shrink back to ${before} files`);
	});
});

suite('repokv inline completion gating', () => {
	let api;
	let provider;
	let document;
	const position = new vscode.Position(9, 31); // src/main.ts 10:32, after `assert.equal(RETRY_LIMIT_MS, `
	const context = (kind) => ({ triggerKind: kind, selectedCompletionInfo: undefined });
	const ask = async (kind) => {
		const result = await provider.provideInlineCompletionItems(document, position, context(kind), new vscode.CancellationTokenSource().token);
		const items = Array.isArray(result) ? result : result?.items ?? [];
		return items.map((item) => (typeof item.insertText === 'string' ? item.insertText : item.insertText.value)).join('|');
	};
	// The first request after a document opens can be answered empty while the server prefills it (as in the UI
	// test, which retries Alt+\): retry a positive expectation for up to a minute.
	const askUntilAnswered = async (kind) => {
		const deadline = Date.now() + 60000;
		let text = '';
		while (text === '' && Date.now() < deadline) {
			text = await ask(kind);
			if (text === '') await new Promise((resolve) => setTimeout(resolve, 1000));
		}
		return text;
	};
	const set = (key, value) => vscode.workspace.getConfiguration('repokv').update(key, value, vscode.ConfigurationTarget.Global);

	suiteSetup(async () => {
		api = await vscode.extensions.getExtension(id).activate();
		await until(() => api.sidecar.view.kind === 'running' && api.sidecar.view.status.state === 'ready', 150000, 'a ready sidecar');
		document = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(vscode.workspace.workspaceFolders[0].uri, 'src', 'main.ts'));
		await vscode.window.showTextDocument(document);
		// The language client's own provider: calling it runs repokv's middleware, as VS Code's call does.
		const { client } = api.sidecar.running();
		provider = client.getFeature('textDocument/inlineCompletion').getProvider(document);
		assert.ok(provider, 'the server registered inline completion for TypeScript');
	});

	teardown(async () => {
		await set('completion.disabledLanguages', undefined);
		await set('completion.trigger', undefined);
		await set('completion.enabled', undefined);
	});

	test('an explicit request gets the needle from the real sidecar', async () => {
		assert.match(await askUntilAnswered(vscode.InlineCompletionTriggerKind.Invoke), /^4817/);
	});

	test('a disabled language gets nothing', async () => {
		await set('completion.disabledLanguages', ['typescript']);
		await until(() => api.sidecar.config.completion.disabledLanguages.includes('typescript'), 5000, 'the setting');
		assert.equal(await ask(vscode.InlineCompletionTriggerKind.Invoke), '');
	});

	test('manual trigger mode answers Alt+\\ (Invoke) but not typing (Automatic)', async () => {
		await set('completion.trigger', 'manual');
		await until(() => api.sidecar.config.completion.trigger === 'manual', 5000, 'the setting');
		assert.equal(await ask(vscode.InlineCompletionTriggerKind.Automatic), '');
		assert.match(await askUntilAnswered(vscode.InlineCompletionTriggerKind.Invoke), /^4817/);
	});

	test('completions off gets nothing', async () => {
		await set('completion.enabled', false);
		await until(() => api.sidecar.config.completion.enabled === false, 5000, 'the setting');
		assert.equal(await ask(vscode.InlineCompletionTriggerKind.Invoke), '');
	});
});
