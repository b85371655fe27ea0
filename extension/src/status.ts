import * as vscode from 'vscode';
import type { Config } from './config';
import type { SidecarView } from './sidecar';

// The status bar item: the sidecar's state as the server pushes it (`repokv/status/didChange`), the client's view
// while there is no server, and whether completions are on. Errors show here and in the log, never as a modal.

export interface StatusInputs {
	readonly view: SidecarView;
	readonly config: Config;
	readonly trusted: boolean;
	readonly feed: { files: number; bytes: number; skipped: Record<string, number> } | undefined;
}

export interface StatusText {
	readonly text: string;
	readonly tooltip: string;
	readonly error: boolean;
	readonly warning: boolean;
}

/** The text, tooltip and colour of the status bar item (pure, for tests). */
export function describeStatus({ view, config, trusted, feed }: StatusInputs): StatusText {
	const lines: string[] = [];
	let text: string;
	let error = false;
	let warning = false;
	switch (view.kind) {
		case 'stopped':
			text = '$(debug-stop) repokv: stopped';
			lines.push(`Sidecar not running: ${view.reason}.`);
			break;
		case 'starting':
			text = '$(sync~spin) repokv: starting';
			lines.push('Starting the sidecar…');
			break;
		case 'restarting':
			text = `$(sync~spin) repokv: restarting in ${view.inSeconds}s`;
			lines.push(`Sidecar stopped: ${view.reason}. Restarting in ${view.inSeconds} s.`);
			warning = true;
			break;
		case 'failed':
			text = '$(error) repokv: failed';
			lines.push(`Sidecar failed: ${view.reason}.`, 'Run "repokv: Restart Sidecar" after fixing it; the repokv output has details.');
			error = true;
			break;
		case 'running': {
			const { status } = view;
			const progress = status.progress ? ` ${status.progress.done}/${status.progress.total}` : '';
			switch (status.state) {
				case 'ready':
					text = '$(check) repokv';
					break;
				case 'error':
					text = '$(error) repokv: error';
					error = true;
					break;
				case 'loadingModel':
					text = `$(sync~spin) repokv: loading model${progress}`;
					break;
				case 'indexing':
					text = `$(sync~spin) repokv: indexing${progress}`;
					break;
				case 'prefilling':
					text = `$(sync~spin) repokv: prefilling${progress}`;
					break;
				case 'starting':
					text = '$(sync~spin) repokv: starting';
					break;
			}
			lines.push(`Sidecar: ${status.state}: ${status.message}`);
			if (status.fixHint) lines.push(`Fix: ${status.fixHint}`);
			if (status.engine) lines.push(`Engine ${status.engine.name}, ${status.engine.model}, context ${status.engine.contextSize} tokens, ${status.engine.threads} threads`);
			const kv = status.kvCache;
			if (kv && status.engine?.name !== 'llama') {
				lines.push(kv.policy === 'full' ? 'KV cache: full, every token in fp16' : `KV cache: ${kv.policy}, ${kv.precision} at ${kv.budgetPercent} % of the fp16 bytes${kv.draft ? ` (draft ${kv.draft})` : ''}`);
				if (kv.fallback) {
					// Degraded, not broken: still compressed, but without SpecKV until the draft is fixed.
					text += ' $(warning)';
					warning = true;
					lines.push(`SpecKV is off: ${kv.fallback.reason}.`);
					if (!status.fixHint) lines.push(`Fix: ${kv.fallback.fixHint}`);
				}
			}
			const l = status.latencies;
			if (l?.lastCompletionMs !== undefined) {
				lines.push(`Last completion ${Math.round(l.lastCompletionMs)} ms (median ${Math.round(l.medianCompletionMs ?? l.lastCompletionMs)} ms)` +
					(l.lastPrefillTokens !== undefined ? `, prefill ${l.lastPrefillTokens} tokens, ${l.lastReusedTokens ?? 0} reused` : ''));
			}
			if (status.workspace) lines.push(`Mirror: ${status.workspace.files} files, ${Math.round(status.workspace.bytes / 1024)} KiB`);
			break;
		}
	}
	if (!trusted) {
		text += ' $(shield)';
		lines.push('Restricted mode: the workspace is not trusted, so no file is streamed to the sidecar.');
		warning = true;
	} else if (feed) {
		const skipped = Object.entries(feed.skipped).map(([reason, count]) => `${count} ${reason}`).join(', ');
		lines.push(`Fed ${feed.files} files${skipped ? ` (skipped: ${skipped})` : ''}`);
	}
	if (!config.completion.enabled) {
		text += ' $(circle-slash)';
		lines.push('Completions are off ("repokv: Toggle Completions").');
	} else if (config.completion.trigger === 'manual') {
		lines.push('Completions on Alt+\\ only.');
	}
	lines.push('', 'Click for repokv actions.');
	return { text, tooltip: lines.join('\n'), error, warning };
}

export class StatusBar implements vscode.Disposable {
	private readonly item = vscode.window.createStatusBarItem('repokv.status', vscode.StatusBarAlignment.Right, 100);

	constructor() {
		this.item.name = 'repokv';
		this.item.command = 'repokv.showMenu';
		this.item.show();
	}

	update(inputs: StatusInputs): StatusText {
		const described = describeStatus(inputs);
		this.item.text = described.text;
		this.item.tooltip = described.tooltip;
		this.item.backgroundColor = described.error
			? new vscode.ThemeColor('statusBarItem.errorBackground')
			: described.warning ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
		return described;
	}

	dispose(): void {
		this.item.dispose();
	}
}
