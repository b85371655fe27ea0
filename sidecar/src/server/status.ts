import type { ServerState, StatusLatencies, StatusParams, StatusProgress } from '../protocol';
import { median } from './debounce';

// The server's health as a small state machine, pushed to the client as `repokv/status/didChange`. State changes
// go out at once; progress within a state at most every 250 ms (the last one is never lost: a trailing push
// follows), so indexing 20 000 files does not flood the connection.

const progressIntervalMs = 250;

export class StatusReporter {
	private current: StatusParams = { state: 'starting', message: 'starting' };
	private lastPushAt = 0;
	private trailing: NodeJS.Timeout | undefined;
	private readonly completionMs: number[] = [];
	private latencies: StatusLatencies = {};

	constructor(private readonly push: (status: StatusParams) => void) {}

	get status(): StatusParams {
		return this.current;
	}

	get state(): ServerState {
		return this.current.state;
	}

	/** Enter a state (or update its message/progress). `fixHint`: in `error`, or in `ready` while serving degraded. */
	set(state: ServerState, message: string, extra: { progress?: StatusProgress; fixHint?: string } = {}): void {
		const changed = state !== this.current.state || message !== this.current.message && extra.progress === undefined;
		const { progress: _progress, fixHint: _fixHint, ...rest } = this.current;
		this.current = {
			...rest,
			state,
			message,
			...(extra.progress === undefined ? {} : { progress: extra.progress }),
			...(extra.fixHint === undefined ? {} : { fixHint: extra.fixHint }),
		};
		this.schedule(changed);
	}

	/** Merge facts (workspace, engine) into the status without changing the state. */
	annotate(facts: Pick<StatusParams, 'workspace' | 'engine' | 'completions' | 'kvCache'>): void {
		this.current = { ...this.current, ...facts };
		this.schedule(false);
	}

	recordCompletion(totalMs: number, prefillMs: number, prefillTokens: number, reusedTokens: number): void {
		this.completionMs.push(totalMs);
		if (this.completionMs.length > 10) {
			this.completionMs.shift();
		}
		const medianMs = median(this.completionMs);
		this.latencies = {
			...this.latencies,
			lastCompletionMs: round(totalMs),
			...(medianMs === undefined ? {} : { medianCompletionMs: round(medianMs) }),
			lastPrefillMs: round(prefillMs),
			lastPrefillTokens: prefillTokens,
			lastReusedTokens: reusedTokens,
		};
		this.current = { ...this.current, latencies: this.latencies };
		this.schedule(false);
	}

	recordAsk(totalMs: number): void {
		this.latencies = { ...this.latencies, lastAskMs: round(totalMs) };
		this.current = { ...this.current, latencies: this.latencies };
		this.schedule(false);
	}

	dispose(): void {
		clearTimeout(this.trailing);
	}

	private schedule(immediate: boolean): void {
		const now = Date.now();
		if (immediate || now - this.lastPushAt >= progressIntervalMs) {
			clearTimeout(this.trailing);
			this.trailing = undefined;
			this.flush();
		} else {
			this.trailing ??= setTimeout(() => {
				this.trailing = undefined;
				this.flush();
			}, progressIntervalMs - (now - this.lastPushAt));
		}
	}

	private flush(): void {
		this.lastPushAt = Date.now();
		this.push(this.current);
	}
}

function round(value: number): number {
	return Math.round(value * 10) / 10;
}
