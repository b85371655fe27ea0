import * as fs from 'node:fs';
import * as path from 'node:path';

import { errorMessage } from '../errors';
import type { DidChangeFilesParams } from '../protocol';
import { alwaysSkippedFolders } from '../workspace/ignore-rules';
import { readWorkspace } from '../workspace/reader';
import type { MirrorLimits } from './mirror';

// The workspace for a client that does not feed it (any editor but repokv's own extension: Neovim, Helix, Zed,
// Emacs): the server reads the workspace folders from disk with the CLI's reader (same limits, .gitignore /
// .repokvignore and secret rules; the mirror applies them again), and follows changes either through the client's
// `workspace/didChangeWatchedFiles` (when it offers dynamic registration for it) or through its own watcher: one
// non-recursive `fs.watch` per folder the reader walked, at most `maxWatchedFolders`, debounced. Any change re-reads
// the workspace (bounded by the same limits) and hands the whole of it to the mirror as a reset feed; the mirror
// diffs, so only files whose text changed count as edits (KV reuse stays intact).

export interface DiskWorkspaceOptions {
	/** Absolute paths of the workspace folders from `initialize`. */
	readonly roots: readonly string[];
	/** The mirror's limits (per file, total), read at each scan. */
	readonly limits: () => MirrorLimits;
	/** Hand a scan to the mirror (a `reset` feed: files not in it are removed). */
	readonly apply: (params: DidChangeFilesParams) => void;
	readonly log: (message: string) => void;
	/** Quiet time after the last change before re-reading, in ms. Default 300. */
	readonly debounceMs?: number;
	/** Most folders the own watcher watches (one inotify watch each). Default 2,000. */
	readonly maxWatchedFolders?: number;
}

export class DiskWorkspace {
	private readonly watchers = new Map<string, fs.FSWatcher>();
	private timer: NodeJS.Timeout | undefined;
	private scanning: Promise<void> | undefined;
	private rescanRequested = false;
	private ownWatcher = false;
	private disposed = false;
	/** Completed scans (for tests and logs). */
	scans = 0;

	constructor(private readonly options: DiskWorkspaceOptions) {}

	/** Read the workspace now; with `watch`, follow it with the server's own watcher afterwards. */
	async start(watch: boolean): Promise<void> {
		this.ownWatcher = watch;
		await this.rescan();
	}

	/** A change the client reported (`workspace/didChangeWatchedFiles`) or the watcher saw: re-read after a pause. */
	changed(): void {
		if (this.disposed) {
			return;
		}
		clearTimeout(this.timer);
		this.timer = setTimeout(() => {
			this.timer = undefined;
			void this.rescan();
		}, this.options.debounceMs ?? 300);
	}

	/** Re-read every folder; one scan at a time, a change during a scan schedules one more. */
	async rescan(): Promise<void> {
		if (this.disposed) {
			return;
		}
		if (this.scanning !== undefined) {
			this.rescanRequested = true;
			return this.scanning;
		}
		this.scanning = (async () => {
			do {
				this.rescanRequested = false;
				await this.scanOnce();
			} while (this.wantsAnotherScan());
		})().finally(() => {
			this.scanning = undefined;
		});
		return this.scanning;
	}

	/** A method, so that flow analysis does not narrow fields a concurrent `changed()` sets while a scan awaits. */
	private wantsAnotherScan(): boolean {
		return this.rescanRequested && !this.disposed;
	}

	dispose(): void {
		this.disposed = true;
		clearTimeout(this.timer);
		for (const watcher of this.watchers.values()) {
			watcher.close();
		}
		this.watchers.clear();
	}

	private async scanOnce(): Promise<void> {
		const limits = this.options.limits();
		const changed: { path: string; text: string; mtimeMs: number }[] = [];
		const folders = new Set<string>();
		let total = 0;
		const started = Date.now();
		// Several folders share one namespace of relative paths (as the editor's URIs map them); the first folder
		// to hold a path wins.
		const seen = new Set<string>();
		for (const root of this.options.roots) {
			try {
				const snapshot = await readWorkspace(root, { maxFileBytes: limits.maxFileBytes, maxTotalBytes: Math.max(0, limits.maxTotalBytes - total) });
				total += snapshot.totalBytes;
				folders.add(root);
				for (const file of snapshot.files) {
					if (seen.has(file.path) || seen.size >= limits.maxFiles) {
						continue;
					}
					seen.add(file.path);
					changed.push({ path: file.path, text: file.text, mtimeMs: file.mtimeMs });
					folders.add(path.join(root, path.dirname(file.path)));
				}
			} catch (error) {
				this.options.log(`workspace: cannot read ${root}: ${errorMessage(error)}`);
			}
		}
		if (this.disposed) {
			return;
		}
		this.options.apply({ changed, reset: true, batch: { index: 0, count: 1, totalFiles: changed.length } });
		this.scans++;
		if (this.scans === 1) {
			this.options.log(`workspace: read ${changed.length} files (${total} bytes) from ${this.options.roots.join(', ')} in ${Date.now() - started} ms${this.ownWatcher ? `; watching ${Math.min(folders.size, this.maxWatched())} folders` : '; following the client\'s file events'}`);
		}
		if (this.ownWatcher) {
			this.watch(folders);
		}
	}

	private maxWatched(): number {
		return this.options.maxWatchedFolders ?? 2000;
	}

	/** Watch exactly `folders` (plus their ancestors up to each root, so that a new sub-folder is seen), bounded. */
	private watch(folders: ReadonlySet<string>): void {
		const wanted = new Set<string>();
		for (const folder of folders) {
			const root = this.options.roots.find((candidate) => folder === candidate || folder.startsWith(candidate + path.sep));
			let current = folder;
			while (root !== undefined && !wanted.has(current)) {
				wanted.add(current);
				if (current === root) {
					break;
				}
				current = path.dirname(current);
			}
		}
		for (const [folder, watcher] of this.watchers) {
			if (!wanted.has(folder)) {
				watcher.close();
				this.watchers.delete(folder);
			}
		}
		for (const folder of [...wanted].sort()) {
			if (this.watchers.has(folder)) {
				continue;
			}
			if (this.watchers.size >= this.maxWatched()) {
				this.options.log(`workspace: watching only ${this.maxWatched()} folders; changes elsewhere show after the next change in a watched one`);
				break;
			}
			try {
				const watcher = fs.watch(folder, { persistent: false }, (_event, name) => {
					// Changes inside always-skipped folders (.git, node_modules) never matter.
					if (typeof name === 'string' && alwaysSkippedFolders.has(name)) {
						return;
					}
					this.changed();
				});
				watcher.on('error', () => {
					watcher.close();
					this.watchers.delete(folder);
				});
				this.watchers.set(folder, watcher);
			} catch (error) {
				this.options.log(`workspace: cannot watch ${folder}: ${errorMessage(error)}`);
			}
		}
	}
}
