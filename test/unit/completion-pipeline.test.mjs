// The completion pipeline's scheduling logic, against a fake engine: newest wins, cancellation reaches the engine,
// queued stale requests are never computed, the LRU cache, typed-ahead reuse, adaptive debounce, the job queue.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { fakeCounter, sidecar } from '../support/sidecar.mjs';

const { CompletionPipeline, WorkspaceMirror, StatusReporter, JobQueue, LruCache, AdaptiveDebouncer, sleep, resolveSettings, defaultSpecialTokenTexts } = sidecar;

/** A fake engine whose completions take `delayMs` (checking the abort signal as a real engine does). */
function fakeEngine({ delayMs = 30, prefillMs = 0, checkEveryMs = 2, text = '4817);', fail = false, completion = {} } = {}) {
	const calls = [];
	const settings = resolveSettings({ completion: { debounceMinMs: 5, debounceMaxMs: 40, ...completion } });
	const model = {
		info: { path: 'fake.gguf', architecture: 'llama', contextSize: 4096, trainContextSize: 4096, threads: 1, addsBos: false },
		specialTokens: defaultSpecialTokenTexts,
		countTokens: fakeCounter().countTokens,
		async complete(request) {
			calls.push(request);
			if (fail) {
				throw new Error('engine crashed');
			}
			request.onPrefillProgress?.(0, 10);
			await new Promise((resolve) => setTimeout(resolve, prefillMs));
			if (request.signal?.aborted) {
				return { text: '', stopReason: 'aborted', tokens: { prompt: 10, reused: 0, generated: 0 }, timings: { tokenizeMs: 0, prefillMs, decodeMs: 0 } };
			}
			request.onPrefillProgress?.(9, 10);
			const started = Date.now();
			while (Date.now() - started < delayMs) {
				if (request.signal?.aborted) {
					return { text: '', stopReason: 'aborted', tokens: { prompt: 10, reused: 0, generated: 0 }, timings: { tokenizeMs: 0, prefillMs: 0, decodeMs: 0 } };
				}
				await new Promise((resolve) => setTimeout(resolve, checkEveryMs));
			}
			return { text, stopReason: 'stopString', tokens: { prompt: 10, reused: 4, generated: 3 }, timings: { tokenizeMs: 0, prefillMs: 1, decodeMs: 1 } };
		},
		async dispose() {},
	};
	const loaded = { model, counter: fakeCounter(), settings, shape: { layers: 2, kvHeads: 1, headDim: 4 } };
	let invalidated = 0;
	const engines = {
		queue: new JobQueue(),
		get: async () => loaded,
		invalidate: async () => {
			invalidated++;
		},
	};
	const computed = [];
	const pipeline = new CompletionPipeline({
		// A stand-in for the EngineHost with only what the pipeline uses.
		engines: /** @type {any} */ (engines),
		mirror: new WorkspaceMirror(),
		status: new StatusReporter(() => {}),
		settings: () => settings,
		onComputed: (c) => computed.push(c),
		log: () => {},
	});
	return { pipeline, calls, engines, computed, invalidated: () => invalidated };
}

const line = 'assert.equal(RETRY_LIMIT_MS, ';
const input = (extra = {}) => ({ path: 'src/main.ts', text: line, version: 1, offset: line.length, invoked: true, ...extra });

describe('CompletionPipeline', () => {
	test('computes a completion and reports it to the inspector', async () => {
		const { pipeline, computed } = fakeEngine();
		const outcome = await pipeline.complete(input());
		assert.deepEqual(outcome, { text: '4817);', source: 'engine' });
		assert.equal(computed.length, 1);
		assert.equal(computed[0].latency.reusedTokens, 4);
		assert.equal(computed[0].latency.prefillTokens, 6);
	});

	test('the same document version, cursor and context is answered from the LRU cache', async () => {
		const { pipeline, calls } = fakeEngine();
		await pipeline.complete(input());
		assert.equal((await pipeline.complete(input())).source, 'cache');
		assert.equal(calls.length, 1);
		pipeline.contextChanged();
		assert.equal((await pipeline.complete(input())).source, 'engine', 'another file changed: recompute');
		assert.equal((await pipeline.complete(input({ version: 2 }))).source, 'engine', 'a new document version: recompute');
	});

	test('typing the start of the suggestion reuses its rest without the model', async () => {
		const { pipeline, calls } = fakeEngine();
		await pipeline.complete(input());
		const typed = `${line}48`;
		const outcome = await pipeline.complete(input({ text: typed, version: 2, offset: typed.length }));
		assert.deepEqual(outcome, { text: '17);', source: 'typedAhead' });
		const diverged = `${line}9`;
		assert.equal((await pipeline.complete(input({ text: diverged, version: 3, offset: diverged.length }))).source, 'engine');
		assert.equal(calls.length, 2);
	});

	test('newest wins: a storm of requests computes at most a few and answers the last', async () => {
		const { pipeline, calls } = fakeEngine({ delayMs: 40 });
		const outcomes = [];
		for (let index = 0; index < 100; index++) {
			const text = `${line}${' '.repeat(index % 7)}`;
			outcomes.push(pipeline.complete(input({ text, version: index + 1, offset: text.length, invoked: false })));
			await new Promise((resolve) => setTimeout(resolve, 1));
		}
		const results = await Promise.all(outcomes);
		assert.equal(results.at(-1).text, '4817);', 'the last request is answered');
		assert.ok(results.slice(0, -1).every((r) => r.text === '' || r.source !== 'engine'), 'superseded requests answer empty');
		assert.ok(calls.length <= 5, `computed ${calls.length} of 100`);
		assert.ok(pipeline.counters.cancelled >= 90);
	});

	test('cancellation reaches the engine mid-computation', async () => {
		const { pipeline, calls } = fakeEngine({ delayMs: 2000 });
		const controller = new AbortController();
		const pending = pipeline.complete(input(), controller.signal);
		while (calls.length === 0) {
			await new Promise((resolve) => setTimeout(resolve, 2));
		}
		const started = Date.now();
		controller.abort();
		const outcome = await pending;
		assert.deepEqual(outcome, { text: '', source: 'cancelled' });
		assert.ok(calls[0].signal.aborted, 'the engine saw the abort');
		assert.ok(Date.now() - started < 500, 'stopped promptly');
	});

	test('a superseded request is answered at once, before the engine notices; the next waits for the engine to stop', async () => {
		// The engine checks its signal only every 600 ms (a long prefill chunk on a slow CPU).
		const { pipeline, calls, engines } = fakeEngine({ delayMs: 5000, checkEveryMs: 600 });
		const first = pipeline.complete(input());
		while (calls.length === 0) {
			await new Promise((resolve) => setTimeout(resolve, 2));
		}
		await new Promise((resolve) => setTimeout(resolve, 20));
		const started = Date.now();
		const second = pipeline.complete(input({ version: 2 }));
		assert.deepEqual(await first, { text: '', source: 'cancelled' });
		assert.ok(Date.now() - started < 200, `superseded answered in ${Date.now() - started} ms, not at the engine's next check`);
		await new Promise((resolve) => setTimeout(resolve, 50));
		assert.equal(engines.queue.pending, 2, 'the superseded computation still holds the engine, the newest waits for it');
		assert.equal(calls.length, 1, 'the newest has not started while the engine runs on');
		const secondOutcome = await second;
		assert.equal(secondOutcome.source, 'engine');
		assert.equal(calls.length, 2);
		assert.ok(calls[0].signal.aborted, 'the first computation was aborted, and stopped before the second started');
		assert.equal(engines.queue.pending, 0);
	});

	test('a request cancelled while queued is answered empty without computing', async () => {
		const { pipeline, engines, calls } = fakeEngine();
		/** @type {(value?: unknown) => void} */
		let release;
		const blocker = engines.queue.run(() => new Promise((resolve) => (release = resolve)));
		const controller = new AbortController();
		const pending = pipeline.complete(input(), controller.signal);
		await new Promise((resolve) => setTimeout(resolve, 20));
		controller.abort();
		release();
		await blocker;
		assert.deepEqual(await pending, { text: '', source: 'cancelled' });
		assert.equal(calls.length, 0);
	});

	test('the time budget counts from the end of the prefill: a long prefill finishes, a long generation is cut', async () => {
		const slowPrefill = fakeEngine({ prefillMs: 300, delayMs: 20, completion: { timeoutMs: 100 } });
		assert.deepEqual(await slowPrefill.pipeline.complete(input()), { text: '4817);', source: 'engine' });
		const slowDecode = fakeEngine({ prefillMs: 0, delayMs: 5000, completion: { timeoutMs: 100 } });
		const started = Date.now();
		assert.equal((await slowDecode.pipeline.complete(input())).text, '');
		assert.ok(Date.now() - started < 2000, 'cut at the budget');
	});

	test('an engine failure answers empty with the error and resets the engine', async () => {
		const { pipeline, invalidated } = fakeEngine({ fail: true });
		const outcome = await pipeline.complete(input());
		assert.equal(outcome.source, 'error');
		assert.match(outcome.error, /engine crashed/);
		assert.equal(invalidated(), 1);
	});

	test('disabled completion answers empty', async () => {
		const { pipeline, calls } = fakeEngine({ completion: { enabled: false } });
		assert.deepEqual(await pipeline.complete(input()), { text: '', source: 'disabled' });
		assert.equal(calls.length, 0);
	});
});

describe('scheduling helpers', () => {
	test('AdaptiveDebouncer: no wait when invoked, min after a pause, longer while typing fast and completions are slow', () => {
		let now = 0;
		const debouncer = new AdaptiveDebouncer({ minMs: 20, maxMs: 300 }, () => now);
		assert.equal(debouncer.delayFor(true), 0);
		now += 5000;
		assert.equal(debouncer.delayFor(false), 20, 'after a pause');
		for (let index = 0; index < 5; index++) {
			now += 120;
			debouncer.delayFor(false);
		}
		debouncer.recordLatency(1000);
		now += 120;
		assert.equal(debouncer.delayFor(false), 160, '0.5 x 120 ms typing + 0.1 x 1000 ms latency');
		debouncer.recordLatency(10_000);
		debouncer.recordLatency(10_000);
		now += 120;
		assert.equal(debouncer.delayFor(false), 300, 'clamped to max');
	});

	test('sleep resolves false when aborted, at once if already aborted', async () => {
		const controller = new AbortController();
		const pending = sleep(10_000, controller.signal);
		controller.abort();
		assert.equal(await pending, false);
		assert.equal(await sleep(10_000, AbortSignal.abort()), false);
		assert.equal(await sleep(1), true);
	});

	test('LruCache evicts the least recently used', () => {
		const cache = new LruCache(2);
		cache.set('a', 1);
		cache.set('b', 2);
		cache.get('a');
		cache.set('c', 3);
		assert.equal(cache.get('b'), undefined);
		assert.deepEqual(cache.entries(), [['c', 3], ['a', 1]]);
		cache.resize(1);
		assert.equal(cache.size, 1);
		const none = new LruCache(0);
		none.set('x', 1);
		assert.equal(none.size, 0);
	});

	test('JobQueue runs one job at a time, in order, and skips jobs aborted while waiting', async () => {
		const queue = new JobQueue();
		const order = [];
		let running = 0;
		const job = (name) => async () => {
			running++;
			assert.equal(running, 1, 'one at a time');
			await new Promise((resolve) => setTimeout(resolve, 5));
			order.push(name);
			running--;
			return name;
		};
		const controller = new AbortController();
		const results = [queue.run(job('a')), queue.run(job('b'), controller.signal), queue.run(job('c'))];
		controller.abort();
		assert.deepEqual(await Promise.all(results), ['a', undefined, 'c']);
		assert.deepEqual(order, ['a', 'c']);
		await assert.rejects(queue.run(async () => {
			throw new Error('boom');
		}), /boom/);
		assert.equal(await queue.run(async () => 'after'), 'after', 'a failed job does not break the queue');
		assert.equal(queue.pending, 0);
	});

	test('JobQueue answers an aborted job at once, waiting or running, and starts the next only when the running one ends', async () => {
		const queue = new JobQueue();
		const events = [];
		/** @type {(value?: unknown) => void} */
		let release;
		const runningController = new AbortController();
		const running = queue.run(async () => {
			events.push('a start');
			await new Promise((resolve) => (release = resolve));
			events.push('a end');
			return 'a';
		}, runningController.signal);
		const waitingController = new AbortController();
		const waiting = queue.run(async () => events.push('b start'), waitingController.signal);
		const next = queue.run(async () => {
			events.push('c start');
			return 'c';
		});
		await new Promise((resolve) => setTimeout(resolve, 5));
		assert.equal(queue.pending, 3);
		waitingController.abort();
		assert.equal(await waiting, undefined, 'a waiting job answers at once');
		assert.equal(queue.pending, 2, 'and leaves the queue');
		runningController.abort();
		assert.equal(await running, undefined, 'a running job answers at once');
		await new Promise((resolve) => setTimeout(resolve, 10));
		assert.deepEqual(events, ['a start'], 'the next job waits for the running one to end');
		assert.equal(queue.pending, 2);
		release();
		assert.equal(await next, 'c');
		assert.deepEqual(events, ['a start', 'a end', 'c start']);
		assert.equal(await queue.run(async () => 'x', AbortSignal.abort()), undefined, 'already aborted: never queued');
		assert.equal(queue.pending, 0);
	});
});
