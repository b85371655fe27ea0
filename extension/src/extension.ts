import * as vscode from 'vscode';

// The extension host side of repokv. It stays thin (DESIGN.md §1): no model, no indexing, no tokenizing here. For
// now it only proves activation works; the language client that starts the sidecar (dist/sidecar.mjs) and feeds it
// the workspace arrives with the client issue.

export function activate(context: vscode.ExtensionContext): void {
	const output = vscode.window.createOutputChannel('repokv', { log: true });
	context.subscriptions.push(output);
	// packageJSON is untyped (`any`) in the API; read only what is known to be there.
	const manifest = context.extension.packageJSON as { version?: unknown };
	const version = typeof manifest.version === 'string' ? manifest.version : 'unknown';
	output.info(`repokv ${version} activated (VS Code ${vscode.version}, ${context.extensionMode === vscode.ExtensionMode.Production ? 'production' : 'development'} mode)`);
}

export function deactivate(): void {
	// Nothing to stop yet: everything created in activate() is disposed through context.subscriptions.
}
