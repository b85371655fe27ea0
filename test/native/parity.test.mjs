// Parity of the native engine (policy `full`) with llama.cpp (node-llama-cpp's own libllama, via native/build/llama-ref):
// next-token logits at every position of a 512-token prompt and 64 greedy tokens, on generated random-weight fixtures
// (qwen2 with Q/K/V biases and RoPE neox; llama with RoPE normal; several weight types) and the bundled target model.
//
// On an AVX2 machine without AVX-512 (the CPU variant llama.cpp then loads uses tinyBLAS for prompt batches and
// ggml_vec_dot_f16 for single tokens), the native engine's attention sums in exactly their order, with the same fp16
// roundings of Q, K, V and the probabilities, and the weight matmuls are the same ggml ops on the same (repacked)
// weights: the logits must be bit-identical, every position, every greedy step, every weight type.
// Elsewhere (runtimeInfo().bitExactWithLlamaCpp false) the tolerance, relative to the largest |logit| of the
// reference, is 2e-3 for F32/F16 weights and 3e-2 for BF16/8-bit/4-bit weights (whose matmuls round activations to
// 8 bits, amplifying summation-order differences); top-1 agreement >= 95% and, for F16/F32, greedy tokens equal.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { FIXTURES, makeFixture } from '../../native/test-fixtures/make-fixture.mjs';
import { GGML } from '../../native/test-fixtures/gguf-writer.mjs';
import { importSidecar } from '../support/bundles.mjs';
import { compareWithReference, llamaReference, randomTokens, root, tempDir } from './helpers.mjs';

const { NativeModel, nativeRuntimeInfo } = await importSidecar();
const exact = nativeRuntimeInfo().bitExactWithLlamaCpp;

const dir = tempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const PROMPT = 512;
const GREEDY = 64;

function checkParity(modelPath, tolerance, tokens, { requireGreedy = true, minTop1 = 0.95 } = {}) {
	const model = NativeModel.load(modelPath, { threads: 1 });
	const nVocab = model.info.nVocab;
	model.dispose();
	const prompt = tokens ?? randomTokens(PROMPT, nVocab);
	const ref = llamaReference(modelPath, prompt, { greedy: GREEDY, dir });
	const r = compareWithReference(NativeModel, modelPath, prompt, ref);
	const summary = `maxAbsLogitDiff ${r.maxAbsLogitDiff.toExponential(3)} (max |logit| ${r.maxAbsRefLogit.toFixed(2)}), top-1 ${(r.top1Agreement * 100).toFixed(1)}%, greedy ${r.greedyMatched}/${r.greedyTotal}`;
	console.log(`  ${path.basename(modelPath)}: ${summary}`);
	if (exact) {
		assert.equal(r.maxAbsLogitDiff, 0, `logits are not bit-identical to llama.cpp's: ${summary}`);
		assert.equal(r.greedyMatched, GREEDY, `greedy tokens diverge: ${summary}`);
		return r;
	}
	assert.ok(r.maxAbsLogitDiff <= tolerance * r.maxAbsRefLogit, `logits differ by ${r.maxAbsLogitDiff} > ${tolerance} x ${r.maxAbsRefLogit}: ${summary}`);
	assert.ok(r.top1Agreement >= minTop1, `top-1 agreement too low: ${summary}`);
	if (requireGreedy) assert.equal(r.greedyMatched, GREEDY, `greedy tokens diverge: ${summary}`);
	return r;
}

describe('native engine parity with llama.cpp', () => {
	test('qwen2 fixture with Q/K/V biases (RoPE neox, tied output, F16)', () => {
		const file = path.join(dir, 'qwen2-f16.gguf');
		makeFixture(file, { ...FIXTURES.qwen2, weightType: GGML.F16 });
		const r = checkParity(file, 2e-3);
		assert.equal(r.info.architecture, 'qwen2');
		assert.equal(r.info.ropeType, 'neox');
		assert.equal(r.info.tiedOutput, true);
	});

	test('llama fixture (RoPE normal, separate output, F16)', () => {
		const file = path.join(dir, 'llama-f16.gguf');
		makeFixture(file, { ...FIXTURES.llama, weightType: GGML.F16 });
		const r = checkParity(file, 2e-3);
		assert.equal(r.info.ropeType, 'normal');
		assert.equal(r.info.tiedOutput, false);
	});

	for (const [type, tolerance] of [['F32', 2e-3], ['BF16', 3e-2], ['Q8_0', 3e-2], ['Q4_0', 3e-2]]) {
		test(`qwen2 fixture, ${type} weights`, () => {
			const file = path.join(dir, `qwen2-${type}.gguf`);
			makeFixture(file, { ...FIXTURES.qwen2, weightType: GGML[type], seed: 99 });
			checkParity(file, tolerance, undefined, { requireGreedy: type === 'F32' });
		});
	}

	// K-quants, made by ggml's own quantizers (native/build/gguf-requant); Q4_K weights are repacked for the CPU
	// backend's 8x8 kernels, as llama.cpp does.
	for (const mode of ['Q4_K', 'Q6_K', 'Q4_K_M']) {
		test(`llama fixture, ${mode} weights`, () => {
			const f16 = path.join(dir, `llama-for-${mode}.gguf`);
			makeFixture(f16, { ...FIXTURES.llama, weightType: GGML.F16 });
			const file = path.join(dir, `llama-${mode}.gguf`);
			execFileSync(path.join(root, 'native', 'build', 'gguf-requant'), [f16, file, mode]);
			checkParity(file, 3e-2, undefined, { requireGreedy: false });
		});
	}

	const target = path.join(root, 'models', 'target.gguf');
	test('bundled target model on a 512-token code prompt', { skip: !fs.existsSync(target) && 'models/target.gguf not built yet' }, async () => {
		const { getLlama } = await import('node-llama-cpp');
		const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false });
		const vocab = await llama.loadModel({ modelPath: target, vocabOnly: true });
		let text = '';
		for (const f of ['native/src/attention.cpp', 'native/src/session.cpp', 'native/src/model.cpp']) text += `<|file_sep|>${f}\n` + fs.readFileSync(path.join(root, f), 'utf8');
		const tokens = Int32Array.from(vocab.tokenize(text, true).slice(0, PROMPT));
		await vocab.dispose();
		assert.equal(tokens.length, PROMPT);
		checkParity(target, 2e-3, tokens);
	});
});
