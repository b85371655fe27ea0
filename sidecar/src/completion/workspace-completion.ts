import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { buildCompletionPrompt, ContextBudgetError } from '../context/builder';
import { offsetAt, PositionOutOfRangeError, type EditorPosition } from '../context/position';
import { loadEngine } from '../engine';
import type { EngineKvStats, EngineName, EngineTimings, KvCacheOptions, LoadedModel, StopReason } from '../engine/types';
import { errorCode, errorMessage, UserError } from '../errors';
import { readWorkspace, decodeText } from '../workspace/reader';
import { isSecretPath } from '../workspace/secrets';
import { chooseMode, postprocessCompletion, stopStringsFor, type CompletionMode } from './postprocess';

// One completion from a folder on disk, end to end: read the workspace, build the long-context FIM prompt, run the
// engine, post-process. This is what `repokv complete` runs; the language server will feed the same steps from
// its workspace mirror instead of the disk.

export interface WorkspaceCompletionOptions {
	readonly workspace: string;
	/** Active file, relative to the workspace (or absolute inside it). */
	readonly file: string;
	readonly position: EditorPosition;
	readonly engine: EngineName;
	readonly modelPath: string;
	readonly threads: number;
	readonly maxTokens: number;
	/** Context window; default the model's trained context. */
	readonly contextSize?: number;
	/** Default: chosen from the cursor's line (see `chooseMode`). */
	readonly mode?: CompletionMode;
	readonly onLog?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
	readonly verbose?: boolean;
	readonly signal?: AbortSignal;
	/** KV cache policy (native engine). */
	readonly kvCache?: KvCacheOptions;
}

export interface WorkspaceCompletionReport {
	/** The completion after post-processing: what an editor would insert at the cursor. */
	readonly completion: string;
	/** The model's output before post-processing. */
	readonly raw: string;
	/** The exact prompt text the model saw (special tokens written as their texts). */
	readonly prompt: string;
	readonly mode: CompletionMode;
	/** Where the completion goes: the active file (workspace-relative) and the cursor's line up to the cursor. */
	readonly cursor: { readonly file: string; readonly line: number; readonly column: number; readonly linePrefix: string };
	readonly stopReason: StopReason;
	readonly tokens: { readonly context: number; readonly generated: number };
	/** The engine's phases plus what happens around them. */
	readonly timings: EngineTimings & {
		readonly loadMs: number;
		readonly readWorkspaceMs: number;
		/** Building the prompt, mostly token counting while fitting files into the context. */
		readonly buildPromptMs: number;
		readonly totalMs: number;
	};
	/** The engine's KV cache after the completion (native engine): per layer and KV head, kept tokens and real bytes. */
	readonly cache?: EngineKvStats;
	readonly model: {
		readonly path: string;
		readonly engine: EngineName;
		readonly architecture: string;
		readonly contextSize: number;
		readonly threads: number;
	};
	readonly files: { readonly included: readonly string[]; readonly dropped: readonly string[] };
}

export async function completeInWorkspace(options: WorkspaceCompletionOptions): Promise<WorkspaceCompletionReport> {
	const started = performance.now();
	const workspace = path.resolve(options.workspace);
	const active = await readActiveFile(workspace, options.file);
	let cursorOffset: number;
	try {
		cursorOffset = offsetAt(active.text, options.position);
	} catch (error) {
		if (error instanceof PositionOutOfRangeError) {
			throw new UserError(`${active.path}: ${error.message}`, 2);
		}
		throw error;
	}

	const snapshot = await readWorkspace(workspace);
	const workspaceRead = performance.now();

	const engine = await loadEngine(options.engine);
	const model = await engine.loadModel({
		modelPath: options.modelPath,
		threads: options.threads,
		...(options.contextSize === undefined ? {} : { contextSize: options.contextSize }),
		...(options.onLog === undefined ? {} : { onLog: options.onLog }),
		...(options.verbose === undefined ? {} : { verbose: options.verbose }),
		...(options.kvCache === undefined ? {} : { kvCache: options.kvCache }),
	});
	const loaded = performance.now();
	try {
		return await completeWithModel(model, options, active, cursorOffset, snapshot.files, {
			started,
			loadMs: loaded - workspaceRead,
			readWorkspaceMs: workspaceRead - started,
		});
	} finally {
		await model.dispose();
	}
}

async function completeWithModel(
	model: LoadedModel,
	options: WorkspaceCompletionOptions,
	active: { path: string; text: string },
	cursorOffset: number,
	files: readonly { path: string; text: string }[],
	clock: { started: number; loadMs: number; readWorkspaceMs: number },
): Promise<WorkspaceCompletionReport> {
	const lineStart = active.text.lastIndexOf('\n', cursorOffset - 1) + 1;
	const lineEndRaw = active.text.indexOf('\n', cursorOffset);
	const linePrefix = active.text.slice(lineStart, cursorOffset);
	const lineSuffix = active.text.slice(cursorOffset, lineEndRaw === -1 ? active.text.length : lineEndRaw).replace(/\r$/, '');
	const mode = options.mode ?? chooseMode(linePrefix);

	const buildStarted = performance.now();
	let prompt;
	try {
		prompt = buildCompletionPrompt({
			files,
			activePath: active.path,
			activeText: active.text,
			cursorOffset,
			specialTokens: model.specialTokens,
			counter: model,
			budgetTokens: model.info.contextSize - options.maxTokens - (model.info.addsBos ? 1 : 0),
			// Models with a repository-level format (Qwen2.5-Coder) name the repository: the workspace folder's name.
			repoName: path.basename(path.resolve(options.workspace)),
		});
	} catch (error) {
		if (error instanceof ContextBudgetError) {
			throw new UserError(error.message);
		}
		throw error;
	}
	const buildPromptMs = performance.now() - buildStarted;

	const result = await model.complete({
		prompt: prompt.text,
		maxTokens: options.maxTokens,
		stopStrings: stopStringsFor(mode),
		...(options.signal === undefined ? {} : { signal: options.signal }),
	});
	const completion = postprocessCompletion(result.text, { mode, linePrefix, lineSuffix });

	return {
		completion,
		raw: result.text,
		prompt: prompt.text,
		mode,
		cursor: { file: active.path, line: options.position.line, column: options.position.column, linePrefix },
		stopReason: result.stopReason,
		tokens: { context: result.tokens.prompt, generated: result.tokens.generated },
		timings: {
			loadMs: clock.loadMs,
			readWorkspaceMs: clock.readWorkspaceMs,
			buildPromptMs,
			tokenizeMs: result.timings.tokenizeMs,
			prefillMs: result.timings.prefillMs,
			decodeMs: result.timings.decodeMs,
			...(result.timings.draftMs === undefined ? {} : { draftMs: result.timings.draftMs }),
			...(result.timings.scoringMs === undefined ? {} : { scoringMs: result.timings.scoringMs }),
			...(result.timings.compressMs === undefined ? {} : { compressMs: result.timings.compressMs }),
			totalMs: performance.now() - clock.started,
		},
		...(model.kvStats === undefined ? {} : { cache: model.kvStats() }),
		model: {
			path: model.info.path,
			engine: options.engine,
			architecture: model.info.architecture,
			contextSize: model.info.contextSize,
			threads: model.info.threads,
		},
		files: { included: prompt.included, dropped: prompt.dropped },
	};
}

/** Read the active file, with errors that name the problem: outside the workspace, missing, secret, binary. */
async function readActiveFile(workspace: string, file: string): Promise<{ path: string; text: string }> {
	try {
		if (!(await stat(workspace)).isDirectory()) {
			throw new UserError(`workspace is not a folder: ${workspace}`);
		}
	} catch (error) {
		if (error instanceof UserError) {
			throw error;
		}
		throw new UserError(errorCode(error) === 'ENOENT' ? `workspace folder not found: ${workspace}` : `cannot read workspace ${workspace}: ${errorMessage(error)}`);
	}
	const absolute = path.resolve(workspace, file);
	const relative = path.relative(workspace, absolute).split(path.sep).join('/');
	if (relative === '' || relative.startsWith('../') || relative === '..' || path.isAbsolute(relative)) {
		throw new UserError(`file ${file} is not inside the workspace ${workspace}`, 2);
	}
	if (isSecretPath(relative)) {
		throw new UserError(`refusing to complete in ${relative}: it looks like a secret file, and secrets never go into a prompt`);
	}
	let buffer: Buffer;
	try {
		buffer = await readFile(absolute);
	} catch (error) {
		const code = errorCode(error);
		throw new UserError(
			code === 'ENOENT' ? `file not found in the workspace: ${relative}` : code === 'EISDIR' ? `${relative} is a folder, not a file` : `cannot read ${relative}: ${errorMessage(error)}`,
		);
	}
	const text = decodeText(buffer);
	if (text === undefined) {
		throw new UserError(`${relative} is not a UTF-8 text file`);
	}
	return { path: relative, text };
}
