import { startServer } from '../server/server';
import { parseCommandArgs } from './args';
import type { Command } from './command';

const usage = `usage: repokv serve --stdio

Run the repokv language server over stdin/stdout (LSP; the protocol is sidecar/src/protocol.ts). The VS Code
extension starts it this way; any LSP client can. Settings come from workspace/configuration (section "repokv")
or initializationOptions.settings. Logs go to stderr and to the client's window/logMessage.

  --stdio             talk LSP over stdin/stdout (the only transport)`;

export const serveCommand: Command = {
	summary: 'run the language server (LSP over stdio)',
	usage,
	async run(argv) {
		const { values } = parseCommandArgs(argv, {
			stdio: { type: 'boolean' },
			help: { type: 'boolean', short: 'h' },
			// vscode-languageclient appends these to a server's command line; accepted and ignored.
			clientProcessId: { type: 'string' },
		});
		if (values.help === true) {
			console.log(usage);
			return 0;
		}
		if (values.stdio !== true) {
			console.error('repokv serve: only --stdio is supported; run `repokv serve --stdio`');
			return 2;
		}
		// stdout carries the protocol: anything else printed there would corrupt it.
		console.log = console.error;
		console.info = console.error;
		const log = (message: string): void => {
			process.stderr.write(`${message}\n`);
		};
		process.on('uncaughtException', (error) => { log(`repokv serve: uncaught ${error.stack ?? error.message}`); });
		process.on('unhandledRejection', (reason) => { log(`repokv serve: unhandled rejection ${String(reason)}`); });
		// Writing to a closed pipe (the client died) must end the process, not crash it with an unhandled error.
		process.stdout.on('error', () => process.exit(0));
		await startServer({ input: process.stdin, output: process.stdout, log });
		// Native threads and timers may keep the loop alive; the client is gone, so leave now.
		process.exit(0);
	},
};
