// page.evaluate callbacks run in the browser:
/* global window, document, requestAnimationFrame */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { launchChromium } from './lib/chromium.mjs';
import { syntheticSnapshot } from './lib/snapshot.mjs';

// The cache inspector in Chromium, outside VS Code: dist/webview.js in a page that provides `acquireVsCodeApi`
// (state kept in sessionStorage, as VS Code keeps it across a webview reload), fed a 64-layer × 32-head snapshot.
// Checks: the empty state, the chart and totals, draw time, state after reload, a live update; screenshots.

export async function testWebview({ root, outDir }) {
	const dir = path.join(outDir, 'webview');
	fs.mkdirSync(dir, { recursive: true });
	const bundle = path.join(root, 'dist', 'webview.js');
	assert.ok(fs.existsSync(bundle), 'dist/webview.js is missing; run npm run build');
	const page = path.join(dir, 'harness.html');
	fs.writeFileSync(page, `<!DOCTYPE html><html><head><meta charset="UTF-8">
<style>:root { --vscode-font-family: system-ui, sans-serif; --vscode-foreground: #cccccc; --vscode-editor-background: #1f1f1f; --vscode-descriptionForeground: #9d9d9d; --vscode-input-background: #313131; --vscode-panel-border: #2b2b2b; --vscode-charts-blue: #3794ff; --vscode-charts-green: #89d185; --vscode-charts-yellow: #cca700; --vscode-charts-orange: #d18616; --vscode-charts-red: #f14c4c; --vscode-charts-purple: #b180d7; --vscode-disabledForeground: rgba(204,204,204,0.3); }</style>
</head><body data-view="inspector" data-nonce="test"><div id="root"></div>
<script>
window.__posted = [];
window.acquireVsCodeApi = () => ({
  postMessage: (m) => window.__posted.push(m),
  getState: () => { const s = sessionStorage.getItem('state'); return s ? JSON.parse(s) : undefined; },
  setState: (s) => sessionStorage.setItem('state', JSON.stringify(s)),
});
</script>
<script src="${pathToFileURL(bundle).href}"></script></body></html>`);
	const context = await launchChromium(path.join(dir, 'profile'));
	try {
		const tab = context.pages()[0] ?? await context.newPage();
		const errors = [];
		tab.on('pageerror', (error) => errors.push(error.message));
		await tab.goto(pathToFileURL(page).href);
		await tab.waitForSelector('.empty-state');
		assert.deepEqual(await tab.evaluate(() => /** @type {any} */ (window).__posted), [{ type: 'ready' }], 'the inspector says ready once');
		await tab.screenshot({ path: path.join(dir, 'inspector-empty.png') });

		const snapshot = syntheticSnapshot();
		await tab.evaluate((s) => { window.postMessage({ type: 'snapshot', snapshot: s }, '*'); }, snapshot);
		await tab.waitForSelector('canvas.layers[data-draw-ms]');
		const drawMs = Number(await tab.getAttribute('canvas.layers', 'data-draw-ms'));
		const context1 = await tab.textContent('[data-metric=contextTokens] .value');
		assert.equal(context1, '32,768');
		const ratio = await tab.textContent('[data-metric=compressionRatio] .value');
		assert.equal(ratio, `${snapshot.totals.compressionRatio.toFixed(2)}×`);
		assert.equal(await tab.locator('table.files tr').count(), snapshot.files.length + 1);
		// Every tier the engine has, under its own name, in the legend and in each file's bar (none folded).
		const legend = await tab.locator('.legend').first().textContent();
		for (const tier of ['f16', 'q8', 'kivi4', 'kivi2', 'onebit', 'dropped']) assert.ok(legend.includes(tier), `legend "${legend}" lacks ${tier}`);
		assert.equal(await tab.locator('table.files tr:nth-child(2) .bar > div').count(), 6, 'one bar part per tier');
		// Pixels: the chart really drew the tiers (the fp16 blue at the bottom of the first head column).
		const painted = await tab.evaluate(() => {
			const canvas = /** @type {HTMLCanvasElement} */ (document.querySelector('canvas.layers'));
			const g = canvas.getContext('2d');
			const data = g.getImageData(0, 0, canvas.width, canvas.height).data;
			let colored = 0;
			for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0) colored++;
			return { colored, width: canvas.width, height: canvas.height };
		});
		assert.ok(painted.colored > painted.width * painted.height * 0.2, `chart painted (${painted.colored} px)`);
		await tab.mouse.move(300, (await tab.locator('canvas.layers').boundingBox()).y + 30);
		await tab.screenshot({ path: path.join(dir, 'inspector-64x32.png'), fullPage: true });
		await tab.screenshot({ path: path.join(dir, 'inspector-64x32-top.png') });
		await tab.locator('table.files').screenshot({ path: path.join(dir, 'inspector-files.png') });

		// Live update: a newer snapshot replaces the numbers; an older one is ignored.
		const newer = syntheticSnapshot({ contextTokens: 20000, sequence: 2, seed: 3 });
		await tab.evaluate((s) => { window.postMessage({ type: 'snapshot', snapshot: s }, '*'); }, newer);
		await tab.waitForFunction(() => document.querySelector('[data-metric=contextTokens] .value')?.textContent === '20,000');

		// Resize redraws; a reload restores the last snapshot from getState without any message.
		await tab.setViewportSize({ width: 900, height: 700 });
		await tab.reload();
		await tab.waitForSelector('canvas.layers[data-draw-ms]');
		assert.equal(await tab.textContent('[data-metric=contextTokens] .value'), '20,000', 'state survives a reload');
		await tab.screenshot({ path: path.join(dir, 'inspector-after-reload.png') });

		// Fluid: redraw 20 times at 64 × 32 and report the median.
		const times = await tab.evaluate(async (s) => {
			const out = [];
			for (let i = 0; i < 20; i++) {
				window.postMessage({ type: 'snapshot', snapshot: { ...s, sequence: 10 + i } }, '*');
				await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
				out.push(Number(/** @type {HTMLCanvasElement} */ (document.querySelector('canvas.layers')).dataset.drawMs));
			}
			return out.sort((a, b) => a - b);
		}, snapshot);
		const median = times[10];
		assert.ok(median < 100, `median draw ${median} ms`);
		assert.deepEqual(errors, [], 'no page errors');
		return `64×32 chart drawn in ${drawMs.toFixed(1)} ms (median of 20 redraws ${median.toFixed(1)} ms); totals, files, live update and reload state OK; screenshots in ${path.relative(root, dir)}`;
	} finally {
		await context.close();
	}
}
