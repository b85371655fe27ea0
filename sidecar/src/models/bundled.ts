import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

// Where the bundled models live. They ship inside the package (`models/target.gguf`, `models/draft.gguf`), so they
// are found relative to the package root, not the current folder: the sidecar runs from `dist/` in a checkout, from
// an installed extension's folder in VS Code, and via `npx repokv` from anywhere.

export type BundledModelRole = 'target' | 'draft';

const bundledFileNames: Record<BundledModelRole, string> = {
	target: 'models/target.gguf',
	draft: 'models/draft.gguf',
};

let cachedRoot: string | undefined;

/**
 * The repokv package root: the nearest folder above this module whose package.json is named `repokv`. Searching
 * (rather than assuming `..`) keeps this correct both for the bundle in `dist/` and for sources run directly.
 */
export function packageRoot(): string {
	if (cachedRoot !== undefined) {
		return cachedRoot;
	}
	let folder = path.dirname(fileURLToPath(import.meta.url));
	for (;;) {
		const manifest = path.join(folder, 'package.json');
		if (existsSync(manifest) && isRepokvManifest(manifest)) {
			cachedRoot = folder;
			return folder;
		}
		const parent = path.dirname(folder);
		if (parent === folder) {
			throw new Error(`cannot find the repokv package root above ${fileURLToPath(import.meta.url)}`);
		}
		folder = parent;
	}
}

/** Absolute path of a bundled model (which may not exist yet in a fresh checkout). */
export function bundledModelPath(role: BundledModelRole): string {
	return path.join(packageRoot(), bundledFileNames[role]);
}

function isRepokvManifest(file: string): boolean {
	try {
		const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
		return typeof parsed === 'object' && parsed !== null && 'name' in parsed && parsed.name === 'repokv';
	} catch {
		return false;
	}
}
