import type { AskState, FromAsk, ToAsk } from './messages';
import { addStyle, el, formatMs, vscodeApi } from './vscode-api';

// The Ask panel: the question, the citations (links that open file:line in the editor) as soon as retrieval is
// done, then the answer as it streams.

const css = `
body { color: var(--vscode-foreground, #ccc); background: var(--vscode-editor-background, #1e1e1e); font-family: var(--vscode-font-family, sans-serif); font-size: var(--vscode-font-size, 13px); padding: 0 16px 24px; }
h2 { font-size: 1.2em; margin: 14px 0 8px; }
.answer { white-space: pre-wrap; font-family: var(--vscode-editor-font-family, monospace); background: var(--vscode-textBlockQuote-background, #2a2a2a); padding: 8px 10px; border-radius: 3px; min-height: 1.5em; }
.citations { margin: 8px 0; padding-left: 18px; }
.citations li { margin: 2px 0; }
.preview { color: var(--vscode-descriptionForeground, #999); font-family: var(--vscode-editor-font-family, monospace); margin-left: 8px; }
.muted { color: var(--vscode-descriptionForeground, #999); }
.error { color: var(--vscode-errorForeground, #f48771); }
a { color: var(--vscode-textLink-foreground, #3794ff); cursor: pointer; text-decoration: none; }
a:hover { text-decoration: underline; }
`;

export function startAsk(root: HTMLElement): void {
	const vscode = vscodeApi<AskState, FromAsk>();
	addStyle(css);
	let state: AskState = vscode.getState() ?? { question: '', answer: '', citations: [], result: null, error: null };

	const render = (): void => {
		const nodes: HTMLElement[] = [el('h2', undefined, state.question || 'Ask the Repository')];
		const answer = el('div', 'answer', state.answer || (state.result || state.error ? '' : '…'));
		answer.id = 'answer';
		nodes.push(answer);
		if (state.error) nodes.push(el('p', 'error', `The sidecar could not answer: ${state.error}`));
		if (state.citations.length > 0) {
			nodes.push(el('h2', undefined, 'Sources'));
			const list = el('ul', 'citations');
			for (const citation of state.citations) {
				const item = el('li');
				const link = el('a', 'citation', `${citation.file}:${citation.line}`);
				link.addEventListener('click', () => { vscode.postMessage({ type: 'openCitation', file: citation.file, line: citation.line }); });
				item.append(link, el('span', 'preview', citation.preview));
				list.append(item);
			}
			nodes.push(list);
		}
		if (state.result) {
			const r = state.result;
			nodes.push(el('p', 'muted', `${r.context.mode === 'whole' ? 'whole workspace' : `retrieved from ${r.context.chunksSearched} chunks`} · ${r.context.tokens} prompt tokens · ${r.context.files.length} files · ${formatMs(r.timings.totalMs)} (${r.stopReason})`));
		}
		root.replaceChildren(...nodes);
	};

	window.addEventListener('message', (event: MessageEvent<ToAsk>) => {
		const message = event.data;
		switch (message.type) {
			case 'question':
				state = { question: message.question, answer: '', citations: [], result: null, error: null };
				break;
			case 'citations':
				state = { ...state, citations: message.citations };
				break;
			case 'text':
				state = { ...state, answer: state.answer + message.delta };
				break;
			case 'done':
				state = { ...state, result: message.result, answer: message.result.answer || state.answer, citations: message.result.citations.length > 0 ? message.result.citations : state.citations };
				break;
			case 'error':
				state = { ...state, error: message.message };
				break;
		}
		vscode.setState(state);
		render();
	});
	render();
	vscode.postMessage({ type: 'ready' });
}
