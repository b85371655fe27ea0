// A tiny step runner for the E2E driver: each step passes, fails with a message, or is skipped with a reason
// (skipped steps are never counted as passed). The summary prints at the end, one line per step.

export class Steps {
	results = [];

	async run(name, fn, { timeoutMs = 120000 } = {}) {
		const started = Date.now();
		process.stdout.write(`▶ ${name}\n`);
		let timer;
		try {
			const detail = await Promise.race([
				fn(),
				new Promise((_, reject) => { timer = setTimeout(() => { reject(new Error(`timed out after ${timeoutMs / 1000} s`)); }, timeoutMs); }),
			]);
			this.add(name, 'pass', typeof detail === 'string' ? detail : '', started);
			return true;
		} catch (error) {
			if (error instanceof Skip) {
				this.add(name, 'skip', error.message, started);
			} else {
				this.add(name, 'fail', error instanceof Error ? error.message : String(error), started);
			}
			return false;
		} finally {
			clearTimeout(timer);
		}
	}

	add(name, outcome, detail, started) {
		const seconds = ((Date.now() - started) / 1000).toFixed(1);
		this.results.push({ name, outcome, detail, seconds });
		const mark = { pass: '✔', fail: '✖', skip: '﹣' }[outcome];
		process.stdout.write(`${mark} ${name} (${seconds} s)${detail ? `: ${detail}` : ''}\n`);
	}

	summary() {
		const count = (outcome) => this.results.filter((result) => result.outcome === outcome).length;
		const lines = ['', 'E2E summary:'];
		for (const { name, outcome, detail } of this.results) lines.push(`  ${outcome.toUpperCase().padEnd(4)} ${name}${detail && outcome !== 'pass' ? ` — ${detail}` : ''}`);
		const failed = count('fail');
		lines.push(`E2E ${failed === 0 ? 'PASSED' : 'FAILED'}: ${count('pass')} passed, ${failed} failed, ${count('skip')} skipped (skipped steps are not passes)`);
		return { text: lines.join('\n'), failed };
	}
}

/** Thrown by a step that cannot run here (not a failure, not a pass). */
export class Skip extends Error {}

export async function waitFor(predicate, { timeoutMs, intervalMs = 250, what }) {
	const deadline = Date.now() + timeoutMs;
	let last;
	while (Date.now() < deadline) {
		last = await predicate();
		if (last) return last;
		await new Promise((resolve) => setTimeout(resolve, intervalMs));
	}
	throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}
