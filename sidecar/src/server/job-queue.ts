// One engine, one job at a time: node-llama-cpp's context sequence (and the native session) hold one KV cache, so
// completions and answers take turns. A job's signal answers its caller at once, wherever the job is:
// - still waiting: it leaves the queue and is never started (a stale completion request costs nothing, and the
//   queue never holds more than the jobs someone still wants);
// - running: the caller gets `undefined` now, while the job itself runs on until it next checks the same signal (the
//   engines check it between prefill chunks and tokens). The next job starts only when it has really finished.
// `pending` lets the pipeline and the tests see how deep the queue is.

interface Entry {
	readonly job: () => Promise<unknown>;
	readonly signal: AbortSignal | undefined;
	readonly resolve: (value: unknown) => void;
	readonly reject: (error: unknown) => void;
	readonly onAbort: () => void;
}

export class JobQueue {
	private readonly waiting: Entry[] = [];
	private running: Entry | undefined;

	/** Jobs queued or running (a running job counts until it has finished, even when its caller was answered). */
	get pending(): number {
		return this.waiting.length + (this.running === undefined ? 0 : 1);
	}

	/**
	 * Run `job` after every job queued before it. Resolves to `undefined` as soon as `signal` aborts: without running
	 * the job if it was still waiting, without waiting for it if it was running (its result or error is then dropped;
	 * a caller that must hear of a late failure catches it inside `job`).
	 */
	run<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T | undefined> {
		if (signal?.aborted === true) {
			return Promise.resolve(undefined);
		}
		return new Promise<T | undefined>((resolve, reject) => {
			const entry: Entry = {
				job,
				signal,
				resolve: resolve as (value: unknown) => void,
				reject,
				onAbort: () => {
					const index = this.waiting.indexOf(entry);
					if (index >= 0) {
						this.waiting.splice(index, 1);
					}
					resolve(undefined);
				},
			};
			signal?.addEventListener('abort', entry.onAbort, { once: true });
			this.waiting.push(entry);
			this.next();
		});
	}

	private next(): void {
		if (this.running !== undefined) {
			return;
		}
		const entry = this.waiting.shift();
		if (entry === undefined) {
			return;
		}
		this.running = entry;
		void (async () => {
			try {
				entry.resolve(await entry.job());
			} catch (error) {
				entry.reject(error);
			} finally {
				entry.signal?.removeEventListener('abort', entry.onAbort);
				this.running = undefined;
				this.next();
			}
		})();
	}
}
