import * as path from 'node:path';

import { buildModelCatalog, describePresetFile, formatBytes, type ModelCatalog } from '../models/catalog';
import { defaultModelsFolder, downloadPreset, presetById } from '../models/presets';
import { integerOption, parseCommandArgs } from './args';
import type { Command } from './command';

const defaultTimeoutSeconds = 6 * 3600;

const usage = `usage: repokv models [--json] [--folder DIR]... [--download-folder DIR]
       repokv models --download PRESET [--download-folder DIR] [--timeout SECONDS] [--json]

Lists the model presets (a target and its SpecKV draft, downloadable), the bundled models and the GGUF files in
node-llama-cpp's models folder (${defaultModelsFolder()}), the download folder and each --folder, and says which of
them can pair (the same vocabulary: a draft for SpecKV).

  --json                 print one JSON object
  --folder DIR           also list the GGUF files in DIR (and its subfolders); may be repeated
  --download PRESET      download the preset's target and draft (with progress on stderr), check that they pair,
                         and print both paths
  --download-folder DIR  where presets are downloaded (default: node-llama-cpp's models folder)
  --timeout SECONDS      give up a download after this long (default ${defaultTimeoutSeconds})`;

export const modelsCommand: Command = {
	summary: 'list model presets, bundled and local models, and which pair; download a preset',
	usage,
	async run(argv) {
		const { values } = parseCommandArgs(argv, {
			json: { type: 'boolean' },
			folder: { type: 'string', multiple: true },
			download: { type: 'string' },
			'download-folder': { type: 'string' },
			timeout: { type: 'string' },
			help: { type: 'boolean', short: 'h' },
		});
		if (values.help === true) {
			console.log(usage);
			return 0;
		}
		const timeoutSeconds = integerOption(values.timeout, 'timeout', 1) ?? defaultTimeoutSeconds;
		const downloadFolder = values['download-folder'] === undefined ? undefined : path.resolve(values['download-folder']);
		if (values.download !== undefined) {
			const preset = presetById(values.download);
			const progress = progressPrinter();
			const files = await downloadPreset(preset, {
				...(downloadFolder === undefined ? {} : { downloadFolder }),
				timeoutMs: timeoutSeconds * 1000,
				onProgress: progress,
			});
			progress.done();
			if (values.json === true) {
				console.log(JSON.stringify({ preset: preset.id, target: files.target, draft: files.draft }, null, 2));
			} else {
				console.log(`preset ${preset.id}: downloaded, and the draft pairs with the target`);
				console.log(`  target  ${files.target}`);
				console.log(`  draft   ${files.draft}`);
				console.log(`use it:   repokv complete --model ${quote(files.target)} --draft ${quote(files.draft)} ...`);
				console.log(`          or the settings repokv.model.target / repokv.model.draft`);
			}
			return 0;
		}
		const catalog = await buildModelCatalog({ ...(downloadFolder === undefined ? {} : { downloadFolder }), folders: values.folder ?? [] });
		console.log(values.json === true ? JSON.stringify(catalogJson(catalog), null, 2) : catalogText(catalog));
		return 0;
	},
};

/** Progress on stderr: one line per file per 10 %, so a log stays readable (no carriage-return animation). */
function progressPrinter(): ((role: 'target' | 'draft', done: number, total: number) => void) & { done(): void } {
	const lastStep = new Map<string, number>();
	const print = (role: 'target' | 'draft', done: number, total: number): void => {
		const step = total > 0 ? Math.floor((10 * done) / total) : 0;
		if (lastStep.get(role) === step) return;
		lastStep.set(role, step);
		const percent = total > 0 ? ` ${Math.floor((100 * done) / total)} %` : '';
		console.error(`downloading ${role}:${percent} (${formatBytes(done)} of ${total > 0 ? formatBytes(total) : 'unknown size'})`);
	};
	return Object.assign(print, {
		done: (): void => {
			lastStep.clear();
		},
	});
}

function quote(file: string): string {
	return /^[\w./+-]+$/.test(file) ? file : `'${file.replace(/'/g, `'\\''`)}'`;
}

function catalogJson(catalog: ModelCatalog): unknown {
	return {
		downloadFolder: catalog.downloadFolder,
		presets: catalog.presets.map(({ preset, target, draft }) => ({
			id: preset.id,
			description: preset.description,
			contextLength: preset.contextLength,
			target: { ...preset.target, ...(target === undefined ? {} : { local: target }) },
			draft: { ...preset.draft, ...(draft === undefined ? {} : { local: draft }) },
			downloaded: target !== undefined && draft !== undefined,
		})),
		models: catalog.models,
		compatible: catalog.compatible,
	};
}

function catalogText(catalog: ModelCatalog): string {
	const lines: string[] = [];
	lines.push(`presets (repokv models --download ID; into ${catalog.downloadFolder})`);
	for (const { preset, target, draft } of catalog.presets) {
		lines.push(`  ${preset.id.padEnd(24)}${preset.description}`);
		lines.push(`      target  ${describePresetFile(preset.target)}${target === undefined ? '' : `\n              downloaded: ${target}`}`);
		lines.push(`      draft   ${describePresetFile(preset.draft)}${draft === undefined ? '' : `\n              downloaded: ${draft}`}`);
	}
	lines.push('', 'models on this machine');
	if (catalog.models.length === 0) lines.push('  (none)');
	for (const model of catalog.models) {
		const what = model.error !== undefined
			? `unreadable: ${model.error}`
			: `${model.architecture ?? '?'}, ${model.layers ?? '?'} layers, context ${model.contextLength ?? '?'}, ${model.vocabulary?.tokenCount ?? '?'} tokens (vocabulary ${model.vocabulary?.hash.slice(0, 12) ?? '?'})`;
		lines.push(`  [${model.source}] ${model.path}`);
		lines.push(`      ${formatBytes(model.sizeBytes)}, ${what}`);
	}
	lines.push('', 'pairs (same vocabulary: the draft can serve SpecKV for each target)');
	if (catalog.compatible.length === 0) lines.push('  (none: no two local files share a vocabulary)');
	for (const group of catalog.compatible) {
		lines.push(`  vocabulary ${group.vocabularyHash.slice(0, 12)} (${group.tokenCount} tokens): draft ${group.draft}`);
		for (const target of group.targets) lines.push(`      target ${target}`);
	}
	return lines.join('\n');
}
