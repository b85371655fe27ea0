// The extension's workspace feed (extension/src/feed.ts, under the vscode stub) against the sidecar's limits: it
// looks at every file of the workspace, not only the first 20,000 `findFiles` returns, and stops sending at the total
// the user set (`repokv.workspace.maxTotalMB`, sent to the sidecar as `limits.maxTotalBytes`), not at the default.
import assert from 'node:assert/strict';
import { mkdtempSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import * as esbuild from 'esbuild';

import { feedConfig, loadFeed, stubPath } from '../fuzz/support/feed-bundle.mjs';
import { repoRoot } from '../support/sidecar.mjs';
import { tempFolder } from '../support/sidecar.mjs';

const { WorkspaceFeed, vscode } = await loadFeed();

/** Runs one full scan of `root` with `config`; returns the files sent and the feed's stats. */
async function scan(root, config) {
	const sent = [];
	const feed = new WorkspaceFeed(vscode.Uri.file(root), config, async (params) => {
		sent.push(...(params.changed ?? []));
	}, vscode.logChannel());
	try {
		await feed.rescan();
		return { sent, stats: feed.stats };
	} finally {
		feed.dispose();
	}
}

/** extension/src/config.ts bundled against the vscode stub (its `toServerSettings` is what the sidecar is sent). */
async function loadConfig() {
	const out = path.join(mkdtempSync(path.join(tmpdir(), 'repokv-config-')), 'config.mjs');
	await esbuild.build({
		entryPoints: [path.join(repoRoot, 'extension/src/config.ts')],
		outfile: out,
		bundle: true,
		platform: 'node',
		format: 'esm',
		target: 'node20',
		logLevel: 'warning',
		plugins: [{ name: 'vscode-stub', setup: (build) => build.onResolve({ filter: /^vscode$/ }, () => ({ path: stubPath, external: true })) }],
	});
	return import(pathToFileURL(out).href);
}

describe('workspace feed limits', () => {
	test('repokv.workspace.maxTotalMB reaches the sidecar as limits.maxTotalBytes', async () => {
		const { toServerSettings } = await loadConfig();
		const config = { ...feedConfig(512, 3), kv: { policy: 'speckv', budgetPercent: 12, split: 'default', precision: 'mixed', draftLayout: 'prefix-last', masterPrecision: 'kivi4' } };
		assert.deepEqual(toServerSettings(config).limits, { maxFileBytes: 512 * 1024, maxTotalBytes: 3 * 1024 * 1024 });
	});

	test('files after the first 20,000 found are looked at: ignored ones found first do not hide the rest', async (t) => {
		const root = await tempFolder(t, 'repokv-feed-many-');
		// 21,000 files in one folder, in the order the disk lists them: 15,000 ignored logs and 6,000 sources. With a
		// 20,000-file `findFiles` limit about 1 in 21 files is never found, so some 300 sources would be missing.
		await fs.writeFile(path.join(root, '.gitignore'), '*.log\n');
		const folder = path.join(root, 'src');
		await fs.mkdir(folder);
		const writes = [];
		for (let index = 0; index < 15_000; index++) writes.push([`trace-${index}.log`, 'x']);
		for (let index = 0; index < 6_000; index++) writes.push([`m${index}.ts`, `export const V${index} = ${index};\n`]);
		for (let start = 0; start < writes.length; start += 500) {
			await Promise.all(writes.slice(start, start + 500).map(([name, text]) => fs.writeFile(path.join(folder, name), text)));
		}
		const { sent, stats } = await scan(root, feedConfig());
		assert.equal(sent.filter((file) => file.path.endsWith('.ts')).length, 6_000, `every source sent; stats ${JSON.stringify(stats)}`);
		assert.equal(stats.skipped.ignored, 15_000);
		assert.equal(stats.files, 6_001, 'the sources and the .gitignore');
	});

	test('the feed stops at repokv.workspace.maxTotalMB, whatever it is set to', async (t) => {
		const root = await tempFolder(t, 'repokv-feed-total-');
		// 48 files of 100 KiB (4.7 MiB): all of them under the default 16 MiB, 10 under 1 MiB, 30 under 3 MiB.
		for (let index = 0; index < 48; index++) {
			await fs.writeFile(path.join(root, `f${index}.txt`), `${String(index).padStart(4, '0')}${'a'.repeat(100 * 1024 - 4)}`);
		}
		const all = await scan(root, feedConfig(1024));
		assert.equal(all.sent.length, 48);
		assert.equal(all.stats.skipped.overTotal, undefined);
		for (const [maxTotalMB, fits] of [[1, 10], [3, 30]]) {
			const { sent, stats } = await scan(root, feedConfig(1024, maxTotalMB));
			assert.equal(sent.length, fits, `${maxTotalMB} MiB holds ${fits} files of 100 KiB`);
			assert.ok(stats.bytes <= maxTotalMB * 1024 * 1024, 'never more than the sidecar keeps');
			assert.equal(stats.skipped.overTotal, 48 - fits, 'the rest counted as over the total');
		}
	});
});
