// When the sidecar dies, the extension restarts it after a growing delay, and gives up after a few crashes in a row
// until the user restarts it; a sidecar that ran long enough without crashing resets the count. Kept apart from
// sidecar.ts (which needs VS Code) so the fault tests run the same policy under plain Node.

export const backoffMs: readonly number[] = [1000, 2000, 4000, 8000, 16000, 30000];
/** A sidecar that ran this long without crashing resets the backoff. */
export const healthyAfterMs = 60000;

export class RestartBackoff {
	private attempts = 0;

	get attempt(): number {
		return this.attempts;
	}

	/** The delay before the next restart of a sidecar started at `startedAt`, or undefined to give up. */
	next(startedAt: number, now = Date.now()): number | undefined {
		if (now - startedAt > healthyAfterMs) this.attempts = 0;
		if (this.attempts >= backoffMs.length) return undefined;
		const delay = backoffMs[this.attempts] ?? 30000;
		this.attempts++;
		return delay;
	}

	reset(): void {
		this.attempts = 0;
	}

	get maxAttempts(): number {
		return backoffMs.length;
	}
}
