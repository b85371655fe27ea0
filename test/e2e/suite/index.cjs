// Entry point of the extension-host suite (`extensionTestsPath`): runs the mocha tests in this folder inside the
// real extension host, writing a JSON report to REPOKV_E2E_MOCHA_REPORT when set. Loaded by code-server through
// the smoke-test payload (test/e2e/exthost.mjs) or by @vscode/test-electron (test/e2e/electron.mjs).
'use strict';

const path = require('node:path');
const fs = require('node:fs');
const Mocha = require(path.join(__dirname, '..', '..', '..', 'node_modules', 'mocha'));

exports.run = function run() {
	const mocha = new Mocha({ ui: 'tdd', timeout: 120000, color: false });
	// Which files: REPOKV_E2E_SUITE_FILES (comma-separated, set by test/e2e/exthost.mjs), else the main suite.
	for (const file of (process.env.REPOKV_E2E_SUITE_FILES || 'extension.test.cjs').split(',')) mocha.addFile(path.join(__dirname, file));
	return new Promise((resolve, reject) => {
		const results = [];
		const runner = mocha.run((failures) => {
			const report = process.env.REPOKV_E2E_MOCHA_REPORT;
			if (report) fs.writeFileSync(report, JSON.stringify({ failures, results }, null, 1));
			if (failures > 0) reject(new Error(`${failures} extension-host tests failed`));
			else resolve();
		});
		runner.on('pass', (test) => results.push({ title: test.fullTitle(), outcome: 'pass', ms: test.duration }));
		runner.on('fail', (test, error) => results.push({ title: test.fullTitle(), outcome: 'fail', error: String(error && error.message) }));
	});
};
