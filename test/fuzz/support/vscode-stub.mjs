// A minimal `vscode` module for running the extension's workspace feed (extension/src/feed.ts) under plain Node: the
// real files on disk through node:fs, and file-system events that the test fires itself (`events.fire*`), the way VS
// Code's watcher and `workspace.onDidRenameFiles` would. `findFiles` walks asynchronously, folder by folder, as VS
// Code's search service answers from another process: the feed's own work is what the event loop measures.
import { promises as fs } from 'node:fs';
import path from 'node:path';

export class Uri {
	constructor(scheme, fsPath) {
		this.scheme = scheme;
		this.path = fsPath.split(path.sep).join('/');
		this.fsPath = fsPath;
	}
	static file(fsPath) {
		return new Uri('file', path.resolve(fsPath));
	}
	static joinPath(base, ...parts) {
		return new Uri(base.scheme, path.join(base.fsPath, ...parts));
	}
	toString() {
		return `file://${this.path}`;
	}
}

export class RelativePattern {
	constructor(base, pattern) {
		this.baseUri = base;
		this.pattern = pattern;
	}
}

export const FileType = { Unknown: 0, File: 1, Directory: 2, SymbolicLink: 64 };

class Emitter {
	listeners = new Set();
	event = (listener) => {
		this.listeners.add(listener);
		return { dispose: () => this.listeners.delete(listener) };
	};
	fire(value) {
		for (const listener of [...this.listeners]) listener(value);
	}
}

const created = new Emitter();
const changed = new Emitter();
const deleted = new Emitter();
const renamed = new Emitter();

/** What the test drives: the events VS Code would deliver for changes on disk. */
export const events = {
	created: (fsPath) => created.fire(Uri.file(fsPath)),
	changed: (fsPath) => changed.fire(Uri.file(fsPath)),
	deleted: (fsPath) => deleted.fire(Uri.file(fsPath)),
	renamed: (pairs) => renamed.fire({ files: pairs.map(([from, to]) => ({ oldUri: Uri.file(from), newUri: Uri.file(to) })) }),
};

/** `**\/NAME/**` folder globs and `**\/*.ext`-free plain globs of an exclude pattern `{a,b,...}`: folder names only. */
function excludedFolders(exclude) {
	const names = new Set();
	for (const glob of String(exclude ?? '').replace(/^\{|\}$/g, '').split(',')) {
		const match = /^\*\*\/([^*/{}]+)\/\*\*$/.exec(glob);
		if (match) names.add(match[1]);
	}
	return names;
}

function includeMatcher(pattern) {
	if (pattern === '**/*') return () => true;
	const names = /^\*\*\/\{(.*)\}$/.exec(pattern);
	if (names) {
		const set = new Set(names[1].split(','));
		return (name) => set.has(name);
	}
	throw new Error(`vscode stub: unsupported findFiles pattern ${pattern}`);
}

export const workspace = {
	textDocuments: [],
	isTrusted: true,
	createFileSystemWatcher: () => ({
		onDidCreate: created.event,
		onDidChange: changed.event,
		onDidDelete: deleted.event,
		dispose() {},
	}),
	onDidRenameFiles: renamed.event,
	getConfiguration: () => ({ get: () => ({}) }),
	async findFiles(include, exclude, maxResults = Infinity) {
		const skip = excludedFolders(exclude);
		const matches = includeMatcher(include.pattern);
		const out = [];
		const walk = async (folder) => {
			let entries;
			try {
				entries = await fs.readdir(folder, { withFileTypes: true });
			} catch {
				return;
			}
			for (const entry of entries) {
				if (out.length >= maxResults) return;
				const full = path.join(folder, entry.name);
				if (entry.isDirectory()) {
					if (!skip.has(entry.name)) await walk(full);
				} else if (entry.isFile() && matches(entry.name)) {
					out.push(Uri.file(full));
				}
			}
		};
		await walk(include.baseUri.fsPath);
		return out;
	},
	fs: {
		async stat(uri) {
			const stats = await fs.stat(uri.fsPath);
			return { type: stats.isDirectory() ? FileType.Directory : FileType.File, size: stats.size, mtime: stats.mtimeMs, ctime: stats.ctimeMs };
		},
		async readFile(uri) {
			return new Uint8Array(await fs.readFile(uri.fsPath));
		},
	},
};

/** A LogOutputChannel that keeps its lines (for failure messages). */
export function logChannel() {
	const lines = [];
	const add = (level) => (message) => lines.push(`[${level}] ${message}`);
	return { lines, info: add('info'), warn: add('warn'), error: add('error'), debug: add('debug'), trace: add('trace') };
}
