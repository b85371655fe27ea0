// The context window an engine opens: the model's trained context (32K for Qwen2.5-Coder), capped by the
// `contextSize` setting; without a setting, also by the memory a full fp16 KV cache would take.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { sidecar } from '../support/sidecar.mjs';

const { chooseContextSize, fp16KvBytesPerToken } = sidecar;
const GiB = 2 ** 30;
// Qwen2.5-Coder 7B: 28 layers x 4 KV heads x head dim 128 -> 57,344 bytes per token, 1.75 GiB at 32K.
const qwen7b = fp16KvBytesPerToken({ nLayer: 28, nHeadKv: 4, headDim: 128 });

describe('chooseContextSize', () => {
	test('fp16 bytes per token: K and V of every layer and KV head', () => {
		assert.equal(qwen7b, 57344);
		assert.equal(fp16KvBytesPerToken({ nLayer: 24, nHeadKv: 2, headDim: 64 }), 12288); // Qwen2.5-Coder 0.5B
	});

	test('no setting and memory to spare: the trained context', () => {
		assert.equal(chooseContextSize({ trainContextSize: 32768, requested: undefined, kvBytesPerToken: qwen7b, availableBytes: 16 * GiB }), 32768);
	});

	test('a setting caps it, and never raises it above the trained context', () => {
		assert.equal(chooseContextSize({ trainContextSize: 32768, requested: 8192, kvBytesPerToken: qwen7b, availableBytes: 16 * GiB }), 8192);
		assert.equal(chooseContextSize({ trainContextSize: 4096, requested: 65536, kvBytesPerToken: 1, availableBytes: 16 * GiB }), 4096);
		// An explicit setting is honoured even where memory looks short: the user asked for it.
		assert.equal(chooseContextSize({ trainContextSize: 32768, requested: 32768, kvBytesPerToken: qwen7b, availableBytes: 1 * GiB }), 32768);
	});

	test('no setting and little memory: the largest multiple of 1024 whose fp16 cache takes at most half of it', () => {
		const chosen = chooseContextSize({ trainContextSize: 32768, requested: undefined, kvBytesPerToken: qwen7b, availableBytes: 2 * GiB });
		assert.equal(chosen % 1024, 0);
		assert.ok(chosen * qwen7b <= GiB, `${chosen} tokens take ${chosen * qwen7b} bytes`);
		assert.ok((chosen + 1024) * qwen7b > GiB);
		assert.equal(chooseContextSize({ trainContextSize: 32768, requested: undefined, kvBytesPerToken: qwen7b, availableBytes: 0.1 * GiB }), 4096);
		assert.equal(chooseContextSize({ trainContextSize: 2048, requested: undefined, kvBytesPerToken: qwen7b, availableBytes: 0.01 * GiB }), 2048);
	});
});
