// Shared helpers of the native engine tests: the llama.cpp reference (native/build/llama-ref) and comparisons.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const llamaRef = path.join(root, 'native', 'build', 'llama-ref');
/**
 * The test addon (native/build.mjs): the product engine plus test-only bindings (`quant`, `scoreAttention`,
 * NativeSession `dequantizeActive`); the .vsix ships only native/build/repokv.node. A test file that needs them calls
 * useTestAddon() before importing dist/sidecar.mjs, so one addon is loaded per process and the sidecar's wrappers run on it.
 */
export const testAddonPath = path.join(root, 'native', 'build', 'repokv-test.node');
export function useTestAddon() {
	process.env.REPOKV_NATIVE_ADDON = testAddonPath;
}
/** NativeSession.dequantizeActive of the test addon, on a sidecar NativeSession (its addon handle). */
export function dequantizeActive(session) {
	session.handle.dequantizeActive();
}

export function tempDir(prefix = 'repokv-native-') {
	return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Deterministic pseudo-random token ids in [0, nVocab - 1) (the last id is the fixtures' end-of-text). */
export function randomTokens(n, nVocab, seed = 7) {
	let s = seed >>> 0;
	return Int32Array.from({ length: n }, () => {
		s = (Math.imul(s, 1103515245) + 12345) >>> 0;
		return (s >>> 8) % (nVocab - 1);
	});
}

/** llama.cpp's raw logits for every prompt position plus `greedy` greedy tokens (K/V f16, flash attention off). */
export function llamaReference(model, tokens, { greedy = 64, ctx = 2048, threads = 1, dir = tempDir() } = {}) {
	const tin = path.join(dir, 'tokens.bin');
	const tout = path.join(dir, 'ref.bin');
	fs.writeFileSync(tin, Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength));
	execFileSync(llamaRef, [model, tin, tout, '--ctx', String(ctx), '--threads', String(threads), '--greedy', String(greedy)], { stdio: ['ignore', 'ignore', 'pipe'] });
	const buf = fs.readFileSync(tout);
	const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
	const [nVocab, nPrompt, nGreedy] = new Int32Array(ab, 0, 3);
	let off = 12;
	const promptLogits = new Float32Array(ab, off, nPrompt * nVocab);
	off += nPrompt * nVocab * 4;
	const greedyTokens = Array.from(new Int32Array(ab, off, nGreedy));
	off += nGreedy * 4;
	const greedyLogits = new Float32Array(ab, off, nGreedy * nVocab);
	return { nVocab, nPrompt, promptLogits, greedyTokens, greedyLogits };
}

export function argmax(a, from = 0, n = a.length - from) {
	let best = 0;
	for (let i = 1; i < n; i++) if (a[from + i] > a[from + best]) best = i;
	return best;
}

/**
 * Runs the native engine on the same prompt: all prompt logits, then greedy decoding for as many tokens as the
 * reference produced. Returns max |logit diff| over prompt rows and greedy steps, top-1 agreement and greedy match.
 */
export function compareWithReference(NativeModel, modelPath, tokens, ref, { threads = 1, contextSize = 2048 } = {}) {
	const model = NativeModel.load(modelPath, { threads });
	const session = model.createSession({ contextSize });
	try {
		session.prefillSync(tokens, { allLogits: true });
		const all = session.logits('all');
		const nv = ref.nVocab;
		let maxAbs = 0, maxRef = 0, top1 = 0;
		for (let i = 0; i < ref.nPrompt; i++) {
			for (let v = 0; v < nv; v++) {
				maxAbs = Math.max(maxAbs, Math.abs(all[i * nv + v] - ref.promptLogits[i * nv + v]));
				maxRef = Math.max(maxRef, Math.abs(ref.promptLogits[i * nv + v]));
			}
			if (argmax(all, i * nv, nv) === argmax(ref.promptLogits, i * nv, nv)) top1++;
		}
		let matched = 0;
		let cur = session.logits();
		const generated = [];
		for (let g = 0; g < ref.greedyTokens.length; g++) {
			for (let v = 0; v < nv; v++) maxAbs = Math.max(maxAbs, Math.abs(cur[v] - ref.greedyLogits[g * nv + v]));
			const t = argmax(cur);
			generated.push(t);
			if (t !== ref.greedyTokens[g]) break;
			matched++;
			if (g + 1 < ref.greedyTokens.length) {
				session.decodeSync(t);
				cur = session.logits();
			}
		}
		return { maxAbsLogitDiff: maxAbs, maxAbsRefLogit: maxRef, top1Agreement: top1 / ref.nPrompt, greedyMatched: matched, greedyTotal: ref.greedyTokens.length, generated, stats: session.stats(), info: model.info };
	} finally {
		session.dispose();
		model.dispose();
	}
}
