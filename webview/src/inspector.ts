import type { CacheSnapshot, KvTier } from '../../sidecar/src/protocol';
import type { FromInspector, InspectorState, SidecarLine, ToInspector } from './messages';
import { addStyle, el, formatBytes, formatInt, formatMs, vscodeApi } from './vscode-api';

// The cache inspector (docs/architecture.md, "Cache inspector"): totals and latency split, the budget rule, per layer a row of stacked bars
// (one per KV head: kept tokens by tier over the context) with the layer's bytes against fp16, and per file how
// much of it the last request kept at high precision. The layer grid is one canvas, redrawn only on new data or a
// resize, so 64 layers × 32 heads (2048 bars) draw in a few milliseconds.

// Type-only imports keep vscode-languageserver-protocol out of the browser bundle; `satisfies` makes the compiler
// insist that every protocol tier has a label, under the engine's own name (protocol.ts `kvTiers`, most to least
// precise), with its nominal bits per element. Every tier the engine has is shown: none is folded into another.
const tierLabels = {
	f16: 'f16 (16-bit)',
	q8: 'q8 (8-bit)',
	kivi4: 'kivi4 (4-bit)',
	kivi2: 'kivi2 (2-bit)',
	onebit: 'onebit (1.x-bit)',
	dropped: 'dropped',
} satisfies Record<KvTier, string>;
const kvTiers = Object.keys(tierLabels) as KvTier[];
// From most to least precise: blue, green, yellow, orange, red; dropped is the empty track.
const tierVars: Record<KvTier, [string, string]> = {
	f16: ['--vscode-charts-blue', '#3794ff'],
	q8: ['--vscode-charts-green', '#89d185'],
	kivi4: ['--vscode-charts-yellow', '#cca700'],
	kivi2: ['--vscode-charts-orange', '#d18616'],
	onebit: ['--vscode-charts-red', '#f14c4c'],
	dropped: ['--vscode-disabledForeground', '#8888884d'],
};
const rowHeight = 22;
const labelWidth = 44;
const bytesWidth = 230;

const css = `
body { color: var(--vscode-foreground, #ccc); background: var(--vscode-editor-background, #1e1e1e); font-family: var(--vscode-font-family, sans-serif); font-size: var(--vscode-font-size, 13px); padding: 0 16px 24px; }
h2 { font-size: 1.3em; margin: 14px 0 4px; }
h3 { font-size: 1.05em; margin: 18px 0 6px; }
.meta, .muted { color: var(--vscode-descriptionForeground, #999); }
.banner { border-left: 3px solid var(--vscode-editorWarning-foreground, #cca700); padding: 6px 10px; margin: 10px 0; background: var(--vscode-textBlockQuote-background, #2a2a2a); }
.empty-state { padding: 16px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 8px; margin: 10px 0; }
.card { border: 1px solid var(--vscode-panel-border, #444); border-radius: 4px; padding: 6px 10px; min-width: 120px; }
.card .value { font-size: 1.35em; font-weight: 600; }
.card .label { color: var(--vscode-descriptionForeground, #999); font-size: 0.9em; }
.split { display: flex; height: 16px; border-radius: 3px; overflow: hidden; margin: 6px 0; background: var(--vscode-input-background, #333); }
.split > div { height: 100%; }
.legend { display: flex; flex-wrap: wrap; gap: 12px; margin: 6px 0; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: middle; }
canvas.layers { display: block; width: 100%; }
.tooltip { position: fixed; pointer-events: none; background: var(--vscode-editorHoverWidget-background, #252526); border: 1px solid var(--vscode-editorHoverWidget-border, #454545); padding: 4px 8px; border-radius: 3px; white-space: pre; display: none; z-index: 10; }
table.files { border-collapse: collapse; width: 100%; table-layout: auto; }
table.files td:first-child { word-break: break-all; }
table.files td, table.files th { text-align: left; padding: 3px 8px 3px 0; vertical-align: middle; }
table.files th { color: var(--vscode-descriptionForeground, #999); font-weight: normal; }
table.files td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.files td.bar-cell { width: 40%; }
table.files .bar { display: flex; height: 10px; width: 100%; max-width: 180px; min-width: 40px; border-radius: 2px; overflow: hidden; background: var(--vscode-input-background, #333); }
a { color: var(--vscode-textLink-foreground, #3794ff); cursor: pointer; text-decoration: none; }
a:hover { text-decoration: underline; }
button { color: var(--vscode-button-foreground, #fff); background: var(--vscode-button-background, #0e639c); border: none; padding: 3px 10px; border-radius: 2px; cursor: pointer; }
`;

function themeColor(name: string, fallback: string): string {
	const value = getComputedStyle(document.body).getPropertyValue(name).trim();
	return value === '' ? fallback : value;
}

function tierColors(): Record<KvTier, string> {
	const colors = {} as Record<KvTier, string>;
	for (const tier of kvTiers) {
		const [name, fallback] = tierVars[tier];
		colors[tier] = themeColor(name, fallback);
	}
	return colors;
}

function card(value: string, label: string, id: string): HTMLElement {
	const node = el('div', 'card');
	node.dataset['metric'] = id;
	node.append(el('div', 'value', value), el('div', 'label', label));
	return node;
}

function legend(colors: Record<KvTier, string>): HTMLElement {
	const node = el('div', 'legend');
	for (const tier of kvTiers) {
		const item = el('span');
		const swatch = el('span', 'swatch');
		swatch.style.background = colors[tier];
		item.append(swatch, tierLabels[tier]);
		node.append(item);
	}
	return node;
}

/** Draws the layer grid; returns the time it took (ms). */
function drawLayers(canvas: HTMLCanvasElement, snapshot: CacheSnapshot, colors: Record<KvTier, string>): number {
	const started = performance.now();
	const width = Math.max(300, canvas.clientWidth);
	const height = snapshot.layers.length * rowHeight + 4;
	const ratio = window.devicePixelRatio || 1;
	canvas.width = Math.round(width * ratio);
	canvas.height = Math.round(height * ratio);
	canvas.style.height = `${height}px`;
	const g = canvas.getContext('2d');
	if (!g) return 0;
	g.setTransform(ratio, 0, 0, ratio, 0, 0);
	g.clearRect(0, 0, width, height);
	const fg = themeColor('--vscode-foreground', '#cccccc');
	const muted = themeColor('--vscode-descriptionForeground', '#999999');
	const track = themeColor('--vscode-input-background', '#333333');
	g.font = `11px ${themeColor('--vscode-font-family', 'sans-serif')}`;
	g.textBaseline = 'middle';
	const heads = Math.max(1, ...snapshot.layers.map((layer) => layer.heads.length));
	const gridWidth = Math.max(60, width - labelWidth - bytesWidth - 12);
	const headWidth = gridWidth / heads;
	const gap = headWidth > 4 ? 1 : 0;
	const context = Math.max(1, snapshot.totals.contextTokens);
	const maxFp16 = Math.max(1, ...snapshot.layers.map((layer) => layer.fp16Bytes));
	for (const layer of snapshot.layers) {
		const y = layer.layer * rowHeight + 2;
		const barHeight = rowHeight - 4;
		g.fillStyle = muted;
		g.fillText(`L${layer.layer}`, 2, y + barHeight / 2);
		const columns = layer.heads.length > 0 ? layer.heads : [{ head: 0, tokens: 0, bytes: layer.bytes, tiers: layer.tiers }];
		const scale = layer.heads.length > 0 ? 1 : heads;
		for (const head of columns) {
			const x = labelWidth + head.head * headWidth;
			const w = Math.max(1, headWidth * scale - gap);
			g.fillStyle = track;
			g.fillRect(x, y, w, barHeight);
			// Stacked from the bottom, most precise first: the column's height is the whole context.
			let bottom = y + barHeight;
			for (const tier of kvTiers) {
				const tokens = head.tiers[tier].tokens / (layer.heads.length > 0 ? 1 : heads);
				const h = (tokens / context) * barHeight;
				if (h <= 0) continue;
				g.fillStyle = colors[tier];
				g.fillRect(x, bottom - h, w, h);
				bottom -= h;
			}
		}
		// Bytes against fp16: the track is this layer's fp16 size, the fill what it really takes.
		const bx = labelWidth + gridWidth + 12;
		const bw = 70;
		g.fillStyle = track;
		g.fillRect(bx, y + 4, (bw * layer.fp16Bytes) / maxFp16, barHeight - 8);
		g.fillStyle = colors.f16;
		g.fillRect(bx, y + 4, (bw * layer.bytes) / maxFp16, barHeight - 8);
		g.fillStyle = fg;
		g.fillText(`${formatBytes(layer.bytes)} / ${formatBytes(layer.fp16Bytes)}`, bx + bw + 6, y + barHeight / 2);
	}
	return performance.now() - started;
}

function tierBar(amounts: Readonly<Record<KvTier, number>>, total: number, colors: Record<KvTier, string>, className: string): HTMLElement {
	const bar = el('div', className);
	for (const tier of kvTiers) {
		const part = el('div');
		part.style.width = `${(100 * amounts[tier]) / Math.max(1e-9, total)}%`;
		part.style.background = colors[tier];
		part.title = `${tierLabels[tier]}: ${amounts[tier].toFixed(1)}`;
		bar.append(part);
	}
	return bar;
}

export function startInspector(root: HTMLElement): void {
	const vscode = vscodeApi<InspectorState, FromInspector>();
	addStyle(css);
	let state: InspectorState = vscode.getState() ?? { snapshot: null, sidecar: null, scrollY: 0 };
	const tooltip = el('div', 'tooltip');
	document.body.append(tooltip);
	let canvas: HTMLCanvasElement | undefined;
	let frame = 0;

	const save = (): void => { vscode.setState(state); };

	const scheduleDraw = (): void => {
		cancelAnimationFrame(frame);
		frame = requestAnimationFrame(() => {
			const snapshot = state.snapshot;
			if (!canvas || !snapshot) return;
			const ms = drawLayers(canvas, snapshot, tierColors());
			canvas.dataset['drawMs'] = ms.toFixed(2);
			const timing = document.getElementById('draw-time');
			if (timing) timing.textContent = `chart drawn in ${ms.toFixed(1)} ms`;
		});
	};

	const render = (): void => {
		const colors = tierColors();
		const header = el('div');
		const title = el('h2', undefined, 'repokv cache inspector');
		const refresh = el('button', undefined, 'Refresh');
		refresh.addEventListener('click', () => { vscode.postMessage({ type: 'refresh' }); });
		header.append(title);
		const nodes: HTMLElement[] = [header];
		const snapshot = state.snapshot;
		if (state.sidecar && !state.sidecar.running) nodes.push(el('div', 'banner', state.sidecar.text));
		if (!snapshot) {
			const empty = el('p', 'empty-state', 'No data yet. Statistics appear here after the first completion request.');
			nodes.push(empty, refresh);
			root.replaceChildren(...nodes);
			canvas = undefined;
			return;
		}
		const t = snapshot.totals;
		const meta = el('div', 'meta', `last ${snapshot.request} · ${new Date(snapshot.time).toLocaleTimeString()} · engine ${snapshot.engine} · ${snapshot.model.architecture}, ${snapshot.model.layers} layers × ${snapshot.model.kvHeads} KV heads × ${snapshot.model.headDim} · ${snapshot.source === 'modelShape' ? 'full cache computed from the model shape' : "engine's own accounting"} · #${snapshot.sequence} `);
		meta.dataset['sequence'] = String(snapshot.sequence);
		meta.dataset['source'] = snapshot.source;
		meta.dataset['request'] = snapshot.request;
		meta.append(refresh);
		nodes.push(meta);
		const cards = el('div', 'cards');
		cards.append(
			card(formatInt(t.contextTokens), 'context tokens', 'contextTokens'),
			card(formatBytes(t.kvBytes), `KV bytes (fp16: ${formatBytes(t.fp16Bytes)}${t.residentBytes === undefined ? '' : `; resident with master copy and draft: ${formatBytes(t.residentBytes)}`})`, 'kvBytes'),
			card(t.bitsPerElement.toFixed(2), 'bits per element', 'bitsPerElement'),
			card(`${t.compressionRatio.toFixed(2)}×`, 'compression vs fp16', 'compressionRatio'),
			card(formatMs(snapshot.latency.totalMs), 'total latency', 'totalMs'),
		);
		nodes.push(cards);

		const l = snapshot.latency;
		nodes.push(el('h3', undefined, 'Latency split'));
		const steps: [string, number, string][] = [
			['prefill', l.prefillMs, colors.f16],
			['draft', l.draftMs, themeColor('--vscode-charts-purple', '#b180d7')],
			['scoring', l.scoringMs, themeColor('--vscode-charts-green', '#89d185')],
			['decode', l.decodeMs, themeColor('--vscode-charts-red', '#f14c4c')],
		];
		const split = el('div', 'split');
		const sum = Math.max(1e-9, steps.reduce((acc, [, ms]) => acc + ms, 0));
		for (const [name, ms, color] of steps) {
			const part = el('div');
			part.style.width = `${(100 * ms) / sum}%`;
			part.style.background = color;
			part.title = `${name} ${formatMs(ms)}`;
			split.append(part);
		}
		const splitText = el('div', 'muted', `${steps.map(([name, ms]) => `${name} ${formatMs(ms)}`).join(' · ')} · ${formatInt(l.prefillTokens)} tokens prefilled, ${formatInt(l.reusedTokens)} reused, ${formatInt(l.generatedTokens)} generated${l.selection === 'kept' ? ' · selection kept from the previous request (only the end of the prompt changed)' : ''}`);
		splitText.id = 'latency-text';
		nodes.push(split, splitText);

		nodes.push(el('h3', undefined, 'Budget rule'));
		const b = snapshot.budget;
		const rule = [`policy ${b.policy}`, `allocation ${b.allocation}`];
		if (b.budgetPercent !== undefined) rule.push(`budget ${b.budgetPercent} % of fp16`);
		if (b.precision !== undefined) rule.push(`precision ${b.precision}`);
		if (b.bytesPerToken !== undefined) rule.push(`${formatBytes(b.bytesPerToken)} per token`);
		if (b.sinkTokens !== undefined) rule.push(`${b.sinkTokens} sink tokens`);
		if (b.recentWindow !== undefined) rule.push(`recent window ${b.recentWindow}`);
		const ruleText = el('div', 'muted', rule.join(' · '));
		ruleText.id = 'budget-rule';
		ruleText.dataset['allocation'] = b.allocation;
		nodes.push(el('div', undefined, b.description), ruleText);

		nodes.push(el('h3', undefined, `Per layer: kept tokens per KV head by tier, and bytes against fp16`), legend(colors));
		canvas = el('canvas', 'layers');
		canvas.setAttribute('aria-label', `KV cache tiers for ${snapshot.layers.length} layers`);
		const chartCanvas = canvas;
		chartCanvas.addEventListener('mousemove', (event) => {
			const rect = chartCanvas.getBoundingClientRect();
			const x = event.clientX - rect.left;
			const layer = snapshot.layers[Math.floor((event.clientY - rect.top - 2) / rowHeight)];
			const heads = Math.max(1, ...snapshot.layers.map((item) => item.heads.length));
			const gridWidth = Math.max(60, rect.width - labelWidth - bytesWidth - 12);
			const head = layer?.heads[Math.floor(((x - labelWidth) / gridWidth) * heads)];
			if (!layer || x < labelWidth) {
				tooltip.style.display = 'none';
				return;
			}
			const amounts = head ? head.tiers : layer.tiers;
			const lines = [`layer ${layer.layer}${head ? `, KV head ${head.head}` : ''}`];
			for (const tier of kvTiers) lines.push(`${tierLabels[tier].padEnd(16)} ${formatInt(amounts[tier].tokens).padStart(8)} tokens  ${formatBytes(amounts[tier].bytes)}`);
			lines.push(`layer: ${formatBytes(layer.bytes)} of ${formatBytes(layer.fp16Bytes)} fp16`);
			tooltip.textContent = lines.join('\n');
			tooltip.style.display = 'block';
			tooltip.style.left = `${Math.min(event.clientX + 12, window.innerWidth - 340)}px`;
			tooltip.style.top = `${event.clientY + 12}px`;
		});
		chartCanvas.addEventListener('mouseleave', () => { tooltip.style.display = 'none'; });
		const drawTime = el('div', 'muted');
		drawTime.id = 'draw-time';
		nodes.push(canvas, drawTime);

		nodes.push(el('h3', undefined, 'Per file: what the last request kept at 4 bits or better'));
		nodes.push(el('div', 'muted', snapshot.source === 'engineStats'
			? 'Measured per position: each file\'s tokens per tier, averaged over layers and KV heads.'
			: 'Full fp16 cache (computed from the model shape): every file is kept whole.'));
		const table = el('table', 'files');
		const head = el('tr');
		for (const name of ['file', 'role', 'tokens', 'kept by tier', 'high precision']) head.append(el('th', undefined, name));
		table.append(head);
		for (const file of snapshot.files) {
			const row = el('tr');
			const link = el('a', undefined, file.path);
			link.addEventListener('click', () => { vscode.postMessage({ type: 'openFile', path: file.path }); });
			const name = el('td');
			name.append(link);
			const span = file.endToken - file.startToken;
			const bar = el('td', 'bar-cell');
			bar.append(tierBar(file.keptTokens, span, colors, 'bar'));
			row.append(name, el('td', 'muted', file.role), el('td', 'num', formatInt(span)), bar, el('td', 'num', `${(100 * file.keptFraction).toFixed(1)}%`));
			table.append(row);
		}
		nodes.push(table);
		root.replaceChildren(...nodes);
		scheduleDraw();
	};

	window.addEventListener('message', (event: MessageEvent<ToInspector>) => {
		const message = event.data;
		switch (message.type) {
			case 'snapshot':
				// Pushes can overtake each other; keep the newest.
				if (message.snapshot && state.snapshot && message.snapshot.sequence < state.snapshot.sequence && message.snapshot.time <= state.snapshot.time) return;
				state = { ...state, snapshot: message.snapshot ?? state.snapshot };
				break;
			case 'sidecar':
				state = { ...state, sidecar: message.sidecar satisfies SidecarLine };
				break;
		}
		save();
		render();
	});
	window.addEventListener('resize', scheduleDraw);
	window.addEventListener('scroll', () => {
		state = { ...state, scrollY: window.scrollY };
		save();
	}, { passive: true });
	render();
	if (state.scrollY > 0) window.scrollTo(0, state.scrollY);
	vscode.postMessage({ type: 'ready' });
}
