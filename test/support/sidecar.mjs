// Shared helpers for the tests. Tests import the built bundle (dist/sidecar.mjs), not the TypeScript sources:
// they run on plain Node and check what ships. `npm test` builds before testing.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importSidecar, sidecarBundlePath } from './bundles.mjs';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bundlePath = sidecarBundlePath;
export const cliPath = path.join(repoRoot, 'bin', 'repokv.js');
export const needleWorkspace = path.join(repoRoot, 'test', 'fixtures', 'workspace-needle');
// The bundled models. The environment variables point the model tests at other files while models are being
// (re)trained; `npm test` itself always tests the bundled ones.
export const targetModelPath = path.resolve(repoRoot, process.env.REPOKV_TEST_TARGET ?? 'models/target.gguf');
export const draftModelPath = path.resolve(repoRoot, process.env.REPOKV_TEST_DRAFT ?? 'models/draft.gguf');

if (!existsSync(bundlePath)) {
	throw new Error(`${bundlePath} is missing: run \`npm run build\` (npm test does it) before the tests`);
}

/** The sidecar bundle's exports (see sidecar/src/api.ts). */
export const sidecar = await importSidecar();

/** A fresh temporary folder, removed when the test ends. */
export async function tempFolder(t, prefix = 'repokv-test-') {
	const folder = await mkdtemp(path.join(tmpdir(), prefix));
	t.after(() => rm(folder, { recursive: true, force: true }));
	return folder;
}

/**
 * A stand-in tokenizer for unit tests that need no model: each special token text is one token, and the text
 * between special tokens one token per 4 characters (rounded up). Like llama.cpp's tokenizer it splits at special
 * tokens first, so counts add up over pieces that start with one, and it is monotone in the text.
 */
export function fakeCounter(special = sidecar.defaultSpecialTokenTexts) {
	const texts = [special.fimPrefix, special.fimSuffix, special.fimMiddle, special.fileSeparator, special.endOfText];
	const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
	const splitter = new RegExp(texts.map(escape).join('|'), 'g');
	return {
		countTokens(text) {
			const segments = text.split(splitter);
			return segments.length - 1 + segments.reduce((sum, segment) => sum + Math.ceil(segment.length / 4), 0);
		},
	};
}
