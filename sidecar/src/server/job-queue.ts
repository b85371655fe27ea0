// One engine, one job at a time: node-llama-cpp's context sequence (and the native session) hold one KV cache, so
// completions and answers take turns. A job whose signal aborts while it waits is never started — a stale
// completion request costs nothing — and `pending` lets the pipeline see how deep the queue is.

export class JobQueue {
	private tail: Promise<unknown> = Promise.resolve();
	private waiting = 0;

	/** Jobs queued or running. */
	get pending(): number {
		return this.waiting;
	}

	/**
	 * Run `job` after every job queued before it. Resolves to `undefined` without running it when `signal` has
	 * aborted by the time its turn comes.
	 */
	run<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
		this.waiting++;
		const result = this.tail.then(async () => (signal?.aborted === true ? undefined : job()));
		const settle = (): void => {
			this.waiting--;
		};
		// The chain continues whatever the job did; its own caller sees its error.
		this.tail = result.then(settle, settle);
		return result;
	}
}
