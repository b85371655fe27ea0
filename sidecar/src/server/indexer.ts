import { setImmediate as yieldToLoop } from 'node:timers/promises';

import type { RetrievalIndex } from '../ask/retrieval';
import { repoPieceText } from '../context/builder';
import { errorMessage } from '../errors';
import type { EngineHost } from './engine-host';
import type { WorkspaceMirror } from './mirror';
import type { ResolvedSettings } from './settings';
import type { StatusReporter } from './status';

// Background indexing after the workspace feed changes: every file's repository-block piece is tokenized once (the
// engine's caching counter keeps the counts, so building a prompt later costs lookups) and re-chunked for retrieval.
// Tokenizing is synchronous in node-llama-cpp, so the loop yields to the event loop every few milliseconds: LSP
// messages (cancellations above all) keep flowing while a large workspace is indexed. Progress: `indexing n/N files`.

/** Longest stretch of synchronous work before yielding, in milliseconds. */
const sliceMs = 8;

export class Indexer {
	private running = false;
	private again = false;
	private timer: NodeJS.Timeout | undefined;

	constructor(
		private readonly deps: {
			readonly mirror: WorkspaceMirror;
			readonly engines: EngineHost;
			readonly retrieval: RetrievalIndex;
			readonly status: StatusReporter;
			readonly settings: () => ResolvedSettings;
			readonly log: (message: string) => void;
			/** Called after each completed pass (the pipeline pre-warms the KV cache then). */
			readonly onIndexed: () => void;
		},
	) {}

	/** Index soon (changes arriving in a burst are indexed once). */
	schedule(delayMs = 50): void {
		clearTimeout(this.timer);
		this.timer = setTimeout(() => {
			void this.run();
		}, delayMs);
	}

	dispose(): void {
		clearTimeout(this.timer);
	}

	private async run(): Promise<void> {
		if (this.running) {
			this.again = true;
			return;
		}
		this.running = true;
		try {
			do {
				this.again = false;
				await this.pass();
				// `again` is set by `run` calls that arrived during the pass (flow analysis cannot see that).
			} while (this.changedMeanwhile());
			this.deps.onIndexed();
		} catch (error) {
			this.deps.log(`indexing failed: ${errorMessage(error)}`);
		} finally {
			this.running = false;
		}
	}

	private changedMeanwhile(): boolean {
		return this.again;
	}

	private async pass(): Promise<void> {
		let engine;
		try {
			engine = await this.deps.engines.get(this.deps.settings());
		} catch {
			// The status already says why the model did not load; retrieval does not need it.
			engine = undefined;
		}
		const files = this.deps.mirror.files();
		const { status } = this.deps;
		const show = (done: number): void => {
			if (status.state === 'ready' || status.state === 'indexing') {
				status.set('indexing', `indexing ${done}/${files.length} files`, { progress: { done, total: files.length, unit: 'files' } });
			}
		};
		let sliceStart = performance.now();
		for (let index = 0; index < files.length; index++) {
			const file = files[index];
			if (engine !== undefined && file !== undefined) {
				engine.counter.countTokens(repoPieceText(file, engine.model.specialTokens));
			}
			if (performance.now() - sliceStart > sliceMs) {
				show(index + 1);
				await yieldToLoop();
				if (this.again) {
					return;
				}
				sliceStart = performance.now();
			}
		}
		this.deps.retrieval.update(files);
		if (status.state === 'indexing') {
			status.set('ready', 'ready');
		}
	}
}
