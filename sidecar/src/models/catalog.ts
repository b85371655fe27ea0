import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';

import { errorMessage } from '../errors';
import { bundledModelPath } from './bundled';
import { vocabularyFingerprint, type VocabularyFingerprint } from './pairing';
import { defaultModelsFolder, localPresetFile, modelPresets, type ModelPreset, type PresetFile } from './presets';

// What models this machine has and which of them pair: the presets (and whether they are downloaded), the bundled
// models, and the GGUF files in node-llama-cpp's models folder, the download folder and any folder named. Files with
// the same vocabulary fingerprint (pairing.ts) can serve as each other's SpecKV draft; the smallest is the natural
// draft for the others. Only GGUF headers are read.

export type ModelSource = 'bundled' | 'models-folder' | 'download-folder' | 'folder';

export interface CatalogModel {
	readonly path: string;
	readonly source: ModelSource;
	readonly sizeBytes: number;
	readonly architecture?: string;
	readonly name?: string;
	readonly layers?: number;
	readonly contextLength?: number;
	readonly vocabulary?: VocabularyFingerprint;
	/** Why the file could not be read as a model. */
	readonly error?: string;
}

export interface CatalogPreset {
	readonly preset: ModelPreset;
	/** Local paths of the files already downloaded. */
	readonly target?: string;
	readonly draft?: string;
}

/** A group of files sharing one vocabulary: `draft` (the smallest) pairs with each of `targets`. */
export interface CompatibleGroup {
	readonly vocabularyHash: string;
	readonly tokenCount: number;
	readonly draft: string;
	readonly targets: readonly string[];
}

export interface ModelCatalog {
	readonly downloadFolder: string;
	readonly presets: readonly CatalogPreset[];
	readonly models: readonly CatalogModel[];
	readonly compatible: readonly CompatibleGroup[];
}

export interface CatalogOptions {
	/** Where presets are downloaded (default node-llama-cpp's models folder). */
	readonly downloadFolder?: string;
	/** More folders to list GGUF files from (their files and their subfolders' files). */
	readonly folders?: readonly string[];
	/** Leave the presets out (no lookup of their downloads). */
	readonly skipPresets?: boolean;
}

export async function buildModelCatalog(options: CatalogOptions = {}): Promise<ModelCatalog> {
	const modelsFolder = defaultModelsFolder();
	const downloadFolder = path.resolve(options.downloadFolder ?? modelsFolder);
	const presets = await Promise.all(
		(options.skipPresets === true ? [] : modelPresets).map(async (preset) => {
			const [target, draft] = await Promise.all([localPresetFile(preset.target, downloadFolder), localPresetFile(preset.draft, downloadFolder)]);
			return { preset, ...(target === undefined ? {} : { target }), ...(draft === undefined ? {} : { draft }) };
		}),
	);

	const candidates: { path: string; source: ModelSource }[] = [];
	for (const role of ['target', 'draft'] as const) {
		const file = bundledModelPath(role);
		if (existsSync(file)) candidates.push({ path: file, source: 'bundled' });
	}
	const folders: [string, ModelSource][] = [[modelsFolder, 'models-folder'], [downloadFolder, 'download-folder'], ...(options.folders ?? []).map((f): [string, ModelSource] => [path.resolve(f), 'folder'])];
	for (const [folder, source] of folders) {
		for (const file of await ggufFilesIn(folder)) candidates.push({ path: file, source });
	}
	// A file reached twice (the download folder is the models folder, a folder named twice) is listed once.
	const seen = new Set<string>();
	const unique = candidates.filter((c) => (seen.has(c.path) ? false : (seen.add(c.path), true)));
	const models: CatalogModel[] = [];
	for (const candidate of unique) models.push(await describeModel(candidate.path, candidate.source));
	return { downloadFolder, presets, models, compatible: compatibleGroups(models) };
}

/** GGUF files directly in `folder` and one level below (node-llama-cpp and most tools keep models flat). */
async function ggufFilesIn(folder: string): Promise<string[]> {
	const found: string[] = [];
	const visit = async (dir: string, depth: number): Promise<void> => {
		let entries;
		try {
			entries = await readdir(dir, { withFileTypes: true });
		} catch {
			return; // a folder that does not exist (yet) has no models
		}
		for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
			const full = path.join(dir, entry.name);
			if (entry.isDirectory() && depth > 0) await visit(full, depth - 1);
			else if (entry.isFile() && /\.gguf$/i.test(entry.name)) found.push(full);
		}
	};
	await visit(folder, 1);
	return found;
}

async function describeModel(file: string, source: ModelSource): Promise<CatalogModel> {
	const sizeBytes = (await stat(file)).size;
	try {
		const { readGgufFileInfo } = await import('node-llama-cpp');
		const info = await readGgufFileInfo(file, { readTensorInfo: false });
		const metadata = info.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
		const architecture = stringField(metadata['general']?.['architecture']);
		const arch = architecture === undefined ? undefined : metadata[architecture];
		const name = stringField(metadata['general']?.['name']);
		const layers = numberField(arch?.['block_count']);
		const contextLength = numberField(arch?.['context_length']);
		return {
			path: file,
			source,
			sizeBytes,
			...(architecture === undefined ? {} : { architecture }),
			...(name === undefined ? {} : { name }),
			...(layers === undefined ? {} : { layers }),
			...(contextLength === undefined ? {} : { contextLength }),
			vocabulary: await vocabularyFingerprint(file),
		};
	} catch (error) {
		return { path: file, source, sizeBytes, error: errorMessage(error) };
	}
}

/** Files grouped by vocabulary; groups of one file pair with nothing and are left out. */
export function compatibleGroups(models: readonly CatalogModel[]): CompatibleGroup[] {
	const groups = new Map<string, CatalogModel[]>();
	for (const model of models) {
		const v = model.vocabulary;
		if (v === undefined) continue;
		const key = `${v.tokenizerModel}\0${v.tokenCount}\0${v.hash}`;
		groups.set(key, [...(groups.get(key) ?? []), model]);
	}
	const result: CompatibleGroup[] = [];
	for (const members of groups.values()) {
		if (members.length < 2) continue;
		// The smallest file is the cheapest draft; among equal sizes, fewer layers.
		const bySize = [...members].sort((a, b) => a.sizeBytes - b.sizeBytes || (a.layers ?? 0) - (b.layers ?? 0));
		const [draft, ...targets] = bySize;
		if (draft?.vocabulary === undefined) continue;
		result.push({ vocabularyHash: draft.vocabulary.hash, tokenCount: draft.vocabulary.tokenCount, draft: draft.path, targets: targets.map((t) => t.path) });
	}
	return result;
}

/** A preset file as one line: its URI, quantization and size. */
export function describePresetFile(file: PresetFile): string {
	return `${file.uri} (${file.quantization}, about ${formatBytes(file.approxBytes)})`;
}

export function formatBytes(bytes: number): string {
	if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
	if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
	return `${(bytes / 1e3).toFixed(1)} kB`;
}

function stringField(value: unknown): string | undefined {
	return typeof value === 'string' ? value : undefined;
}

function numberField(value: unknown): number | undefined {
	return typeof value === 'number' ? value : undefined;
}

/**
 * A local draft for `targetPath`: the smallest GGUF file, smaller than the target, with the target's vocabulary,
 * among the bundled models, node-llama-cpp's models folder, the download folder, the target's own folder and
 * `folders`. For a user who brings a Qwen2.5-Coder target and has its 0.5B next to it (or downloaded a preset),
 * SpecKV then needs no draft setting. Undefined when there is none.
 */
export async function findPairedDraft(targetPath: string, options: CatalogOptions = {}): Promise<string | undefined> {
	const target = path.resolve(targetPath);
	const [targetVocabulary, targetSize] = await Promise.all([vocabularyFingerprint(target), stat(target).then((s) => s.size)]);
	const catalog = await buildModelCatalog({ ...options, folders: [path.dirname(target), ...(options.folders ?? [])], skipPresets: true });
	const candidates = catalog.models
		.filter((m) => m.path !== target && m.sizeBytes < targetSize && m.vocabulary !== undefined)
		.filter((m) => m.vocabulary?.hash === targetVocabulary.hash && m.vocabulary.tokenCount === targetVocabulary.tokenCount && m.vocabulary.tokenizerModel === targetVocabulary.tokenizerModel)
		.sort((a, b) => a.sizeBytes - b.sizeBytes);
	return candidates[0]?.path;
}
