import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { launchChromium } from './chromium.mjs';
import { waitFor } from './steps.mjs';

// One code-server instance per run: fresh user-data, extensions and config folders and a scratch HOME, started
// detached so that its whole process group can be killed (killing only its pid leaves a watcher behind).

async function freePort() {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.listen(0, '127.0.0.1', () => {
			const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
			server.close(() => resolve(port));
		});
		server.on('error', reject);
	});
}

export class CodeServer {
	constructor({ tools, runDir, env = {}, settings = {} }) {
		this.tools = tools;
		this.runDir = runDir;
		this.env = env;
		this.dirs = { udd: path.join(runDir, 'udd'), exts: path.join(runDir, 'exts'), home: path.join(runDir, 'home'), config: path.join(runDir, 'cs.yaml') };
		fs.rmSync(runDir, { recursive: true, force: true });
		for (const dir of [this.dirs.udd, this.dirs.exts, this.dirs.home, path.join(this.dirs.udd, 'User')]) fs.mkdirSync(dir, { recursive: true });
		fs.writeFileSync(this.dirs.config, 'bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n');
		fs.writeFileSync(path.join(this.dirs.udd, 'User', 'settings.json'), JSON.stringify({
			'workbench.startupEditor': 'none',
			'chat.disableAIFeatures': true,
			'telemetry.telemetryLevel': 'off',
			'extensions.autoUpdate': false,
			'extensions.autoCheckUpdates': false,
			'typescript.disableAutomaticTypeAcquisition': true,
			'workbench.tips.enabled': false,
			'editor.inlineSuggest.enabled': true,
			'security.workspace.trust.enabled': false,
			'files.autoSave': 'off',
			'window.commandCenter': false,
			'git.enabled': false,
			// VS Code 1.139 opens an empty secondary side bar (chat) on first start; screenshots want the room.
			'workbench.secondarySideBar.defaultVisibility': 'hidden',
			'workbench.secondarySideBar.showLabels': false,
			...settings,
		}, null, 1));
		this.log = path.join(runDir, 'code-server.log');
	}

	baseArgs() {
		return [this.tools.codeServerEntry, '--user-data-dir', this.dirs.udd, '--extensions-dir', this.dirs.exts, '--config', this.dirs.config];
	}

	childEnv() {
		return { ...process.env, HOME: this.dirs.home, XDG_CONFIG_HOME: path.join(this.dirs.home, '.config'), XDG_DATA_HOME: path.join(this.dirs.home, '.local/share'), ...this.env };
	}

	installExtension(vsix) {
		return execFileSync(this.tools.node24Bin, [...this.baseArgs(), '--install-extension', vsix, '--force'], { env: this.childEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 });
	}

	async start({ folder, extraArgs = [], trust = false }) {
		this.port = await freePort();
		const out = fs.openSync(this.log, 'a');
		this.child = spawn(this.tools.node24Bin, [
			...this.baseArgs(), '--bind-addr', `127.0.0.1:${this.port}`, '--auth', 'none', '--disable-telemetry', '--disable-update-check',
			...(trust ? [] : ['--disable-workspace-trust']), '--disable-getting-started-override', ...extraArgs, folder,
		], { env: this.childEnv(), detached: true, stdio: ['ignore', out, out] });
		this.child.unref();
		const exited = new Promise((resolve) => this.child.once('exit', resolve));
		await Promise.race([
			waitFor(async () => {
				try {
					return (await fetch(`http://127.0.0.1:${this.port}/healthz`)).ok;
				} catch {
					return false;
				}
			}, { timeoutMs: 60000, what: 'code-server /healthz' }),
			exited.then((code) => { throw new Error(`code-server exited with ${code}; see ${this.log}`); }),
		]);
		this.url = `http://127.0.0.1:${this.port}`;
		return this.url;
	}

	async openBrowser(profile) {
		this.browser = await launchChromium(profile);
		return this.browser;
	}

	async stop() {
		await this.browser?.close().catch(() => undefined);
		if (this.child?.pid) {
			try {
				process.kill(-this.child.pid, 'SIGTERM');
			} catch {
				// already gone
			}
			await new Promise((resolve) => setTimeout(resolve, 500));
			try {
				process.kill(-this.child.pid, 'SIGKILL');
			} catch {
				// already gone
			}
		}
	}
}
