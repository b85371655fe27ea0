// Bundles the extension's real workspace feed (extension/src/feed.ts) with `vscode` resolved to the stub next to
// this file, so the feed runs under plain Node: for the workspace-feed fuzz and the large-workspace load bench.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');
export const stubPath = path.join(here, 'vscode-stub.mjs');

/** Imports the feed and the stub it is bound to (the same module instance). */
export async function loadFeed() {
	const out = path.join(mkdtempSync(path.join(tmpdir(), 'repokv-feed-')), 'feed.mjs');
	await esbuild.build({
		entryPoints: [path.join(repoRoot, 'extension/src/feed.ts')],
		outfile: out,
		bundle: true,
		platform: 'node',
		format: 'esm',
		target: 'node20',
		logLevel: 'warning',
		external: ['vscode'],
		plugins: [{ name: 'vscode-stub', setup: (build) => build.onResolve({ filter: /^vscode$/ }, () => ({ path: stubPath, external: true })) }],
	});
	const feed = await import(pathToFileURL(out).href);
	const vscode = await import(pathToFileURL(stubPath).href);
	return { WorkspaceFeed: feed.WorkspaceFeed, vscode };
}

/** The extension's restart policy (extension/src/backoff.ts), bundled for plain Node. */
export async function loadBackoff() {
	const out = path.join(mkdtempSync(path.join(tmpdir(), 'repokv-backoff-')), 'backoff.mjs');
	await esbuild.build({ entryPoints: [path.join(repoRoot, 'extension/src/backoff.ts')], outfile: out, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning' });
	return import(pathToFileURL(out).href);
}

/**
 * The server's WorkspaceMirror and the workspace reader, bundled from their sources (they import nothing of the
 * engine), so the feed fuzz runs even while another part of the sidecar is mid-change.
 */
export async function loadMirror() {
	const out = path.join(mkdtempSync(path.join(tmpdir(), 'repokv-mirror-')), 'mirror.mjs');
	await esbuild.build({
		stdin: {
			contents: "export { WorkspaceMirror } from './sidecar/src/server/mirror';\nexport { readWorkspace } from './sidecar/src/workspace/reader';\n",
			resolveDir: repoRoot,
			loader: 'ts',
		},
		outfile: out,
		bundle: true,
		platform: 'node',
		format: 'esm',
		target: 'node20',
		logLevel: 'warning',
		banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
	});
	return import(pathToFileURL(out).href);
}

/** The feed's Config with a per-file limit (KiB), a total (MiB, the setting's default 16) and no extra excludes. */
export function feedConfig(maxFileKB = 1024, maxTotalMB = 16) {
	return {
		completion: { enabled: true, trigger: 'automatic', disabledLanguages: [], maxTokens: 64 },
		engine: 'llama',
		model: { target: '', draft: '' },
		threads: 1,
		contextSize: 0,
		workspace: { maxFileKB, maxTotalMB, exclude: [] },
	};
}
