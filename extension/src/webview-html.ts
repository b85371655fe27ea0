import * as vscode from 'vscode';
import type { ViewKind } from '../../webview/src/messages';

// The HTML shell of both webviews: one bundle (dist/webview.js) loaded through `asWebviewUri`, a fresh nonce per
// load in a strict Content-Security-Policy (scripts only with the nonce, styles only from the bundle's inline
// <style> with the same nonce, no network), and VS Code's theme variables for every colour.

export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions & vscode.WebviewPanelOptions {
	return { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'dist')], retainContextWhenHidden: false };
}

export function nonce(): string {
	const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
	let text = '';
	for (let i = 0; i < 32; i++) text += alphabet.charAt(Math.floor(Math.random() * alphabet.length));
	return text;
}

export function webviewHtml(webview: vscode.Webview, extensionUri: vscode.Uri, view: ViewKind, title: string): string {
	const scriptUri = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview.js'));
	const n = nonce();
	const csp = [
		"default-src 'none'",
		`img-src ${webview.cspSource} data:`,
		`style-src ${webview.cspSource} 'nonce-${n}'`,
		`script-src 'nonce-${n}'`,
		`font-src ${webview.cspSource}`,
	].join('; ');
	return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${title}</title>
</head>
<body data-view="${view}" data-nonce="${n}">
<div id="root"></div>
<script nonce="${n}" src="${scriptUri.toString()}"></script>
</body>
</html>`;
}
