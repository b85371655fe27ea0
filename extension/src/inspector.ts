import * as vscode from 'vscode';
import type { FromInspector, SidecarLine, ToInspector } from '../../webview/src/messages';
import type { Sidecar, SidecarView } from './sidecar';
import { webviewHtml, webviewOptions } from './webview-html';

// The cache inspector's host side: a singleton panel (webview-sample's `createOrShow`/`revive`), revived after a
// window reload by a serializer, fed the last snapshot on open and every `repokv/cache/didChange` push after.

export const inspectorViewType = 'repokv.cacheInspector';

export function sidecarLine(view: SidecarView): SidecarLine {
	switch (view.kind) {
		case 'running':
			return { running: true, text: `sidecar ${view.status.state}: ${view.status.message}` };
		case 'starting':
			return { running: false, text: 'sidecar starting…' };
		case 'restarting':
			return { running: false, text: `sidecar stopped (${view.reason}); restarting in ${view.inSeconds} s` };
		case 'failed':
			return { running: false, text: `sidecar failed: ${view.reason}` };
		case 'stopped':
			return { running: false, text: `sidecar not running (${view.reason})` };
	}
}

export class InspectorPanel implements vscode.Disposable {
	static current: InspectorPanel | undefined;
	private readonly disposables: vscode.Disposable[] = [];

	static createOrShow(context: vscode.ExtensionContext, sidecar: Sidecar): InspectorPanel {
		if (InspectorPanel.current) {
			InspectorPanel.current.panel.reveal(vscode.ViewColumn.Beside);
			void InspectorPanel.current.refresh();
			return InspectorPanel.current;
		}
		const panel = vscode.window.createWebviewPanel(inspectorViewType, 'repokv Cache Inspector', vscode.ViewColumn.Beside, webviewOptions(context.extensionUri));
		return new InspectorPanel(panel, context, sidecar);
	}

	static revive(panel: vscode.WebviewPanel, context: vscode.ExtensionContext, sidecar: Sidecar): InspectorPanel {
		panel.webview.options = webviewOptions(context.extensionUri);
		return new InspectorPanel(panel, context, sidecar);
	}

	private constructor(
		readonly panel: vscode.WebviewPanel,
		context: vscode.ExtensionContext,
		private readonly sidecar: Sidecar,
	) {
		InspectorPanel.current = this;
		panel.webview.html = webviewHtml(panel.webview, context.extensionUri, 'inspector', 'repokv Cache Inspector');
		this.disposables.push(
			panel.onDidDispose(() => { this.dispose(); }),
			panel.webview.onDidReceiveMessage((message: FromInspector) => { void this.onMessage(message); }),
			sidecar.onDidChangeSnapshot((snapshot) => { void this.post({ type: 'snapshot', snapshot }); }),
			sidecar.onDidChangeView((view) => { void this.post({ type: 'sidecar', sidecar: sidecarLine(view) }); }),
		);
	}

	private post(message: ToInspector): Thenable<boolean> {
		return this.panel.webview.postMessage(message);
	}

	private async onMessage(message: FromInspector): Promise<void> {
		switch (message.type) {
			case 'ready':
			case 'refresh':
				await this.refresh();
				break;
			case 'openFile': {
				const folder = vscode.workspace.workspaceFolders?.[0];
				if (folder) await vscode.window.showTextDocument(vscode.Uri.joinPath(folder.uri, message.path), { preview: true, viewColumn: vscode.ViewColumn.One });
				break;
			}
		}
	}

	async refresh(): Promise<void> {
		await this.post({ type: 'sidecar', sidecar: sidecarLine(this.sidecar.view) });
		await this.post({ type: 'snapshot', snapshot: await this.sidecar.fetchSnapshot() });
	}

	dispose(): void {
		if (InspectorPanel.current === this) InspectorPanel.current = undefined;
		for (const disposable of this.disposables.splice(0)) disposable.dispose();
		this.panel.dispose();
	}
}
