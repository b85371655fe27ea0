// Adaptive debounce for automatic completion requests (Tabby's agent does the same): while the user types fast,
// requests come closer together than a completion takes, so waiting a little longer saves computing completions
// nobody will see; after a pause, or for an explicit (invoked) request, answer at once.

export interface DebounceOptions {
	readonly minMs: number;
	readonly maxMs: number;
}

/** How many recent intervals and latencies the delay is computed from. */
const historySize = 10;

export class AdaptiveDebouncer {
	private lastRequestAt: number | undefined;
	private readonly intervals: number[] = [];
	private readonly latencies: number[] = [];

	constructor(
		private options: DebounceOptions,
		private readonly now: () => number = () => performance.now(),
	) {}

	setOptions(options: DebounceOptions): void {
		this.options = options;
	}

	/** Record a completion's compute time (engine latency); slower completions justify longer waits. */
	recordLatency(ms: number): void {
		push(this.latencies, ms);
	}

	/**
	 * The delay for a request arriving now, and record its arrival. `invoked` (the user asked explicitly): no delay.
	 * Otherwise: half the median typing interval plus a tenth of the median latency, clamped to [min, max]. A
	 * request after a long pause (more than `maxMs` since the previous) waits only `minMs`.
	 */
	delayFor(invoked: boolean): number {
		const now = this.now();
		const interval = this.lastRequestAt === undefined ? Number.POSITIVE_INFINITY : now - this.lastRequestAt;
		this.lastRequestAt = now;
		if (Number.isFinite(interval)) {
			push(this.intervals, interval);
		}
		if (invoked) {
			return 0;
		}
		if (interval > this.options.maxMs) {
			return this.options.minMs;
		}
		const typing = median(this.intervals) ?? this.options.minMs;
		const latency = median(this.latencies) ?? 0;
		return Math.round(Math.min(this.options.maxMs, Math.max(this.options.minMs, typing * 0.5 + latency * 0.1)));
	}
}

/** Resolves `true` after `ms`, or `false` as soon as `signal` aborts (at once if it already has). */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
	if (signal?.aborted === true) {
		return Promise.resolve(false);
	}
	if (ms <= 0) {
		return Promise.resolve(true);
	}
	return new Promise((resolve) => {
		const onAbort = (): void => {
			clearTimeout(timer);
			resolve(false);
		};
		const timer = setTimeout(() => {
			signal?.removeEventListener('abort', onAbort);
			resolve(true);
		}, ms);
		signal?.addEventListener('abort', onAbort, { once: true });
	});
}

function push(values: number[], value: number): void {
	values.push(value);
	if (values.length > historySize) {
		values.shift();
	}
}

export function median(values: readonly number[]): number | undefined {
	if (values.length === 0) {
		return undefined;
	}
	const sorted = [...values].sort((a, b) => a - b);
	const middle = sorted.length >> 1;
	return sorted.length % 2 === 1 ? sorted[middle] : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}
