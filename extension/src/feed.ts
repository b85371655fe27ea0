import * as vscode from 'vscode';
import { IgnoreRules, alwaysSkippedFolders, ignoreFileNames } from '../../sidecar/src/workspace/ignore-rules';
import { isSecretPath } from '../../sidecar/src/workspace/secrets';
import type { DidChangeFilesParams, WorkspaceFileContent } from '../../sidecar/src/protocol';
import type { Config } from './config';

// The workspace feed (docs/architecture.md, "Processes"): the extension gathers the files through the VS Code API (so
// remote and virtual workspaces work), filters them as the sidecar's own reader does, and sends them in batches; then
// deltas. The sidecar enforces its limits again; this side keeps secrets and junk from ever leaving the editor.

/** Where a batch goes; the client lifecycle object supplies it, and drops batches while the sidecar is down. */
export type FeedSink = (params: DidChangeFilesParams) => Promise<void>;

export interface FeedStats {
	files: number;
	bytes: number;
	skipped: Record<string, number>;
}

/**
 * The sidecar keeps at most `limits.maxFiles` files (20,000 by default; the extension does not change it) and
 * `limits.maxTotalBytes` bytes (`repokv.workspace.maxTotalMB`), and refuses the rest: reading and sending more costs
 * the editor time and memory for nothing (a 100,000-file workspace sent 197 MiB to keep 16;
 * bench/results/reliability.md). So the feed looks at every file the workspace has (no `findFiles` limit: files left
 * out early, too large or ignored, must not hide the ones after them) and stops sending at the first of the two limits.
 * The sidecar still enforces its own limits.
 */
export const sidecarMaxFiles = 20_000;
const batchBytes = 2 * 1024 * 1024;
const batchFiles = 200;
const deltaDelayMs = 300;

export class WorkspaceFeed implements vscode.Disposable {
	private readonly disposables: vscode.Disposable[] = [];
	private readonly sent = new Set<string>();
	private rules = new Map<string, readonly string[]>();
	private ruleCache = new Map<string, IgnoreRules>();
	private pendingChanged = new Set<string>();
	private pendingDeleted = new Set<string>();
	private deltaTimer: ReturnType<typeof setTimeout> | undefined;
	private scanning: Promise<void> | undefined;
	private generation = 0;
	stats: FeedStats = { files: 0, bytes: 0, skipped: {} };

	constructor(
		private readonly root: vscode.Uri,
		private config: Config,
		private readonly sink: FeedSink,
		private readonly log: vscode.LogOutputChannel,
	) {
		const watcher = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(root, '**/*'));
		this.disposables.push(
			watcher,
			watcher.onDidCreate((uri) => { this.onChanged(uri); }),
			watcher.onDidChange((uri) => { this.onChanged(uri); }),
			watcher.onDidDelete((uri) => { this.onDeleted(uri); }),
			vscode.workspace.onDidRenameFiles((event) => { void this.onRenamed(event); }),
		);
	}

	updateConfig(config: Config): void {
		this.config = config;
	}

	/** Sends the whole workspace again (`reset: true`): at start, after a restart, when ignore rules change. */
	rescan(): Promise<void> {
		const generation = ++this.generation;
		const run = (this.scanning ?? Promise.resolve()).then(() => (generation === this.generation ? this.scan() : undefined));
		this.scanning = run.catch((error: unknown) => { this.log.error(`workspace feed: scan failed: ${String(error)}`); });
		return this.scanning;
	}

	private relative(uri: vscode.Uri): string | undefined {
		const base = this.root.path.endsWith('/') ? this.root.path : `${this.root.path}/`;
		return uri.scheme === this.root.scheme && uri.path.startsWith(base) ? uri.path.slice(base.length) : undefined;
	}

	private excludeGlob(): string {
		const patterns = [...[...alwaysSkippedFolders].map((name) => `**/${name}/**`), ...this.config.workspace.exclude];
		// Passing our own exclude replaces files.exclude, so fold it in (only the plain `true` entries; the
		// `when` clauses of sibling conditions cannot be expressed in one glob).
		const filesExclude = vscode.workspace.getConfiguration('files', this.root).get<Record<string, unknown>>('exclude') ?? {};
		for (const [glob, on] of Object.entries(filesExclude)) {
			if (on === true) patterns.push(glob);
		}
		return `{${patterns.join(',')}}`;
	}

	private rulesFor(folder: string): IgnoreRules {
		const cached = this.ruleCache.get(folder);
		if (cached) return cached;
		const parent = folder === '' ? IgnoreRules.empty() : this.rulesFor(folder.includes('/') ? folder.slice(0, folder.lastIndexOf('/')) : '');
		const rules = parent.withFolder(folder, this.rules.get(folder) ?? []);
		this.ruleCache.set(folder, rules);
		return rules;
	}

	/** Why a workspace-relative path is not sent, or undefined if it may be. */
	private skipReason(path: string): string | undefined {
		if (isSecretPath(path)) return 'secret';
		const parts = path.split('/');
		for (let depth = 1; depth < parts.length; depth++) {
			const folder = parts.slice(0, depth).join('/');
			const parent = parts.slice(0, depth - 1).join('/');
			if (this.rulesFor(parent).isIgnored(folder, true)) return 'ignored';
		}
		const folder = parts.slice(0, -1).join('/');
		return this.rulesFor(folder).isIgnored(path, false) ? 'ignored' : undefined;
	}

	private async loadRules(): Promise<void> {
		const files = await vscode.workspace.findFiles(new vscode.RelativePattern(this.root, `**/{${ignoreFileNames.join(',')}}`), this.excludeGlob());
		const rules = new Map<string, string[]>();
		for (const uri of files) {
			const path = this.relative(uri);
			if (path === undefined) continue;
			const folder = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
			const text = new TextDecoder().decode(await vscode.workspace.fs.readFile(uri));
			rules.set(folder, [...(rules.get(folder) ?? []), text]);
		}
		this.rules = rules;
		this.ruleCache = new Map();
	}

	/** Reads one file, or says why it is left out. */
	private async read(uri: vscode.Uri, path: string): Promise<WorkspaceFileContent | string> {
		const reason = this.skipReason(path);
		if (reason) return reason;
		let stat: vscode.FileStat;
		try {
			stat = await vscode.workspace.fs.stat(uri);
		} catch {
			return 'unreadable';
		}
		if (stat.type & vscode.FileType.Directory) return 'folder';
		if (stat.size > this.config.workspace.maxFileKB * 1024) return 'tooLarge';
		const bytes = await vscode.workspace.fs.readFile(uri);
		if (bytes.subarray(0, 8192).includes(0)) return 'binary';
		// A document open in an editor may hold unsaved text; the editor's version wins.
		const open = vscode.workspace.textDocuments.find((doc) => doc.uri.toString() === uri.toString());
		const text = open ? open.getText() : new TextDecoder().decode(bytes);
		return { path, uri: uri.toString(), text, mtimeMs: stat.mtime, ...(open ? { version: open.version } : {}) };
	}

	private async scan(): Promise<void> {
		const started = Date.now();
		await this.loadRules();
		const uris = await vscode.workspace.findFiles(new vscode.RelativePattern(this.root, '**/*'), this.excludeGlob());
		const maxTotalBytes = this.config.workspace.maxTotalMB * 1024 * 1024;
		const files: WorkspaceFileContent[] = [];
		const stats: FeedStats = { files: 0, bytes: 0, skipped: {} };
		for (const [index, uri] of uris.entries()) {
			const path = this.relative(uri);
			if (path === undefined) continue;
			if (stats.files >= sidecarMaxFiles) {
				stats.skipped['tooMany'] = uris.length - index;
				break;
			}
			const result = await this.read(uri, path);
			if (typeof result === 'string') {
				stats.skipped[result] = (stats.skipped[result] ?? 0) + 1;
				continue;
			}
			const bytes = utf8Length(result.text);
			if (stats.bytes + bytes > maxTotalBytes) {
				// What the sidecar would refuse as `overTotal`: this file and, unread, the rest.
				stats.skipped['overTotal'] = uris.length - index;
				break;
			}
			files.push(result);
			stats.files++;
			stats.bytes += bytes;
		}
		const batches: WorkspaceFileContent[][] = [];
		let current: WorkspaceFileContent[] = [];
		let size = 0;
		for (const file of files) {
			if (current.length > 0 && (current.length >= batchFiles || size + file.text.length > batchBytes)) {
				batches.push(current);
				current = [];
				size = 0;
			}
			current.push(file);
			size += file.text.length;
		}
		batches.push(current);
		for (const [index, batch] of batches.entries()) {
			await this.sink({ changed: batch, batch: { index, count: batches.length }, reset: true });
		}
		this.sent.clear();
		for (const file of files) this.sent.add(file.path);
		this.stats = stats;
		this.log.info(`workspace feed: sent ${stats.files} files (${Math.round(stats.bytes / 1024)} KiB) in ${batches.length} batches, ${Date.now() - started} ms; skipped ${JSON.stringify(stats.skipped)}`);
	}

	private onChanged(uri: vscode.Uri): void {
		const path = this.relative(uri);
		if (path === undefined) return;
		if (isIgnoreFile(path)) {
			void this.rescan();
			return;
		}
		this.pendingDeleted.delete(path);
		this.pendingChanged.add(path);
		this.scheduleDelta();
	}

	private onDeleted(uri: vscode.Uri): void {
		const path = this.relative(uri);
		if (path === undefined) return;
		// Rules that went away (an ignore file, or a folder holding one) may let in files that were left out, and the
		// feed's own rule cache must forget them: a rescan does both.
		if (isIgnoreFile(path) || [...this.rules.keys()].some((folder) => folder === path || folder.startsWith(`${path}/`))) {
			void this.rescan();
			return;
		}
		// A deleted folder arrives as one event: send the paths of the files it held.
		for (const sent of this.sent) {
			if (sent === path || sent.startsWith(`${path}/`)) {
				this.pendingChanged.delete(sent);
				this.pendingDeleted.add(sent);
			}
		}
		this.scheduleDelta();
	}

	private async onRenamed(event: vscode.FileRenameEvent): Promise<void> {
		const renamed: { from: string; to: string }[] = [];
		const deleted: string[] = [];
		for (const { oldUri, newUri } of event.files) {
			const from = this.relative(oldUri);
			const to = this.relative(newUri);
			if (from === undefined || to === undefined) continue;
			// A renamed folder is one event: rename each file sent from inside it.
			const moves = this.sent.has(from) ? [[from, to]] : [...this.sent].filter((sent) => sent.startsWith(`${from}/`)).map((sent) => [sent, `${to}${sent.slice(from.length)}`]);
			if (isIgnoreFile(from) || isIgnoreFile(to) || moves.some(([a = '', b = '']) => isIgnoreFile(a) || isIgnoreFile(b))) {
				// The rules change with the move: a rescan sends what they now let in and out.
				void this.rescan();
				return;
			}
			for (const [a = '', b = ''] of moves) {
				this.sent.delete(a);
				this.pendingChanged.delete(a);
				if (this.skipReason(b) !== undefined) {
					deleted.push(a);
					continue;
				}
				this.sent.add(b);
				renamed.push({ from: a, to: b });
			}
		}
		if (renamed.length > 0 || deleted.length > 0) await this.sink({ renamed, deleted });
	}

	private scheduleDelta(): void {
		if (this.deltaTimer) clearTimeout(this.deltaTimer);
		this.deltaTimer = setTimeout(() => { void this.flushDelta(); }, deltaDelayMs);
	}

	private async flushDelta(): Promise<void> {
		this.deltaTimer = undefined;
		const changed: WorkspaceFileContent[] = [];
		const deleted = [...this.pendingDeleted];
		for (const path of this.pendingChanged) {
			const uri = vscode.Uri.joinPath(this.root, path);
			const result = await this.read(uri, path);
			if (result === 'folder') {
				// A folder moved or copied in arrives as one event: its files are new too.
				const inside = await vscode.workspace.findFiles(new vscode.RelativePattern(uri, '**/*'), this.excludeGlob(), sidecarMaxFiles);
				const paths = inside.flatMap((found) => { const relative = this.relative(found); return relative === undefined ? [] : [relative]; });
				if (paths.some(isIgnoreFile)) {
					this.pendingChanged.clear();
					this.pendingDeleted.clear();
					void this.rescan();
					return;
				}
				for (const inner of paths) {
					const file = await this.read(vscode.Uri.joinPath(this.root, inner), inner);
					if (typeof file !== 'string') changed.push(file);
				}
				continue;
			}
			if (typeof result === 'string') {
				// A file that became ignored, too large or binary leaves the mirror.
				if (this.sent.has(path) && result !== 'folder') deleted.push(path);
				continue;
			}
			changed.push(result);
		}
		this.pendingChanged.clear();
		this.pendingDeleted.clear();
		for (const path of deleted) this.sent.delete(path);
		for (const file of changed) this.sent.add(file.path);
		if (changed.length === 0 && deleted.length === 0) return;
		this.log.debug(`workspace feed: delta +${changed.length} -${deleted.length}`);
		await this.sink({ changed, deleted });
	}

	dispose(): void {
		if (this.deltaTimer) clearTimeout(this.deltaTimer);
		this.generation++;
		for (const disposable of this.disposables) disposable.dispose();
	}
}

function isIgnoreFile(path: string): boolean {
	return ignoreFileNames.includes(path.slice(path.lastIndexOf('/') + 1));
}

/** Bytes of `text` in UTF-8, as the sidecar counts them against `limits.maxTotalBytes`. */
function utf8Length(text: string): number {
	let bytes = 0;
	for (let index = 0; index < text.length; index++) {
		const code = text.charCodeAt(index);
		if (code < 0x80) bytes += 1;
		else if (code < 0x800) bytes += 2;
		else if (code >= 0xd800 && code < 0xdc00 && index + 1 < text.length && (text.charCodeAt(index + 1) & 0xfc00) === 0xdc00) {
			bytes += 4;
			index++;
		} else bytes += 3;
	}
	return bytes;
}
