import fs from 'node:fs';
import path from 'node:path';
import { CodeServer } from './lib/code-server.mjs';

// The extension-host suite (test/e2e/suite) inside code-server's real extension host, through the smoke-test
// driver's payload (docs/e2e.md): the page reports the run's exit code through window.codeAutomationExit.

// `files`: the suite files to run (test/e2e/suite/index.cjs reads them from REPOKV_E2E_SUITE_FILES); `name`: the run's
// folder under outDir; `environment`: more variables for the extension host.
export async function runExtensionHostSuite({ root, tools, outDir, workspace, files = ['extension.test.cjs'], name = 'exthost', environment = {}, timeoutMs = 300000 }) {
	const runDir = path.join(outDir, name);
	const report = path.join(runDir, 'mocha.json');
	const server = new CodeServer({ tools, runDir });
	try {
		await server.start({ folder: workspace, extraArgs: ['--vscode-option', 'enable-smoke-test-driver'] });
		const remote = (p) => `vscode-remote://127.0.0.1:${server.port}${p}`;
		const payload = [
			['extensionDevelopmentPath', remote(root)],
			['extensionTestsPath', remote(path.join(root, 'test', 'e2e', 'suite', 'index.cjs'))],
			['extensionEnvironment', JSON.stringify({ REPOKV_E2E_MOCHA_REPORT: report, REPOKV_E2E_SUITE_FILES: files.join(','), ...environment })],
		];
		const browser = await server.openBrowser(path.join(runDir, 'chromium'));
		const page = browser.pages()[0] ?? await browser.newPage();
		const logs = [];
		let resolveExit;
		const exit = new Promise((resolve) => { resolveExit = resolve; });
		await page.exposeFunction('codeAutomationExit', (code) => { resolveExit(code); });
		await page.exposeFunction('codeAutomationLog', (level, args) => { logs.push(`${level}: ${Array.isArray(args) ? args.join(' ') : String(args)}`); });
		await page.goto(`${server.url}/?folder=${encodeURIComponent(workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`);
		const code = await Promise.race([exit, new Promise((resolve) => setTimeout(() => resolve('timeout'), timeoutMs))]);
		await page.screenshot({ path: path.join(runDir, 'exthost.png') }).catch(() => undefined);
		fs.writeFileSync(path.join(runDir, 'exthost.log'), logs.join('\n'));
		const details = fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, 'utf8')) : undefined;
		const lines = details ? details.results.map((result) => `${result.outcome === 'pass' ? '✔' : '✖'} ${result.title}${result.error ? `: ${result.error}` : ''}`) : [];
		if (code === 'timeout') throw new Error(`the extension-host suite did not finish in ${timeoutMs / 60000} minutes\n${lines.join('\n')}`);
		const passed = details?.results.filter((result) => result.outcome === 'pass').length ?? 0;
		if (code !== 0) throw new Error(`exit code ${code}; ${details ? `${details.failures} failed` : 'no report'}\n    ${lines.join('\n    ')}`);
		return `${passed} tests passed in the extension host:\n    ${lines.join('\n    ')}`;
	} finally {
		await server.stop();
	}
}
