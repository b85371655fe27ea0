import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import {
	buildCompletionPrompt,
	bundledModelPath,
	CachingCounter,
	loadEngine,
	loadVocabOnly,
	offsetAt,
	orderStableFirst,
	packageRoot,
	readShape,
	readWorkspace,
	resolveSettings,
	UserError,
	type CompletionResult,
	type EditedPromptFile,
	type EngineName,
	type KvCacheOptions,
	type KvMasterPrecision,
	type LoadedModel,
	type ModelShape,
	type ReferenceCacheOptions,
} from '../sidecar/src/api';
import { fileFingerprint, peakRssMb, round, summarize } from './common';
import { seededRandom } from './random.mjs';

// `repokv bench session`: what a user feels over an editing session, per engine configuration, in one run.
//
// Each (configuration, threads, run) is a fresh process (its peak RSS is its own, and its first request is truly
// cold): load the model, then one cold completion over the whole workspace, then `--completions` warm ones at other
// cursors in other files, with a small typed edit before each. Prompts are built the way the language server builds
// them (stable-first file order, the edited file moving to the end of the repository block; KV prefix reuse), through
// the same engine interface the server calls, so every cost is inside the figures: tokenizing, the prefill of what
// changed, the draft's lookahead, the scoring pass, selection and packing, and decoding.
//
// Configurations:
//  - repokv-default: the native engine with the product's own KV settings (resolveSettings' defaults: policy,
//    budget, precision, split, draft layout), the draft given by --draft;
//  - repokv-full: the native engine, policy full;
//  - llama-*: node-llama-cpp (the reference engine) with prefix reuse, f16 K/V with flash attention off and on, and
//    q8_0 / q4_0 K/V (flash attention, which a quantized V cache needs).
// The summary compares repokv-default with the best node-llama-cpp configuration (lowest warm p50 latency) of the
// same run.

export const sessionConfigs = ['repokv-default', 'repokv-full', 'llama-f16', 'llama-f16-fa', 'llama-q8_0-fa', 'llama-q4_0-fa'] as const;
export type SessionConfig = (typeof sessionConfigs)[number];

export interface SessionOptions {
	readonly modelPath: string;
	/** SpecKV's draft for repokv-default. Default: the bundled draft for the bundled target. */
	readonly draftPath?: string;
	/** repokv-default's master copy staging format (default: the product's, `defaultKvSettings.masterPrecision`). */
	readonly masterPrecision?: KvMasterPrecision;
	/** A folder to use as the workspace; default a generated one of `workspaceTokens` tokens. */
	readonly workspace?: string;
	readonly workspaceTokens: number;
	readonly completions: number;
	readonly maxTokens: number;
	readonly runs: number;
	readonly threads: readonly number[];
	readonly configs?: readonly SessionConfig[];
	readonly seed: number;
	/** Chance that the next completion is in another file (default 0.3): people type in one file for a while. */
	readonly switchProbability?: number;
	readonly onProgress?: ((line: string) => void) | undefined;
}

/** One completion of a session. */
export interface SessionStep {
	readonly file: string;
	readonly promptTokens: number;
	readonly reusedTokens: number;
	readonly generated: number;
	/** From the request (prompt building included) to the first generated token. */
	readonly ttftMs: number;
	/** From the request to the last generated token. */
	readonly latencyMs: number;
	readonly prefillMs: number;
	readonly draftMs: number;
	readonly scoringMs: number;
	readonly compressMs: number;
	readonly decodeMs: number;
	readonly decodeTokPerS: number;
}

/** One process: one configuration, one thread count, one run. */
export interface SessionRun {
	readonly config: SessionConfig;
	readonly threads: number;
	readonly loadMs: number;
	readonly contextSize: number;
	readonly workspaceTokens: number;
	readonly steps: readonly SessionStep[];
	/** After the last completion: bytes the engine holds for the context, everything counted (see kvAccounting). */
	readonly kv: KvAccounting;
	readonly peakRssMb: number;
}

export interface KvAccounting {
	/** A full fp16 cache of the last prompt's tokens. */
	readonly fp16Bytes: number;
	/** The store attention reads: compressed tiers (native) or llama.cpp's cache of the context's tokens. */
	readonly tierBytes: number;
	/** The native engine's master copy kept for re-selection and prefix reuse. */
	readonly masterBytes: number;
	/** SpecKV's draft model's own KV cache (node-llama-cpp, f16, its allocated context). */
	readonly draftBytes: number;
	readonly residentBytes: number;
	readonly residentOfFp16: number;
	/** What the engine allocated for its cache (llama.cpp: the whole context at creation). */
	readonly allocatedBytes: number;
}

export interface Range {
	readonly min: number;
	readonly median: number;
	readonly max: number;
}

/** One configuration and thread count over its runs: medians of the per-run figures, with their ranges. */
export interface SessionRow {
	readonly config: SessionConfig;
	readonly threads: number;
	readonly runs: number;
	readonly loadMs: Range;
	readonly coldTtftMs: Range;
	readonly coldLatencyMs: Range;
	readonly warmTtftP50Ms: Range;
	readonly warmTtftP95Ms: Range;
	readonly warmLatencyP50Ms: Range;
	readonly warmLatencyP95Ms: Range;
	readonly warmDecodeTokPerS: Range;
	/** Medians over the warm steps of every run: where a warm completion's time goes. */
	readonly warmSplitMs: { readonly prefill: number; readonly draft: number; readonly scoring: number; readonly compress: number; readonly decode: number; readonly other: number };
	readonly coldSplitMs: { readonly prefill: number; readonly draft: number; readonly scoring: number; readonly compress: number; readonly decode: number; readonly other: number };
	readonly kv: KvAccounting;
	readonly peakRssMb: Range;
}

export interface SessionSummary {
	readonly bestBaseline: { readonly config: SessionConfig; readonly threads: number } | undefined;
	readonly repokv: { readonly config: SessionConfig; readonly threads: number } | undefined;
	/** repokv-default over the best baseline: < 1 is better for latencies, > 1 for decode. */
	readonly warmLatencyP50Ratio?: number;
	readonly coldTtftRatio?: number;
	readonly decodeRatio?: number;
	readonly residentOfFp16?: number;
	/** The issue's targets: warm p50 ≤ 0.7×, cold TTFT ≤ 1.25×, decode ≥ 2×, resident ≤ 40 % of fp16. */
	readonly targets?: { readonly warmLatency: boolean; readonly coldTtft: boolean; readonly decode: boolean; readonly resident: boolean };
}

export interface SessionResult {
	readonly model: string;
	readonly modelSha256: string;
	readonly draft: string | undefined;
	readonly draftSha256: string | undefined;
	readonly workspace: string;
	readonly workspaceTokens: number;
	readonly completions: number;
	readonly maxTokens: number;
	readonly runs: number;
	/** The product's KV settings repokv-default ran with. */
	readonly productKv: KvCacheOptions;
	readonly rows: readonly SessionRow[];
	readonly summary: SessionSummary;
	readonly wallSeconds: number;
}

// ---- the workspace -----------------------------------------------------------------------------------------------

/** Source folders of this repository that make a realistic multi-language workspace (TypeScript, C++). */
const sourceFolders = ['sidecar/src', 'native/src', 'extension/src', 'webview/src', 'bench'];

function sourceFiles(): string[] {
	const out: string[] = [];
	const walk = (dir: string): void => {
		for (const entry of readdirSync(path.join(packageRoot(), dir), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
			const rel = `${dir}/${entry.name}`;
			if (entry.isDirectory()) walk(rel);
			else if (/\.(ts|cpp|h)$/.test(entry.name)) out.push(rel);
		}
	};
	for (const folder of sourceFolders) walk(folder);
	return out;
}

/**
 * A workspace of about `tokens` tokens (as the model counts them) made of this repository's own sources, copied
 * into a temporary folder; when the sources run out they are copied again under numbered folders.
 */
function generateWorkspace(tokens: number, count: (text: string) => number): string {
	const dir = mkdtempSync(path.join(tmpdir(), 'repokv-session-'));
	const files = sourceFiles();
	let total = 0;
	for (let copy = 0; total < tokens; copy++) {
		for (const rel of files) {
			if (total >= tokens) break;
			const text = readFileSync(path.join(packageRoot(), rel), 'utf8');
			const target = path.join(dir, copy === 0 ? rel : `copy${copy}/${rel}`);
			mkdirSync(path.dirname(target), { recursive: true });
			writeFileSync(target, text);
			total += count(text) + 8;
		}
	}
	return dir;
}

// ---- one session in this process ---------------------------------------------------------------------------------

interface MutableFile {
	path: string;
	text: string;
	editedAt: number;
}

/** The engine options of a configuration. */
function engineFor(config: SessionConfig, opts: SessionOptions): { engine: EngineName; kvCache?: KvCacheOptions; referenceCache?: ReferenceCacheOptions } {
	switch (config) {
		case 'repokv-default':
			return { engine: 'native', kvCache: productKv(opts) };
		case 'repokv-full':
			return { engine: 'native', kvCache: { policy: 'full' } };
		case 'llama-f16':
			return { engine: 'llama', referenceCache: { flashAttention: false, kvType: 'F16' } };
		case 'llama-f16-fa':
			return { engine: 'llama', referenceCache: { flashAttention: true, kvType: 'F16' } };
		case 'llama-q8_0-fa':
			return { engine: 'llama', referenceCache: { flashAttention: true, kvType: 'Q8_0' } };
		case 'llama-q4_0-fa':
			return { engine: 'llama', referenceCache: { flashAttention: true, kvType: 'Q4_0' } };
	}
}

/** The product's KV settings: the language server's defaults, with the session's draft. */
function productKv(opts: SessionOptions): KvCacheOptions {
	const kv = resolveSettings({ kv: opts.masterPrecision === undefined ? {} : { masterPrecision: opts.masterPrecision } }).kv;
	return {
		policy: kv.policy,
		budgetPercent: kv.budgetPercent,
		precision: kv.precision,
		masterPrecision: kv.masterPrecision,
		...(kv.split === undefined ? {} : { split: kv.split }),
		draftLayout: kv.draftLayout,
		...(kv.policy === 'speckv' ? { draftPath: draftFor(opts) } : {}),
	};
}

function draftFor(opts: SessionOptions): string {
	if (opts.draftPath !== undefined) return opts.draftPath;
	return path.resolve(opts.modelPath) === path.resolve(bundledModelPath('target')) ? bundledModelPath('draft') : opts.modelPath;
}

/** Runs one session (one configuration, thread count and run) in this process. */
export async function runSessionOnce(opts: SessionOptions, config: SessionConfig, threads: number, run: number): Promise<SessionRun> {
	const { engine, kvCache, referenceCache } = engineFor(config, opts);
	const workspace = opts.workspace;
	if (workspace === undefined) throw new Error('runSessionOnce needs a workspace folder');
	const snapshot = await readWorkspace(workspace);
	const files: MutableFile[] = snapshot.files.map((f) => ({ path: f.path, text: f.text, editedAt: 0 }));
	if (files.length === 0) throw new UserError(`the workspace ${workspace} has no readable text file`);
	const loadStarted = performance.now();
	const shape = await readShape(opts.modelPath);
	const model = await (await loadEngine(engine)).loadModel({
		modelPath: opts.modelPath,
		threads,
		contextSize: opts.workspaceTokens + 2048,
		...(kvCache === undefined ? {} : { kvCache }),
		...(referenceCache === undefined ? {} : { referenceCache }),
	});
	const loadMs = performance.now() - loadStarted;
	const counter = new CachingCounter(model);
	// the same random session (files, cursors, edits) for every configuration of a run
	const random = seededRandom(opts.seed + run * 7919);
	const steps: SessionStep[] = [];
	let clock = 0;
	let lastPrompt = 0;
	let lastGenerated = 0;
	try {
		let file = pickFile(files, random);
		for (let i = 0; i <= opts.completions; i++) {
			if (i > 0) {
				// a person moves between files now and then, and types a little before the next suggestion
				if (random() < (opts.switchProbability ?? 0.3)) file = pickFile(files, random);
				typeAnEdit(file, random, i);
				file.editedAt = ++clock;
			}
			const cursor = cursorOf(file, random);
			const step = await completeOnce(model, files, file, cursor, counter, opts.maxTokens);
			steps.push(step);
			lastPrompt = step.promptTokens;
			lastGenerated = step.generated;
			opts.onProgress?.(`${config} t${threads} run ${run} step ${i}: ${file.path} prompt ${step.promptTokens} (reused ${step.reusedTokens}) ttft ${round(step.ttftMs)} ms, total ${round(step.latencyMs)} ms`);
		}
		return { config, threads, loadMs, contextSize: model.info.contextSize, workspaceTokens: steps[0]?.promptTokens ?? 0, steps, kv: kvAccounting(model, lastPrompt, lastGenerated, shape, referenceCache), peakRssMb: peakRssMb() };
	} finally {
		await model.dispose();
	}
}

function pickFile(files: MutableFile[], random: () => number): MutableFile {
	// prefer files with some body: a cursor needs a line to sit on
	const candidates = files.filter((f) => f.text.split('\n').length >= 8);
	const list = candidates.length > 0 ? candidates : files;
	const picked = list[Math.floor(random() * list.length)] ?? list[0];
	if (picked === undefined) throw new Error('no file to edit');
	return picked;
}

/** A cursor at the end of a non-blank line's indentation + first word, somewhere in the file's body. */
function cursorOf(file: MutableFile, random: () => number): number {
	const lines = file.text.split('\n');
	for (let attempt = 0; attempt < 20; attempt++) {
		const line = 2 + Math.floor(random() * Math.max(1, lines.length - 4));
		const text = lines[line] ?? '';
		const word = /^\s*\S+\s?/.exec(text);
		if (word !== null) return offsetAt(file.text, { line: line + 1, column: word[0].length + 1 });
	}
	return Math.floor(file.text.length / 2);
}

/** Inserts a short new line of code near the middle of the file (the session's typing). */
function typeAnEdit(file: MutableFile, random: () => number, step: number): void {
	const lines = file.text.split('\n');
	const at = 1 + Math.floor(random() * Math.max(1, lines.length - 2));
	const indent = /^\s*/.exec(lines[at] ?? '')?.[0] ?? '';
	lines.splice(at, 0, `${indent}// edit ${step}: keep the cache in sync`);
	file.text = lines.join('\n');
}

async function completeOnce(model: LoadedModel, files: MutableFile[], active: MutableFile, cursorOffset: number, counter: CachingCounter, maxTokens: number): Promise<SessionStep> {
	const started = performance.now();
	const promptFiles: EditedPromptFile[] = files.map((f) => ({ path: f.path, text: f.text, editedAt: f.editedAt }));
	const prompt = buildCompletionPrompt({
		files: promptFiles,
		activePath: active.path,
		activeText: active.text,
		cursorOffset,
		specialTokens: model.specialTokens,
		counter,
		budgetTokens: model.info.contextSize - maxTokens - (model.info.addsBos ? 1 : 0),
		orderFiles: orderStableFirst,
	});
	let firstToken: number | undefined;
	// no stop strings: every completion decodes up to maxTokens (unless the model ends it), so latencies compare
	const result: CompletionResult = await model.complete({
		prompt: prompt.text,
		maxTokens,
		reusePrefix: true,
		onText: () => {
			firstToken ??= performance.now();
		},
	});
	const finished = performance.now();
	const t = result.timings;
	return {
		file: active.path,
		promptTokens: result.tokens.prompt,
		reusedTokens: result.tokens.reused ?? 0,
		generated: result.tokens.generated,
		ttftMs: (firstToken ?? finished) - started,
		latencyMs: finished - started,
		prefillMs: t.prefillMs + t.tokenizeMs,
		draftMs: t.draftMs ?? 0,
		scoringMs: t.scoringMs ?? 0,
		compressMs: t.compressMs ?? 0,
		decodeMs: t.decodeMs,
		decodeTokPerS: result.tokens.generated > 0 && t.decodeMs > 0 ? (result.tokens.generated / t.decodeMs) * 1000 : 0,
	};
}

/**
 * Bytes the engine holds for the context after the session, everything counted, each side by the same rule: the
 * bytes that hold the context's tokens. The native engine reports them itself (attended tiers, the master copy kept
 * apart for re-selection and prefix reuse, SpecKV's draft cache); llama.cpp's are its tokens × its cache type's bytes
 * per token (it allocates the whole context up front; `allocatedBytes` says how much).
 */
function kvAccounting(model: LoadedModel, promptTokens: number, generated: number, shape: ModelShape, referenceCache: ReferenceCacheOptions | undefined): KvAccounting {
	const perTokenFp16 = shape.layers * shape.kvHeads * shape.headDim * 2 * 2;
	const stats = model.kvStats?.();
	if (stats !== undefined) {
		const draftBytes = stats.draft?.bytes ?? 0;
		const residentBytes = stats.residentBytes ?? stats.bytes + draftBytes;
		const masterBytes = residentBytes - stats.bytes - draftBytes;
		const fp16Bytes = stats.fp16Bytes ?? stats.tokens * perTokenFp16;
		return { fp16Bytes, tierBytes: stats.bytes, masterBytes, draftBytes, residentBytes, residentOfFp16: round(residentBytes / fp16Bytes, 4), allocatedBytes: residentBytes };
	}
	const tokens = promptTokens + generated;
	const perElement = referenceCache?.kvType === 'Q8_0' ? 34 / 32 : referenceCache?.kvType === 'Q4_0' ? 18 / 32 : 2;
	const fp16Bytes = tokens * perTokenFp16;
	const residentBytes = Math.round((fp16Bytes / 2) * perElement);
	return {
		fp16Bytes,
		tierBytes: residentBytes,
		masterBytes: 0,
		draftBytes: 0,
		residentBytes,
		residentOfFp16: round(residentBytes / fp16Bytes, 4),
		allocatedBytes: Math.round(model.info.contextSize * (perTokenFp16 / 2) * perElement),
	};
}

// ---- the whole benchmark: one process per (configuration, threads, run) -------------------------------------------

/** Runs one session in a child process (`repokv bench session --row CONFIG --run N ...`), so that it starts cold. */
function runIsolated(opts: SessionOptions, workspace: string, config: SessionConfig, threads: number, run: number): SessionRun {
	const args = [
		path.join(packageRoot(), 'bin', 'repokv.js'), 'bench', 'session', '--row', config, '--run', String(run), '--threads', String(threads),
		'--model', opts.modelPath, '--workspace', workspace, '--workspace-tokens', String(opts.workspaceTokens), '--completions', String(opts.completions),
		'--max-tokens', String(opts.maxTokens), '--seed', String(opts.seed), '--switch-probability', String(opts.switchProbability ?? 0.3), '--json',
		...(opts.draftPath === undefined ? [] : ['--draft', opts.draftPath]),
		...(opts.masterPrecision === undefined ? [] : ['--master-precision', opts.masterPrecision]),
	];
	const out = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', opts.onProgress === undefined ? 'ignore' : 'inherit'], maxBuffer: 1 << 26 });
	return JSON.parse(out) as SessionRun;
}

function percentile(values: readonly number[], p: number): number {
	const s = [...values].sort((a, b) => a - b);
	if (s.length === 0) return 0;
	// nearest rank
	return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? 0;
}

function range(values: readonly number[], digits = 1): Range {
	const r = summarize(values);
	return { min: round(r.min, digits), median: round(r.median, digits), max: round(r.max, digits) };
}

function split(steps: readonly SessionStep[]): SessionRow['warmSplitMs'] {
	const med = (f: (s: SessionStep) => number): number => round(summarize(steps.map(f)).median);
	return {
		prefill: med((s) => s.prefillMs),
		draft: med((s) => s.draftMs),
		scoring: med((s) => s.scoringMs),
		compress: med((s) => s.compressMs),
		decode: med((s) => s.decodeMs),
		other: med((s) => s.latencyMs - s.prefillMs - s.draftMs - s.scoringMs - s.compressMs - s.decodeMs),
	};
}

/** A row from the runs of one configuration and thread count. */
export function aggregateRuns(runs: readonly SessionRun[]): SessionRow {
	const first = runs[0];
	if (first === undefined) throw new Error('no runs');
	const warm = (r: SessionRun): readonly SessionStep[] => r.steps.slice(1);
	const cold = runs.map((r) => r.steps[0]).filter((s): s is SessionStep => s !== undefined);
	const lastKv = [...runs].sort((a, b) => a.kv.residentBytes - b.kv.residentBytes)[Math.floor(runs.length / 2)]?.kv ?? first.kv;
	return {
		config: first.config,
		threads: first.threads,
		runs: runs.length,
		loadMs: range(runs.map((r) => r.loadMs)),
		coldTtftMs: range(cold.map((s) => s.ttftMs)),
		coldLatencyMs: range(cold.map((s) => s.latencyMs)),
		warmTtftP50Ms: range(runs.map((r) => percentile(warm(r).map((s) => s.ttftMs), 50))),
		warmTtftP95Ms: range(runs.map((r) => percentile(warm(r).map((s) => s.ttftMs), 95))),
		warmLatencyP50Ms: range(runs.map((r) => percentile(warm(r).map((s) => s.latencyMs), 50))),
		warmLatencyP95Ms: range(runs.map((r) => percentile(warm(r).map((s) => s.latencyMs), 95))),
		warmDecodeTokPerS: range(runs.map((r) => summarize(warm(r).map((s) => s.decodeTokPerS)).median)),
		warmSplitMs: split(runs.flatMap(warm)),
		coldSplitMs: split(cold),
		kv: lastKv,
		peakRssMb: range(runs.map((r) => r.peakRssMb)),
	};
}

export function summarizeSession(rows: readonly SessionRow[]): SessionSummary {
	const baselines = rows.filter((r) => r.config.startsWith('llama-'));
	const best = baselines.reduce<SessionRow | undefined>((a, b) => (a === undefined || b.warmLatencyP50Ms.median < a.warmLatencyP50Ms.median ? b : a), undefined);
	const mine = rows.filter((r) => r.config === 'repokv-default').reduce<SessionRow | undefined>((a, b) => (a === undefined || b.warmLatencyP50Ms.median < a.warmLatencyP50Ms.median ? b : a), undefined);
	if (best === undefined || mine === undefined) {
		return { bestBaseline: best && { config: best.config, threads: best.threads }, repokv: mine && { config: mine.config, threads: mine.threads }, ...(mine ? { residentOfFp16: mine.kv.residentOfFp16 } : {}) };
	}
	// the baseline's best decode and cold TTFT over its configurations, so each ratio is against its best
	const bestDecode = Math.max(...baselines.map((r) => r.warmDecodeTokPerS.median));
	const bestColdTtft = Math.min(...baselines.map((r) => r.coldTtftMs.median));
	const warmLatencyP50Ratio = round(mine.warmLatencyP50Ms.median / best.warmLatencyP50Ms.median, 3);
	const coldTtftRatio = round(mine.coldTtftMs.median / bestColdTtft, 3);
	const decodeRatio = round(mine.warmDecodeTokPerS.median / bestDecode, 3);
	return {
		bestBaseline: { config: best.config, threads: best.threads },
		repokv: { config: mine.config, threads: mine.threads },
		warmLatencyP50Ratio,
		coldTtftRatio,
		decodeRatio,
		residentOfFp16: mine.kv.residentOfFp16,
		targets: { warmLatency: warmLatencyP50Ratio <= 0.7, coldTtft: coldTtftRatio <= 1.25, decode: decodeRatio >= 2, resident: mine.kv.residentOfFp16 <= 0.4 },
	};
}

/** The whole benchmark: every configuration and thread count, `runs` times each, each in a fresh process. */
export async function runSession(opts: SessionOptions): Promise<SessionResult> {
	const started = performance.now();
	let workspace = opts.workspace;
	let generated: string | undefined;
	if (workspace === undefined) {
		const vocab = await loadVocabOnly(opts.modelPath, { threads: 1, logLevel: 'error' });
		try {
			generated = generateWorkspace(opts.workspaceTokens, (text) => vocab.tokenize(text, false).length);
		} finally {
			await vocab.dispose();
		}
		workspace = generated;
	} else if (!statSync(workspace, { throwIfNoEntry: false })?.isDirectory()) {
		throw new UserError(`--workspace ${workspace} is not a folder`, 2);
	}
	const rows: SessionRow[] = [];
	let measuredTokens = 0;
	try {
		for (const config of opts.configs ?? sessionConfigs) {
			for (const threads of opts.threads) {
				const runs: SessionRun[] = [];
				for (let run = 0; run < opts.runs; run++) {
					const r = runIsolated(opts, workspace, config, threads, run);
					measuredTokens = Math.max(measuredTokens, r.workspaceTokens);
					runs.push(r);
				}
				const row = aggregateRuns(runs);
				opts.onProgress?.(JSON.stringify(row));
				rows.push(row);
			}
		}
	} finally {
		if (generated !== undefined) rmSync(generated, { recursive: true, force: true });
	}
	const draft = opts.configs === undefined || opts.configs.includes('repokv-default') ? draftFor(opts) : undefined;
	return {
		model: opts.modelPath,
		modelSha256: fileFingerprint(opts.modelPath),
		draft,
		draftSha256: draft === undefined ? undefined : fileFingerprint(draft),
		workspace: opts.workspace ?? `generated (${opts.workspaceTokens} tokens of this repository's sources)`,
		workspaceTokens: measuredTokens,
		completions: opts.completions,
		maxTokens: opts.maxTokens,
		runs: opts.runs,
		productKv: productKv(opts),
		rows,
		summary: summarizeSession(rows),
		wallSeconds: round((performance.now() - started) / 1000),
	};
}

/** A markdown report of a session run (bench/results/<name>.md next to its JSON). */
export function sessionMarkdown(result: SessionResult, command: string): string {
	const mib = (b: number): string => (b / (1 << 20)).toFixed(1);
	const r = (x: Range): string => `${x.median} (${x.min}–${x.max})`;
	const s = result.summary;
	return [
		'# Session: what a completion costs end to end, repokv vs node-llama-cpp',
		'',
		`Command: \`${command}\` · model \`${path.relative(packageRoot(), result.model) || result.model}\` (sha256 ${result.modelSha256})${result.draft === undefined ? '' : ` · draft \`${path.relative(packageRoot(), result.draft) || result.draft}\` (sha256 ${result.draftSha256})`} · workspace ${result.workspace}, first prompt ${result.workspaceTokens} tokens · 1 cold + ${result.completions} warm completions of up to ${result.maxTokens} tokens, a typed edit before each · ${result.runs} run(s) per row, each a fresh process (medians, ranges min–max over runs) · wall ${result.wallSeconds} s.`,
		'',
		`repokv-default runs the product's KV settings: ${JSON.stringify({ ...result.productKv, draftPath: undefined })}.`,
		'',
		'| configuration | threads | load ms | cold TTFT ms | cold latency ms | warm TTFT p50 | warm TTFT p95 | warm latency p50 | warm latency p95 | decode tok/s | resident KV MiB | of fp16 | peak RSS MB |',
		'|---|---|---|---|---|---|---|---|---|---|---|---|---|',
		...result.rows.map((x) => `| ${x.config} | ${x.threads} | ${r(x.loadMs)} | ${r(x.coldTtftMs)} | ${r(x.coldLatencyMs)} | ${r(x.warmTtftP50Ms)} | ${r(x.warmTtftP95Ms)} | ${r(x.warmLatencyP50Ms)} | ${r(x.warmLatencyP95Ms)} | ${r(x.warmDecodeTokPerS)} | ${mib(x.kv.residentBytes)} | ${x.kv.residentOfFp16} | ${r(x.peakRssMb)} |`),
		'',
		'Where the time goes (medians, ms): prefill (tokenize + evaluate what changed) / draft / scoring / compress / decode / other (prompt building, post-processing).',
		'',
		'| configuration | threads | cold split | warm split | KV bytes: tiers / master / draft |',
		'|---|---|---|---|---|',
		...result.rows.map((x) => {
			const f = (m: SessionRow['warmSplitMs']): string => `${m.prefill} / ${m.draft} / ${m.scoring} / ${m.compress} / ${m.decode} / ${m.other}`;
			return `| ${x.config} | ${x.threads} | ${f(x.coldSplitMs)} | ${f(x.warmSplitMs)} | ${x.kv.tierBytes} / ${x.kv.masterBytes} / ${x.kv.draftBytes} |`;
		}),
		'',
		s.warmLatencyP50Ratio === undefined
			? 'Summary: not every side ran.'
			: `Summary: best baseline ${s.bestBaseline?.config} (${s.bestBaseline?.threads}t). repokv-default warm p50 latency ${s.warmLatencyP50Ratio}x (target ≤ 0.7: ${s.targets?.warmLatency ? 'met' : 'missed'}), cold TTFT ${s.coldTtftRatio}x of the baseline's best (≤ 1.25: ${s.targets?.coldTtft ? 'met' : 'missed'}), decode ${s.decodeRatio}x (≥ 2: ${s.targets?.decode ? 'met' : 'missed'}), resident KV ${s.residentOfFp16} of fp16 (≤ 0.4: ${s.targets?.resident ? 'met' : 'missed'}).`,
		'',
	].join('\n');
}
