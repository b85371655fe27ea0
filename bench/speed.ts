import { performance } from 'node:perf_hooks';
import type { LlamaModel } from 'node-llama-cpp';

import { argmax, NativeModel } from '../sidecar/src/engine/native';
import { codePromptTokens, loadVocab, peakRssMb, round, summarize } from './common';

// `repokv bench speed`: in one process and one run, repokv's native engine (policy `full`) and node-llama-cpp (f16
// K/V) on the same model and the same prompt, at each context length and thread count; node-llama-cpp also with flash
// attention on and off, so that its best configuration is the baseline (GGUF-NOTES.md). Every configuration is
// repeated; rows give min/median/max. The machine must be quiet: ggml's thread pool collapses under contention.

export interface SpeedOptions {
	readonly modelPath: string;
	readonly contexts: readonly number[];
	readonly threads: readonly number[];
	readonly repeats: number;
	readonly decodeTokens: number;
	readonly onProgress?: ((line: string) => void) | undefined;
}

export interface Range {
	readonly min: number;
	readonly median: number;
	readonly max: number;
}

export interface SpeedRow {
	readonly context: number;
	readonly impl: 'repokv' | 'node-llama-cpp';
	/** K/V storage: `full-f16` (repokv policy full, fp16 segments) or `f16` (llama.cpp). */
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
	/** Bytes of K/V held for the context's tokens (llama.cpp: tokens x layers x KV heads x head dim x 2 x 2 bytes). */
	readonly kvBytes: number;
	/** Peak resident memory of the process so far (both engines share the process). */
	readonly peakRssMb: number;
}

export interface SpeedSummary {
	readonly context: number;
	readonly repokvBestPrefill: { threads: number; prefillTokPerS: number };
	readonly repokvBestDecode: { threads: number; decodeTokPerS: number };
	readonly baselineBestPrefill: { threads: number; flashAttention: boolean | null; prefillTokPerS: number };
	readonly baselineBestDecode: { threads: number; flashAttention: boolean | null; decodeTokPerS: number };
	readonly prefillRatio: number;
	readonly decodeRatio: number;
}

export interface SpeedResult {
	readonly model: string;
	readonly repeats: number;
	readonly decodeTokens: number;
	readonly rows: readonly SpeedRow[];
	readonly summary: readonly SpeedSummary[];
}

async function benchNative(model: NativeModel, prompt: Int32Array, context: number, threads: number, opts: SpeedOptions): Promise<SpeedRow> {
	model.setThreads(threads);
	const session = model.createSession({ contextSize: context + opts.decodeTokens + 8 });
	const prefill: number[] = [];
	const decode: number[] = [];
	const prefillCpu: number[] = [];
	const decodeCpu: number[] = [];
	let kvBytes = 0;
	try {
		for (let r = 0; r < opts.repeats; r++) {
			session.truncate(0);
			const c0 = cpuMs();
			const t0 = performance.now();
			await session.prefill(prompt);
			const t1 = performance.now();
			const c1 = cpuMs();
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
	}
	const p = summarize(prefill);
	const d = summarize(decode);
	return { context, impl: 'repokv', kv: 'full-f16', threads, flashAttention: null, prefillTokPerS: round(p.median), decodeTokPerS: round(d.median), prefillRange: roundRange(p), decodeRange: roundRange(d), prefillTokPerCpuS: round(summarize(prefillCpu).median), decodeTokPerCpuS: round(summarize(decodeCpu).median), kvBytes, peakRssMb: peakRssMb() };
}

async function benchLlama(model: LlamaModel, prompt: Int32Array, context: number, threads: number, flashAttention: boolean, opts: SpeedOptions, kvBytesPerToken: number): Promise<SpeedRow> {
	const ctx = await model.createContext({
		contextSize: context + opts.decodeTokens + 8,
		threads: { ideal: threads, min: threads },
		sequences: 1,
		batchSize: 512,
		// K/V cache type: llama.cpp's default, F16.
		flashAttention,
	});
	const prefill: number[] = [];
	const decode: number[] = [];
	const prefillCpu: number[] = [];
	const decodeCpu: number[] = [];
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
	const p = summarize(prefill);
	const d = summarize(decode);
	return { context, impl: 'node-llama-cpp', kv: 'f16', threads, flashAttention, prefillTokPerS: round(p.median), decodeTokPerS: round(d.median), prefillRange: roundRange(p), decodeRange: roundRange(d), prefillTokPerCpuS: round(summarize(prefillCpu).median), decodeTokPerCpuS: round(summarize(decodeCpu).median), kvBytes: (context + opts.decodeTokens) * kvBytesPerToken, peakRssMb: peakRssMb() };
}

/** Process CPU time (user + system, all threads) in milliseconds. */
function cpuMs(): number {
	const u = process.cpuUsage();
	return (u.user + u.system) / 1000;
}

function roundRange(r: Range): Range {
	return { min: round(r.min), median: round(r.median), max: round(r.max) };
}

export async function runSpeed(opts: SpeedOptions): Promise<SpeedResult> {
	const maxThreads = Math.max(...opts.threads);
	const vocab = await loadVocab(opts.modelPath, maxThreads);
	const longest = Math.max(...opts.contexts);
	const allTokens = codePromptTokens(vocab, longest);
	await vocab.dispose();

	const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
	const llama = await getLlama({ maxThreads, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
	const llamaModel = await llama.loadModel({ modelPath: opts.modelPath });
	const native = NativeModel.load(opts.modelPath, { threads: opts.threads[0] ?? 1 });
	const { nLayer, nHeadKv, headDim } = native.info;
	const kvBytesPerToken = nLayer * nHeadKv * headDim * 2 * 2;
	const rows: SpeedRow[] = [];
	const summary: SpeedSummary[] = [];
	try {
		for (const context of opts.contexts) {
			const prompt = Int32Array.from(allTokens.slice(0, context));
			const here: SpeedRow[] = [];
			for (const threads of opts.threads) {
				const row = await benchNative(native, prompt, context, threads, opts);
				opts.onProgress?.(JSON.stringify(row));
				here.push(row);
			}
			for (const threads of opts.threads) {
				for (const fa of [false, true]) {
					const row = await benchLlama(llamaModel, prompt, context, threads, fa, opts, kvBytesPerToken);
					opts.onProgress?.(JSON.stringify(row));
					here.push(row);
				}
			}
			rows.push(...here);
			const mine = here.filter((r) => r.impl === 'repokv');
			const base = here.filter((r) => r.impl === 'node-llama-cpp');
			const bestBy = (list: SpeedRow[], key: 'prefillTokPerS' | 'decodeTokPerS'): SpeedRow => list.reduce((a, b) => (b[key] > a[key] ? b : a));
			const myPrefill = bestBy(mine, 'prefillTokPerS');
			const myDecode = bestBy(mine, 'decodeTokPerS');
			const bp = bestBy(base, 'prefillTokPerS');
			const bd = bestBy(base, 'decodeTokPerS');
			summary.push({
				context,
				repokvBestPrefill: { threads: myPrefill.threads, prefillTokPerS: myPrefill.prefillTokPerS },
				repokvBestDecode: { threads: myDecode.threads, decodeTokPerS: myDecode.decodeTokPerS },
				baselineBestPrefill: { threads: bp.threads, flashAttention: bp.flashAttention, prefillTokPerS: bp.prefillTokPerS },
				baselineBestDecode: { threads: bd.threads, flashAttention: bd.flashAttention, decodeTokPerS: bd.decodeTokPerS },
				prefillRatio: round(myPrefill.prefillTokPerS / bp.prefillTokPerS, 3),
				decodeRatio: round(myDecode.decodeTokPerS / bd.decodeTokPerS, 3),
			});
		}
	} finally {
		native.dispose();
		await llamaModel.dispose();
	}
	return { model: opts.modelPath, repeats: opts.repeats, decodeTokens: opts.decodeTokens, rows, summary };
}
