import { performance } from 'node:perf_hooks';

import { postprocessCompletion, postprocessContextAt, stopStringsFor } from '../completion/postprocess';
import { buildCompletionPrompt, ContextBudgetError, type PromptSpan } from '../context/builder';
import { orderStableFirst } from '../context/stable-order';
import { errorMessage, UserError } from '../errors';
import type { LatencySplit } from '../protocol';
import { latencySplit } from './cache-snapshot';
import { AdaptiveDebouncer, sleep } from './debounce';
import type { EngineHost, LoadedEngine } from './engine-host';
import { LruCache } from './lru';
import type { WorkspaceMirror } from './mirror';
import type { ResolvedSettings } from './settings';
import type { StatusReporter } from './status';

// The inline completion pipeline (docs/architecture.md, "What users expect from peer tools"): for each request
//   newest wins (the previous request is aborted) → exact LRU hit, or typed-ahead reuse of the last suggestion →
//   adaptive debounce → the engine queue (a request aborted while waiting is answered empty without computing) →
//   stable-first prompt (KV prefix reuse) → engine with an abort signal and a time budget → post-processing.
// Cancellation reaches the engine: the LSP `$/cancelRequest` token and "superseded" both abort the same signal,
// which node-llama-cpp's prefill loop and decode loop check.

export interface CompletionInput {
	/** Workspace-relative path of the document. */
	readonly path: string;
	/** The document's current text and version. */
	readonly text: string;
	readonly version: number;
	/** Cursor as a string offset into `text`. */
	readonly offset: number;
	/** The user asked explicitly (no debounce). */
	readonly invoked: boolean;
}

export type CompletionSource = 'engine' | 'cache' | 'typedAhead' | 'cancelled' | 'disabled' | 'error';

export interface CompletionOutcome {
	/** Text to insert at the cursor; '' for none. */
	readonly text: string;
	readonly source: CompletionSource;
	/** For `error`: what went wrong. */
	readonly error?: string;
}

/** What a computed completion reports to the cache inspector. */
export interface ComputedCompletion {
	readonly engine: LoadedEngine;
	readonly spans: readonly PromptSpan[];
	readonly promptTokens: number;
	readonly generatedTokens: number;
	readonly latency: LatencySplit;
}

/** Counters for the status and for tests ("a storm of requests computes at most a few"). */
export interface CompletionCounters {
	requested: number;
	computed: number;
	cacheHits: number;
	typedAhead: number;
	cancelled: number;
	errors: number;
}

interface Served {
	readonly path: string;
	readonly prefix: string;
	readonly suffix: string;
	readonly completion: string;
}

export interface CompletionPipelineDeps {
	readonly engines: EngineHost;
	readonly mirror: WorkspaceMirror;
	readonly status: StatusReporter;
	readonly settings: () => ResolvedSettings;
	readonly onComputed: (computed: ComputedCompletion) => void;
	readonly log: (message: string) => void;
}

export class CompletionPipeline {
	readonly counters: CompletionCounters = { requested: 0, computed: 0, cacheHits: 0, typedAhead: 0, cancelled: 0, errors: 0 };
	private readonly debouncer: AdaptiveDebouncer;
	private readonly cache: LruCache<string, string>;
	private latest: AbortController | undefined;
	private warming: AbortController | undefined;
	private lastServed: Served | undefined;
	/** The document of the last computed completion: repository Q&A orders its context the same way. */
	lastActivePath: string | undefined;
	/** Bumped whenever context outside the active document changes (mirror edits): part of the cache key. */
	private contextGeneration = 0;

	constructor(private readonly deps: CompletionPipelineDeps) {
		const settings = deps.settings();
		this.debouncer = new AdaptiveDebouncer({ minMs: settings.completion.debounceMinMs, maxMs: settings.completion.debounceMaxMs });
		this.cache = new LruCache(settings.completion.cacheSize);
	}

	/** Settings changed: resize the cache and retune the debouncer. */
	configure(settings: ResolvedSettings): void {
		this.debouncer.setOptions({ minMs: settings.completion.debounceMinMs, maxMs: settings.completion.debounceMaxMs });
		this.cache.resize(settings.completion.cacheSize);
		this.contextChanged();
	}

	/** Something other than the active document changed: cached completions may no longer hold. */
	contextChanged(): void {
		this.contextGeneration++;
	}

	async complete(input: CompletionInput, cancel?: AbortSignal): Promise<CompletionOutcome> {
		this.counters.requested++;
		// A real request outranks warming the cache; what the warm-up evaluated so far stays reusable.
		this.warming?.abort(new Error('a request arrived'));
		const settings = this.deps.settings();
		if (!settings.completion.enabled) {
			return { text: '', source: 'disabled' };
		}
		// Newest wins: whatever was in flight is for a cursor the user has left.
		this.latest?.abort(new Error('superseded'));
		const controller = new AbortController();
		this.latest = controller;
		const onCancel = (): void => {
			controller.abort(new Error('cancelled'));
		};
		cancel?.addEventListener('abort', onCancel, { once: true });
		if (cancel?.aborted === true) {
			onCancel();
		}
		const signal = controller.signal;
		try {
			const key = `${input.path}\u0000${input.version}\u0000${input.offset}\u0000${this.contextGeneration}\u0000${settings.engine}:${settings.model.target}:${settings.completion.maxTokens}`;
			const cached = this.cache.get(key);
			if (cached !== undefined) {
				this.counters.cacheHits++;
				return this.serve(input, cached, 'cache');
			}
			const typed = this.typedAhead(input);
			if (typed !== undefined) {
				this.counters.typedAhead++;
				this.cache.set(key, typed);
				return this.serve(input, typed, 'typedAhead');
			}
			if (!(await sleep(this.debouncer.delayFor(input.invoked), signal))) {
				return this.cancelled();
			}
			// A superseded or cancelled request is answered now, whatever it waits for: the model load, its turn in the
			// queue, or the engine noticing the abort at its next check (job-queue.ts).
			const engine = await untilAborted(this.deps.engines.get(settings), signal);
			if (engine === undefined || signal.aborted) {
				return this.cancelled();
			}
			const text = await this.deps.engines.queue.run(() => this.compute(engine, input, signal).catch((error: unknown) => this.lateFailure(error, signal)), signal);
			if (text === undefined || isAborted(signal)) {
				return this.cancelled();
			}
			this.cache.set(key, text);
			return this.serve(input, text, 'engine');
		} catch (error) {
			this.counters.errors++;
			const message = errorMessage(error);
			if (!(error instanceof UserError) && !(error instanceof ContextBudgetError)) {
				// An engine that threw on its own is in an unknown state: load it afresh next time.
				this.deps.log(`completion failed: ${error instanceof Error ? (error.stack ?? message) : message}`);
				await this.deps.engines.invalidate(message);
			}
			return { text: '', source: 'error', error: message };
		} finally {
			cancel?.removeEventListener('abort', onCancel);
			if (this.latest === controller) {
				this.latest = undefined;
			}
		}
	}

	/**
	 * Prefill the repository block the next completion in `path` will start with, while idle (llama.vscode warms its
	 * cache the same way). Aborted by the next real request; the chunks evaluated by then are kept.
	 */
	prewarm(path: string, text: string): void {
		const settings = this.deps.settings();
		if (!settings.completion.prewarm || !settings.completion.enabled) {
			return;
		}
		this.warming?.abort(new Error('superseded'));
		const controller = new AbortController();
		this.warming = controller;
		void (async () => {
			try {
				const engine = await this.deps.engines.get(settings);
				await this.deps.engines.queue.run(async () => {
					const { model, counter } = engine;
					const files = this.deps.mirror.files().filter((file) => file.path !== path);
					const prompt = buildCompletionPrompt({
						files,
						activePath: path,
						activeText: text,
						cursorOffset: 0,
						specialTokens: model.specialTokens,
						counter,
						budgetTokens: model.info.contextSize - settings.completion.maxTokens - (model.info.addsBos ? 1 : 0),
						orderFiles: orderStableFirst,
					});
					const repoBlock = prompt.text.slice(0, prompt.text.length - prompt.fimPrompt.length);
					if (repoBlock === '') {
						return;
					}
					const shown = { prefilling: false };
					const result = await model.complete({
						prompt: repoBlock,
						maxTokens: 0,
						reusePrefix: true,
						signal: controller.signal,
						onPrefillProgress: (done, total) => {
							if (total - done > 512 || shown.prefilling) {
								shown.prefilling = done < total;
								if (this.deps.status.state === 'ready' || this.deps.status.state === 'prefilling') {
									this.deps.status.set(shown.prefilling ? 'prefilling' : 'ready', shown.prefilling ? `warming the cache: ${done}/${total} tokens` : 'ready', shown.prefilling ? { progress: { done, total, unit: 'tokens' } } : {});
								}
							}
						},
					});
					if (this.deps.status.state === 'prefilling') {
						this.deps.status.set('ready', 'ready');
					}
					this.deps.log(`prewarm ${path}: ${result.tokens.prompt} tokens (${result.tokens.reused ?? 0} already cached), ${result.timings.prefillMs.toFixed(0)} ms${result.stopReason === 'aborted' ? ', interrupted by a request' : ''}`);
				}, controller.signal);
			} catch (error) {
				this.deps.log(`prewarm failed: ${errorMessage(error)}`);
			} finally {
				if (this.warming === controller) {
					this.warming = undefined;
				}
			}
		})();
	}

	/**
	 * A computation whose caller was already answered (aborted) failed on the way out: nobody awaits it any more, so
	 * the engine reset that `complete` does for a failure happens here (not awaited: the reset queues behind this job).
	 */
	private lateFailure(error: unknown, signal: AbortSignal): never {
		if (signal.aborted && !(error instanceof UserError) && !(error instanceof ContextBudgetError)) {
			this.counters.errors++;
			const message = errorMessage(error);
			this.deps.log(`completion failed after it was superseded: ${error instanceof Error ? (error.stack ?? message) : message}`);
			void this.deps.engines.invalidate(message);
		}
		throw error;
	}

	private cancelled(): CompletionOutcome {
		this.counters.cancelled++;
		return { text: '', source: 'cancelled' };
	}

	private serve(input: CompletionInput, text: string, source: CompletionSource): CompletionOutcome {
		if (text !== '') {
			this.lastServed = { path: input.path, prefix: input.text.slice(0, input.offset), suffix: input.text.slice(input.offset), completion: text };
		}
		return { text, source };
	}

	/**
	 * The user typed the start of the last suggestion: the rest of it still applies, without asking the model
	 * (llama.vscode and Tabby do the same). Only when the text after the cursor is unchanged.
	 */
	private typedAhead(input: CompletionInput): string | undefined {
		const last = this.lastServed;
		if (last?.path !== input.path || input.offset < last.prefix.length) {
			return undefined;
		}
		if (input.text.slice(input.offset) !== last.suffix || !input.text.startsWith(last.prefix)) {
			return undefined;
		}
		const typed = input.text.slice(last.prefix.length, input.offset);
		if (typed === '' || !last.completion.startsWith(typed) || typed.length >= last.completion.length) {
			return undefined;
		}
		return last.completion.slice(typed.length);
	}

	private async compute(engine: LoadedEngine, input: CompletionInput, signal: AbortSignal): Promise<string | undefined> {
		if (signal.aborted) {
			return undefined;
		}
		this.counters.computed++;
		this.lastActivePath = input.path;
		const started = performance.now();
		const { model, counter } = engine;
		// Completion settings apply to the next request whatever the engine was loaded with.
		const settings = this.deps.settings();
		const maxTokens = settings.completion.maxTokens;
		const context = postprocessContextAt(input.text, input.offset);
		const files = this.deps.mirror.files().filter((file) => file.path !== input.path);
		const prompt = buildCompletionPrompt({
			files,
			activePath: input.path,
			activeText: input.text,
			cursorOffset: input.offset,
			specialTokens: model.specialTokens,
			counter,
			budgetTokens: model.info.contextSize - maxTokens - (model.info.addsBos ? 1 : 0),
			orderFiles: orderStableFirst,
		});
		const built = performance.now();
		// Whether the status shows `prefilling` (an object: the callback sets it, which flow analysis cannot see).
		const shown = { prefilling: false };
		const progress = { done: 0, total: 0 };
		// The time budget is for generating: preparing the cache (a long first prefill on a slow machine, then, with
		// SpecKV, the draft's lookahead and the scoring pass, whose cold pass costs seconds) is kept and reused by the
		// next request, so it is allowed to finish. At the prefill's end the budget starts with room for SpecKV's
		// preparation; the first generated text restarts it at the plain budget. (Started at the prefill's end alone,
		// it ran out during the draft's cold pass and the first completion came back empty, silently.)
		const budget = new AbortController();
		let budgetTimer: NodeJS.Timeout | undefined;
		let generating = false;
		const arm = (ms: number): void => {
			clearTimeout(budgetTimer);
			budgetTimer = setTimeout(() => {
				budget.abort(new Error('time budget'));
			}, ms);
		};
		const preparationMs = engine.kv?.draft === undefined ? 0 : draftPreparationMs;
		const startBudget = (): void => {
			if (budgetTimer === undefined) {
				arm(settings.completion.timeoutMs + preparationMs);
			}
		};
		const onFirstText = (): void => {
			if (!generating) {
				generating = true;
				arm(settings.completion.timeoutMs);
				if (shown.prefilling) {
					shown.prefilling = false;
					this.deps.status.set('ready', 'ready');
				}
			}
		};
		const result = await model
			.complete({
				prompt: prompt.text,
				maxTokens,
				stopStrings: stopStringsFor(context.mode),
				reusePrefix: true,
				signal: AbortSignal.any([signal, budget.signal, AbortSignal.timeout(Math.max(settings.completion.timeoutMs, prefillCapMs))]),
				onText: onFirstText,
				onPrefillProgress: (done, total) => {
					if (done >= total - 1) {
						startBudget();
					}
					progress.done = done;
					progress.total = total;
					// Only long prefills are worth a status change (a first request, or an edit early in the prompt).
					if (total - done > 512 || shown.prefilling) {
						const prefilling = done < total - 1;
						if (!prefilling && preparationMs > 0) {
							// The prefill is done, SpecKV's draft and scoring pass come next (seconds when cold): say so
							// until the first token, rather than `ready` while nothing shows.
							shown.prefilling = true;
							this.deps.status.set('prefilling', 'preparing the repository cache: 100 % prefilled; SpecKV draft lookahead and scoring', { progress: { done, total, unit: 'tokens' } });
							return;
						}
						shown.prefilling = prefilling;
						this.deps.status.set(
							prefilling ? 'prefilling' : 'ready',
							prefilling ? `preparing the repository cache: ${Math.floor((100 * done) / Math.max(1, total))} % (prefilling ${done}/${total} tokens)` : 'ready',
							prefilling ? { progress: { done, total, unit: 'tokens' } } : {},
						);
					}
				},
			})
			.finally(() => {
				clearTimeout(budgetTimer);
			});
		if (shown.prefilling || this.deps.status.state === 'prefilling') {
			this.deps.status.set('ready', 'ready');
		}
		const text = result.stopReason === 'aborted' ? '' : postprocessCompletion(result.text, context);
		if (text === '' && result.stopReason === 'aborted' && !isAborted(signal)) {
			// Never silently empty: the budget (or the stuck-engine cap) cut it, not the user. Say why, and that the
			// work done is kept: the next request continues from the cached prefix.
			const percent = progress.total === 0 ? 100 : Math.floor((100 * progress.done) / progress.total);
			this.deps.status.set(
				'ready',
				percent < 100
					? `no completion yet: preparing the repository cache: ${percent} % (kept; the next request continues from it)`
					: `no completion: the time budget (${settings.completion.timeoutMs} ms) ran out while generating; the repository cache is kept`,
			);
		}
		const totalMs = performance.now() - started;
		const reused = result.tokens.reused ?? 0;
		this.debouncer.recordLatency(totalMs);
		this.deps.status.recordCompletion(totalMs, result.timings.prefillMs, result.tokens.prompt - reused, reused);
		// The inspector describes the last completed request: an aborted one (superseded mid-prefill) compressed
		// nothing and measured no draft, so it would show a cache that no completion ran with.
		if (result.stopReason !== 'aborted') {
			this.deps.onComputed({
				engine,
				spans: prompt.spans,
				promptTokens: result.tokens.prompt,
				generatedTokens: result.tokens.generated,
				latency: latencySplit(result.timings, { prompt: result.tokens.prompt, reused, generated: result.tokens.generated }, built - started, totalMs, result.selection),
			});
		}
		this.deps.log(
			`completion ${input.path}:${input.offset} v${input.version}: ${result.tokens.prompt} prompt tokens (${reused} reused), ${result.tokens.generated} generated, ${result.stopReason}, ${totalMs.toFixed(0)} ms → ${JSON.stringify(text)}`,
		);
		return result.stopReason === 'aborted' ? undefined : text;
	}
}

/** Room for SpecKV's draft lookahead and scoring (cold: seconds on a small CPU) before generation starts, in ms. */
const draftPreparationMs = 30_000;

/** Longest a completion's prefill may run before it is aborted anyway (a stuck engine), in milliseconds. */
const prefillCapMs = 120_000;

/** `promise`'s value, or `undefined` as soon as `signal` aborts (the promise runs on; its rejection is then dropped). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
	if (signal.aborted) {
		promise.catch(() => undefined);
		return Promise.resolve(undefined);
	}
	return new Promise<T | undefined>((resolve, reject) => {
		const onAbort = (): void => {
			resolve(undefined);
		};
		signal.addEventListener('abort', onAbort, { once: true });
		promise.then(resolve, reject).finally(() => {
			signal.removeEventListener('abort', onAbort);
		});
	});
}

function isAborted(signal: AbortSignal): boolean {
	return signal.aborted;
}

