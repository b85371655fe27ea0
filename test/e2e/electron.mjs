#!/usr/bin/env node
// The same extension-host suite (test/e2e/suite) under @vscode/test-electron, against the minimum supported VS Code
// (package.json engines) and stable, for machines that can download VS Code. Here (no access to
// update.code.visualstudio.com) it reports that it could not run: exit code 3, "SKIPPED", never a pass.
//
// Usage: node test/e2e/electron.mjs [--version 1.91.0|stable]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTests } from '@vscode/test-electron';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const minimum = manifest.engines.vscode.replace(/^\^/, '');
const versionArg = process.argv.indexOf('--version');
const versions = versionArg > 0 ? [process.argv[versionArg + 1]] : [minimum, 'stable'];

export async function runElectron() {
	const outcomes = [];
	for (const version of versions) {
		try {
			await runTests({
				version,
				extensionDevelopmentPath: root,
				extensionTestsPath: path.join(root, 'test', 'e2e', 'suite', 'index.cjs'),
				launchArgs: [path.join(root, 'test', 'fixtures', 'workspace-needle'), '--disable-extensions', '--disable-workspace-trust'],
				cachePath: path.join(root, '.cache', 'vscode-test'),
			});
			outcomes.push({ version, outcome: 'pass' });
		} catch (error) {
			const message = error instanceof Error ? error.message : String(error);
			const offline = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|getaddrinfo|Failed to get|download|socket hang up/i.test(message);
			outcomes.push({ version, outcome: offline ? 'skip' : 'fail', message: message.split('\n')[0] });
			if (offline) break;
		}
	}
	return outcomes;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const outcomes = await runElectron();
	for (const { version, outcome, message } of outcomes) {
		console.log(`${outcome === 'pass' ? 'PASSED' : outcome === 'skip' ? 'SKIPPED (not a pass): could not download VS Code' : 'FAILED'} ${version}${message ? `: ${message}` : ''}`);
	}
	process.exitCode = outcomes.some((o) => o.outcome === 'fail') ? 1 : outcomes.some((o) => o.outcome === 'skip') ? 3 : 0;
}
