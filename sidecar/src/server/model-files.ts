import { existsSync, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

import { errorMessage, UserError } from '../errors';

// Turns a model setting into a local GGUF path: an absolute (or workspace-relative) path is used as is; an `hf:` URI
// is downloaded once through node-llama-cpp's `resolveModelFile` (its cache folder makes the second start offline),
// with progress, a time-out, and an error that says "offline" in words rather than a socket code.

export interface ResolveModelOptions {
	/** Folder for downloads; default node-llama-cpp's models folder. */
	readonly downloadFolder: string | undefined;
	readonly timeoutMs: number;
	readonly onProgress?: (downloadedBytes: number, totalBytes: number) => void;
	readonly signal?: AbortSignal;
}

/**
 * What identifies a model file's content cheaply: device, inode, size and modification time; undefined when the
 * file is missing. A replaced (renamed over), rewritten or truncated file gets a new identity.
 */
export function modelFileIdentity(file: string): string | undefined {
	try {
		const stats = statSync(file);
		return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}`;
	} catch {
		return undefined;
	}
}

/** Whether a setting names a remote model that must be downloaded. */
export function isRemoteModel(setting: string): boolean {
	return /^(hf:|huggingface:|https?:\/\/)/i.test(setting);
}

export async function resolveModelPath(setting: string, options: ResolveModelOptions): Promise<string> {
	if (!isRemoteModel(setting)) {
		const absolute = path.resolve(setting);
		if (!existsSync(absolute)) {
			throw new UserError(`model file not found: ${absolute}`);
		}
		return absolute;
	}
	if (/^https?:\/\//i.test(setting)) {
		return downloadUrl(setting, options);
	}
	const { resolveModelFile } = await import('node-llama-cpp');
	const controller = new AbortController();
	let timer: NodeJS.Timeout | undefined;
	// Raced, not only signalled: resolving a URI fetches metadata before the download honours the signal, and a
	// machine without network can hang there far longer than the time-out.
	const timedOut = new Promise<never>((_resolve, reject) => {
		timer = setTimeout(() => {
			controller.abort(new Error('timed out'));
			reject(new UserError(`downloading ${setting} timed out after ${Math.round(options.timeoutMs / 1000)} s; if this machine is offline, download the model elsewhere and set repokv.model.target to its local path`));
		}, options.timeoutMs);
	});
	const onOuterAbort = (): void => {
		controller.abort(new Error('cancelled'));
	};
	options.signal?.addEventListener('abort', onOuterAbort, { once: true });
	// node-llama-cpp's downloader (ipull) lets a write error such as ENOSPC escape as an unhandled rejection and
	// never settles its promise: catch it here, so a full disk is a clear error now, not a time-out later.
	let onWriteError: ((reason: unknown) => void) | undefined;
	const writeFailed = new Promise<never>((_resolve, reject) => {
		onWriteError = (reason: unknown): void => {
			if (isDiskError(reason)) {
				controller.abort(new Error('disk error'));
				reject(diskError(setting, options.downloadFolder ?? 'the models folder', reason));
			}
		};
		process.on('unhandledRejection', onWriteError);
	});
	writeFailed.catch(() => undefined);
	try {
		return await Promise.race([
			writeFailed,
			resolveModelFile(setting, {
				...(options.downloadFolder === undefined ? {} : { directory: options.downloadFolder }),
				download: 'auto',
				cli: false,
				signal: controller.signal,
				onProgress: ({ downloadedSize, totalSize }) => options.onProgress?.(downloadedSize, totalSize),
			}),
			timedOut,
		]);
	} catch (error) {
		if (error instanceof UserError) {
			throw error;
		}
		const message = errorMessage(error);
		if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ENETUNREACH|ETIMEDOUT|fetch failed|getaddrinfo/i.test(message)) {
			throw new UserError(`cannot download ${setting}: the machine looks offline (${message}); download it elsewhere and set the model to its local path`);
		}
		throw new UserError(`cannot download ${setting}: ${message}`);
	} finally {
		clearTimeout(timer);
		options.signal?.removeEventListener('abort', onOuterAbort);
		if (onWriteError !== undefined) {
			process.off('unhandledRejection', onWriteError);
		}
	}
}

function isDiskError(error: unknown): boolean {
	const code = (error as { code?: unknown } | null)?.code;
	return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG';
}

function diskError(setting: string, folder: string, error: unknown): UserError {
	return new UserError(`cannot download ${setting}: the disk is full (${errorMessage(error)}) in ${folder}; free some space or set repokv.model.downloadFolder to a folder on a disk with room, then retry`);
}

/**
 * Downloads a model from an http(s) URL into the download folder: into `NAME.partial`, renamed to NAME only once the
 * whole file is written and flushed, so a failed download (a full disk, a dropped connection) never leaves a file
 * that a later start would take for the model; the partial file is removed on failure. A file already at NAME is
 * used as is. When the server says the size, a disk without room for it fails before the first byte.
 */
async function downloadUrl(url: string, options: ResolveModelOptions): Promise<string> {
	const folder = path.resolve(options.downloadFolder ?? path.join(os.homedir(), '.cache', 'repokv', 'models'));
	const name = path.posix.basename(new URL(url).pathname) || 'model.gguf';
	const target = path.join(folder, name);
	if (existsSync(target)) {
		return target;
	}
	const partial = `${target}.partial`;
	const controller = new AbortController();
	const timer = setTimeout(() => {
		controller.abort(new Error('timed out'));
	}, options.timeoutMs);
	const onOuterAbort = (): void => {
		controller.abort(new Error('cancelled'));
	};
	options.signal?.addEventListener('abort', onOuterAbort, { once: true });
	try {
		await fs.mkdir(folder, { recursive: true });
		const response = await fetch(url, { signal: controller.signal });
		if (!response.ok || response.body === null) {
			throw new UserError(`cannot download ${url}: the server answered ${response.status} ${response.statusText}`);
		}
		const total = Number(response.headers.get('content-length') ?? NaN);
		if (Number.isFinite(total)) {
			const space = await fs.statfs(folder);
			const free = space.bavail * space.bsize;
			if (free < total) {
				await response.body.cancel();
				throw diskError(url, folder, Object.assign(new Error(`the model needs ${mib(total)} MiB, ${mib(free)} MiB are free`), { code: 'ENOSPC' }));
			}
		}
		const file = await fs.open(partial, 'w');
		let done = 0;
		try {
			for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
				await file.write(chunk);
				done += chunk.byteLength;
				options.onProgress?.(done, Number.isFinite(total) ? total : done);
			}
			await file.sync();
		} finally {
			await file.close();
		}
		if (Number.isFinite(total) && done !== total) {
			throw new UserError(`cannot download ${url}: the connection ended after ${done} of ${total} bytes; retry`);
		}
		await fs.rename(partial, target);
		return target;
	} catch (error) {
		await fs.rm(partial, { force: true }).catch(() => undefined);
		if (error instanceof UserError) {
			throw error;
		}
		if (isDiskError(error)) {
			throw diskError(url, folder, error);
		}
		if (controller.signal.aborted && controller.signal.reason instanceof Error && controller.signal.reason.message === 'timed out') {
			throw new UserError(`downloading ${url} timed out after ${Math.round(options.timeoutMs / 1000)} s; download it elsewhere and set repokv.model.target to its local path`);
		}
		throw new UserError(`cannot download ${url}: ${errorMessage(error)}`);
	} finally {
		clearTimeout(timer);
		options.signal?.removeEventListener('abort', onOuterAbort);
	}
}

function mib(bytes: number): string {
	return (bytes / 1024 / 1024).toFixed(1);
}
