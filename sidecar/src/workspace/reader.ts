import * as nodeFs from 'node:fs/promises';
import * as path from 'node:path';
import type { Dirent, Stats } from 'node:fs';

import { errorCode, errorMessage } from '../errors';
import { alwaysSkippedFolders, IgnoreRules, ignoreFileNames } from './ignore-rules';
import { isSecretFolder, isSecretPath } from './secrets';

/** One text file of the workspace, as it goes into a prompt. */
export interface WorkspaceFile {
	/** Path relative to the workspace root, with forward slashes on every platform. */
	readonly path: string;
	readonly text: string;
	/** Size on disk in bytes. */
	readonly bytes: number;
	/** Last modification time, for ordering files least recently edited first. */
	readonly mtimeMs: number;
}

/** Why a path was left out of the workspace. */
export type SkipReason =
	| 'ignored' // matched .gitignore / .repokvignore, or an always-skipped folder such as node_modules
	| 'secret' // looks like a credential (see secrets.ts); never read at all
	| 'binary' // contains NUL bytes or is not valid UTF-8
	| 'tooLarge' // larger than the per-file limit
	| 'overTotal' // would push the workspace over its total-bytes cap
	| 'unreadable'; // the file or folder could not be read (permissions, races with deletion, ...)

export interface SkippedPath {
	readonly path: string;
	readonly reason: SkipReason;
	/** Extra detail, e.g. the system error for `unreadable`. */
	readonly detail?: string;
}

export interface ReadWorkspaceOptions {
	/** Files larger than this are skipped. Default 1 MB: larger sources are almost always generated or data. */
	readonly maxFileBytes?: number;
	/** Reading stops adding files once their total would pass this. Default 16 MB, far more than a tiny model's context. */
	readonly maxTotalBytes?: number;
	/** The file system to read through; tests replace it to simulate failures that root cannot cause with chmod. */
	readonly fs?: WorkspaceFs;
}

/** The subset of `node:fs/promises` the reader uses. */
export interface WorkspaceFs {
	readdir(folder: string, options: { withFileTypes: true }): Promise<Dirent[]>;
	stat(file: string): Promise<Stats>;
	readFile(file: string): Promise<Buffer>;
}

export interface WorkspaceSnapshot {
	/** Absolute path of the workspace root. */
	readonly root: string;
	/** Included files, sorted by path so that every run sees the same order. */
	readonly files: readonly WorkspaceFile[];
	readonly skipped: readonly SkippedPath[];
	readonly totalBytes: number;
}

export const defaultMaxFileBytes = 1024 * 1024;
export const defaultMaxTotalBytes = 16 * 1024 * 1024;

/**
 * Read every text file of a workspace folder, honouring `.gitignore` and `.repokvignore` files at any depth, and
 * leaving out binary, oversized and secret-looking files. Problems with single files or folders are reported in
 * `skipped` and never abort the walk; only a missing or unreadable root is an error.
 */
export async function readWorkspace(root: string, options: ReadWorkspaceOptions = {}): Promise<WorkspaceSnapshot> {
	const fs = options.fs ?? nodeFs;
	const maxFileBytes = options.maxFileBytes ?? defaultMaxFileBytes;
	const maxTotalBytes = options.maxTotalBytes ?? defaultMaxTotalBytes;
	const absoluteRoot = path.resolve(root);

	const files: WorkspaceFile[] = [];
	const skipped: SkippedPath[] = [];
	let totalBytes = 0;

	// Candidate files are collected first and read afterwards in path order, so that which files fall over the
	// total cap does not depend on the order the operating system lists folders in.
	const candidates: string[] = [];

	// The root's own listing failing is fatal: there is no workspace to speak of. Below the root it is not.
	const rootEntries = await fs.readdir(absoluteRoot, { withFileTypes: true });

	const walk = async (folder: string, entries: Dirent[], inherited: IgnoreRules): Promise<void> => {
		const rules = inherited.withFolder(folder, await readIgnoreFiles(fs, absoluteRoot, folder, entries));
		// Sorting by name (not locale) keeps the walk deterministic across platforms.
		const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
		for (const entry of sorted) {
			const relative = folder === '' ? entry.name : `${folder}/${entry.name}`;
			// Symbolic links are not followed: they can loop, and can point outside the workspace.
			if (entry.isDirectory()) {
				if (alwaysSkippedFolders.has(entry.name) || rules.isIgnored(relative, true)) {
					skipped.push({ path: relative, reason: 'ignored' });
				} else if (isSecretFolder(entry.name)) {
					skipped.push({ path: relative, reason: 'secret' });
				} else {
					let children: Dirent[];
					try {
						children = await fs.readdir(path.join(absoluteRoot, relative), { withFileTypes: true });
					} catch (error) {
						skipped.push({ path: relative, reason: 'unreadable', detail: errorCode(error) ?? errorMessage(error) });
						continue;
					}
					await walk(relative, children, rules);
				}
			} else if (entry.isFile()) {
				if (rules.isIgnored(relative, false)) {
					skipped.push({ path: relative, reason: 'ignored' });
				} else if (isSecretPath(relative)) {
					skipped.push({ path: relative, reason: 'secret' });
				} else {
					candidates.push(relative);
				}
			}
		}
	};
	await walk('', rootEntries, IgnoreRules.empty());

	candidates.sort();
	for (const relative of candidates) {
		const absolute = path.join(absoluteRoot, relative);
		try {
			// stat before reading so that a huge file is never loaded into memory just to be rejected.
			const stats = await fs.stat(absolute);
			if (stats.size > maxFileBytes) {
				skipped.push({ path: relative, reason: 'tooLarge', detail: `${stats.size} bytes` });
				continue;
			}
			if (totalBytes + stats.size > maxTotalBytes) {
				skipped.push({ path: relative, reason: 'overTotal' });
				continue;
			}
			const buffer = await fs.readFile(absolute);
			const text = decodeText(buffer);
			if (text === undefined) {
				skipped.push({ path: relative, reason: 'binary' });
				continue;
			}
			totalBytes += buffer.length;
			files.push({ path: relative, text, bytes: buffer.length, mtimeMs: stats.mtimeMs });
		} catch (error) {
			skipped.push({ path: relative, reason: 'unreadable', detail: errorCode(error) ?? errorMessage(error) });
		}
	}

	return { root: absoluteRoot, files, skipped, totalBytes };
}

/** The decoder is fatal so that non-UTF-8 input (Latin-1, UTF-16, images) is recognised rather than mangled. */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decode a file as UTF-8 text, or return undefined if it looks binary (a NUL byte, or invalid UTF-8). */
export function decodeText(buffer: Uint8Array): string | undefined {
	if (buffer.includes(0)) {
		return undefined;
	}
	try {
		return utf8.decode(buffer);
	} catch {
		return undefined;
	}
}

/** The contents of a folder's ignore files, if it has any; an unreadable ignore file counts as empty. */
async function readIgnoreFiles(fs: WorkspaceFs, root: string, folder: string, entries: readonly Dirent[]): Promise<string[]> {
	const texts: string[] = [];
	for (const name of ignoreFileNames) {
		if (entries.some((entry) => entry.name === name && entry.isFile())) {
			try {
				texts.push((await fs.readFile(path.join(root, folder, name))).toString('utf8'));
			} catch {
				// Reading it failed between listing and reading; behave as if it were not there.
			}
		}
	}
	return texts;
}
