/**
 * An error caused by the user's input or environment (a missing file, a bad flag, a broken model file) rather than
 * by a bug. The CLI prints only its message, never a stack, and exits with its code; anything else that escapes is
 * a bug and is printed in full.
 */
export class UserError extends Error {
	override readonly name = 'UserError';

	constructor(
		message: string,
		/** Process exit code: 2 for command-line usage mistakes (the shell convention), 1 for everything else. */
		readonly exitCode = 1,
	) {
		super(message);
	}
}

/** Narrow an unknown `catch` value to a message worth showing. */
export function errorMessage(error: unknown): string {
	return error instanceof Error ? error.message : String(error);
}

/** The `code` of a Node system error (`ENOENT`, `EACCES`, ...), if it has one. */
export function errorCode(error: unknown): string | undefined {
	if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') {
		return error.code;
	}
	return undefined;
}
