import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { TextDocument } from 'vscode-languageserver-textdocument';
import {
	createConnection,
	DidChangeConfigurationNotification,
	DidChangeWatchedFilesNotification,
	CompletionItemKind,
	CompletionTriggerKind,
	type CancellationToken,
	type CompletionItem,
	type Position,
	InlineCompletionRequest,
	InlineCompletionTriggerKind,
	ProposedFeatures,
	StreamMessageWriter,
	TextDocuments,
	TextDocumentSyncKind,
	type InitializeParams,
	type InlineCompletionList,
	type Message,
	type ResponseMessage,
} from 'vscode-languageserver/node';

import { answerQuestion } from '../ask/answer';
import { RetrievalIndex } from '../ask/retrieval';
import { orderStableFirst } from '../context/stable-order';
import { isSecretPath } from '../workspace/secrets';
import { errorMessage } from '../errors';
import {
	CacheDidChangeNotification,
	CacheSnapshotRequest,
	RepoAskRequest,
	settingsSection,
	StatusDidChangeNotification,
	StatusRequest,
	WorkspaceDidChangeFilesNotification,
	type AskParams,
	type CacheSnapshotParams,
	type AskResult,
	type DidChangeFilesParams,
	type RepokvInitializationOptions,
} from '../protocol';
import { latencySplit, summarise } from './cache-snapshot';
import { CompletionPipeline } from './completion-pipeline';
import { DiskWorkspace } from './disk-workspace';
import { EngineHost, readyStatus } from './engine-host';
import { Indexer } from './indexer';
import { WorkspaceMirror } from './mirror';
import { ResumingMessageReader } from './robust-reader';
import { resolveSettings, type ResolvedSettings } from './settings';
import { SnapshotStore } from './snapshots';
import { StatusReporter } from './status';

// The sidecar language server (`repokv serve --stdio`): wires the LSP connection to the workspace mirror, the
// completion pipeline, repository Q&A, status and cache snapshots. Each of those lives in its own file; this one only
// translates between LSP and them, and keeps the process healthy: handlers never throw into the connection, heavy
// work yields, and the process exits when its client goes away (no orphans).

export interface ServeOptions {
	readonly input: NodeJS.ReadableStream;
	readonly output: NodeJS.WritableStream;
	/** Log lines (the connection's own console is used once connected; this is for before and after). */
	readonly log: (message: string) => void;
}

export function startServer(options: ServeOptions): Promise<void> {
	const connection = createConnection(ProposedFeatures.all, new ResumingMessageReader(options.input), new StreamMessageWriter(options.output), {
		connectionStrategy: {
			// A request cancelled before it was dispatched (the user typed on while the server was busy) is answered
			// at once without running its handler: an empty completion list, or the library's default error.
			cancelUndispatched: (message: Message, next: (message: Message) => ResponseMessage | undefined): ResponseMessage | undefined => {
				if ('method' in message && message.method === InlineCompletionRequest.method && 'id' in message) {
					const id = (message as { id: number | string | null }).id;
					return { jsonrpc: '2.0', id, result: { items: [] } };
				}
				return next(message);
			},
		},
	});
	const documents = new TextDocuments(TextDocument);
	let connected = false;
	const log = (message: string): void => {
		if (connected) {
			connection.console.log(message);
		} else {
			options.log(message);
		}
	};

	const status = new StatusReporter((params) => {
		if (connected) {
			void connection.sendNotification(StatusDidChangeNotification.type, params).catch(() => undefined);
		}
	});
	const snapshots = new SnapshotStore((snapshot) => {
		if (connected) {
			void connection.sendNotification(CacheDidChangeNotification.type, snapshot).catch(() => undefined);
		}
	});
	let initOptions: RepokvInitializationOptions = {};
	let settings: ResolvedSettings = resolveSettings({});
	const mirror = new WorkspaceMirror(settings.limits);
	const engines = new EngineHost(status, log);
	const retrieval = new RetrievalIndex();
	let roots: string[] = [];
	let supportsConfiguration = false;
	/** The client can register `workspace/didChangeWatchedFiles` for us (else the server watches the disk itself). */
	let clientWatchesFiles = false;
	/** The workspace read from disk, for a client that does not feed it (initializationOptions.feedsWorkspace). */
	let disk: DiskWorkspace | undefined;
	/** The first disk scan: a completion waits for it (else the very first one would see only the active file). */
	let diskRead: Promise<void> | undefined;

	const pipeline = new CompletionPipeline({
		engines,
		mirror,
		status,
		settings: () => settings,
		log,
		onComputed: (computed) => {
			const { model, shape } = computed.engine;
			snapshots.record({
				request: 'completion',
				engine: computed.engine.settings.engine,
				model: { path: model.info.path, architecture: model.info.architecture, contextSize: model.info.contextSize },
				shape,
				contextTokens: computed.promptTokens + computed.generatedTokens,
				spans: computed.spans,
				bos: model.info.addsBos,
				latency: computed.latency,
				...(model.kvStats === undefined ? {} : { kvStats: model.kvStats() }),
				...(model.kvRangeTiers === undefined ? {} : { rangeTiers: (bounds: Int32Array) => model.kvRangeTiers?.(bounds) ?? [] }),
				...(computed.engine.kv === undefined ? {} : { kv: computed.engine.kv }),
			});
			publishCounters();
		},
	});

	/** The document the user last opened or completed in: what a cache warm-up prepares for. */
	let focusUri: string | undefined;
	const indexer = new Indexer({
		mirror,
		engines,
		retrieval,
		status,
		settings: () => settings,
		log,
		onIndexed: () => {
			const document = focusUri === undefined ? undefined : documents.get(focusUri);
			const text = document === undefined ? undefined : textOf(document);
			if (document !== undefined && text !== undefined && !isPrivate(document.uri)) {
				pipeline.prewarm(relativePath(document.uri) ?? path.posix.basename(document.uri), text);
			}
		},
	});

	const publishWorkspace = (): void => {
		status.annotate({ workspace: { files: mirror.size, bytes: mirror.bytes, skipped: mirror.skipped() } });
	};
	const publishCounters = (): void => {
		status.annotate({ completions: { ...pipeline.counters } });
	};

	/** Workspace-relative path of a document URI, or undefined outside every workspace folder. */
	const relativePath = (uri: string): string | undefined => {
		let file: string;
		try {
			file = uri.startsWith('file:') ? fileURLToPath(uri) : uri;
		} catch {
			return undefined;
		}
		for (const root of roots) {
			const relative = path.relative(root, file);
			if (relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative)) {
				return relative.split(path.sep).join('/');
			}
		}
		return undefined;
	};

	/**
	 * A document whose text must never reach a prompt: a secret-looking file, or one the ignore files exclude. The
	 * mirror refuses them, but an open document is sent by the editor itself; it gets no warm-up and no completion.
	 */
	const isPrivate = (uri: string): boolean => {
		const relative = relativePath(uri);
		const checked = relative ?? path.posix.basename(uri);
		return isSecretPath(checked) || (relative !== undefined && mirror.isIgnored(relative));
	};

	const loadModel = async (): Promise<void> => {
		try {
			const engine = await engines.get(settings);
			// `ready`, or ready with what a SpecKV fallback costs and its fix (for as long as it lasts).
			if (status.state === 'loadingModel' || status.state === 'error' || status.state === 'ready') {
				const { message, fixHint } = readyStatus(engine.kv);
				status.set('ready', message, fixHint === undefined ? {} : { fixHint });
			}
			indexer.schedule();
		} catch (error) {
			log(`model load failed: ${errorMessage(error)}`);
		}
	};

	const applySettings = (raw: unknown): void => {
		const merged = mergeSettings(initOptions.settings, raw);
		settings = resolveSettings(merged);
		mirror.setLimits(settings.limits);
		pipeline.configure(settings);
	};

	const pullConfiguration = async (): Promise<void> => {
		if (!supportsConfiguration) {
			return;
		}
		try {
			const values: unknown = await connection.sendRequest('workspace/configuration', { items: [{ section: settingsSection }] });
			const value: unknown = Array.isArray(values) ? values[0] : undefined;
			applySettings(value);
		} catch (error) {
			log(`workspace/configuration failed: ${errorMessage(error)}`);
		}
	};

	connection.onInitialize((params: InitializeParams) => {
		initOptions = (typeof params.initializationOptions === 'object' && params.initializationOptions !== null ? params.initializationOptions : {}) as RepokvInitializationOptions;
		applySettings(undefined);
		const folders = params.workspaceFolders ?? [];
		roots = folders.flatMap((folder) => (folder.uri.startsWith('file:') ? [fileURLToPath(folder.uri)] : []));
		// Older clients send only `rootUri` (deprecated in favour of workspaceFolders, still common).
		// eslint-disable-next-line @typescript-eslint/no-deprecated
		const rootUri = params.rootUri;
		if (roots.length === 0 && typeof rootUri === 'string' && rootUri.startsWith('file:')) {
			roots = [fileURLToPath(rootUri)];
		}
		supportsConfiguration = params.capabilities.workspace?.configuration === true;
		clientWatchesFiles = params.capabilities.workspace?.didChangeWatchedFiles?.dynamicRegistration === true;
		const offersCompletionMenu = params.capabilities.textDocument?.inlineCompletion === undefined && initOptions.feedsWorkspace !== true;
		return {
			capabilities: {
				textDocumentSync: { openClose: true, change: TextDocumentSyncKind.Incremental },
				inlineCompletionProvider: true,
				...(offersCompletionMenu ? { completionProvider: { resolveProvider: false } } : {}),
			},
			serverInfo: { name: 'repokv', version: '0.1.0' },
		};
	});

	connection.onInitialized(() => {
		connected = true;
		status.set('starting', 'connected');
		void (async () => {
			await pullConfiguration();
			if (supportsConfiguration) {
				void connection.client.register(DidChangeConfigurationNotification.type, { section: settingsSection }).catch(() => undefined);
			}
			startDiskWorkspace();
			if (initOptions.lazyModelLoad !== true) {
				await loadModel();
			} else {
				status.set('ready', 'ready (the model loads on the first request)');
			}
		})();
	});

	connection.onDidChangeConfiguration(async (change) => {
		if (supportsConfiguration) {
			await pullConfiguration();
		} else {
			const value = (change.settings as Record<string, unknown> | null | undefined)?.[settingsSection];
			applySettings(value);
		}
		if (initOptions.lazyModelLoad !== true) {
			await loadModel();
		}
	});

	/**
	 * Any editor but repokv's extension does not send `repokv/workspace/didChangeFiles`: read the workspace folders
	 * from disk (the CLI's reader and rules) and follow them, through the client's file events when it can register
	 * them, else through the server's own bounded, debounced watcher. The extension says it feeds the workspace
	 * (`initializationOptions.feedsWorkspace`), and then the disk is never read.
	 */
	const startDiskWorkspace = (): void => {
		if (initOptions.feedsWorkspace === true || roots.length === 0 || disk !== undefined) {
			return;
		}
		const reader = new DiskWorkspace({ roots, limits: () => settings.limits, apply: applyFeed, log });
		disk = reader;
		if (clientWatchesFiles) {
			void connection.client.register(DidChangeWatchedFilesNotification.type, { watchers: [{ globPattern: '**/*' }] }).catch(() => undefined);
		}
		diskRead = reader.start(!clientWatchesFiles).catch((error: unknown) => {
			log(`workspace: reading the disk failed: ${errorMessage(error)}`);
		});
	};

	connection.onDidChangeWatchedFiles(() => {
		disk?.changed();
	});

	connection.onNotification(WorkspaceDidChangeFilesNotification.type, (params: DidChangeFilesParams | null | undefined) => {
		if (disk !== undefined) {
			// A client that feeds the workspace without saying so: its feed is the truth from now on.
			log('workspace: the client feeds the workspace; no longer reading the disk');
			disk.dispose();
			disk = undefined;
		}
		applyFeed(params);
	});

	/** A feed batch or delta (from the client, or a disk scan) into the mirror, then status, indexing, overlays. */
	function applyFeed(params: DidChangeFilesParams | null | undefined): void {
		try {
			const result = mirror.apply(params ?? {});
			// A file re-fed with new text loses its open document's overlay: the editor's buffer still wins.
			for (const document of documents.all()) {
				const relative = relativePath(document.uri);
				if (relative !== undefined && !isPrivate(document.uri)) {
					mirror.setOverlay(relative, document.getText());
				}
			}
			if (result.changed.length > 0 || result.removed.length > 0) {
				pipeline.contextChanged();
			}
			for (const skipped of result.skipped.slice(0, 20)) {
				log(`workspace: skipped ${skipped.path} (${skipped.reason})`);
			}
			publishWorkspace();
			indexer.schedule();
			const batch = params?.batch;
			if (batch !== undefined && Number.isInteger(batch.index) && Number.isInteger(batch.count)) {
				const last = batch.index >= batch.count - 1;
				const total = typeof batch.totalFiles === 'number' ? batch.totalFiles : undefined;
				if (last) {
					if (status.state === 'indexing') {
						status.set('ready', 'ready');
					}
				} else if (status.state === 'ready' || status.state === 'indexing') {
					status.set('indexing', `indexing ${mirror.size}${total === undefined ? '' : `/${total}`} files`, {
						progress: total === undefined ? { done: batch.index + 1, total: batch.count, unit: 'files' } : { done: mirror.size, total, unit: 'files' },
					});
				}
			}
		} catch (error) {
			log(`workspace/didChangeFiles failed: ${errorMessage(error)}`);
		}
	}

	documents.onDidChangeContent((event) => {
		const relative = relativePath(event.document.uri);
		if (relative !== undefined && mirror.setOverlay(relative, event.document.getText())) {
			pipeline.contextChanged();
		}
	});
	documents.onDidOpen((event) => {
		const text = textOf(event.document);
		if (isPrivate(event.document.uri) || text === undefined) {
			return;
		}
		focusUri = event.document.uri;
		pipeline.prewarm(relativePath(event.document.uri) ?? path.posix.basename(event.document.uri), text);
	});
	documents.onDidClose((event) => {
		const relative = relativePath(event.document.uri);
		if (relative !== undefined) {
			mirror.clearOverlay(relative);
		}
	});

	/** One completion at a position: the text to insert there, '' for none. Shared by both completion requests. */
	const completeAt = async (uri: string, position: Position, invoked: boolean, token: CancellationToken): Promise<string> => {
		const document = documents.get(uri);
		const text = document === undefined ? undefined : textOf(document);
		if (document === undefined || text === undefined || isPrivate(document.uri)) {
			return '';
		}
		const controller = new AbortController();
		const subscription = token.onCancellationRequested(() => {
			controller.abort(new Error('cancelled'));
		});
		if (token.isCancellationRequested) {
			controller.abort();
		}
		focusUri = document.uri;
		try {
			await diskRead;
			const outcome = await pipeline.complete(
				{
					path: relativePath(document.uri) ?? path.posix.basename(document.uri),
					text,
					version: document.version,
					offset: document.offsetAt(position),
					invoked,
				},
				controller.signal,
			);
			publishCounters();
			return outcome.text;
		} finally {
			subscription.dispose();
		}
	};

	connection.languages.inlineCompletion.on(async (params, token): Promise<InlineCompletionList> => {
		try {
			const text = await completeAt(params.textDocument.uri, params.position, params.context.triggerKind === InlineCompletionTriggerKind.Invoked, token);
			return { items: text === '' ? [] : [{ insertText: text, range: { start: params.position, end: params.position } }] };
		} catch (error) {
			log(`inlineCompletion failed: ${errorMessage(error)}`);
			return { items: [] };
		}
	});

	// Editors without inline completions (Helix; Neovim before 0.12) show repokv's completion as the first item of
	// their completion menu: `textDocument/completion`, offered only to a client that does not declare
	// `textDocument.inlineCompletion` (VS Code does, and gets ghost text only).
	connection.onCompletion(async (params, token): Promise<CompletionItem[]> => {
		try {
			const text = await completeAt(params.textDocument.uri, params.position, params.context?.triggerKind === CompletionTriggerKind.Invoked, token);
			if (text === '') {
				return [];
			}
			const firstLine = text.split('\n', 1)[0] ?? text;
			return [{ label: firstLine.length > 60 ? `${firstLine.slice(0, 59)}…` : firstLine, kind: CompletionItemKind.Snippet, detail: 'repokv', sortText: '0', preselect: true, textEdit: { range: { start: params.position, end: params.position }, newText: text } }];
		} catch (error) {
			log(`completion failed: ${errorMessage(error)}`);
			return [];
		}
	});

	connection.onRequest(RepoAskRequest.type, async (params: AskParams | null | undefined, token): Promise<AskResult> => {
		const question = typeof params?.question === 'string' ? params.question : '';
		if (params === null || params === undefined) {
			throw new Error('repokv/repo/ask needs parameters');
		}
		if (question.trim() === '') {
			throw new Error('repokv/repo/ask needs a non-empty question');
		}
		const controller = new AbortController();
		const subscription = token.onCancellationRequested(() => {
			controller.abort(new Error('cancelled'));
		});
		const workDone = params.workDoneToken === undefined ? undefined : connection.window.attachWorkDoneProgress(params.workDoneToken);
		workDone?.begin('repokv: asking the repository', 0, 'retrieving', true);
		try {
			const engine = await engines.get(settings);
			// The last completion's repository block order, then its active file: the answer's prompt starts with the
			// completion's prefix, so each reuses the other's KV.
			const all = mirror.files();
			const active = pipeline.lastActivePath === undefined ? undefined : all.find((file) => file.path === pipeline.lastActivePath);
			const files = active === undefined ? orderStableFirst(all, '', '') : [...orderStableFirst(all, active.path, active.text), active];
			const result = await engines.queue.run(
				() =>
					answerQuestion({
						question,
						files,
						index: retrieval,
						model: engine.model,
						counter: engine.counter,
						maxTokens: typeof params.maxTokens === 'number' && params.maxTokens > 0 ? Math.min(params.maxTokens, 2048) : settings.ask.maxTokens,
						maxChunks: settings.ask.maxChunks,
						reusePrefix: true,
						keepOrder: active !== undefined,
						signal: controller.signal,
						...(typeof params.activeFile === 'string' ? { activeFile: params.activeFile } : {}),
						onPartial: (partial) => {
							if (params.partialResultToken !== undefined) {
								// Plain `$/progress` with the token: the notification the client's partial-result handler expects.
								void connection.sendNotification('$/progress', { token: params.partialResultToken, value: partial }).catch(() => undefined);
							}
						},
						onStage: (message, percentage) => workDone?.report(percentage ?? 0, message),
					}),
				// Not the request's signal: a cancelled ask still answers with what it has, so it must run.
			);
			if (result === undefined) {
				throw new Error('the ask was not run');
			}
			status.recordAsk(result.timings.totalMs);
			const { model, shape } = engine;
			snapshots.record({
				request: 'ask',
				engine: settings.engine,
				model: { path: model.info.path, architecture: model.info.architecture, contextSize: model.info.contextSize },
				shape,
				contextTokens: result.promptTokens + result.generatedTokens,
				spans: result.spans.map((span, index) => ({ ...span, role: index === result.spans.length - 1 ? 'active' : 'repo' })),
				bos: model.info.addsBos,
				latency: latencySplit(result.engineTimings, { prompt: result.promptTokens, reused: result.reusedTokens, generated: result.generatedTokens }, 0, result.timings.totalMs),
				...(model.kvStats === undefined ? {} : { kvStats: model.kvStats() }),
				...(model.kvRangeTiers === undefined ? {} : { rangeTiers: (bounds: Int32Array) => model.kvRangeTiers?.(bounds) ?? [] }),
				...(engine.kv === undefined ? {} : { kv: engine.kv }),
			});
			pipeline.contextChanged();
			const { promptTokens: _p, reusedTokens: _r, generatedTokens: _g, spans: _s, engineTimings: _t, ...answer } = result;
			return answer;
		} finally {
			subscription.dispose();
			workDone?.done();
		}
	});

	connection.onRequest(CacheSnapshotRequest.type, (params: CacheSnapshotParams | null | undefined) => {
		const latest = snapshots.latest;
		if (latest === undefined) {
			return null;
		}
		return params?.summaryOnly === true ? summarise(latest) : latest;
	});

	connection.onRequest(StatusRequest.type, () => ({ ...status.status, completions: { ...pipeline.counters } }));

	// Test hook, off unless REPOKV_TEST_HOOKS=1: the mirror's files, for the workspace-feed fuzz and fault tests to
	// compare with the disk. Not part of the protocol.
	if (process.env['REPOKV_TEST_HOOKS'] === '1') {
		connection.onRequest('repokv/debug/mirror', () => ({ files: mirror.files().map((file) => ({ path: file.path, text: file.text })) }));
		// Where the process's memory is (the LSP fuzz's RSS figures): V8's heap, memory outside it, open documents.
		// `{ gc: true }` collects garbage first, so that the heap figures are what is still held.
		connection.onRequest('repokv/debug/memory', (params: { gc?: unknown } | null | undefined) => {
			if (params?.gc === true) {
				setFlagsFromString('--expose-gc');
				(runInNewContext('gc') as () => void)();
			}
			return memoryReport();
		});
		const memoryReport = (): Record<string, unknown> => ({
			...process.memoryUsage(),
			documents: documents.all().length,
			documentChars: documents.all().reduce((sum, document) => sum + (textOf(document)?.length ?? 0), 0),
			mirror: { files: mirror.size, bytes: mirror.bytes },
		});
	}

	let shutdownReceived = false;
	connection.onShutdown(async () => {
		shutdownReceived = true;
		disk?.dispose();
		indexer.dispose();
		status.dispose();
		snapshots.dispose();
		await engines.dispose();
	});

	documents.listen(connection);
	return new Promise((resolve) => {
		connection.onExit(() => {
			resolve();
		});
		// The client went away (killed, crashed, closed the pipe): there is nobody to serve. Exit code 1 without a
		// `shutdown` first, as the LSP says (vscode-languageserver does this itself only when given the streams; it
		// gets a reader here, robust-reader.ts).
		const clientGone = (): void => {
			resolve();
			process.exit(shutdownReceived ? 0 : 1);
		};
		options.input.once('end', clientGone);
		options.input.once('close', clientGone);
		connection.listen();
	});
}

/**
 * A document's text, or undefined when the client opened it with something else (vscode-languageserver keeps whatever
 * `didOpen` carried, `null` included): such a document gets no completion and no warm-up.
 */
function textOf(document: TextDocument): string | undefined {
	const text: unknown = document.getText();
	return typeof text === 'string' ? text : undefined;
}

/** `initializationOptions.settings` overlaid by what `workspace/configuration` answered (its values win). */
function mergeSettings(base: unknown, override: unknown): unknown {
	const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
	if (!isRecord(base)) {
		return override;
	}
	if (!isRecord(override)) {
		return base;
	}
	const merged: Record<string, unknown> = { ...base };
	for (const [key, value] of Object.entries(override)) {
		merged[key] = isRecord(value) && isRecord(base[key]) ? mergeSettings(base[key], value) : (value ?? base[key]);
	}
	return merged;
}

