import { existsSync } from 'node:fs';
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
	try {
		return await Promise.race([
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
	}
}
