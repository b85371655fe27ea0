import * as vscode from 'vscode';
import { ProgressType } from 'vscode-languageclient/node';
import { RepoAskRequest, type AskPartialResult } from '../../sidecar/src/protocol';
import type { FromAsk, ToAsk } from '../../webview/src/messages';
import { firstLine, type Sidecar } from './sidecar';
import { webviewHtml, webviewOptions } from './webview-html';

// `repokv: Ask the Repository`: a question in an input box, the answer streamed into a panel through `$/progress`
// partial results, citations as links that open file:line. Cancelling (closing the panel) cancels the request.

export const askViewType = 'repokv.ask';

let counter = 0;

export async function askRepository(context: vscode.ExtensionContext, sidecar: Sidecar, preset?: string): Promise<void> {
	const running = sidecar.running();
	if (!('client' in running)) {
		// A command the user ran explains itself, non-modally; transient state also stays in the status bar.
		void vscode.window.showWarningMessage(`repokv: cannot ask: ${running.reason}.`);
		return;
	}
	const question = preset ?? await vscode.window.showInputBox({ title: 'repokv: Ask the Repository', prompt: 'A question about this workspace', placeHolder: 'Where is RETRY_LIMIT_MS defined?', ignoreFocusOut: true });
	if (!question?.trim()) return;
	const { client } = running;
	const panel = vscode.window.createWebviewPanel(askViewType, `Ask: ${question.slice(0, 40)}`, vscode.ViewColumn.Beside, {
		...webviewOptions(context.extensionUri),
		// A small page, and a hidden webview drops messages: keep it alive so a streaming answer is not lost.
		retainContextWhenHidden: true,
	});
	panel.webview.html = webviewHtml(panel.webview, context.extensionUri, 'ask', 'repokv: Ask the Repository');
	const cancel = new vscode.CancellationTokenSource();
	const queue: ToAsk[] = [{ type: 'question', question }];
	let ready = false;
	const post = (message: ToAsk): void => {
		if (ready) void panel.webview.postMessage(message);
		else queue.push(message);
	};
	const root = vscode.workspace.workspaceFolders?.[0]?.uri;
	const disposables: vscode.Disposable[] = [
		panel.webview.onDidReceiveMessage(async (message: FromAsk) => {
			if (message.type === 'ready') {
				ready = true;
				for (const queued of queue.splice(0)) void panel.webview.postMessage(queued);
			} else if (root) {
				const line = Math.max(0, message.line - 1);
				await vscode.window.showTextDocument(vscode.Uri.joinPath(root, message.file), {
					viewColumn: vscode.ViewColumn.One,
					selection: new vscode.Range(line, 0, line, 0),
				});
			}
		}),
	];
	panel.onDidDispose(() => {
		cancel.cancel();
		for (const disposable of disposables) disposable.dispose();
	});
	const token = `repokv-ask-${++counter}`;
	disposables.push(client.onProgress(new ProgressType<AskPartialResult>(), token, (partial) => {
		if (partial.citations) post({ type: 'citations', citations: partial.citations });
		if (partial.textDelta) post({ type: 'text', delta: partial.textDelta });
	}));
	const activeFile = vscode.window.activeTextEditor ? vscode.workspace.asRelativePath(vscode.window.activeTextEditor.document.uri, false) : undefined;
	sidecar.log.info(`ask: ${question}`);
	try {
		const result = await client.sendRequest(RepoAskRequest.type, { question, partialResultToken: token, ...(activeFile ? { activeFile } : {}) }, cancel.token);
		sidecar.log.info(`ask: answered in ${Math.round(result.timings.totalMs)} ms with ${result.citations.length} citations (${result.stopReason})`);
		post({ type: 'done', result });
	} catch (error) {
		sidecar.log.error(`ask failed: ${firstLine(error)}`);
		post({ type: 'error', message: firstLine(error) });
	}
}
