// Real code models' shapes and tokenizers, without their weights (native/test-fixtures/real-shapes.mjs): two-layer
// random-weight versions of Qwen2.5-Coder 0.5B (head dim 64) and 1.5B (head dim 128), tied output, and of
// deepseek-coder 1.3B (llama architecture, separate output, linear RoPE scaling), at Q8_0 and at the K-quants users
// download (made by llama.cpp's own quantizer). Checked here:
// - the native engine's logits and greedy tokens against llama.cpp's (bit-identical where the CPU allows it, as in
//   parity.test.mjs), on a code prompt tokenized by the model's real tokenizer;
// - the FIM and repository tokens found as single control tokens with Qwen2.5-Coder's ids, and deepseek-coder's FIM
//   tokens by their texts;
// - the repository-level prompt through the real tokenizer (<|repo_name|> once, <|file_sep|> once per file);
// - draft pairing: the same vocabulary pairs, the bundled draft does not (one clear error naming both files), and
//   `repokv complete --policy speckv` on a Qwen-vocabulary target does not crash.
// The fixtures (170-250 MB each) are generated once into native/build/real-shapes/ and reused.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { QWEN_CODER_TOKENS, realShapeFixture } from '../../native/test-fixtures/real-shapes.mjs';
import { importSidecar } from '../support/bundles.mjs';
import { compareWithReference, llamaReference, root, tempDir } from './helpers.mjs';

const sidecar = await importSidecar();
const { NativeModel, nativeRuntimeInfo, buildCompletionPrompt, specialTokenTextsOf, hasRepoLevelFormat, checkDraftPairing, DraftMismatchError, bundledModelPath } = sidecar;
const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
const exact = nativeRuntimeInfo().bitExactWithLlamaCpp;
const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });

const dir = tempDir('repokv-real-shapes-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const PROMPT = 64;
const GREEDY = 16;
const needle = path.join(root, 'test', 'fixtures', 'workspace-needle');

const fixtures = {
	qwen05Q8: { shape: 'qwen2.5-coder-0.5b', type: 'Q8_0', layers: 2 },
	qwen15Q4KM: { shape: 'qwen2.5-coder-1.5b', type: 'Q4_K_M', layers: 2 },
	qwen05Q5KM: { shape: 'qwen2.5-coder-0.5b', type: 'Q5_K_M', layers: 2 },
	deepseekQ8: { shape: 'deepseek-coder-1.3b', type: 'Q8_0', layers: 2 },
};
const file = (name) => realShapeFixture({ ...fixtures[name], threads: 1 }).file;

/** The model's tokenizer alone (node-llama-cpp, exact llama.cpp tokenization). */
async function withVocab(modelPath, fn) {
	const vocab = await llama.loadModel({ modelPath, vocabOnly: true });
	try {
		return await fn(vocab);
	} finally {
		await vocab.dispose();
	}
}

/** A FIM prompt over real code (native/src), tokenized by the model's own tokenizer, cut to `n` tokens. */
async function codePrompt(modelPath, n) {
	return withVocab(modelPath, (vocab) => {
		const code = fs.readFileSync(path.join(root, 'native', 'src', 'session.cpp'), 'utf8').slice(0, 4000);
		const special = specialTokenTextsOf(vocab);
		const text = `${special.fimPrefix}${code.slice(0, 2000)}${special.fimSuffix}${code.slice(2000)}${special.fimMiddle}`;
		const bos = vocab.tokens.shouldPrependBosToken && vocab.tokens.bos !== null ? [vocab.tokens.bos] : [];
		return Int32Array.from([...bos, ...vocab.tokenize(text, true)].slice(0, n));
	});
}

async function checkParity(modelPath) {
	const tokens = await codePrompt(modelPath, PROMPT);
	assert.equal(tokens.length, PROMPT);
	const ref = llamaReference(modelPath, tokens, { greedy: GREEDY, ctx: 256, dir });
	const r = compareWithReference(NativeModel, modelPath, tokens, ref, { contextSize: 256 });
	const summary = `maxAbsLogitDiff ${r.maxAbsLogitDiff.toExponential(3)} (max |logit| ${r.maxAbsRefLogit.toFixed(2)}), top-1 ${(r.top1Agreement * 100).toFixed(1)}%, greedy ${r.greedyMatched}/${r.greedyTotal}, weights ${r.info.weightTypes}`;
	console.log(`  ${path.basename(modelPath)}: ${summary}`);
	if (exact) {
		assert.equal(r.maxAbsLogitDiff, 0, `logits are not bit-identical to llama.cpp's: ${summary}`);
		assert.equal(r.greedyMatched, GREEDY, `greedy tokens diverge: ${summary}`);
	} else {
		// Quantized weights round activations to 8 bits; summation order then shows (parity.test.mjs).
		assert.ok(r.maxAbsLogitDiff <= 3e-2 * r.maxAbsRefLogit, summary);
		assert.ok(r.top1Agreement >= 0.95, summary);
	}
	return r;
}

describe('real shapes: native engine against llama.cpp', () => {
	before(() => {
		for (const name of Object.keys(fixtures)) file(name); // generate (once) before the timed tests
	});

	test('Qwen2.5-Coder-0.5B shape, 2 layers, Q8_0: qwen2, head dim 64, tied output, 151,936 tokens', async () => {
		const r = await checkParity(file('qwen05Q8'));
		assert.equal(r.info.architecture, 'qwen2');
		assert.equal(r.info.headDim, 64);
		assert.equal(r.info.nHeadKv, 2);
		assert.equal(r.info.tiedOutput, true);
		assert.equal(r.info.nVocab, 151936);
		assert.equal(r.info.contextLength, 32768);
		assert.equal(r.info.ropeFreqBase, 1e6);
	});

	test('Qwen2.5-Coder-1.5B shape, 2 layers, Q4_K_M: head dim 128, Q4_K and Q6_K weights', async () => {
		const r = await checkParity(file('qwen15Q4KM'));
		assert.equal(r.info.headDim, 128);
		assert.equal(r.info.tiedOutput, true);
		assert.match(r.info.weightTypes, /q4_K/);
		assert.match(r.info.weightTypes, /q6_K/);
	});

	test("Qwen2.5-Coder-0.5B shape, 2 layers, Q5_K_M: llama.cpp's fallbacks for 896-wide rows (Q5_1, Q8_0)", async () => {
		const r = await checkParity(file('qwen05Q5KM'));
		assert.match(r.info.weightTypes, /q5_K/);
		assert.match(r.info.weightTypes, /q5_1/);
	});

	test('deepseek-coder-1.3B shape, 2 layers, Q8_0: llama architecture, head dim 128, separate output, linear RoPE scaling', async () => {
		const r = await checkParity(file('deepseekQ8'));
		assert.equal(r.info.architecture, 'llama');
		assert.equal(r.info.headDim, 128);
		assert.equal(r.info.tiedOutput, false);
		assert.equal(r.info.nVocab, 32256);
	});
});

describe('real tokenizers: FIM and repository tokens', () => {
	test("Qwen2.5-Coder: the six FIM/repo texts are single control tokens with the model's ids, declared in the GGUF", async () => {
		await withVocab(file('qwen05Q8'), (vocab) => {
			const T = QWEN_CODER_TOKENS;
			const expected = { '<|fim_prefix|>': T.fimPrefix, '<|fim_middle|>': T.fimMiddle, '<|fim_suffix|>': T.fimSuffix, '<|fim_pad|>': T.fimPad, '<|repo_name|>': T.repoName, '<|file_sep|>': T.fileSep, '<|endoftext|>': T.endOfText };
			for (const [text, id] of Object.entries(expected)) {
				assert.deepEqual([...vocab.tokenize(text, true)], [id], text);
				assert.equal(vocab.getTokenAttributes(id).control, true, `${text} is a control token`);
				// Without special-token parsing the same text is plain text (a file that mentions it stays text).
				assert.ok(vocab.tokenize(text, false).length > 1, text);
			}
			assert.equal(vocab.tokens.infill.prefix, T.fimPrefix);
			assert.equal(vocab.tokens.infill.suffix, T.fimSuffix);
			assert.equal(vocab.tokens.infill.middle, T.fimMiddle);
			assert.equal(vocab.tokens.shouldPrependBosToken, false);
			assert.equal(hasRepoLevelFormat(vocab), true);
			assert.deepEqual(specialTokenTextsOf(vocab), { fimPrefix: '<|fim_prefix|>', fimSuffix: '<|fim_suffix|>', fimMiddle: '<|fim_middle|>', fileSeparator: '<|file_sep|>', endOfText: '<|endoftext|>', repoName: '<|repo_name|>' });
		});
	});

	test("deepseek-coder: its FIM tokens found by their texts; no repository-level format", async () => {
		await withVocab(file('deepseekQ8'), (vocab) => {
			const special = specialTokenTextsOf(vocab);
			assert.equal(special.fimPrefix, '<｜fim▁begin｜>');
			assert.equal(special.fimSuffix, '<｜fim▁hole｜>');
			assert.equal(special.fimMiddle, '<｜fim▁end｜>');
			assert.equal(special.repoName, undefined);
			for (const text of [special.fimPrefix, special.fimSuffix, special.fimMiddle]) assert.equal(vocab.tokenize(text, true).length, 1, text);
			assert.equal(vocab.tokens.shouldPrependBosToken, true);
		});
	});

	test('the bundled target keeps its own format (no <|repo_name|>)', async () => {
		await withVocab(bundledModelPath('target'), (vocab) => assert.equal(hasRepoLevelFormat(vocab), false));
	});
});

describe('repository-level prompt through the real tokenizer', () => {
	test('needle workspace on the Qwen2.5-Coder vocabulary: <|repo_name|> once, <|file_sep|> once per file, FIM ids once', async () => {
		const files = fs.readdirSync(path.join(needle, 'src')).map((name) => ({ path: `src/${name}`, text: fs.readFileSync(path.join(needle, 'src', name), 'utf8') }));
		const active = files.find((f) => f.path === 'src/main.ts');
		await withVocab(file('qwen05Q8'), (vocab) => {
			const counter = { countTokens: (text) => vocab.tokenize(text, true).length };
			const prompt = buildCompletionPrompt({ files, activePath: active.path, activeText: active.text, cursorOffset: 40, specialTokens: specialTokenTextsOf(vocab), counter, budgetTokens: 30000, repoName: 'workspace-needle' });
			const ids = [...vocab.tokenize(prompt.text, true)];
			const T = QWEN_CODER_TOKENS;
			const count = (id) => ids.filter((t) => t === id).length;
			assert.equal(ids[0], T.repoName);
			assert.equal(count(T.repoName), 1);
			assert.equal(count(T.fileSep), prompt.included.length + 1);
			assert.ok(prompt.included.length >= 2);
			for (const id of [T.fimPrefix, T.fimSuffix, T.fimMiddle]) assert.equal(count(id), 1);
			assert.equal(ids.at(-1), T.fimMiddle);
			assert.ok(ids.indexOf(T.fimPrefix) < ids.indexOf(T.fimSuffix));
			assert.equal(prompt.tokenCount, ids.length);
		});
	});

	test('an engine loading the model reports the format in its special tokens', async () => {
		const engine = await sidecar.loadEngine('llama');
		const model = await engine.loadModel({ modelPath: file('qwen05Q8'), threads: 1, contextSize: 512 });
		try {
			assert.equal(model.specialTokens.repoName, '<|repo_name|>');
		} finally {
			await model.dispose();
		}
	});
});

describe('draft pairing on real vocabularies', () => {
	test('Qwen2.5-Coder 1.5B with a 0.5B draft: same vocabulary, paired', async () => {
		await checkDraftPairing(file('qwen15Q4KM'), file('qwen05Q8'));
	});

	test('a Qwen2.5-Coder target with the bundled draft: one DraftMismatchError naming both files', async () => {
		const target = file('qwen05Q8');
		const draft = bundledModelPath('draft');
		await assert.rejects(checkDraftPairing(target, draft), (error) => {
			assert.ok(error instanceof DraftMismatchError);
			assert.ok(error.message.includes(target) && error.message.includes(draft), error.message);
			assert.match(error.message, /151936 tokens/);
			return true;
		});
	});

	test('deepseek-coder against Qwen2.5-Coder: mismatch', async () => {
		await assert.rejects(checkDraftPairing(file('qwen05Q8'), file('deepseekQ8')), DraftMismatchError);
	});

	test('`repokv complete --engine native --policy speckv` on a Qwen-vocabulary target with the bundled draft: no crash, a clear message', () => {
		const run = spawnSync(process.execPath, [path.join(root, 'bin', 'repokv.js'), 'complete', '--engine', 'native', '--policy', 'speckv', '--model', file('qwen05Q8'), '--workspace', needle, '--file', 'src/main.ts', '--line', '10', '--column', '32', '--threads', '1', '--max-tokens', '4', '--context', '4096', '--json'], { encoding: 'utf8', timeout: 300_000 });
		const output = `${run.stdout}\n${run.stderr}`;
		assert.doesNotMatch(output, /internal error/, output);
		assert.match(output, /draft/i, output);
		assert.ok(run.status === 0 || /cannot be paired/.test(run.stderr), `exit ${run.status}: ${output}`);
	});
});
