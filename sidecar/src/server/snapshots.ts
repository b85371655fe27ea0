import type { CacheSnapshot } from '../protocol';
import { buildCacheSnapshot, type SnapshotInput } from './cache-snapshot';

// Keeps the last cache snapshot for `repokv/cache/snapshot` and pushes `repokv/cache/didChange` at most every
// 500 ms: a burst of completions sends one push with the latest data, never a queue of stale ones.

const pushIntervalMs = 500;

export class SnapshotStore {
	private last: CacheSnapshot | undefined;
	private sequence = 0;
	private lastPushAt = 0;
	private timer: NodeJS.Timeout | undefined;

	constructor(private readonly push: (snapshot: CacheSnapshot) => void) {}

	get latest(): CacheSnapshot | undefined {
		return this.last;
	}

	record(input: Omit<SnapshotInput, 'sequence'>): CacheSnapshot {
		this.last = buildCacheSnapshot({ ...input, sequence: ++this.sequence });
		const wait = pushIntervalMs - (Date.now() - this.lastPushAt);
		if (wait <= 0) {
			this.flush();
		} else {
			this.timer ??= setTimeout(() => {
				this.flush();
			}, wait);
		}
		return this.last;
	}

	dispose(): void {
		clearTimeout(this.timer);
	}

	private flush(): void {
		this.timer = undefined;
		this.lastPushAt = Date.now();
		if (this.last !== undefined) {
			this.push(this.last);
		}
	}
}
