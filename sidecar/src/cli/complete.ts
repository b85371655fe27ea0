import * as path from 'node:path';

import { completeInWorkspace, type WorkspaceCompletionReport } from '../completion/workspace-completion';
import type { CompletionMode } from '../completion/postprocess';
import { describeKvCache } from '../engine/kv-choice';
import { UserError } from '../errors';
import { bundledModelPath } from '../models/bundled';
import { defaultCompletionSettings, type KvCacheStatus } from '../protocol';
import { integerOption, parseCommandArgs, requireOption } from './args';
import type { Command } from './command';
import { defaultThreads } from './defaults';
import { engineOptionSpecs, engineOptionsUsage, parseEngineOptions, prepareDevice, prepareKv } from './engine-options';

const usage = `usage: repokv complete --workspace DIR --file REL --line N --column N [options]

Complete the code at a cursor, with the whole workspace as context, and print the completion and its timings.

  --workspace DIR     workspace folder (its .gitignore and .repokvignore files are honoured)
  --file REL          the active file, relative to the workspace
  --line N            cursor line, 1-based, as an editor's status bar shows it
  --column N          cursor column, 1-based, in UTF-16 code units (a tab counts 1); the end of a line is its
                      length + 1
  --json              print one JSON object instead of text
  --threads N         CPU threads (default: ${defaultThreads()}, this machine's cores; on 2 cores 1 thread may decode faster)
  --max-tokens N      most tokens to generate (default ${defaultCompletionSettings.maxTokens})
  --context N         context window in tokens (default: what the model was trained with)
  --mode MODE         single (rest of the line) or multi (a block); default: single when there is code before the
                      cursor on its line, multi otherwise
  --model PATH        GGUF model (default: the bundled models/target.gguf)
${engineOptionsUsage()}
  --show-prompt       also print the prompt the model saw (a "prompt" field with --json)
  --verbose           show the engine's log on stderr`;

export const completeCommand: Command = {
	summary: 'complete the code at a cursor, with the workspace as context',
	usage,
	async run(argv) {
		const { values } = parseCommandArgs(argv, {
			workspace: { type: 'string' },
			file: { type: 'string' },
			line: { type: 'string' },
			column: { type: 'string' },
			json: { type: 'boolean' },
			threads: { type: 'string' },
			'max-tokens': { type: 'string' },
			context: { type: 'string' },
			mode: { type: 'string' },
			model: { type: 'string' },
			...engineOptionSpecs,
			verbose: { type: 'boolean' },
			'show-prompt': { type: 'boolean' },
			help: { type: 'boolean', short: 'h' },
		});
		if (values.help === true) {
			console.log(usage);
			return 0;
		}
		// Every usage error first, before any model file is read.
		const mode = parseMode(values.mode);
		const engineOptions = parseEngineOptions(values);
		const { engine } = engineOptions;
		const workspace = requireOption(values.workspace, 'workspace');
		const file = requireOption(values.file, 'file');
		const position = {
			line: integerOption(requireOption(values.line, 'line'), 'line', 1) ?? 1,
			column: integerOption(requireOption(values.column, 'column'), 'column', 1) ?? 1,
		};
		const threads = integerOption(values.threads, 'threads', 1) ?? defaultThreads();
		const maxTokens = integerOption(values['max-tokens'], 'max-tokens', 1) ?? defaultCompletionSettings.maxTokens;
		const contextSize = integerOption(values.context, 'context', 16);
		const modelPath = values.model === undefined ? bundledModelPath('target') : path.resolve(values.model);
		const device = prepareDevice(engineOptions);
		const { kvCache, status: kvStatus } = await prepareKv(engineOptions, modelPath);
		const verbose = values.verbose === true;
		const report = await completeInWorkspace({
			workspace,
			file,
			position,
			engine,
			modelPath,
			threads,
			maxTokens,
			...(contextSize === undefined ? {} : { contextSize }),
			...(mode === undefined ? {} : { mode }),
			...(kvCache === undefined ? {} : { kvCache }),
			verbose,
			// stderr, so that --json output on stdout stays parseable.
			onLog: (level, message) => {
				if (verbose || level === 'error') {
					process.stderr.write(`[${engine} ${level}] ${message}\n`);
				}
			},
		});
		const showPrompt = values['show-prompt'] === true;
		if (values.json === true) {
			console.log(JSON.stringify({ ...toJson(report, kvStatus), ...(device === undefined ? {} : { device }), ...(showPrompt ? { prompt: report.prompt } : {}) }, null, 2));
		} else {
			const text = formatText(report, kvStatus) + (device === undefined ? '' : `\ndevice    ${device.used}${device.reason === undefined ? '' : ` (${device.requested} requested: ${device.reason})`}`);
			console.log(showPrompt ? `${report.prompt}\n\n${'-'.repeat(80)}\n${text}` : text);
		}
		return 0;
	},
};

function parseMode(value: string | undefined): CompletionMode | undefined {
	switch (value) {
		case undefined:
			return undefined;
		case 'single':
			return 'singleLine';
		case 'multi':
			return 'multiLine';
		default:
			throw new UserError(`--mode must be 'single' or 'multi' (got '${value}')`, 2);
	}
}

/** The `--json` shape; a stable, documented output that scripts and tests rely on. */
function toJson(report: WorkspaceCompletionReport, kv: KvCacheStatus | undefined): object {
	const round = (ms: number): number => Math.round(ms * 100) / 100;
	const { timings } = report;
	return {
		completion: report.completion,
		raw: report.raw,
		mode: report.mode,
		cursor: report.cursor,
		stopReason: report.stopReason,
		tokens: report.tokens,
		timings: {
			loadMs: round(timings.loadMs),
			readWorkspaceMs: round(timings.readWorkspaceMs),
			buildPromptMs: round(timings.buildPromptMs),
			tokenizeMs: round(timings.tokenizeMs),
			prefillMs: round(timings.prefillMs),
			decodeMs: round(timings.decodeMs),
			...(timings.draftMs === undefined ? {} : { draftMs: round(timings.draftMs) }),
			...(timings.scoringMs === undefined ? {} : { scoringMs: round(timings.scoringMs) }),
			...(timings.compressMs === undefined ? {} : { compressMs: round(timings.compressMs) }),
			totalMs: round(timings.totalMs),
		},
		...(report.cache === undefined
			? {}
			: {
					cache: {
						policy: report.cache.policy,
						...(report.cache.split === undefined ? {} : { split: report.cache.split }),
						tokens: report.cache.tokens,
						bytes: report.cache.bytes,
						// a full fp16 cache of the same positions, and everything held: master copy, tiers, the draft's cache
						...(report.cache.fp16Bytes === undefined ? {} : { fp16Bytes: report.cache.fp16Bytes }),
						...(report.cache.residentBytes === undefined ? {} : { residentBytes: report.cache.residentBytes }),
						...(report.cache.draft === undefined ? {} : { draft: report.cache.draft }),
						...(report.cache.masterBytes === undefined ? {} : { masterBytes: report.cache.masterBytes, masterTokens: report.cache.masterTokens }),
						...(report.cache.tiers === undefined ? {} : { tiers: report.cache.tiers }),
						// bytes actually allocated, per layer, KV head and tier (a head's segments: one per tier it uses)
						layers: report.cache.layers.map((l) => ({
							heads: l.heads.map((h) => ({ tokens: h.tokens, bytes: h.bytes, tiers: Object.fromEntries(h.segments.map((s) => [s.tier, { tokens: s.tokens, bytes: s.bytes }])) })),
						})),
					},
				}),
		model: report.model,
		// the KV settings served (native engine), with `fallback` when SpecKV could not run
		...(kv === undefined ? {} : { kv }),
		files: report.files,
	};
}

function formatText(report: WorkspaceCompletionReport, kv: KvCacheStatus | undefined): string {
	const { timings, tokens } = report;
	const ms = (value: number): string => `${value.toFixed(value < 10 ? 1 : 0)} ms`;
	const perToken = tokens.generated > 0 ? ` (${(tokens.generated / (timings.decodeMs / 1000)).toFixed(1)} tokens/s)` : '';
	return [
		`completion: ${JSON.stringify(report.completion)}`,
		// The cursor's line with the completion bracketed, as it would read in the editor.
		`${report.cursor.file}:${report.cursor.line}:${report.cursor.column}: ${report.cursor.linePrefix.trimStart()}\u27e6${report.completion}\u27e7`,
		'',
		`model     ${report.model.path} (engine ${report.model.engine}, ${report.model.architecture} architecture, context ${report.model.contextSize}, ${report.model.threads} thread${report.model.threads === 1 ? '' : 's'})`,
		`context   ${tokens.context} tokens from ${report.files.included.length} files + the active file` + (report.files.dropped.length > 0 ? `, ${report.files.dropped.length} files dropped to fit` : ''),
		`generated ${tokens.generated} tokens, ${report.mode === 'singleLine' ? 'single-line' : 'multi-line'} mode, stopped by ${report.stopReason}`,
		`timings   load ${ms(timings.loadMs)}, read workspace ${ms(timings.readWorkspaceMs)}, build prompt ${ms(timings.buildPromptMs)}, tokenize ${ms(timings.tokenizeMs)}, prefill ${ms(timings.prefillMs)}` +
			(timings.draftMs === undefined ? '' : `, draft ${ms(timings.draftMs)}`) +
			(timings.scoringMs === undefined ? '' : `, scoring ${ms(timings.scoringMs)}`) +
			(timings.compressMs === undefined ? '' : `, compress ${ms(timings.compressMs)}`) +
			`, decode ${ms(timings.decodeMs)}${perToken}, total ${ms(timings.totalMs)}`,
		...formatCache(report, kv),
	].join('\n');
}

/** The KV cache lines of the text output: what was served, its bytes against fp16, and each tier. */
function formatCache(report: WorkspaceCompletionReport, kv: KvCacheStatus | undefined): string[] {
	const cache = report.cache;
	if (cache === undefined) {
		return [`kv cache  full fp16 (engine ${report.model.engine}: node-llama-cpp, the reference)`];
	}
	const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(2)} MiB`;
	const share = (bytes: number): string => (cache.fp16Bytes === undefined || cache.fp16Bytes === 0 ? '' : ` (${((100 * bytes) / cache.fp16Bytes).toFixed(1)} % of fp16)`);
	const lines = [`kv cache  ${kv === undefined ? cache.policy : describeKvCache(kv)}${kv?.draft === undefined ? '' : `, draft ${kv.draft}`}${kv?.fallback === undefined ? '' : ' (SpecKV fell back: see the warning above)'}`];
	lines.push(`          attended ${mib(cache.bytes)}${share(cache.bytes)} for ${cache.tokens} positions; a full fp16 cache: ${cache.fp16Bytes === undefined ? '?' : mib(cache.fp16Bytes)}`);
	if (cache.residentBytes !== undefined) {
		const parts = [`${mib(cache.bytes)} attended`];
		if (cache.masterBytes !== undefined && cache.residentBytes - cache.bytes - (cache.draft?.bytes ?? 0) > 0) parts.push(`${mib(cache.masterBytes)} master copy (${cache.masterTokens ?? 0} tokens, kept for the next request's prefix reuse)`);
		if (cache.draft !== undefined) parts.push(`${mib(cache.draft.bytes)} draft cache (${cache.draft.tokens} tokens)`);
		lines.push(`          resident ${mib(cache.residentBytes)}${share(cache.residentBytes)}: ${parts.join(' + ')}`);
	}
	for (const [tier, amount] of Object.entries(cache.tiers ?? {})) {
		if (amount.tokens > 0) {
			lines.push(`  ${tier.padEnd(8)}${String(amount.tokens).padStart(9)} token·heads ${mib(amount.bytes).padStart(11)}`);
		}
	}
	return lines;
}
