import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from './lib/steps.mjs';

// What a person sees, in code-server with the packaged .vsix installed, on a copy of the needle fixture:
// ghost text from the real sidecar and bundled models at src/main.ts 10:32 (`4817`, defined only in src/config.ts),
// accepted with Tab and found on disk; the cache inspector showing the last completion's numbers; Ask the
// Repository answering with a citation that opens the file. Every wait is on a signal (DOM, or the state file the
// extension writes when REPOKV_E2E_STATE_FILE is set), never a fixed sleep.

const key = (page, combo) => page.keyboard.press(combo);

export class Ui {
	constructor({ server, page, workspace, stateFile, shots, root }) {
		this.server = server;
		this.page = page;
		this.workspace = workspace;
		this.stateFile = stateFile;
		this.shots = shots;
		this.root = root;
		this.sidecarReady = undefined;
		/** The snapshot pushed for the completion the Alt+\\ step showed (inspector() checks its times). */
		this.shownSnapshot = undefined;
	}

	state() {
		try {
			return JSON.parse(fs.readFileSync(this.stateFile, 'utf8'));
		} catch {
			return undefined;
		}
	}

	async shot(name) {
		const file = path.join(this.shots, `${name}.png`);
		await this.page.screenshot({ path: file });
		return path.relative(this.root, file);
	}

	/** The sidecar's log as the extension wrote it (its output channel), for failure messages. */
	logTail(lines = 12) {
		const found = [];
		const walk = (dir) => {
			for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
				const full = path.join(dir, entry.name);
				if (entry.isDirectory()) walk(full);
				else if (/repokv/i.test(entry.name) && entry.name.endsWith('.log')) found.push(full);
			}
		};
		walk(path.join(this.server.dirs.udd, 'logs'));
		const text = found.map((file) => fs.readFileSync(file, 'utf8')).join('\n').trim().split('\n');
		return text.slice(-lines).join('\n');
	}

	requireSidecar() {
		if (this.sidecarReady !== true) throw new Error(`needs a ready sidecar, which never came (${this.sidecarReady ?? 'not checked'})`);
	}

	async openWorkbench() {
		const { page } = this;
		await page.goto(`${this.server.url}/?folder=${encodeURIComponent(this.workspace)}`);
		await page.waitForSelector('.monaco-workbench', { timeout: 60000 });
		await page.waitForSelector('.part.statusbar', { timeout: 60000 });
		await page.waitForSelector('.explorer-folders-view .monaco-list-row', { timeout: 60000 });
		await waitFor(() => this.state(), { timeoutMs: 60000, what: 'the repokv extension to activate (its state file)' });
		await page.waitForSelector('[id="repokv.repokv.status"], .statusbar-item[aria-label*="repokv"]', { timeout: 30000 }).catch(() => undefined);
		return `workbench up, extension activated; ${await this.shot('01-workbench')}`;
	}

	async waitSidecarReady(timeoutMs) {
		try {
			await waitFor(() => {
				const state = this.state();
				const view = state?.view;
				if (view?.kind === 'failed') throw new Error(`sidecar failed: ${view.reason}`);
				return view?.kind === 'running' && view.status.state === 'ready' && state.feed !== null;
			}, { timeoutMs, what: 'the sidecar to report state "ready" with the workspace fed' });
			this.sidecarReady = true;
			return `ready: ${this.state().status.text.replace(/\$\([^)]*\)\s*/g, '')}; fed ${this.state().feed.files} files; ${await this.shot('02-ready')}`;
		} catch (error) {
			const state = this.state();
			this.sidecarReady = `last view ${JSON.stringify(state?.view ?? null)}`;
			await this.shot('02-sidecar-not-ready');
			throw new Error(`${error.message}. Status bar: "${state?.status?.text ?? '?'}". Last view: ${JSON.stringify(state?.view ?? null)}. Log tail:\n${this.logTail()}`);
		}
	}

	async quickOpen(text) {
		const { page } = this;
		await key(page, 'Control+P');
		const input = page.locator('.quick-input-widget input');
		await input.waitFor({ state: 'visible' });
		await input.fill(text);
		await page.locator('.quick-input-list .monaco-list-row').first().waitFor({ state: 'visible' });
		await key(page, 'Enter');
	}

	async command(title) {
		const { page } = this;
		await key(page, 'Control+Shift+P');
		const input = page.locator('.quick-input-widget input');
		await input.waitFor({ state: 'visible' });
		await input.fill(`>${title}`);
		await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ state: 'visible' });
		await key(page, 'Enter');
	}

	async typedGhostText() {
		this.requireSidecar();
		const { page } = this;
		await this.quickOpen('main.ts');
		await page.waitForSelector('.monaco-editor .view-lines');
		await page.locator('.tab.active', { hasText: 'main.ts' }).waitFor();
		// Like a person who opens a file and reads it for a moment: give the sidecar the chance to warm its cache
		// for the opened file (status `prefilling` → `ready`) before typing.
		let warmed = 'no warm-up seen in 15 s';
		const warmStart = Date.now();
		let sawPrefill = false;
		await waitFor(() => {
			const status = this.state()?.view?.status;
			if (status?.state === 'prefilling') sawPrefill = true;
			if (sawPrefill && status?.state === 'ready') {
				warmed = `warmed in ${((Date.now() - warmStart) / 1000).toFixed(1)} s`;
				return true;
			}
			return !sawPrefill && Date.now() - warmStart > 15000;
		}, { timeoutMs: 90000, intervalMs: 100, what: 'the cache warm-up after opening main.ts' });
		// Type the line's last character (the space after the comma) as a person would: an automatic trigger.
		await key(page, 'Control+G');
		await page.locator('.quick-input-widget input').fill(':10:31');
		await key(page, 'Enter');
		await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
		await key(page, 'Delete');
		await page.keyboard.type(' ', { delay: 50 });
		try {
			await page.waitForSelector('.ghost-text-decoration, .ghost-text', { timeout: 30000 });
		} catch {
			await this.shot('03a-typed-no-ghost-text');
			const completions = this.logTail(40).split('\n').filter((line) => line.includes('completion ')).map((line) => line.slice(24, 190));
			throw new Error(`typing at src/main.ts 10:32 showed no ghost text within 30 s (${warmed}). The sidecar's completions so far:\n    ${completions.join('\n    ')}`);
		}
		const ghost = (await page.locator('.ghost-text-decoration, .ghost-text').allTextContents()).join('');
		const shot = await this.shot('03a-typed-ghost-text');
		assert.match(ghost.trim(), /^4817/, `ghost text "${ghost}" should begin with 4817`);
		return `ghost text "${ghost.trim()}" while typing (${warmed}); ${shot}`;
	}

	async ghostText() {
		this.requireSidecar();
		const { page } = this;
		let ghost = '';
		await waitFor(async () => {
			// Alt+\ is repokv's manual trigger (repokv.triggerCompletion); retried because a request may arrive
			// while the prompt is still prefilling.
			await key(page, 'Alt+Backslash');
			try {
				await page.waitForSelector('.ghost-text-decoration, .ghost-text', { timeout: 15000 });
			} catch {
				return false;
			}
			ghost = (await page.locator('.ghost-text-decoration, .ghost-text').allTextContents()).join('');
			// this completion selected its cache afresh (the request after Tab may keep it: see inspector())
			this.shownSnapshot = this.state()?.snapshot;
			return ghost.length > 0;
		}, { timeoutMs: 120000, intervalMs: 100, what: 'ghost text at src/main.ts 10:32' });
		const shot = await this.shot('03-ghost-text');
		assert.match(ghost.trim(), /^4817/, `ghost text "${ghost}" should begin with 4817`);
		await key(page, 'Tab');
		await key(page, 'Control+S');
		const line = await waitFor(() => {
			const text = fs.readFileSync(path.join(this.workspace, 'src', 'main.ts'), 'utf8').split('\n')[9] ?? '';
			return text.includes('4817') ? text : false;
		}, { timeoutMs: 15000, what: 'the accepted completion on disk' });
		await this.shot('04-accepted');
		return `ghost text "${ghost.trim()}" on Alt+\\, accepted with Tab, on disk: "${line.trim()}"; ${shot}`;
	}

	inspectorFrame() {
		return this.page.frameLocator('iframe.webview').last().frameLocator('iframe#active-frame');
	}

	async inspector() {
		this.requireSidecar();
		await waitFor(() => this.state()?.snapshot, { timeoutMs: 30000, what: 'a repokv/cache/didChange push after the completion' });
		await this.command('repokv: Show Cache Inspector');
		const frame = this.inspectorFrame();
		await frame.locator('canvas.layers[data-draw-ms]').waitFor({ timeout: 30000 });
		// A completion that ends while the panel opens (the automatic trigger after Tab) pushes a newer snapshot: the
		// numbers are compared with the push whose sequence the panel shows.
		const snapshot = await waitFor(async () => {
			const shownSequence = Number(await frame.locator('.meta').getAttribute('data-sequence'));
			const latest = this.state()?.snapshot;
			return latest?.sequence === shownSequence ? latest : false;
		}, { timeoutMs: 30000, what: 'the panel to show the last pushed snapshot' });
		const shown = await frame.locator('[data-metric=contextTokens] .value').textContent();
		const expected = snapshot.totals.contextTokens.toLocaleString('en-US');
		assert.equal(shown, expected, 'the inspector shows the last completion\'s context tokens');
		const latency = await frame.locator('#latency-text').textContent();
		// Default settings (settings.json sets no repokv.*): the compressed engine, seen in the editor (issue 14 §7).
		assert.equal(snapshot.engine, 'native', 'the default engine is the native one');
		assert.equal(snapshot.source, 'engineStats', "the real engine's per-layer, per-head tiers, not modelShape");
		assert.equal(await frame.locator('.meta').getAttribute('data-source'), 'engineStats');
		const heads = snapshot.layers.flatMap((layer) => layer.heads);
		assert.ok(heads.length > 0 && heads.every((head) => head.tiers.kivi4.tokens > 0 && head.tiers.onebit.tokens > 0), 'mixed kivi4 and onebit tiers in every head');
		// the legend names every tier the engine has, by the engine's names (protocol storageTiers), plus dropped
		const legend = await frame.locator('.legend').first().textContent();
		for (const tier of ['f16', 'q8', 'kivi4', 'kivi2', 'onebit', 'dropped']) assert.ok(legend.includes(tier), `legend ${legend} lacks ${tier}`);
		const shownMs = (name) => {
			const match = new RegExp(`${name} ([\\d.]+) (ms|s)\\b`).exec(latency);
			return match === null ? 0 : Number(match[1]) * (match[2] === 's' ? 1000 : 1);
		};
		if (snapshot.latency.selection === 'kept') {
			// The automatic trigger right after Tab types along with the accepted completion, so it keeps that
			// completion's selection (no draft or scoring: docs/kv-policies.md); the panel says so, and the Alt+\
			// completion before it, which selected afresh, pushed real times.
			assert.match(latency, /selection kept from the previous request/);
			const fresh = this.shownSnapshot;
			assert.ok(fresh !== undefined && fresh.latency.selection !== 'kept' && fresh.latency.draftMs > 0 && fresh.latency.scoringMs > 0, `real draft and scoring times in the Alt+\\ completion's snapshot: ${JSON.stringify(fresh?.latency)}`);
		} else {
			assert.ok(snapshot.latency.draftMs > 0 && snapshot.latency.scoringMs > 0, `real draft and scoring times: ${JSON.stringify(snapshot.latency)}`);
			assert.ok(shownMs('draft') > 0 && shownMs('scoring') > 0, `the panel shows them: ${latency}`);
		}
		const rule = (await frame.locator('#budget-rule').textContent()).trim();
		assert.equal(snapshot.budget.policy, 'speckv+mixed');
		assert.equal(snapshot.budget.allocation, 'uniform', 'the split SpecKV used');
		assert.match(rule, /policy speckv\+mixed · allocation uniform · budget 12 % of fp16 · precision mixed/);
		const shot = await this.shot('05-inspector');
		// Live update: another completion (end of the file) pushes repokv/cache/didChange into the open panel.
		await key(this.page, 'Control+1');
		await key(this.page, 'Control+End');
		let live = 'no';
		await waitFor(async () => {
			await key(this.page, 'Alt+Backslash');
			const sequence = Number(await frame.locator('.meta').getAttribute('data-sequence', { timeout: 5000 }).catch(() => '0'));
			live = `#${snapshot.sequence} → #${sequence}`;
			return sequence > snapshot.sequence;
		}, { timeoutMs: 60000, intervalMs: 3000, what: `the open inspector to update after another completion (still ${live})` });
		await key(this.page, 'Escape');
		await this.shot('05b-inspector-live-update');
		return `inspector shows ${shown} context tokens (= last completion's snapshot #${snapshot.sequence}), source ${snapshot.source}; ${latency.trim().slice(0, 90)}; budget rule "${rule}"; live update ${live}; ${shot}`;
	}

	async ask() {
		this.requireSidecar();
		const { page } = this;
		await this.command('View: Close All Editors');
		await this.command('repokv: Ask the Repository');
		const input = page.locator('.quick-input-widget input');
		await input.waitFor({ state: 'visible' });
		await input.fill('Where is RETRY_LIMIT_MS defined?');
		await key(page, 'Enter');
		const frame = this.inspectorFrame();
		const citation = frame.locator('a.citation').first();
		await citation.waitFor({ timeout: 120000 });
		await frame.locator('p.muted').waitFor({ timeout: 180000 });
		const answer = (await frame.locator('#answer').textContent()).trim();
		const citations = await frame.locator('a.citation').allTextContents();
		const shot = await this.shot('06-ask');
		assert.ok(citations.some((text) => text.startsWith('src/config.ts:')), `a citation of src/config.ts among ${citations.join(', ')}`);
		await frame.locator('a.citation', { hasText: 'src/config.ts:' }).first().click();
		await page.locator('.tab.active', { hasText: 'config.ts' }).waitFor({ timeout: 15000 });
		await this.shot('07-citation-opened');
		return `answer "${answer.slice(0, 80)}", citations ${citations.slice(0, 3).join(', ')}; clicking one opened config.ts; ${shot}`;
	}
}
