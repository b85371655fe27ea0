// The webview side of VS Code's messaging, typed. `acquireVsCodeApi` is injected by VS Code (and by the Chromium
// test harness); it may be called once per page load.

export interface VsCodeApi<State, Outgoing> {
	postMessage(message: Outgoing): void;
	getState(): State | undefined;
	setState(state: State): void;
}

declare function acquireVsCodeApi(): { postMessage(message: unknown): void; getState(): unknown; setState(state: unknown): void };

let api: ReturnType<typeof acquireVsCodeApi> | undefined;

export function vscodeApi<State, Outgoing>(): VsCodeApi<State, Outgoing> {
	api ??= acquireVsCodeApi();
	const raw = api;
	return {
		postMessage: (message) => { raw.postMessage(message); },
		getState: () => raw.getState() as State | undefined,
		setState: (state) => { raw.setState(state); },
	};
}

/** Adds the page's stylesheet with the CSP nonce the host put on `<body data-nonce>`. */
export function addStyle(css: string): void {
	const style = document.createElement('style');
	const nonce = document.body.dataset['nonce'];
	if (nonce) style.nonce = nonce;
	style.textContent = css;
	document.head.appendChild(style);
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
	const node = document.createElement(tag);
	if (className) node.className = className;
	if (text !== undefined) node.textContent = text;
	return node;
}

export function formatBytes(bytes: number): string {
	if (bytes < 1024) return `${Math.round(bytes)} B`;
	if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
	if (bytes < 1024 * 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
	return `${(bytes / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

export function formatMs(ms: number): string {
	return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function formatInt(value: number): string {
	return Math.round(value).toLocaleString('en-US');
}
