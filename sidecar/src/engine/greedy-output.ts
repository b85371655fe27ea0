import type { CompletionRequest, StopReason } from './types';

/**
 * The stop rules of a greedy completion, one copy for every engine: a control token ends it, a stop string cuts
 * it, an aborted request or the token budget stops it. Engines only produce the next token and call `accept`.
 */
export class GreedyOutput<T extends number> {
	readonly generated: T[] = [];
	text = '';
	stopReason: StopReason = 'maxTokens';

	constructor(
		private readonly request: CompletionRequest,
		private readonly detokenize: (tokens: readonly T[]) => string,
		private readonly isControlToken: (token: T) => boolean,
	) {}

	/** A function, not a stored flag: the signal can flip while a token is being computed. */
	aborted(): boolean {
		return this.request.signal?.aborted === true;
	}

	/** Whether to generate at all (sets `aborted` when the request was cancelled before decoding). */
	shouldStart(): boolean {
		if (this.aborted()) {
			this.stopReason = 'aborted';
			return false;
		}
		return this.request.maxTokens > 0;
	}

	/** Take the next token; false when generation is over, and `stopReason` says why. */
	accept(token: T): boolean {
		// Besides end-of-text and the file separator, a FIM marker in the output means the model has left the
		// middle it was asked for; none of them is code.
		if (this.isControlToken(token)) {
			this.stopReason = 'endOfGeneration';
			return false;
		}
		this.generated.push(token);
		this.text = this.detokenize(this.generated);
		this.request.onText?.(this.text);
		const stopAt = firstStopIndex(this.text, this.request.stopStrings ?? []);
		if (stopAt !== undefined) {
			this.text = this.text.slice(0, stopAt);
			this.stopReason = 'stopString';
			return false;
		}
		if (this.aborted()) {
			this.stopReason = 'aborted';
			return false;
		}
		return this.generated.length < this.request.maxTokens;
	}
}

/** Offset of the earliest stop string in `text`, if any occurs. */
function firstStopIndex(text: string, stopStrings: readonly string[]): number | undefined {
	let earliest: number | undefined;
	for (const stop of stopStrings) {
		const index = stop === '' ? -1 : text.indexOf(stop);
		if (index !== -1 && (earliest === undefined || index < earliest)) {
			earliest = index;
		}
	}
	return earliest;
}
