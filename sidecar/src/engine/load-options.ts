import { existsSync } from 'node:fs';
import { freemem } from 'node:os';

import { UserError } from '../errors';
import type { LoadModelOptions } from './types';

/**
 * What every engine checks before touching its runtime: a usable thread count and a model file that exists, so both
 * engines fail with the same clear message instead of a native error.
 */
export function checkLoadOptions(options: LoadModelOptions): void {
	if (!Number.isInteger(options.threads) || options.threads < 1) {
		throw new UserError(`threads must be a positive integer (got ${options.threads})`, 2);
	}
	if (!existsSync(options.modelPath)) {
		throw new UserError(`model file not found: ${options.modelPath}`);
	}
}

/** A model's shape, as far as its KV cache goes. */
export interface KvShape {
	readonly nLayer: number;
	readonly nHeadKv: number;
	readonly headDim: number;
}

/** Bytes a full fp16 KV cache takes per token (K and V, every layer and KV head). */
export function fp16KvBytesPerToken(shape: KvShape): number {
	return shape.nLayer * shape.nHeadKv * shape.headDim * 2 * 2;
}

/** Share of the available memory an automatically sized fp16 KV cache may take (weights and the editor need the rest). */
const autoContextMemoryShare = 0.5;
/** An automatic context is never cut below this (or the trained context, if smaller): below it repository context is moot. */
const minAutoContext = 4096;

/**
 * The context window to open. Asked for (the `contextSize` setting, `--context`): that, capped at the trained
 * context. Not asked for: the trained context (32K for Qwen2.5-Coder), unless its full fp16 KV cache would take more
 * than half the memory available now; then the largest multiple of 1024 tokens that fits (at least 4096).
 */
export function chooseContextSize(input: { readonly trainContextSize: number; readonly requested: number | undefined; readonly kvBytesPerToken: number; readonly availableBytes?: number }): number {
	const { trainContextSize, requested, kvBytesPerToken } = input;
	if (requested !== undefined) {
		return Math.min(requested, trainContextSize);
	}
	const available = input.availableBytes ?? freemem();
	const fits = kvBytesPerToken > 0 ? Math.floor((autoContextMemoryShare * available) / kvBytesPerToken) : trainContextSize;
	if (fits >= trainContextSize) {
		return trainContextSize;
	}
	return Math.min(trainContextSize, Math.max(minAutoContext, Math.floor(fits / 1024) * 1024));
}
