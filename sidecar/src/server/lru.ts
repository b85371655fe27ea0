// A small least-recently-used map: `get` refreshes an entry, `set` evicts the oldest beyond `capacity`. A Map
// iterates in insertion order, so re-inserting on access is all the bookkeeping needed.

export class LruCache<K, V> {
	private readonly map = new Map<K, V>();

	constructor(private capacity: number) {}

	get size(): number {
		return this.map.size;
	}

	get(key: K): V | undefined {
		const value = this.map.get(key);
		if (value !== undefined) {
			this.map.delete(key);
			this.map.set(key, value);
		}
		return value;
	}

	set(key: K, value: V): void {
		if (this.capacity <= 0) {
			return;
		}
		this.map.delete(key);
		this.map.set(key, value);
		this.evict();
	}

	/** Entries from the most to the least recently used. */
	entries(): [K, V][] {
		return [...this.map.entries()].reverse();
	}

	resize(capacity: number): void {
		this.capacity = capacity;
		this.evict();
	}

	clear(): void {
		this.map.clear();
	}

	private evict(): void {
		while (this.map.size > Math.max(0, this.capacity)) {
			const oldest = this.map.keys().next();
			if (oldest.done === true) {
				break;
			}
			this.map.delete(oldest.value);
		}
	}
}
