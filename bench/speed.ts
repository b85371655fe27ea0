import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { LlamaModel } from 'node-llama-cpp';

import { argmax, bundledModelPath, compressSession, createLlamaContext, defaultKvSettings, DraftModel, getLlamaFor, NativeModel, observationFor, packageRoot, scoringPass, tierCost } from '../sidecar/src/api';
import { codePromptTokens, fileFingerprint, loadVocab, peakRssMb, round, rssMb, summarize } from './common';

// `repokv bench speed`: in one run, repokv's native engine and node-llama-cpp on the same model and the same prompt,
// at each context length and thread count. Configurations (`--configs`):
//  - repokv-full: the native engine, policy `full` (fp16 store);
//  - repokv-default: the engine's compressed path with packed tiers: the prompt prefilled into a master staged in
//    defaultKvSettings.masterPrecision (kivi4),
//    SpecKV (draft lookahead of 16 tokens, the target's scoring pass), mixed tiers at 12 % of the fp16 bytes
//    (4-bit + 1.x-bit, sinks and window fp16), the staging freed after tiering; prefill includes the observation,
//    compress time and draft time are reported apart;
//  - llama-f16, llama-f16-fa: node-llama-cpp with f16 K/V, flash attention off / on;
//  - llama-q4_0-fa: node-llama-cpp's smallest cache, q4_0 K and V (needs flash attention).
// Every configuration is repeated (rows give min/median/max) and, by default, runs in a process of its own, so that
// its peak RSS is its own. The machine must be quiet: ggml's thread pool collapses under contention.

export const speedConfigs = ['repokv-full', 'repokv-default', 'llama-f16', 'llama-f16-fa', 'llama-q4_0-fa'] as const;
export type SpeedConfig = (typeof speedConfigs)[number];

export interface SpeedOptions {
	readonly modelPath: string;
	readonly contexts: readonly number[];
	readonly threads: readonly number[];
	readonly repeats: number;
	readonly decodeTokens: number;
	readonly configs?: readonly SpeedConfig[];
	/**
	 * repokv-default's draft model: default the bundled draft for the bundled target, else the target itself (any
	 * model shares its own tokenizer; the speed of the lookahead is then not representative, the rest is).
	 */
	readonly draftPath?: string;
	/** Run each (configuration, context, threads) in a child process (default true): peak RSS per row. */
	readonly isolate?: boolean;
	readonly onProgress?: ((line: string) => void) | undefined;
}

export interface Range {
	readonly min: number;
	readonly median: number;
	readonly max: number;
}

export interface SpeedRow {
	readonly context: number;
	readonly config: SpeedConfig;
	readonly impl: 'repokv' | 'node-llama-cpp';
	/** K/V storage: `full-f16` (repokv policy full), `speckv+mixed@12%`, or llama.cpp's `f16` / `q4_0`. */
	readonly kv: string;
	readonly threads: number;
	readonly flashAttention: boolean | null;
	/** Medians over repeats; the ranges have min/median/max. */
	readonly prefillTokPerS: number;
	readonly decodeTokPerS: number;
	readonly prefillRange: Range;
	readonly decodeRange: Range;
	/**
	 * Medians of tokens per second of process CPU time (all threads). Less sensitive than wall-clock rates to other
	 * processes on the same cores; comparable between engines at 1 thread.
	 */
	readonly prefillTokPerCpuS: number;
	readonly decodeTokPerCpuS: number;
	/**
	 * Bytes of K/V held while decoding. repokv: allocated, as its stats report (positions and metadata included);
	 * llama.cpp: tokens x layers x KV heads x head dim x 2 (K, V) x bytes per element of its cache type.
	 */
	readonly kvBytes: number;
	/** kvBytes / the f16 cache of the same tokens. */
	readonly kvRatio: number;
	/** repokv-default: medians of the draft's lookahead and of the selection + tiering, in ms (not in prefill). */
	readonly draftMs?: number;
	readonly compressMs?: number;
	/** Peak resident memory of the process that ran the row (with isolate: this row only). */
	readonly peakRssMb: number;
	/**
	 * Resident memory once the models are loaded and the context created, before the first prompt: peak − this is
	 * what evaluating the prompt and holding its KV cost (repokv-default also loads the draft model, ~50 MB of it).
	 */
	readonly rssBeforePromptMb: number;
}

/** Ratios of one context; each part is present where the run had the rows it compares. */
export interface SpeedSummary {
	readonly context: number;
	/** Decode speed of repokv's default over each baseline's best thread count (where both ran). */
	readonly defaultDecodeOverF16?: number;
	readonly defaultDecodeOverQ4Fa?: number;
	readonly defaultKvRatio?: number;
	/** repokv-full against node-llama-cpp f16, each at its best thread count (where both ran). */
	readonly full?: {
		readonly repokvBestPrefill: { threads: number; prefillTokPerS: number };
		readonly repokvBestDecode: { threads: number; decodeTokPerS: number };
		readonly baselineBestPrefill: { threads: number; flashAttention: boolean | null; prefillTokPerS: number };
		readonly baselineBestDecode: { threads: number; flashAttention: boolean | null; decodeTokPerS: number };
		readonly prefillRatio: number;
		readonly decodeRatio: number;
	};
}

export interface SpeedResult {
	readonly model: string;
	/** SHA-256 prefixes of the model and of repokv-default's draft (fileFingerprint). */
	readonly modelSha256: string;
	readonly draftSha256: string;
	readonly repeats: number;
	readonly decodeTokens: number;
	readonly rows: readonly SpeedRow[];
	readonly summary: readonly SpeedSummary[];
}

const lookaheadTokens = 16;

function draftFor(opts: SpeedOptions): string {
	if (opts.draftPath !== undefined) return opts.draftPath;
	return path.resolve(opts.modelPath) === path.resolve(bundledModelPath('target')) ? bundledModelPath('draft') : opts.modelPath;
}

async function benchNative(model: NativeModel, prompt: Int32Array, context: number, threads: number, compressed: boolean, opts: SpeedOptions): Promise<SpeedRow> {
	model.setThreads(threads);
	const { nLayer, nHeadKv, headDim } = model.info;
	const session = model.createSession({ contextSize: context + opts.decodeTokens + lookaheadTokens + 8 });
	session.setStaging(compressed ? defaultKvSettings.masterPrecision : false);
	const draft = compressed ? await DraftModel.load(draftFor(opts), { threads, contextSize: context + lookaheadTokens + 8 }) : undefined;
	const prefill: number[] = [];
	const decode: number[] = [];
	const prefillCpu: number[] = [];
	const decodeCpu: number[] = [];
	const draftMs: number[] = [];
	const compressMs: number[] = [];
	let kvBytes = 0;
	const rssBeforePromptMb = rssMb();
	const m = prompt.length - 1;
	const last = prompt[m] ?? 0;
	try {
		for (let r = 0; r < opts.repeats; r++) {
			session.truncate(0);
			const c0 = cpuMs();
			const t0 = performance.now();
			if (draft === undefined) {
				await session.prefill(prompt);
			} else {
				// the engine's path (native-engine.ts): observed prefill, cut to m, draft lookahead, scoring pass, tiering
				session.observe(observationFor('speckv', prompt.length));
				await session.prefill(prompt);
				session.truncate(m);
			}
			let t1 = performance.now();
			let c1 = cpuMs();
			if (draft !== undefined) {
				const lookahead = await draft.lookahead(Array.from(prompt), lookaheadTokens);
				const t2 = performance.now();
				await scoringPass(session, last, lookahead);
				session.stopObserving();
				compressSession(session, nLayer, nHeadKv, { policy: defaultKvSettings.policy, budget: { percent: defaultKvSettings.budgetPercent }, precision: defaultKvSettings.precision, tierCost: tierCost(headDim), reserveTokens: opts.decodeTokens + 2 }, opts.decodeTokens + 2, { dropMaster: true });
				const t3 = performance.now();
				draftMs.push(t2 - t1);
				compressMs.push(t3 - t2);
				// the prompt's last token, re-fed after the cut (part of the prompt, not of the decode rate)
				await session.decode(last);
				t1 = performance.now();
				c1 = cpuMs();
			}
			let next = argmax(session.logits());
			for (let i = 0; i < opts.decodeTokens; i++) {
				await session.decode(next);
				next = argmax(session.logits());
			}
			const t2 = performance.now();
			const c2 = cpuMs();
			prefill.push((prompt.length / (t1 - t0)) * 1000);
			decode.push((opts.decodeTokens / (t2 - t1)) * 1000);
			prefillCpu.push((prompt.length / (c1 - c0)) * 1000);
			decodeCpu.push((opts.decodeTokens / (c2 - c1)) * 1000);
			kvBytes = session.stats().bytes;
		}
	} finally {
		session.dispose();
		await draft?.dispose();
	}
	const f16Bytes = (context + opts.decodeTokens) * nLayer * nHeadKv * headDim * 4;
	return {
		context,
		config: compressed ? 'repokv-default' : 'repokv-full',
		impl: 'repokv',
		kv: compressed ? `${defaultKvSettings.policy}+${defaultKvSettings.precision}@${defaultKvSettings.budgetPercent}%` : 'full-f16',
		threads,
		flashAttention: null,
		...rates(prefill, decode, prefillCpu, decodeCpu),
		kvBytes,
		kvRatio: round(kvBytes / f16Bytes, 4),
		...(compressed ? { draftMs: round(summarize(draftMs).median), compressMs: round(summarize(compressMs).median) } : {}),
		peakRssMb: peakRssMb(),
		rssBeforePromptMb,
	};
}

async function benchLlama(model: LlamaModel, prompt: Int32Array, context: number, threads: number, config: SpeedConfig, opts: SpeedOptions, kvBytesPerToken: number): Promise<SpeedRow> {
	const flashAttention = config !== 'llama-f16';
	const q4 = config === 'llama-q4_0-fa';
	const ctx = await createLlamaContext(model, {
		contextSize: context + opts.decodeTokens + 8,
		threads,
		batchSize: 512,
		flashAttention,
		// K/V cache type: llama.cpp's default F16, or q4_0 (18 bytes per 32 elements; quantized V needs flash attention).
		kvType: q4 ? 'Q4_0' : 'F16',
	});
	const prefill: number[] = [];
	const decode: number[] = [];
	const prefillCpu: number[] = [];
	const decodeCpu: number[] = [];
	const rssBeforePromptMb = rssMb();
	try {
		const seq = ctx.getSequence();
		const tokens = Array.from(prompt) as Parameters<typeof seq.evaluateWithoutGeneratingNewTokens>[0];
		for (let r = 0; r < opts.repeats; r++) {
			await seq.clearHistory();
			const c0 = cpuMs();
			const t0 = performance.now();
			await seq.evaluateWithoutGeneratingNewTokens(tokens.slice(0, -1));
			const t1 = performance.now();
			const c1 = cpuMs();
			let n = 0;
			const last = tokens.slice(-1);
			// The first step evaluates the prompt's last token; each step is one single-token evaluation.
			for await (const _token of seq.evaluate(last, { temperature: 0 })) {
				if (++n >= opts.decodeTokens) {
					break;
				}
			}
			const t2 = performance.now();
			const c2 = cpuMs();
			prefill.push(((prompt.length - 1) / (t1 - t0)) * 1000);
			decode.push((opts.decodeTokens / (t2 - t1)) * 1000);
			prefillCpu.push(((prompt.length - 1) / (c1 - c0)) * 1000);
			decodeCpu.push((opts.decodeTokens / (c2 - c1)) * 1000);
		}
	} finally {
		await ctx.dispose();
	}
	const ratio = q4 ? 18 / 64 : 1; // q4_0: 18 bytes per block of 32 elements, f16: 64
	return {
		context,
		config,
		impl: 'node-llama-cpp',
		kv: q4 ? 'q4_0' : 'f16',
		threads,
		flashAttention,
		...rates(prefill, decode, prefillCpu, decodeCpu),
		kvBytes: Math.round((context + opts.decodeTokens) * kvBytesPerToken * ratio),
		kvRatio: ratio,
		peakRssMb: peakRssMb(),
		rssBeforePromptMb,
	};
}

/** Process CPU time (user + system, all threads) in milliseconds. */
function cpuMs(): number {
	const u = process.cpuUsage();
	return (u.user + u.system) / 1000;
}

/** The rate fields of a row from per-repeat tokens/s (wall and CPU): medians and wall ranges. */
function rates(prefill: number[], decode: number[], prefillCpu: number[], decodeCpu: number[]): Pick<SpeedRow, 'prefillTokPerS' | 'decodeTokPerS' | 'prefillRange' | 'decodeRange' | 'prefillTokPerCpuS' | 'decodeTokPerCpuS'> {
	const p = summarize(prefill);
	const d = summarize(decode);
	return {
		prefillTokPerS: round(p.median),
		decodeTokPerS: round(d.median),
		prefillRange: roundRange(p),
		decodeRange: roundRange(d),
		prefillTokPerCpuS: round(summarize(prefillCpu).median),
		decodeTokPerCpuS: round(summarize(decodeCpu).median),
	};
}

function roundRange(r: Range): Range {
	return { min: round(r.min), median: round(r.median), max: round(r.max) };
}

/** One row, in this process. */
export async function runSpeedRow(opts: SpeedOptions, config: SpeedConfig, context: number, threads: number): Promise<SpeedRow> {
	const vocab = await loadVocab(opts.modelPath, threads);
	const prompt = Int32Array.from(codePromptTokens(vocab, context));
	await vocab.dispose();
	if (config === 'repokv-full' || config === 'repokv-default') {
		const native = NativeModel.load(opts.modelPath, { threads });
		try {
			return await benchNative(native, prompt, context, threads, config === 'repokv-default', opts);
		} finally {
			native.dispose();
		}
	}
	const llama = await getLlamaFor({ threads, logLevel: 'error' });
	const llamaModel = await llama.loadModel({ modelPath: opts.modelPath });
	try {
		const shape = NativeModel.load(opts.modelPath, { threads });
		const { nLayer, nHeadKv, headDim } = shape.info;
		shape.dispose();
		return await benchLlama(llamaModel, prompt, context, threads, config, opts, nLayer * nHeadKv * headDim * 2 * 2);
	} finally {
		await llamaModel.dispose();
	}
}

/** The same row in a child process (`repokv bench speed --row ...`), so that its peak RSS is its own. */
function runIsolated(opts: SpeedOptions, config: SpeedConfig, context: number, threads: number): SpeedRow {
	const args = [path.join(packageRoot(), 'bin', 'repokv.js'), 'bench', 'speed', '--row', config, '--contexts', String(context), '--threads', String(threads), '--repeats', String(opts.repeats), '--decode-tokens', String(opts.decodeTokens), '--model', opts.modelPath, '--json', ...(opts.draftPath === undefined ? [] : ['--draft', opts.draftPath])];
	const out = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
	return JSON.parse(out) as SpeedRow;
}

export async function runSpeed(opts: SpeedOptions): Promise<SpeedResult> {
	const configs = opts.configs ?? speedConfigs;
	const rows: SpeedRow[] = [];
	const summary: SpeedSummary[] = [];
	for (const context of opts.contexts) {
		const here: SpeedRow[] = [];
		for (const config of configs) {
			for (const threads of opts.threads) {
				const row = opts.isolate === false ? await runSpeedRow(opts, config, context, threads) : runIsolated(opts, config, context, threads);
				opts.onProgress?.(JSON.stringify(row));
				here.push(row);
			}
		}
		rows.push(...here);
		const bestBy = (list: SpeedRow[], key: 'prefillTokPerS' | 'decodeTokPerS'): SpeedRow | undefined => list.reduce<SpeedRow | undefined>((a, b) => (a === undefined || b[key] > a[key] ? b : a), undefined);
		const mine = here.filter((r) => r.config === 'repokv-full');
		const base = here.filter((r) => r.impl === 'node-llama-cpp' && r.kv === 'f16');
		const myPrefill = bestBy(mine, 'prefillTokPerS');
		const myDecode = bestBy(mine, 'decodeTokPerS');
		const bp = bestBy(base, 'prefillTokPerS');
		const bd = bestBy(base, 'decodeTokPerS');
		const def = bestBy(here.filter((r) => r.config === 'repokv-default'), 'decodeTokPerS');
		const q4 = bestBy(here.filter((r) => r.config === 'llama-q4_0-fa'), 'decodeTokPerS');
		const full =
			myPrefill && myDecode && bp && bd
				? {
						repokvBestPrefill: { threads: myPrefill.threads, prefillTokPerS: myPrefill.prefillTokPerS },
						repokvBestDecode: { threads: myDecode.threads, decodeTokPerS: myDecode.decodeTokPerS },
						baselineBestPrefill: { threads: bp.threads, flashAttention: bp.flashAttention, prefillTokPerS: bp.prefillTokPerS },
						baselineBestDecode: { threads: bd.threads, flashAttention: bd.flashAttention, decodeTokPerS: bd.decodeTokPerS },
						prefillRatio: round(myPrefill.prefillTokPerS / bp.prefillTokPerS, 3),
						decodeRatio: round(myDecode.decodeTokPerS / bd.decodeTokPerS, 3),
					}
				: undefined;
		if (full || def) {
			summary.push({
				context,
				...(full ? { full } : {}),
				...(def ? { defaultKvRatio: def.kvRatio } : {}),
				...(def && bd ? { defaultDecodeOverF16: round(def.decodeTokPerS / bd.decodeTokPerS, 3) } : {}),
				...(def && q4 ? { defaultDecodeOverQ4Fa: round(def.decodeTokPerS / q4.decodeTokPerS, 3) } : {}),
			});
		}
	}
	return { model: opts.modelPath, modelSha256: fileFingerprint(opts.modelPath), draftSha256: fileFingerprint(draftFor(opts)), repeats: opts.repeats, decodeTokens: opts.decodeTokens, rows, summary };
}

/** A markdown table of a speed run (bench/results/<name>.md next to its JSON). */
export function speedMarkdown(result: SpeedResult, command: string): string {
	const lines = [
		'# Speed: repokv vs node-llama-cpp on the same model and prompt',
		'',
		`Command: \`${command}\` · model \`${path.relative(packageRoot(), result.model) || result.model}\` (sha256 ${result.modelSha256}, draft sha256 ${result.draftSha256}) · ${result.repeats} repeat(s) per row (median), ${result.decodeTokens} decoded tokens · each row in its own process.`,
		'',
		'| context | configuration | K/V | prefill tok/s | decode tok/s | KV bytes | of f16 | peak RSS MB | RSS before prompt MB | draft ms | compress ms |',
		'|---|---|---|---|---|---|---|---|---|---|---|',
		...result.rows.map((r) => `| ${r.context} | ${r.config} | ${r.kv} | ${r.prefillTokPerS} | ${r.decodeTokPerS} | ${r.kvBytes} | ${r.kvRatio} | ${r.peakRssMb} | ${r.rssBeforePromptMb} | ${r.draftMs ?? '–'} | ${r.compressMs ?? '–'} |`),
		'',
		'| context | repokv full / llama f16 (decode) | default / llama f16 (decode) | default / llama q4_0+FA (decode) | default KV of f16 |',
		'|---|---|---|---|---|',
		...result.summary.map((s) => `| ${s.context} | ${s.full?.decodeRatio ?? '–'} | ${s.defaultDecodeOverF16 ?? '–'} | ${s.defaultDecodeOverQ4Fa ?? '–'} | ${s.defaultKvRatio ?? '–'} |`),
		'',
	];
	return lines.join('\n');
}
