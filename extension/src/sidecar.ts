import * as vscode from 'vscode';
import {
	CloseAction,
	ErrorAction,
	DidChangeConfigurationNotification,
	LanguageClient,
	RevealOutputChannelOn,
	State,
	TransportKind,
	type LanguageClientOptions,
	type ServerOptions,
} from 'vscode-languageclient/node';
import {
	CacheDidChangeNotification,
	CacheSnapshotRequest,
	StatusDidChangeNotification,
	WorkspaceDidChangeFilesNotification,
	settingsSection,
	type CacheSnapshot,
	type DidChangeFilesParams,
	type StatusParams,
} from '../../sidecar/src/protocol';
import { completionAllowed, readConfig, toServerSettings, type Config } from './config';
import { RestartBackoff } from './backoff';
import { WorkspaceFeed } from './feed';

// One object owns the language client's lifecycle (rust-analyzer's `Ctx`): start, stop, restart with backoff, and
// the state every command consults, so commands still explain themselves while the sidecar is down.

/** What the extension knows of the sidecar: the server's own status while it runs, the client's view otherwise. */
export type SidecarView =
	| { readonly kind: 'stopped'; readonly reason: string }
	| { readonly kind: 'starting' }
	| { readonly kind: 'restarting'; readonly inSeconds: number; readonly reason: string }
	| { readonly kind: 'running'; readonly status: StatusParams }
	| { readonly kind: 'failed'; readonly reason: string };


export class Sidecar implements vscode.Disposable {
	private client: LanguageClient | undefined;
	private clientDisposables: vscode.Disposable[] = [];
	private feed: WorkspaceFeed | undefined;
	private readonly backoff = new RestartBackoff();
	private startedAt = 0;
	private restartTimer: ReturnType<typeof setTimeout> | undefined;
	private stopping = false;
	private viewValue: SidecarView = { kind: 'stopped', reason: 'not started yet' };
	private lastSnapshot: CacheSnapshot | null = null;
	private readonly viewEmitter = new vscode.EventEmitter<SidecarView>();
	private readonly snapshotEmitter = new vscode.EventEmitter<CacheSnapshot>();
	/** Fires on every state change of the sidecar (for the status bar, panels and test hooks). */
	readonly onDidChangeView = this.viewEmitter.event;
	/** Fires on every `repokv/cache/didChange` push. */
	readonly onDidChangeSnapshot = this.snapshotEmitter.event;
	config: Config;

	constructor(
		private readonly context: vscode.ExtensionContext,
		readonly log: vscode.LogOutputChannel,
	) {
		this.config = readConfig();
	}

	get view(): SidecarView {
		return this.viewValue;
	}

	get snapshot(): CacheSnapshot | null {
		return this.lastSnapshot;
	}

	get feedStats(): WorkspaceFeed['stats'] | undefined {
		return this.feed?.stats;
	}

	/** The running client, or undefined with a sentence saying why there is none (for commands to show). */
	running(): { client: LanguageClient } | { reason: string } {
		if (this.client?.state === State.Running) return { client: this.client };
		const view = this.viewValue;
		switch (view.kind) {
			case 'starting':
				return { reason: 'the repokv sidecar is still starting' };
			case 'restarting':
				return { reason: `the repokv sidecar stopped (${view.reason}); it restarts in ${view.inSeconds} s` };
			case 'failed':
				return { reason: `the repokv sidecar failed: ${view.reason}. Run "repokv: Restart Sidecar" after fixing it (details in the repokv output)` };
			case 'stopped':
				return { reason: `the repokv sidecar is not running (${view.reason})` };
			case 'running':
				return { reason: 'the repokv sidecar is not connected' };
		}
	}

	private setView(view: SidecarView): void {
		this.viewValue = view;
		this.viewEmitter.fire(view);
	}

	private serverOptions(): ServerOptions {
		const launcher = vscode.Uri.joinPath(this.context.extensionUri, 'bin', 'repokv.js').fsPath;
		// `serve` + the `--stdio` the client appends for TransportKind.stdio. The extension host's own Node runs it.
		const run = { module: launcher, transport: TransportKind.stdio, args: ['serve'], options: { cwd: this.context.extensionUri.fsPath } };
		return { run, debug: { ...run, options: { ...run.options, execArgv: ['--inspect=6019'] } } };
	}

	private clientOptions(): LanguageClientOptions {
		return {
			documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
			outputChannel: this.log,
			// No pop-ups for transient errors: the status bar and the log say it.
			revealOutputChannelOn: RevealOutputChannelOn.Never,
			// The extension feeds the workspace (feed.ts): the server must not read the disk as well.
			initializationOptions: { settings: toServerSettings(this.config), feedsWorkspace: true },
			initializationFailedHandler: (error) => {
				this.log.error(`sidecar initialization failed: ${String(error)}`);
				return false;
			},
			errorHandler: {
				error: (error) => {
					this.log.warn(`sidecar connection error: ${error.message}`);
					return { action: ErrorAction.Continue, handled: true };
				},
				// We restart ourselves (with backoff and a visible countdown) rather than through the library.
				closed: () => {
					if (!this.stopping) this.scheduleRestart('the process exited');
					return { action: CloseAction.DoNotRestart, handled: true };
				},
			},
			middleware: {
				workspace: {
					configuration: (params, token, next) => {
						// The single source of settings for the server: our typed, sanitised config.
						if (params.items.every((item) => item.section === settingsSection)) {
							return params.items.map(() => toServerSettings(this.config));
						}
						return next(params, token);
					},
				},
				provideInlineCompletionItems: (document, position, context, token, next) => {
					const explicit = context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
					if (!completionAllowed(this.config, document.languageId, explicit)) return null;
					return next(document, position, context, token);
				},
			},
		};
	}

	/** Starts the sidecar (no-op while it runs). */
	async start(): Promise<void> {
		if (this.client) return;
		if (this.restartTimer) {
			clearTimeout(this.restartTimer);
			this.restartTimer = undefined;
		}
		this.stopping = false;
		this.setView({ kind: 'starting' });
		const client = new LanguageClient('repokv', 'repokv sidecar', this.serverOptions(), this.clientOptions());
		this.client = client;
		this.clientDisposables = [
			client.onNotification(StatusDidChangeNotification.type, (status) => {
				if (this.client === client) this.setView({ kind: 'running', status });
			}),
			client.onNotification(CacheDidChangeNotification.type, (snapshot) => {
				if (this.lastSnapshot && snapshot.sequence < this.lastSnapshot.sequence) return;
				this.lastSnapshot = snapshot;
				this.snapshotEmitter.fire(snapshot);
			}),
		];
		this.startedAt = Date.now();
		try {
			await client.start();
		} catch (error) {
			if (this.client !== client) return;
			this.log.error(`sidecar did not start: ${String(error)}`);
			await this.disposeClient();
			this.scheduleRestart(firstLine(error));
			return;
		}
		if (this.client !== client) return;
		if (this.viewValue.kind === 'starting') {
			this.setView({ kind: 'running', status: { state: 'starting', message: 'connected' } });
		}
		this.startFeed(client);
	}

	private startFeed(client: LanguageClient): void {
		this.feed?.dispose();
		this.feed = undefined;
		const folders = vscode.workspace.workspaceFolders ?? [];
		const folder = folders[0];
		if (!folder) return;
		if (folders.length > 1) this.log.warn(`workspace feed: only the first folder (${folder.name}) is sent; ${folders.length - 1} more are not (yet) supported`);
		if (!vscode.workspace.isTrusted) {
			this.log.info('workspace feed: restricted mode (workspace not trusted): no file is streamed to the sidecar');
			return;
		}
		const sink = async (params: DidChangeFilesParams): Promise<void> => {
			if (this.client === client && client.state === State.Running) {
				await client.sendNotification(WorkspaceDidChangeFilesNotification.type, params);
			}
		};
		this.feed = new WorkspaceFeed(folder.uri, this.config, sink, this.log);
		void this.feed.rescan();
	}

	/** Workspace trust was granted: stream the workspace now. */
	onTrustGranted(): void {
		if (this.client?.state === State.Running) this.startFeed(this.client);
	}

	onConfigChanged(event: vscode.ConfigurationChangeEvent): void {
		this.config = readConfig();
		this.feed?.updateConfig(this.config);
		if (event.affectsConfiguration('repokv.workspace') || event.affectsConfiguration('files.exclude')) void this.feed?.rescan();
		if (event.affectsConfiguration('repokv.trace')) {
			void this.restart();
		} else if (this.client?.state === State.Running) {
			// Pull model: the server asks `workspace/configuration` again, answered by the middleware above.
			void this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: null });
		}
	}

	private scheduleRestart(reason: string): void {
		void this.disposeClient();
		const delay = this.backoff.next(this.startedAt);
		if (delay === undefined) {
			this.setView({ kind: 'failed', reason: `${reason}; gave up after ${this.backoff.maxAttempts} attempts` });
			return;
		}
		// The new process gets a fresh feed (startFeed → rescan): the whole workspace as it is on disk then, edits
		// made while the sidecar was down included (test/integration/faults.test.mjs).
		this.log.warn(`sidecar stopped (${reason}); restart ${this.backoff.attempt}/${this.backoff.maxAttempts} in ${delay / 1000} s`);
		this.setView({ kind: 'restarting', inSeconds: delay / 1000, reason });
		this.restartTimer = setTimeout(() => {
			this.restartTimer = undefined;
			void this.start();
		}, delay);
	}

	private async disposeClient(): Promise<void> {
		const client = this.client;
		this.client = undefined;
		this.feed?.dispose();
		this.feed = undefined;
		for (const disposable of this.clientDisposables) disposable.dispose();
		this.clientDisposables = [];
		if (client && client.state !== State.Stopped) {
			try {
				await client.stop(2000);
			} catch (error) {
				this.log.debug(`sidecar stop: ${String(error)}`);
			}
		} else if (client) {
			void client.dispose();
		}
	}

	/** Stops the sidecar on purpose (no automatic restart). */
	async stop(reason = 'stopped'): Promise<void> {
		this.stopping = true;
		if (this.restartTimer) clearTimeout(this.restartTimer);
		this.restartTimer = undefined;
		await this.disposeClient();
		this.setView({ kind: 'stopped', reason });
	}

	/** `repokv: Restart Sidecar`: a fresh process and a fresh feed; resets the backoff. */
	async restart(): Promise<void> {
		this.log.info('restarting the sidecar');
		await this.stop('restarting');
		this.backoff.reset();
		await this.start();
	}

	/** The inspector's data: the last push, else asks the server. */
	async fetchSnapshot(): Promise<CacheSnapshot | null> {
		const running = this.running();
		if ('client' in running) {
			try {
				const snapshot = await running.client.sendRequest(CacheSnapshotRequest.type, {});
				if (snapshot && (!this.lastSnapshot || snapshot.sequence >= this.lastSnapshot.sequence)) this.lastSnapshot = snapshot;
			} catch (error) {
				this.log.warn(`cache snapshot: ${firstLine(error)}`);
			}
		}
		return this.lastSnapshot;
	}

	dispose(): void {
		void this.stop('extension deactivated');
		this.viewEmitter.dispose();
		this.snapshotEmitter.dispose();
	}
}

export function firstLine(error: unknown): string {
	const text = error instanceof Error ? error.message : String(error);
	return text.split('\n')[0] ?? text;
}
