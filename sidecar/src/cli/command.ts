/** One CLI subcommand: `repokv <name> ...`. */
export interface Command {
	/** One line for `repokv help`. */
	readonly summary: string;
	/** Full usage text for `repokv <name> --help`. */
	readonly usage: string;
	/** Run with the arguments after the command name; resolves to the process exit code. */
	run(argv: readonly string[]): Promise<number>;
}
