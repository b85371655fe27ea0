// A real third-party LSP client: headless Neovim (Debian's `neovim` package; .ci/run installs it) drives
// `repokv serve --stdio` with its own LSP client and nothing repokv-specific (test/fixtures/neovim/test-config.lua).
// No workspace feed: the server reads the folder from disk, so the completion at the needle's cursor must retrieve
// RETRY_LIMIT_MS's value from src/config.ts, as ghost text (textDocument/inlineCompletion) and as the first item of
// the completion menu (textDocument/completion, for editors without inline completions); then an edit on disk must
// show in the next completion.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cp, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

import { cliPath, needleWorkspace, repoRoot, tempFolder } from '../support/sidecar.mjs';

const nvim = spawnSync('nvim', ['--version'], { encoding: 'utf8' });
const hasNvim = nvim.status === 0;

test('Neovim (headless, its own LSP client) gets whole-workspace completions and sees edits on disk', { timeout: 420_000 }, async (t) => {
	if (!hasNvim) {
		console.log('SKIPPED: nvim is not installed (apt-get install -y neovim; .ci/run installs it)');
		t.skip('nvim is not installed');
		return;
	}
	const folder = await tempFolder(t, 'repokv-nvim-');
	const workspace = path.join(folder, 'workspace-needle');
	await cp(needleWorkspace, workspace, { recursive: true });
	const out = path.join(folder, 'result.json');
	const config = path.join(repoRoot, 'test/fixtures/neovim/test-config.lua');
	const child = spawn('nvim', ['--headless', '--clean', '-u', config], {
		cwd: workspace,
		env: { ...process.env, REPOKV_NODE: process.execPath, REPOKV_CLI: cliPath, REPOKV_WORKSPACE: workspace, REPOKV_OUT: out, XDG_STATE_HOME: folder, XDG_CACHE_HOME: folder },
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	let output = '';
	child.stdout.on('data', (chunk) => (output += chunk));
	child.stderr.on('data', (chunk) => (output += chunk));
	const timer = setTimeout(() => child.kill('SIGKILL'), 400_000);
	const code = await new Promise((resolve) => child.once('exit', resolve));
	clearTimeout(timer);
	const result = JSON.parse(await readFile(out, 'utf8').catch(() => '{}'));
	const context = `nvim exit ${code}; result ${JSON.stringify(result)}; output ${output.slice(-2000)}`;
	assert.equal(result.error, undefined, context);
	assert.match(result.first ?? '', /^4817/, context);
	assert.match(result.menu ?? '', /^4817/, context);
	assert.match(result.second ?? '', /^5123/, context);
});
