// SpecKV's draft (engine/native-draft.ts) with the bundled models: it reads a FIM prompt in its own layout
// (engine/draft-prompt.ts), and in the default `prefix-last` layout it finds the needles that a FIM-ordered test
// file asks for, which it misses when it reads the target's FIM prompt (models/README.md, "the draft's layout").
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import { importBench, importSidecar } from '../support/bundles.mjs';
import { root } from './helpers.mjs';

const { DraftModel, draftPromptFor } = await importSidecar();
const { TaskBuilder } = await importBench();
const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');

const draftPath = path.join(root, 'models', 'draft.gguf');

test('the draft reads a FIM prompt as prefix-last by default, and finds FIM-ordered needles that way', async (t) => {
	const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
	const vocab = await llama.loadModel({ modelPath: draftPath, vocabOnly: true });
	t.after(() => vocab.dispose());
	const tok = { tokenize: (s, special) => vocab.tokenize(s, special).map(Number), detokenize: (ids) => vocab.detokenize(ids) };
	const [prefix, suffix, middle] = ['<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>'].map((s) => tok.tokenize(s, true)[0]);
	const builder = new TaskBuilder(tok);
	const tasks = [0, 1, 2, 3, 4].map((i) => builder.needle('fimsingle', 1024, i, 20260127));

	const byDefault = await DraftModel.load(draftPath, { threads: 2, contextSize: 1024 + 64 });
	const asTarget = await DraftModel.load(draftPath, { threads: 2, contextSize: 1024 + 64, layout: 'fim' });
	t.after(async () => {
		await byDefault.dispose();
		await asTarget.dispose();
	});
	let found = 0;
	let foundAsTarget = 0;
	for (const task of tasks) {
		const guess = await byDefault.lookahead(task.tokens, task.maxTokens);
		// the same guess as a draft that is handed the rewritten prompt: the rewrite uses the model's own FIM tokens
		const rewritten = draftPromptFor(task.tokens, 'prefix-last', { prefix, suffix, middle });
		assert.ok(rewritten.length < task.tokens.length - 3 && !rewritten.includes(middle));
		assert.deepEqual(await asTarget.lookahead(rewritten, task.maxTokens), guess);
		found += tok.detokenize(guess).trimStart().startsWith(task.answer) ? 1 : 0;
		foundAsTarget += tok.detokenize(await asTarget.lookahead(task.tokens, task.maxTokens)).trimStart().startsWith(task.answer) ? 1 : 0;
	}
	t.diagnostic(`FIM-ordered needles at 1K found by the draft: prefix-last ${found}/5, reading the target's FIM prompt ${foundAsTarget}/5`);
	assert.ok(found >= 4, `prefix-last found ${found}/5`);
	assert.ok(found >= foundAsTarget);
});

test('the draft keeps its KV cache in Q8_0 and cacheStats counts it so (34 bytes per 32 elements)', async () => {
	const draft = await DraftModel.load(draftPath, { threads: 1, contextSize: 256 });
	try {
		assert.equal(draft.kvCacheType, 'Q8_0');
		const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
		const vocab = await llama.loadModel({ modelPath: draftPath, vocabOnly: true });
		const md = vocab.fileInfo.metadata;
		const arch = /** @type {{ block_count: number, embedding_length: number, attention: { head_count: number, head_count_kv?: number, key_length?: number } }} */ (md[md.general.architecture]);
		const heads = arch.attention.head_count;
		const kvHeads = arch.attention.head_count_kv ?? heads;
		const headDim = arch.attention.key_length ?? arch.embedding_length / heads;
		await vocab.dispose();
		const prompt = Array.from({ length: 100 }, (_, i) => 1000 + i);
		await draft.warm(prompt, 'fim');
		const { tokens, bytes } = draft.cacheStats();
		assert.equal(tokens, 100);
		assert.equal(bytes, (tokens * arch.block_count * kvHeads * 2 * headDim * 34) / 32);
		assert.ok((await draft.lookahead(prompt, 4, 'fim')).length > 0);
	} finally {
		await draft.dispose();
	}
});

test('a lookahead whose draft prompt is unchanged (only the FIM suffix changed) is the last guess, reused', async () => {
	const draft = await DraftModel.load(draftPath, { threads: 1, contextSize: 512 });
	try {
		const llama = await getLlama({ maxThreads: 1, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error });
		const vocab = await llama.loadModel({ modelPath: draftPath, vocabOnly: true });
		const [prefix, suffix, middle] = ['<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>'].map((s) => Number(vocab.tokenize(s, true)[0]));
		const text = (s) => vocab.tokenize(s).map(Number);
		const before = text('const answer = 4817;\nfunction main() {\n\treturn ');
		const [close, edited, other] = ['\n}\n', '\n}\n// edit 2\n', 'let x = 1;\n'].map(text);
		await vocab.dispose();
		const prompt = (after) => [prefix, ...before, suffix, ...after, middle];
		const first = await draft.lookahead(prompt(close), 8);
		assert.ok(first.length > 0);
		assert.equal(draft.reusedLookaheads, 0);
		const again = await draft.lookahead(prompt(edited), 8);
		assert.equal(draft.reusedLookaheads, 1);
		assert.deepEqual(again, first);
		// another length limit, or another prefix: generated again
		await draft.lookahead(prompt(close), 4);
		assert.equal(draft.reusedLookaheads, 1);
		await draft.lookahead([prefix, ...other, suffix, middle], 8);
		assert.equal(draft.reusedLookaheads, 1);
		// and what is reused is what a fresh generation gives
		assert.deepEqual(await draft.lookahead(prompt(close), 8), first);
		assert.equal(draft.reusedLookaheads, 1);
	} finally {
		await draft.dispose();
	}
});
