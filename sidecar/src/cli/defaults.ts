import { availableParallelism } from 'node:os';

/**
 * Default CPU threads for the CLI: every core the OS offers. The CLI runs alone; the editor-hosted sidecar will
 * leave the editor a core (docs/platform-notes.md, "Contention"). On 2 cores 1 thread can decode faster than 2 because
 * ggml's thread pool synchronises per token; `--threads 1` measures that.
 */
export function defaultThreads(): number {
	return Math.max(1, availableParallelism());
}
