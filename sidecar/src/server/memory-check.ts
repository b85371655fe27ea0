import { statSync } from 'node:fs';
import * as os from 'node:os';

import { errorMessage, UserError } from '../errors';
import type { ModelShape } from './cache-snapshot';

// Before a model and its context are created: do the weights and the KV cache for the requested context fit in the
// memory this process can still use? If not, a clear error naming the largest context that fits, instead of the
// kernel's OOM killer ending the sidecar mid-load (on Linux an allocation succeeds and the process dies on first touch).

/** Bytes assumed for everything that is neither weights nor KV: compute buffers, the runtime, the mirror. */
export const overheadBytes = 256 * 1024 * 1024;

/**
 * The bytes this process may still allocate: the kernel's available memory (MemAvailable), capped by a cgroup
 * limit less what the process already holds. `REPOKV_MEMORY_LIMIT_BYTES` overrides it (tests simulate a small machine).
 */
export function availableMemoryBytes(): number {
	const override = Number(process.env['REPOKV_MEMORY_LIMIT_BYTES']);
	if (Number.isFinite(override) && override > 0) {
		return override;
	}
	const free = os.freemem();
	const constrained = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : 0;
	return constrained > 0 && constrained < Number.MAX_SAFE_INTEGER ? Math.min(free, constrained - process.memoryUsage.rss()) : free;
}

/** fp16 K and V for every layer and KV head: the full cache's bytes per token (the upper bound of every policy). */
export function kvBytesPerToken(shape: ModelShape): number {
	return 2 * shape.layers * shape.kvHeads * shape.headDim * 2;
}

/** The context the engine will allocate: the setting, clamped to the trained context (as both engines do). */
export async function effectiveContext(modelPath: string, requested: number | undefined): Promise<number> {
	const { readGgufFileInfo } = await import('node-llama-cpp');
	let trained = 4096;
	try {
		const info = await readGgufFileInfo(modelPath, { readTensorInfo: false });
		const metadata = info.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
		const architecture = (metadata['general'] as { architecture?: string } | undefined)?.architecture ?? 'llama';
		const length = metadata[architecture]?.['context_length'];
		if (typeof length === 'number' && length > 0) {
			trained = length;
		}
	} catch (error) {
		throw new UserError(`model file ${modelPath} is not a valid GGUF file: ${errorMessage(error)}`);
	}
	return Math.min(requested ?? trained, trained);
}

/**
 * Throws a `UserError` when the weights (the model files' sizes) plus the fp16 KV cache for `contextTokens` plus
 * the overhead exceed the available memory, naming the largest context that fits.
 */
export function checkContextFits(input: { modelFiles: readonly string[]; shape: ModelShape; contextTokens: number; available?: number }): void {
	const available = input.available ?? availableMemoryBytes();
	const weights = input.modelFiles.reduce((sum, file) => sum + statSync(file).size, 0);
	const perToken = kvBytesPerToken(input.shape);
	const needed = weights + perToken * input.contextTokens + overheadBytes;
	if (needed <= available) {
		return;
	}
	const gib = (bytes: number): string => (bytes / 1024 ** 3).toFixed(2);
	const room = available - weights - overheadBytes;
	const largest = room <= 0 ? 0 : Math.floor(room / perToken / 256) * 256;
	if (largest < 256) {
		throw new UserError(`not enough memory for the model: its weights need ${gib(weights)} GiB plus about ${gib(overheadBytes)} GiB of buffers, and only ${gib(available)} GiB are available; close other programs or choose a smaller model in repokv.model.target`);
	}
	throw new UserError(
		`not enough memory for a context of ${input.contextTokens} tokens: it needs about ${gib(needed)} GiB (weights ${gib(weights)} GiB, KV cache ${gib(perToken * input.contextTokens)} GiB) and ${gib(available)} GiB are available; the largest context that fits is about ${largest} tokens: set repokv.contextSize to ${largest} or less`,
	);
}
