import { parseArgs, type ParseArgsConfig } from 'node:util';

import { draftLayouts, isDraftLayout, type DraftLayout } from '../engine/draft-prompt';
import { errorMessage, UserError } from '../errors';

/** `node:util` parseArgs with errors turned into usage errors (exit code 2) instead of stack traces. */
export function parseCommandArgs<const T extends NonNullable<ParseArgsConfig['options']>>(argv: readonly string[], options: T) {
	try {
		return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
	} catch (error) {
		throw new UserError(errorMessage(error), 2);
	}
}

/** A required string option, or a usage error naming it. */
export function requireOption(value: string | undefined, name: string): string {
	if (value === undefined || value === '') {
		throw new UserError(`missing required option --${name}`, 2);
	}
	return value;
}

/** Parse an integer option (decimal digits only), checking a lower bound; undefined stays undefined. */
export function integerOption(value: string | undefined, name: string, minimum: number): number | undefined {
	if (value === undefined) {
		return undefined;
	}
	if (!/^[+-]?\d+$/.test(value.trim())) {
		throw new UserError(`--${name} must be an integer (got '${value}')`, 2);
	}
	const parsed = Number.parseInt(value, 10);
	if (parsed < minimum) {
		throw new UserError(`--${name} must be at least ${minimum} (got ${parsed})`, 2);
	}
	return parsed;
}

/** `--draft-layout`: how SpecKV's draft reads the prompt (engine/draft-prompt.ts); undefined stays undefined. */
export function draftLayoutOption(value: string | undefined): DraftLayout | undefined {
	if (value !== undefined && !isDraftLayout(value)) {
		throw new UserError(`--draft-layout must be one of ${draftLayouts.join(', ')} (got '${value}')`, 2);
	}
	return value;
}
