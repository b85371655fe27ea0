import { parseArgs, type ParseArgsConfig } from 'node:util';

import { errorMessage, UserError } from '../errors';
import { draftLayouts, type DraftLayout } from '../protocol';

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

/** An option whose value is one of `allowed` (a protocol list); undefined stays undefined. */
export function oneOfOption<T extends string>(value: string | undefined, name: string, allowed: readonly T[]): T | undefined {
	if (value === undefined) {
		return undefined;
	}
	const found = allowed.find((candidate) => candidate === value);
	if (found === undefined) {
		throw new UserError(`--${name} must be one of ${allowed.join(', ')} (got '${value}')`, 2);
	}
	return found;
}

/** `--draft-layout`: how SpecKV's draft reads the prompt (protocol `draftLayouts`); undefined stays undefined. */
export function draftLayoutOption(value: string | undefined): DraftLayout | undefined {
	return oneOfOption(value, 'draft-layout', draftLayouts);
}
