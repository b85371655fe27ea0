import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { argmax, NativeModel, nativeRuntimeInfo, packageRoot } from '../sidecar/src/api';
import { codePromptTokens, loadVocab, round } from './common';

// `repokv bench parity`: the native engine (policy `full`) against llama.cpp's raw logits (native/build/llama-ref,
// linked against node-llama-cpp's own libllama; K/V f16, flash attention off) on one prompt: every prompt position's
// next-token logits, then greedy decoding.

export interface ParityOptions {
	readonly modelPath: string;
	readonly promptTokens: number;
	readonly greedy: number;
	readonly threads: number;
}

export interface ParityResult {
	readonly model: string;
	readonly architecture: string;
	readonly weightTypes: string;
	readonly promptTokens: number;
	/** Largest |native - llama.cpp| over every prompt position and greedy step. */
	readonly maxAbsLogitDiff: number;
	/** Largest |logit| of the reference (scale of the difference). */
	readonly maxAbsRefLogit: number;
	readonly relativeDiff: number;
	/** Every compared logit is bit-identical. */
	readonly identicalLogits: boolean;
	/** Whether this machine's ggml CPU variant lets policy `full` be bit-identical (AVX2, no AVX-512). */
	readonly bitExactExpected: boolean;
	/** Share of prompt positions where both engines' top-1 tokens agree. */
	readonly top1Agreement: number;
	readonly greedyMatch: string;
	readonly firstDivergence: number | null;
	readonly threads: number;
	readonly reference: string;
}

export async function runParity(options: ParityOptions): Promise<ParityResult> {
	const refTool = path.join(packageRoot(), 'native', 'build', 'llama-ref');
	if (!existsSync(refTool)) {
		throw new Error(`${refTool} is missing; run \`npm run build\``);
	}
	const vocab = await loadVocab(options.modelPath, options.threads);
	const tokens = Int32Array.from(codePromptTokens(vocab, options.promptTokens));
	await vocab.dispose();

	const dir = mkdtempSync(path.join(tmpdir(), 'repokv-parity-'));
	try {
		const tin = path.join(dir, 'tokens.bin');
		const tout = path.join(dir, 'ref.bin');
		writeFileSync(tin, tokens);
		const ctx = options.promptTokens + options.greedy + 16;
		execFileSync(refTool, [options.modelPath, tin, tout, '--ctx', String(ctx), '--threads', String(options.threads), '--greedy', String(options.greedy)], { stdio: ['ignore', 'ignore', 'pipe'] });
		const buf = readFileSync(tout);
		const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
		const [nv = 0, np = 0, ng = 0] = new Int32Array(ab, 0, 3);
		const promptLogits = new Float32Array(ab, 12, np * nv);
		const refGreedy = new Int32Array(ab, 12 + np * nv * 4, ng);
		const greedyLogits = new Float32Array(ab, 12 + np * nv * 4 + ng * 4, ng * nv);

		const model = NativeModel.load(options.modelPath, { threads: options.threads });
		const session = model.createSession({ contextSize: ctx });
		try {
			session.prefillSync(tokens, { allLogits: true });
			const all = session.logits('all');
			let maxAbs = 0;
			let maxRef = 0;
			let top1 = 0;
			for (let i = 0; i < np; i++) {
				const mine = all.subarray(i * nv, (i + 1) * nv);
				const ref = promptLogits.subarray(i * nv, (i + 1) * nv);
				for (let v = 0; v < nv; v++) {
					maxAbs = Math.max(maxAbs, Math.abs((mine[v] ?? 0) - (ref[v] ?? 0)));
					maxRef = Math.max(maxRef, Math.abs(ref[v] ?? 0));
				}
				if (argmax(mine) === argmax(ref)) {
					top1++;
				}
			}
			let matched = 0;
			let divergence: number | null = null;
			let cur = session.logits();
			for (let g = 0; g < ng; g++) {
				const ref = greedyLogits.subarray(g * nv, (g + 1) * nv);
				for (let v = 0; v < nv; v++) {
					maxAbs = Math.max(maxAbs, Math.abs((cur[v] ?? 0) - (ref[v] ?? 0)));
				}
				const t = argmax(cur);
				if (t !== refGreedy[g]) {
					divergence = g;
					break;
				}
				matched++;
				if (g + 1 < ng) {
					session.decodeSync(t);
					cur = session.logits();
				}
			}
			return {
				model: options.modelPath,
				architecture: model.info.architecture,
				weightTypes: model.info.weightTypes,
				promptTokens: np,
				maxAbsLogitDiff: maxAbs,
				maxAbsRefLogit: round(maxRef, 3),
				relativeDiff: maxRef > 0 ? maxAbs / maxRef : 0,
				identicalLogits: maxAbs === 0 && divergence === null,
				bitExactExpected: nativeRuntimeInfo().bitExactWithLlamaCpp,
				top1Agreement: round(top1 / Math.max(1, np), 4),
				greedyMatch: `${matched}/${ng}`,
				firstDivergence: divergence,
				threads: options.threads,
				reference: 'llama.cpp (node-llama-cpp libllama), K/V f16, flash attention off, raw logits',
			};
		} finally {
			session.dispose();
			model.dispose();
		}
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}
