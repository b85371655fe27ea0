import { fileURLToPath } from 'node:url';

import { errorMessage, UserError } from '../errors';
import type { Command } from './command';
import { askCommand } from './ask';
import { completeCommand } from './complete';
import { modelsCommand } from './models';
import { serveCommand } from './serve';

// Entry point of the sidecar bundle (dist/sidecar.mjs). `bin/repokv.js` calls `main`; the bundle also exports the
// sidecar's library surface (../api) for tests and tools that import it.
export * from '../api';

/**
 * `repokv bench` lives in bench/ with the benchmarks it runs, in a bundle of its own (dist/bench.mjs, built beside
 * this one by esbuild.mjs) that is loaded only when asked for. The extension's package does not ship it.
 */
async function loadBench(): Promise<Command> {
	const bundle = new URL('./bench.mjs', import.meta.url);
	try {
		const loaded = (await import(bundle.href)) as { benchCommand: Command };
		return loaded.benchCommand;
	} catch (error) {
		if (error instanceof Error && 'code' in error && error.code === 'ERR_MODULE_NOT_FOUND' && error.message.includes(fileURLToPath(bundle))) {
			throw new UserError(`the benchmarks' bundle ${fileURLToPath(bundle)} is missing; run \`npm run build\` in a repokv checkout (the extension's package does not ship the benchmarks)`);
		}
		throw error;
	}
}

const benchCommand: Command & { load(): Promise<Command> } = {
	summary: 'benchmarks: parity with llama.cpp, speed against node-llama-cpp',
	usage: 'usage: repokv bench <parity|speed|fidelity|kernels|session> [options]',
	load: loadBench,
	async run(argv) {
		return (await loadBench()).run(argv);
	},
};

/** The subcommands, `repokv <name>`. */
const commands: Readonly<Record<string, Command & { load?(): Promise<Command> }>> = {
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
			console.log(topic === undefined ? generalUsage() : ((await topic.load?.()) ?? topic).usage);
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
