import { existsSync } from 'node:fs';

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
