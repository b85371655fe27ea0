import { errorMessage, UserError } from '../errors';
import type { Command } from './command';
import { benchCommand } from '../../../bench/command';
import { askCommand } from './ask';
import { completeCommand } from './complete';
import { modelsCommand } from './models';
import { serveCommand } from './serve';

// Entry point of the sidecar bundle (dist/sidecar.mjs). `bin/repokv.js` calls `main`; the bundle also exports the
// sidecar's library surface (../api) for tests and tools that import it.
export * from '../api';

/** The subcommands, `repokv <name>`. `bench` lives in bench/ with the benchmarks it runs. */
const commands: Readonly<Record<string, Command>> = {
	ask: askCommand,
	bench: benchCommand,
	complete: completeCommand,
	models: modelsCommand,
	serve: serveCommand,
};

const generalUsage = (): string =>
	[
		'usage: repokv <command> [options]',
		'',
		'commands:',
		...Object.entries(commands).map(([name, command]) => `  ${name.padEnd(12)}${command.summary}`),
		`  ${'help'.padEnd(12)}show this help, or a command's: repokv help <command>`,
	].join('\n');

/** Run the CLI with `argv` (the arguments after `repokv`) and resolve to the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
	const [name, ...rest] = argv;
	try {
		if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
			const topic = name === 'help' && rest[0] !== undefined ? commands[rest[0]] : undefined;
			console.log(topic?.usage ?? generalUsage());
			return 0;
		}
		const command = commands[name];
		if (command === undefined) {
			throw new UserError(`unknown command '${name}'\n\n${generalUsage()}`, 2);
		}
		return await command.run(rest);
	} catch (error) {
		if (error instanceof UserError) {
			console.error(`repokv: ${error.message}`);
			return error.exitCode;
		}
		// Anything else is a bug: keep the stack for the report.
		console.error(`repokv: internal error: ${errorMessage(error)}`);
		console.error(error);
		return 1;
	}
}
