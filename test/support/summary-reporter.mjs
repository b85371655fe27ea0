// A Node test-runner reporter that prints one summary line at the very end of the output, after the spec
// reporter's list of failures, so the totals are the last thing a person (or a CI log tail) sees.
// Used by `npm test` next to the spec reporter: --test-reporter=spec --test-reporter=./test/support/summary-reporter.mjs
export default async function* summaryReporter(source) {
	const totals = {};
	for await (const event of source) {
		// The runner reports its totals as diagnostics such as "tests 33", "pass 32", "fail 1".
		if (event.type === 'test:diagnostic') {
			const match = /^(tests|pass|fail|cancelled|skipped|todo|duration_ms) ([\d.]+)$/.exec(event.data.message);
			if (match) {
				totals[match[1]] = Number(match[2]);
			}
		}
	}
	const seconds = ((totals.duration_ms ?? 0) / 1000).toFixed(1);
	const verdict = (totals.fail ?? 0) + (totals.cancelled ?? 0) === 0 ? 'PASSED' : 'FAILED';
	yield `\nrepokv tests ${verdict}: ${totals.tests ?? 0} tests, ${totals.pass ?? 0} passed, ${totals.fail ?? 0} failed, ${totals.cancelled ?? 0} cancelled, ${totals.skipped ?? 0} skipped, ${totals.todo ?? 0} todo (${seconds} s)\n`;
}
