import type { DidChangeFilesParams } from '../protocol';
import { IgnoreRules, alwaysSkippedFolders, ignoreFileNames } from '../workspace/ignore-rules';
import { isSecretFolder, isSecretPath } from '../workspace/secrets';

// The server's copy of the workspace, fed by `repokv/workspace/didChangeFiles` (batches, then deltas) and by open
// documents (`textDocument/did*`, which overlay the fed text while open). The client is trusted for nothing: the
// limits, binary detection, ignore files and secret rules are enforced here again, so a misbehaving or older client
// can never put a `.env` or a 50 MB blob into a prompt.

export interface MirrorLimits {
	readonly maxFileBytes: number;
	readonly maxTotalBytes: number;
	readonly maxFiles: number;
}

export const defaultMirrorLimits: MirrorLimits = { maxFileBytes: 1024 * 1024, maxTotalBytes: 16 * 1024 * 1024, maxFiles: 20_000 };

/** Why the mirror refused a file. */
export type MirrorSkipReason = 'invalidPath' | 'ignored' | 'secret' | 'binary' | 'tooLarge' | 'overTotal' | 'tooMany' | 'stale';

export interface MirrorFile {
	/** Workspace-relative, forward slashes. */
	readonly path: string;
	/** Current text: an open document's buffer when it is open, else the fed text. */
	readonly text: string;
	readonly bytes: number;
	/** Version of the fed text (-1 when the client sent none). */
	readonly version: number;
	readonly mtimeMs: number;
	/**
	 * Logical edit clock: 0 for files as first fed, then a increasing counter value each time the text changes.
	 * Orders the repository block least recently edited first.
	 */
	readonly editedAt: number;
}

/** What one `apply` did. */
export interface MirrorChange {
	/** Paths whose text is new or different (renamed targets included). */
	readonly changed: readonly string[];
	/** Paths no longer in the mirror (deleted, renamed away, or newly ignored). */
	readonly removed: readonly string[];
	readonly skipped: readonly { readonly path: string; readonly reason: MirrorSkipReason }[];
}

interface Entry {
	path: string;
	text: string;
	bytes: number;
	version: number;
	mtimeMs: number;
	editedAt: number;
	/** An open document's text and version, overriding `text` while open. */
	overlay?: { text: string; bytes: number };
}

export class WorkspaceMirror {
	private readonly entries = new Map<string, Entry>();
	/** Ignore files' texts by the folder they are in ('' for the root). */
	private readonly ignoreTexts = new Map<string, string[]>();
	private totalBytes = 0;
	private clock = 0;
	private readonly skippedCounts = new Map<MirrorSkipReason, number>();
	/** Paths seen in the current reset feed (set while a `reset` feed is arriving). */
	private resetSeen: Set<string> | undefined;

	constructor(private limits: MirrorLimits = defaultMirrorLimits) {}

	setLimits(limits: MirrorLimits): void {
		this.limits = limits;
	}

	get size(): number {
		return this.entries.size;
	}

	get bytes(): number {
		return this.totalBytes;
	}

	/** Refusals so far, by reason. */
	skipped(): Record<string, number> {
		return Object.fromEntries(this.skippedCounts);
	}

	get(path: string): MirrorFile | undefined {
		const entry = this.entries.get(path);
		return entry === undefined ? undefined : view(entry);
	}

	/** Every file, in path order. */
	files(): MirrorFile[] {
		return [...this.entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map(view);
	}

	/** Apply one batch or delta. Never throws on bad input: refused files are reported in `skipped`. */
	apply(params: DidChangeFilesParams): MirrorChange {
		const changed = new Set<string>();
		const removed = new Set<string>();
		const skipped: { path: string; reason: MirrorSkipReason }[] = [];
		const skip = (path: string, reason: MirrorSkipReason): void => {
			skipped.push({ path, reason });
			this.skippedCounts.set(reason, (this.skippedCounts.get(reason) ?? 0) + 1);
		};
		let rulesChanged = false;
		if (params.reset === true && (params.batch === undefined || params.batch.index === 0)) {
			this.resetSeen = new Set();
			// A reset feed is the whole truth, its ignore files included: rules of ignore files it no longer has
			// (deleted, renamed) must not keep out the files it now sends.
			for (const path of [...this.ignoreFileTexts.keys()]) {
				this.setIgnoreText(path, undefined);
			}
		}

		// Parameters come off the wire: read every field as unknown, whatever the declared type says.
		for (const rename of asArray(params.renamed)) {
			const fields = asRecord(rename);
			const from = normalisePath(fields['from']);
			const to = normalisePath(fields['to']);
			const entry = from === undefined ? undefined : this.entries.get(from);
			if (from === undefined || to === undefined || entry === undefined) {
				continue;
			}
			this.remove(from);
			removed.add(from);
			// A moved ignore file takes its rules with it.
			if (isIgnoreFile(from)) {
				this.setIgnoreText(from, undefined);
				rulesChanged = true;
			}
			if (isIgnoreFile(to)) {
				this.setIgnoreText(to, entry.text);
				rulesChanged = true;
			}
			const reason = this.refusal(to, entry.text, entry.bytes);
			if (reason === undefined) {
				this.insert({ ...entry, path: to, editedAt: ++this.clock });
				changed.add(to);
				removed.delete(to);
			} else {
				skip(to, reason);
			}
		}

		for (const path of asArray(params.deleted)) {
			const normal = normalisePath(path);
			if (normal !== undefined && this.entries.has(normal)) {
				this.remove(normal);
				removed.add(normal);
			}
			if (normal !== undefined && isIgnoreFile(normal)) {
				this.setIgnoreText(normal, undefined);
				rulesChanged = true;
			}
		}

		// Ignore files first, so that a batch's other files are judged by the rules it brings.
		const incoming = asArray(params.changed).map(asRecord);
		const ignoreFirst = [...incoming.filter((file) => isIgnoreFile(String(file['path']))), ...incoming.filter((file) => !isIgnoreFile(String(file['path'])))];
		for (const file of ignoreFirst) {
			const path = normalisePath(file['path']);
			const text = file['text'];
			if (path === undefined || typeof text !== 'string') {
				skip(typeof file['path'] === 'string' ? file['path'] : '(no path)', 'invalidPath');
				continue;
			}
			this.resetSeen?.add(path);
			if (isIgnoreFile(path)) {
				this.setIgnoreText(path, text);
				rulesChanged = true;
			}
			const existing = this.entries.get(path);
			const version = finiteNumber(file['version']) ?? -1;
			if (existing !== undefined && version !== -1 && existing.version !== -1 && version < existing.version) {
				skip(path, 'stale');
				continue;
			}
			// `length` bounds the UTF-8 size from below: a 50 MB string is refused without measuring it.
			if (text.length > this.limits.maxFileBytes) {
				skip(path, 'tooLarge');
				continue;
			}
			const bytes = Buffer.byteLength(text, 'utf8');
			const reason = this.refusal(path, text, bytes, existing);
			if (reason !== undefined) {
				skip(path, reason);
				continue;
			}
			if (existing?.text === text) {
				existing.version = version;
				continue;
			}
			if (existing !== undefined) {
				this.remove(path);
			}
			const mtimeMs = finiteNumber(file['mtimeMs']) ?? 0;
			this.insert({ path, text, bytes, version, mtimeMs, editedAt: existing === undefined ? 0 : ++this.clock });
			changed.add(path);
		}

		if (rulesChanged) {
			// New rules may exclude files fed earlier.
			for (const path of [...this.entries.keys()]) {
				if (!isIgnoreFile(path) && this.isIgnored(path)) {
					this.remove(path);
					removed.add(path);
					changed.delete(path);
					skip(path, 'ignored');
				}
			}
		}

		const lastOfReset = params.batch === undefined || params.batch.index >= params.batch.count - 1;
		if (this.resetSeen !== undefined && lastOfReset) {
			for (const path of [...this.entries.keys()]) {
				if (!this.resetSeen.has(path)) {
					this.remove(path);
					removed.add(path);
				}
			}
			this.resetSeen = undefined;
		}
		return { changed: [...changed], removed: [...removed], skipped };
	}

	/**
	 * An open document's text overrides the fed text (the editor's buffer is newer than the disk). Returns whether
	 * the text changed. Documents outside the mirror's rules (secret, ignored, too large) are not added.
	 */
	setOverlay(path: string, text: string): boolean {
		const normal = normalisePath(path);
		// An open document's text comes off the wire too (a didOpen with a number for its text).
		if (normal === undefined || typeof text !== 'string') {
			return false;
		}
		const bytes = Buffer.byteLength(text, 'utf8');
		let entry = this.entries.get(normal);
		if (entry === undefined) {
			if (this.refusal(normal, text, bytes) !== undefined) {
				return false;
			}
			entry = { path: normal, text, bytes, version: -1, mtimeMs: Date.now(), editedAt: ++this.clock };
			this.insert(entry);
			return true;
		}
		const current = entry.overlay?.text ?? entry.text;
		if (current === text) {
			return false;
		}
		if (text.length > this.limits.maxFileBytes || text.includes('\u0000')) {
			return false;
		}
		this.totalBytes += bytes - (entry.overlay?.bytes ?? entry.bytes);
		entry.overlay = { text, bytes };
		entry.editedAt = ++this.clock;
		return true;
	}

	/** The document closed: the fed text applies again. */
	clearOverlay(path: string): void {
		const entry = this.entries.get(path);
		if (entry?.overlay !== undefined) {
			this.totalBytes += entry.bytes - entry.overlay.bytes;
			delete entry.overlay;
		}
	}

	/** Whether the ignore files fed so far exclude a path (or it lies in an always-skipped folder). */
	isIgnored(path: string): boolean {
		const slash = path.lastIndexOf('/');
		const rules = this.rulesFor(slash === -1 ? '' : path.slice(0, slash));
		return rules === undefined || rules.isIgnored(path, false);
	}

	/** The rules in force inside a folder, or undefined when the folder itself is ignored. Memoised per folder. */
	private rulesFor(folder: string): IgnoreRules | undefined {
		const memo = this.rulesMemo.get(folder);
		if (memo !== undefined) {
			return memo === 'ignored' ? undefined : memo;
		}
		let rules: IgnoreRules | undefined;
		if (folder === '') {
			rules = IgnoreRules.empty();
		} else {
			const slash = folder.lastIndexOf('/');
			const parent = this.rulesFor(slash === -1 ? '' : folder.slice(0, slash));
			const name = folder.slice(slash + 1);
			rules = parent === undefined || alwaysSkippedFolders.has(name) || parent.isIgnored(folder, true) ? undefined : parent;
		}
		const texts = this.ignoreTexts.get(folder);
		if (rules !== undefined && texts !== undefined) {
			rules = rules.withFolder(folder, texts);
		}
		this.rulesMemo.set(folder, rules ?? 'ignored');
		return rules;
	}

	private readonly rulesMemo = new Map<string, IgnoreRules | 'ignored'>();

	private refusal(path: string, text: string, bytes: number, existing?: Entry): MirrorSkipReason | undefined {
		if (isSecretPath(path) || path.split('/').slice(0, -1).some(isSecretFolder)) {
			return 'secret';
		}
		if (this.isIgnored(path)) {
			return 'ignored';
		}
		if (bytes > this.limits.maxFileBytes) {
			return 'tooLarge';
		}
		if (text.includes('\u0000')) {
			return 'binary';
		}
		if (existing === undefined && this.entries.size >= this.limits.maxFiles) {
			return 'tooMany';
		}
		if (this.totalBytes - (existing?.bytes ?? 0) + bytes > this.limits.maxTotalBytes) {
			return 'overTotal';
		}
		return undefined;
	}

	private insert(entry: Entry): void {
		this.entries.set(entry.path, entry);
		this.totalBytes += entry.overlay?.bytes ?? entry.bytes;
	}

	private remove(path: string): void {
		const entry = this.entries.get(path);
		if (entry !== undefined) {
			this.entries.delete(path);
			this.totalBytes -= entry.overlay?.bytes ?? entry.bytes;
		}
	}

	private setIgnoreText(path: string, text: string | undefined): void {
		this.rulesMemo.clear();
		if (text === undefined) {
			this.ignoreFileTexts.delete(path);
		} else {
			this.ignoreFileTexts.set(path, text);
		}
		const slash = path.lastIndexOf('/');
		const folder = slash === -1 ? '' : path.slice(0, slash);
		// A folder's rules: its ignore files' texts in `ignoreFileNames` order (.gitignore, then .repokvignore).
		const texts = ignoreFileNames.flatMap((name) => {
			const found = this.ignoreFileTexts.get(folder === '' ? name : `${folder}/${name}`);
			return found === undefined ? [] : [found];
		});
		if (texts.length === 0) {
			this.ignoreTexts.delete(folder);
		} else {
			this.ignoreTexts.set(folder, texts);
		}
	}

	/** Ignore file texts by their workspace-relative path. */
	private readonly ignoreFileTexts = new Map<string, string>();
}

function view(entry: Entry): MirrorFile {
	return {
		path: entry.path,
		text: entry.overlay?.text ?? entry.text,
		bytes: entry.overlay?.bytes ?? entry.bytes,
		version: entry.version,
		mtimeMs: entry.mtimeMs,
		editedAt: entry.editedAt,
	};
}

function asArray(value: unknown): readonly unknown[] {
	return Array.isArray(value) ? (value as unknown[]) : [];
}

function asRecord(value: unknown): Record<string, unknown> {
	return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

function finiteNumber(value: unknown): number | undefined {
	return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function isIgnoreFile(path: string): boolean {
	const name = path.slice(path.lastIndexOf('/') + 1);
	return ignoreFileNames.includes(name);
}

/**
 * A workspace-relative path in canonical form (forward slashes, no `.` segments), or undefined when it is not one:
 * empty, absolute, escaping the workspace with `..`, or containing NUL.
 */
export function normalisePath(path: unknown): string | undefined {
	if (typeof path !== 'string' || path === '' || path.includes('\u0000') || path.length > 4096) {
		return undefined;
	}
	const slashed = path.replace(/\\/g, '/');
	if (slashed.startsWith('/') || /^[a-zA-Z]:/.test(slashed)) {
		return undefined;
	}
	const parts: string[] = [];
	for (const part of slashed.split('/')) {
		if (part === '' || part === '.') {
			continue;
		}
		if (part === '..') {
			return undefined;
		}
		parts.push(part);
	}
	return parts.length === 0 ? undefined : parts.join('/');
}
