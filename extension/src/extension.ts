import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { settingsSection } from '../../sidecar/src/protocol';
import { askRepository } from './ask';
import { InspectorPanel, inspectorViewType } from './inspector';
import { Sidecar } from './sidecar';
import { StatusBar } from './status';

// The extension host side of repokv: a thin client (docs/architecture.md, "Processes"). Activation wires the sidecar's
// lifecycle owner, the status bar and the commands; everything heavy happens in the sidecar process.

/** What tests may read: the exported API of the activated extension. */
export interface RepokvApi {
	readonly sidecar: Sidecar;
	/** The status bar item's current text and tooltip. */
	statusText(): { text: string; tooltip: string };
}

let current: Sidecar | undefined;

export function activate(context: vscode.ExtensionContext): RepokvApi {
	const log = vscode.window.createOutputChannel('repokv', { log: true });
	const manifest = context.extension.packageJSON as { version?: unknown };
	const version = typeof manifest.version === 'string' ? manifest.version : 'unknown';
	log.info(`repokv ${version} activated (VS Code ${vscode.version}, ${vscode.workspace.isTrusted ? 'trusted' : 'restricted mode'})`);

	const sidecar = new Sidecar(context, log);
	current = sidecar;
	const statusBar = new StatusBar();
	let status = { text: '', tooltip: '' };
	// Test mode: the E2E driver waits on this file instead of sleeping (docs/e2e.md: wait on signals, never on sleeps).
	const stateFile = process.env['REPOKV_E2E_STATE_FILE'];
	const refreshStatus = (): void => {
		status = statusBar.update({ view: sidecar.view, config: sidecar.config, trusted: vscode.workspace.isTrusted, feed: sidecar.feedStats });
		if (stateFile) {
			const snapshot = sidecar.snapshot;
			const state = { time: new Date().toISOString(), view: sidecar.view, status, feed: sidecar.feedStats ?? null, snapshot: snapshot ? { sequence: snapshot.sequence, engine: snapshot.engine, source: snapshot.source, budget: snapshot.budget, totals: snapshot.totals, latency: snapshot.latency, layers: snapshot.layers } : null };
			// Atomic (write then rename): the driver polls this file while the extension rewrites it.
			try {
				fs.writeFileSync(`${stateFile}.tmp`, JSON.stringify(state, null, 1));
				fs.renameSync(`${stateFile}.tmp`, stateFile);
			} catch (error) {
				log.warn(`test state file: ${String(error)}`);
			}
		}
	};

	context.subscriptions.push(
		log,
		statusBar,
		sidecar,
		sidecar.onDidChangeView(refreshStatus),
		sidecar.onDidChangeSnapshot(refreshStatus),
		vscode.workspace.onDidChangeConfiguration((event) => {
			if (!event.affectsConfiguration(settingsSection) && !event.affectsConfiguration('files.exclude')) return;
			sidecar.onConfigChanged(event);
			refreshStatus();
		}),
		vscode.workspace.onDidGrantWorkspaceTrust(() => {
			sidecar.onTrustGranted();
			refreshStatus();
		}),
		vscode.commands.registerCommand('repokv.askRepository', (question?: unknown) => askRepository(context, sidecar, typeof question === 'string' ? question : undefined)),
		vscode.commands.registerCommand('repokv.showCacheInspector', () => { InspectorPanel.createOrShow(context, sidecar); }),
		vscode.commands.registerCommand('repokv.restartSidecar', () => sidecar.restart()),
		vscode.commands.registerCommand('repokv.toggleCompletions', async () => {
			const enabled = !sidecar.config.completion.enabled;
			await vscode.workspace.getConfiguration(settingsSection).update('completion.enabled', enabled, vscode.ConfigurationTarget.Global);
			log.info(`completions ${enabled ? 'on' : 'off'}`);
		}),
		vscode.commands.registerCommand('repokv.triggerCompletion', () => vscode.commands.executeCommand('editor.action.inlineSuggest.trigger')),
		vscode.commands.registerCommand('repokv.showLog', () => { log.show(true); }),
		vscode.commands.registerCommand('repokv.showMenu', async () => {
			const running = sidecar.running();
			const items: (vscode.QuickPickItem & { command: string })[] = [
				{ label: sidecar.config.completion.enabled ? '$(circle-slash) Turn completions off' : '$(check) Turn completions on', command: 'repokv.toggleCompletions' },
				{ label: '$(comment-discussion) Ask the Repository', command: 'repokv.askRepository', ...('reason' in running ? { description: running.reason } : {}) },
				{ label: '$(graph) Show Cache Inspector', command: 'repokv.showCacheInspector' },
				{ label: '$(debug-restart) Restart Sidecar', command: 'repokv.restartSidecar' },
				{ label: '$(output) Show Log', command: 'repokv.showLog' },
			];
			const picked = await vscode.window.showQuickPick(items, { title: `repokv: ${status.text.replace(/\$\([^)]*\)\s*/g, '')}` });
			if (picked) await vscode.commands.executeCommand(picked.command);
		}),
		vscode.window.registerWebviewPanelSerializer(inspectorViewType, {
			deserializeWebviewPanel: (panel) => {
				InspectorPanel.revive(panel, context, sidecar);
				return Promise.resolve();
			},
		}),
	);
	refreshStatus();
	void sidecar.start();
	return { sidecar, statusText: () => status };
}

/** VS Code waits for this promise: the sidecar gets its LSP shutdown/exit instead of losing its stdin mid-request. */
export async function deactivate(): Promise<void> {
	await current?.stop('extension deactivated');
	current = undefined;
}
