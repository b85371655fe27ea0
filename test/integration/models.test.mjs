// The bundled models, loaded by node-llama-cpp: they load, have the promised shape, and tokenize as expected.
// These tests use the real models/target.gguf and models/draft.gguf; a checkout without them fails here, by name.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';

import { draftModelPath, repoRoot, sidecar, targetModelPath } from '../support/sidecar.mjs';

const { readGgufFileInfo } = await import('node-llama-cpp');
const fixtureStrings = JSON.parse(await readFile(path.join(repoRoot, 'test', 'fixtures', 'tokenizer-strings.json'), 'utf8'));
const specialTexts = ['<|endoftext|>', '<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>', '<|file_sep|>'];

for (const file of [targetModelPath, draftModelPath]) {
	if (!existsSync(file)) {
		throw new Error(`${file} is missing: the bundled models are built by models/recipe (see models/README.md)`);
	}
}

/** Matrix weights used per token (everything but the embedding lookup table): a proxy for compute per token. */
function matmulParameters(info) {
	return info.tensorInfo
		.filter((tensor) => tensor.name !== 'token_embd.weight' && tensor.dimensions.length === 2)
		.reduce((sum, tensor) => sum + tensor.dimensions.reduce((a, b) => a * Number(b), 1), 0);
}

describe('bundled models', () => {
	let llama;
	const vocab = {};
	before(async () => {
		// The engine's own node-llama-cpp set-up: threads explicit, never a build or a download.
		llama = await sidecar.getLlamaFor({ threads: 2, logLevel: 'error' });
		vocab.target = await llama.loadModel({ modelPath: targetModelPath, vocabOnly: true });
		vocab.draft = await llama.loadModel({ modelPath: draftModelPath, vocabOnly: true });
	});

	for (const [role, file] of [['target', targetModelPath], ['draft', draftModelPath]]) {
		test(`${role}: loads with weights and evaluates a context`, async () => {
			const model = await llama.loadModel({ modelPath: file });
			try {
				assert.ok(model.trainContextSize >= 4096, `trained context ${model.trainContextSize}`);
				const context = await sidecar.createLlamaContext(model, { contextSize: 512, threads: 2, flashAttention: false });
				const sequence = context.getSequence();
				const tokens = model.tokenize('<|file_sep|>src/a.ts\nexport const a = 1;\n', true);
				const iterator = sequence.evaluate(tokens, { temperature: 0 });
				const first = await iterator.next();
				await iterator.return();
				assert.equal(typeof first.value, 'number');
				await context.dispose();
			} finally {
				await model.dispose();
			}
		});

		test(`${role}: llama-family architecture with GQA and head dimension 64`, async () => {
			const { metadata } = await readGgufFileInfo(file, { readTensorInfo: false });
			const arch = metadata.general.architecture;
			assert.ok(['llama', 'qwen2'].includes(arch), arch);
			const params = /** @type {{ embedding_length: number, attention: { head_count: number, head_count_kv: number } }} */ (metadata[arch]);
			assert.ok(params.attention.head_count_kv < params.attention.head_count, 'fewer KV heads than query heads');
			assert.equal(params.embedding_length / params.attention.head_count, 64);
			assert.equal(metadata.tokenizer.ggml.model, 'gpt2');
		});
	}

	test('target is at most 25 MB; draft needs at most a quarter of its compute', async () => {
		assert.ok(statSync(targetModelPath).size <= 25 * 1024 * 1024, `${statSync(targetModelPath).size} bytes`);
		const target = matmulParameters(await readGgufFileInfo(targetModelPath));
		const draft = matmulParameters(await readGgufFileInfo(draftModelPath));
		assert.ok(draft <= target / 4, `draft ${draft} vs target ${target} matrix parameters`);
	});

	test('the special token texts are single special tokens, with specialTokens = true only', () => {
		for (const model of [vocab.target, vocab.draft]) {
			for (const text of specialTexts) {
				const tokens = model.tokenize(text, true);
				assert.equal(tokens.length, 1, `${text} -> ${tokens}`);
				assert.ok(model.isSpecialToken(tokens[0]), `${text} is special`);
				const plain = model.tokenize(text, false);
				assert.ok(plain.length > 1 && !plain.some((token) => model.isSpecialToken(token)), `${text} as plain text`);
			}
			const { infill } = model.tokens;
			assert.deepEqual([infill.prefixString, infill.suffixString, infill.middleString], ['<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>']);
			assert.equal(infill.prefix, model.tokenize('<|fim_prefix|>', true)[0]);
			assert.equal(model.tokens.eosString, '<|endoftext|>');
			assert.ok(model.isEogToken(model.tokens.eos));
			// No BOS: prompts start with <|file_sep|> (the models were trained that way).
			assert.equal(model.tokens.shouldPrependBosToken, false);
		}
	});

	test('special tokens inside a prompt are parsed as special tokens', () => {
		const model = vocab.target;
		const tokens = model.tokenize('<|file_sep|>src/a.ts\n<|fim_prefix|>const x = <|fim_suffix|>;\n<|fim_middle|>', true);
		const special = tokens.filter((token) => model.isSpecialToken(token)).map((token) => model.detokenize([token], true));
		assert.deepEqual(special, ['<|file_sep|>', '<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>']);
	});

	test('fixed strings round-trip, and target and draft tokenize them identically', () => {
		assert.ok(fixtureStrings.length >= 15);
		for (const text of fixtureStrings) {
			const target = vocab.target.tokenize(text, false);
			assert.equal(vocab.target.detokenize(target, false), text, JSON.stringify(text));
			assert.deepEqual(vocab.draft.tokenize(text, false), target, JSON.stringify(text));
			assert.deepEqual(vocab.draft.tokenize(text, true), vocab.target.tokenize(text, true), JSON.stringify(text));
		}
	});
});
