import fs from 'node:fs';
import path from 'node:path';
import { CodeServer } from './lib/code-server.mjs';

// The extension-host suite (test/e2e/suite) inside code-server's real extension host, through the smoke-test
// driver's payload (docs/e2e.md): the page reports the run's exit code through window.codeAutomationExit.

export async function runExtensionHostSuite({ root, tools, outDir, workspace }) {
	const runDir = path.join(outDir, 'exthost');
	const report = path.join(runDir, 'mocha.json');
	const server = new CodeServer({ tools, runDir });
	try {
		await server.start({ folder: workspace, extraArgs: ['--vscode-option', 'enable-smoke-test-driver'] });
		const remote = (p) => `vscode-remote://127.0.0.1:${server.port}${p}`;
		const payload = [
			['extensionDevelopmentPath', remote(root)],
			['extensionTestsPath', remote(path.join(root, 'test', 'e2e', 'suite', 'index.cjs'))],
			['extensionEnvironment', JSON.stringify({ REPOKV_E2E_MOCHA_REPORT: report })],
		];
		const browser = await server.openBrowser(path.join(runDir, 'chromium'));
		const page = browser.pages()[0] ?? await browser.newPage();
		const logs = [];
		let resolveExit;
		const exit = new Promise((resolve) => { resolveExit = resolve; });
		await page.exposeFunction('codeAutomationExit', (code) => { resolveExit(code); });
		await page.exposeFunction('codeAutomationLog', (level, args) => { logs.push(`${level}: ${Array.isArray(args) ? args.join(' ') : String(args)}`); });
		await page.goto(`${server.url}/?folder=${encodeURIComponent(workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`);
		const code = await Promise.race([exit, new Promise((resolve) => setTimeout(() => resolve('timeout'), 300000))]);
		await page.screenshot({ path: path.join(runDir, 'exthost.png') }).catch(() => undefined);
		fs.writeFileSync(path.join(runDir, 'exthost.log'), logs.join('\n'));
		const details = fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, 'utf8')) : undefined;
		const lines = details ? details.results.map((result) => `${result.outcome === 'pass' ? '✔' : '✖'} ${result.title}${result.error ? `: ${result.error}` : ''}`) : [];
		if (code === 'timeout') throw new Error(`the extension-host suite did not finish in 5 minutes\n${lines.join('\n')}`);
		const passed = details?.results.filter((result) => result.outcome === 'pass').length ?? 0;
		if (code !== 0) throw new Error(`exit code ${code}; ${details ? `${details.failures} failed` : 'no report'}\n    ${lines.join('\n    ')}`);
		return `${passed} tests passed in the extension host:\n    ${lines.join('\n    ')}`;
	} finally {
		await server.stop();
	}
}
