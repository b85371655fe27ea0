import type { AskResult, CacheSnapshot, Citation } from '../../sidecar/src/protocol';

// The typed messages between the extension host and its two webviews (the cache inspector and the Ask panel), imported
// by both sides: no `any`, no dispatch on untyped strings (docs/architecture.md, "What users expect from peer tools").
// The data types come from the sidecar's protocol.ts; this file only says which side sends what.

/** What the sidecar looks like from the panel: one line for a banner when there is no data to show. */
export interface SidecarLine {
	readonly running: boolean;
	readonly text: string;
}

/** Host → cache inspector. */
export type ToInspector =
	| { readonly type: 'snapshot'; readonly snapshot: CacheSnapshot | null }
	| { readonly type: 'sidecar'; readonly sidecar: SidecarLine };

/** Cache inspector → host. */
export type FromInspector =
	| { readonly type: 'ready' }
	| { readonly type: 'refresh' }
	| { readonly type: 'openFile'; readonly path: string };

/** Host → Ask panel. */
export type ToAsk =
	| { readonly type: 'question'; readonly question: string }
	| { readonly type: 'citations'; readonly citations: readonly Citation[] }
	| { readonly type: 'text'; readonly delta: string }
	| { readonly type: 'done'; readonly result: AskResult }
	| { readonly type: 'error'; readonly message: string };

/** Ask panel → host. */
export type FromAsk =
	| { readonly type: 'ready' }
	| { readonly type: 'openCitation'; readonly file: string; readonly line: number };

/** Which UI a webview page runs; the host sets it as `<body data-view="…">`. One bundle serves both. */
export type ViewKind = 'inspector' | 'ask';

/** What the inspector keeps across reloads (`getState`/`setState`). */
export interface InspectorState {
	readonly snapshot: CacheSnapshot | null;
	readonly sidecar: SidecarLine | null;
	readonly scrollY: number;
}

/** What the Ask panel keeps across reloads. */
export interface AskState {
	readonly question: string;
	readonly answer: string;
	readonly citations: readonly Citation[];
	readonly result: AskResult | null;
	readonly error: string | null;
}
