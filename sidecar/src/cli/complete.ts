import * as path from 'node:path';

import { completeInWorkspace, type WorkspaceCompletionReport } from '../completion/workspace-completion';
import type { CompletionMode } from '../completion/postprocess';
import { availableEngines, isEngineName } from '../engine';
import { UserError } from '../errors';
import { bundledModelPath } from '../models/bundled';
import { draftLayoutOption, integerOption, parseCommandArgs, requireOption } from './args';
import type { Command } from './command';
import { defaultThreads } from './defaults';

const usage = `usage: repokv complete --workspace DIR --file REL --line N --column N [options]

Complete the code at a cursor, with the whole workspace as context, and print the completion and its timings.

  --workspace DIR     workspace folder (its .gitignore and .repokvignore files are honoured)
  --file REL          the active file, relative to the workspace
  --line N            cursor line, 1-based, as an editor's status bar shows it
  --column N          cursor column, 1-based, in UTF-16 code units (a tab counts 1); the end of a line is its
                      length + 1
  --json              print one JSON object instead of text
  --threads N         CPU threads (default: ${defaultThreads()}, this machine's cores; on 2 cores 1 thread may decode faster)
  --max-tokens N      most tokens to generate (default 64)
  --context N         context window in tokens (default: what the model was trained with)
  --mode MODE         single (rest of the line) or multi (a block); default: single when there is code before the
                      cursor on its line, multi otherwise
  --model PATH        GGUF model (default: the bundled models/target.gguf)
  --engine NAME       inference engine: ${availableEngines().join(', ')} (default llama)
  --policy NAME       KV cache policy (native engine): full, window, h2o, snapkv, pyramidkv, adakv, speckv
                      (default full)
  --budget PCT        KV budget in percent of the fp16 cache's bytes (default 12); or --budget-tokens N per head
  --split NAME        budget split over layers/heads: uniform, pyramid, adaptive (default per policy)
  --precision NAME    storage of the picked tokens: f16, q8, kivi4, kivi2, onebit, mixed (4-bit + 1.x-bit);
                      the budget then buys bytes (default f16)
  --draft PATH        SpecKV's draft model (default: the bundled models/draft.gguf)
  --draft-layout NAME how the draft reads a FIM prompt: prefix-last (the active file's text before the cursor,
                      last; default) or fim (the target's prompt as it is)
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
			engine: { type: 'string' },
			policy: { type: 'string' },
			budget: { type: 'string' },
			'budget-tokens': { type: 'string' },
			split: { type: 'string' },
			precision: { type: 'string' },
			draft: { type: 'string' },
			'draft-layout': { type: 'string' },
			verbose: { type: 'boolean' },
			'show-prompt': { type: 'boolean' },
			help: { type: 'boolean', short: 'h' },
		});
		if (values.help === true) {
			console.log(usage);
			return 0;
		}
		const engine = values.engine ?? 'llama';
		if (!isEngineName(engine)) {
			throw new UserError(`unknown engine '${engine}'; available: ${availableEngines().join(', ')}`, 2);
		}
		const mode = parseMode(values.mode);
		if (values.policy !== undefined && values.policy !== 'full' && engine !== 'native') {
			throw new UserError(`--policy ${values.policy} needs --engine native (the llama engine keeps the full cache)`, 2);
		}
		const budgetPercent = values.budget === undefined ? undefined : Number(values.budget);
		if (budgetPercent !== undefined && !(budgetPercent > 0 && budgetPercent <= 100)) {
			throw new UserError(`--budget must be a percentage in (0, 100] (got '${values.budget}')`, 2);
		}
		const budgetTokens = integerOption(values['budget-tokens'], 'budget-tokens', 1);
		const draftLayout = draftLayoutOption(values['draft-layout']);
		if (draftLayout !== undefined && values.policy !== 'speckv') {
			throw new UserError('--draft-layout is for --policy speckv (the only policy with a draft)', 2);
		}
		const kvCache =
			values.policy === undefined
				? undefined
				: {
						policy: values.policy,
						...(budgetPercent === undefined ? {} : { budgetPercent }),
						...(budgetTokens === undefined ? {} : { budgetTokens }),
						...(values.split === undefined ? {} : { split: values.split }),
						...(values.precision === undefined ? {} : { precision: values.precision }),
						...(values.draft === undefined ? {} : { draftPath: path.resolve(values.draft) }),
						...(draftLayout === undefined ? {} : { draftLayout }),
					};
		const contextSize = integerOption(values.context, 'context', 16);
		const verbose = values.verbose === true;
		const report = await completeInWorkspace({
			workspace: requireOption(values.workspace, 'workspace'),
			file: requireOption(values.file, 'file'),
			position: {
				line: integerOption(requireOption(values.line, 'line'), 'line', 1) ?? 1,
				column: integerOption(requireOption(values.column, 'column'), 'column', 1) ?? 1,
			},
			engine,
			modelPath: values.model === undefined ? bundledModelPath('target') : path.resolve(values.model),
			threads: integerOption(values.threads, 'threads', 1) ?? defaultThreads(),
			maxTokens: integerOption(values['max-tokens'], 'max-tokens', 1) ?? 64,
			...(contextSize === undefined ? {} : { contextSize }),
			...(mode === undefined ? {} : { mode }),
			...(kvCache === undefined ? {} : { kvCache }),
			verbose,
			// stderr, so that --json output on stdout stays parseable.
			onLog: (level, message) => {
				if (verbose || level === 'error') {
					process.stderr.write(`[${values.engine ?? 'llama'} ${level}] ${message}\n`);
				}
			},
		});
		const showPrompt = values['show-prompt'] === true;
		if (values.json === true) {
			console.log(JSON.stringify({ ...toJson(report), ...(showPrompt ? { prompt: report.prompt } : {}) }, null, 2));
		} else {
			console.log(showPrompt ? `${report.prompt}\n\n${'-'.repeat(80)}\n${formatText(report)}` : formatText(report));
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
function toJson(report: WorkspaceCompletionReport): object {
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
						tokens: report.cache.tokens,
						bytes: report.cache.bytes,
						...(report.cache.masterBytes === undefined ? {} : { masterBytes: report.cache.masterBytes, masterTokens: report.cache.masterTokens }),
						...(report.cache.tiers === undefined ? {} : { tiers: report.cache.tiers }),
						// bytes actually allocated, per layer, KV head and tier (a head's segments: one per tier it uses)
						layers: report.cache.layers.map((l) => ({
							heads: l.heads.map((h) => ({ tokens: h.tokens, bytes: h.bytes, tiers: Object.fromEntries(h.segments.map((s) => [s.tier, { tokens: s.tokens, bytes: s.bytes }])) })),
						})),
					},
				}),
		model: report.model,
		files: report.files,
	};
}

function formatText(report: WorkspaceCompletionReport): string {
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
		`timings   load ${ms(timings.loadMs)}, read workspace ${ms(timings.readWorkspaceMs)}, build prompt ${ms(timings.buildPromptMs)}, tokenize ${ms(timings.tokenizeMs)}, prefill ${ms(timings.prefillMs)}, decode ${ms(timings.decodeMs)}${perToken}, total ${ms(timings.totalMs)}`,
	].join('\n');
}
