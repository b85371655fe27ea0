import { mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import * as path from 'node:path';

import { errorMessage, UserError } from '../errors';
import { resolveModelPath } from '../server/model-files';
import { checkDraftPairing } from './pairing';

// Model presets: a target and the draft SpecKV pairs it with, as downloadable `hf:` URIs, defined once here. The
// files are those llama.cpp's own FIM presets use (`llama-server --fim-qwen-7b-spec` and friends in llama.cpp's
// common/arg.cpp; the same ggml-org repositories llama.vscode and llama.vim recommend): Qwen2.5-Coder base models at
// Q8_0, with Qwen2.5-Coder-0.5B Q8_0 as the draft (same 151,936-token vocabulary). The Q4_K_M presets use the
// official Qwen instruct GGUF repositories, the only first-party source of Q4_K_M files (instruct models complete
// FIM prompts, a little less well than the base ones).

/** One file of a preset. */
export interface PresetFile {
	/** Where it is downloaded from: an `hf:user/repo/file.gguf` URI (or, in tests, a plain http URL). */
	readonly uri: string;
	readonly quantization: string;
	/** Size of the download, roughly, to say what a pick costs before it starts. */
	readonly approxBytes: number;
}

export interface ModelPreset {
	/** What `repokv models --download ID` and the `repokv.model.preset` setting take. */
	readonly id: string;
	readonly description: string;
	readonly target: PresetFile;
	readonly draft: PresetFile;
	/** The target's trained context (`qwen2.context_length`). */
	readonly contextLength: number;
}

const draft05bQ8: PresetFile = { uri: 'hf:ggml-org/Qwen2.5-Coder-0.5B-Q8_0-GGUF/qwen2.5-coder-0.5b-q8_0.gguf', quantization: 'Q8_0', approxBytes: 531e6 };

export const modelPresets: readonly ModelPreset[] = [
	{
		id: 'qwen2.5-coder-1.5b',
		description: 'Qwen2.5-Coder 1.5B base (Q8_0) with the 0.5B draft (Q8_0): the default for a laptop CPU',
		target: { uri: 'hf:ggml-org/Qwen2.5-Coder-1.5B-Q8_0-GGUF/qwen2.5-coder-1.5b-q8_0.gguf', quantization: 'Q8_0', approxBytes: 1.65e9 },
		draft: draft05bQ8,
		contextLength: 32768,
	},
	{
		id: 'qwen2.5-coder-3b',
		description: 'Qwen2.5-Coder 3B base (Q8_0) with the 0.5B draft (Q8_0)',
		target: { uri: 'hf:ggml-org/Qwen2.5-Coder-3B-Q8_0-GGUF/qwen2.5-coder-3b-q8_0.gguf', quantization: 'Q8_0', approxBytes: 3.29e9 },
		draft: draft05bQ8,
		contextLength: 32768,
	},
	{
		id: 'qwen2.5-coder-7b',
		description: "Qwen2.5-Coder 7B base (Q8_0) with the 0.5B draft (Q8_0), as llama.cpp's --fim-qwen-7b-spec",
		target: { uri: 'hf:ggml-org/Qwen2.5-Coder-7B-Q8_0-GGUF/qwen2.5-coder-7b-q8_0.gguf', quantization: 'Q8_0', approxBytes: 8.1e9 },
		draft: draft05bQ8,
		contextLength: 32768,
	},
	{
		id: 'qwen2.5-coder-1.5b-q4',
		description: 'Qwen2.5-Coder 1.5B instruct (Q4_K_M) with the 0.5B draft (Q8_0): least memory',
		target: { uri: 'hf:Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf', quantization: 'Q4_K_M', approxBytes: 1.1e9 },
		draft: draft05bQ8,
		contextLength: 32768,
	},
	{
		id: 'qwen2.5-coder-7b-q4',
		description: 'Qwen2.5-Coder 7B instruct (Q4_K_M) with the 0.5B draft (Q8_0): 7B in under 5 GB',
		target: { uri: 'hf:Qwen/Qwen2.5-Coder-7B-Instruct-GGUF/qwen2.5-coder-7b-instruct-q4_k_m.gguf', quantization: 'Q4_K_M', approxBytes: 4.7e9 },
		draft: draft05bQ8,
		contextLength: 32768,
	},
];

/** The preset with this id, or a usage error listing the known ones. */
export function presetById(id: string): ModelPreset {
	const preset = modelPresets.find((candidate) => candidate.id === id);
	if (preset === undefined) {
		throw new UserError(`unknown model preset '${id}'; known presets: ${modelPresets.map((p) => p.id).join(', ')}`, 2);
	}
	return preset;
}

/** node-llama-cpp's models folder, where `hf:` downloads go by default (and relative model paths resolve). */
export function defaultModelsFolder(): string {
	return path.join(homedir(), '.node-llama-cpp', 'models');
}

/** Where a preset file already is in `folder` (as node-llama-cpp names its downloads), without any network access. */
export async function localPresetFile(file: PresetFile, folder: string): Promise<string | undefined> {
	const { resolveModelFile } = await import('node-llama-cpp');
	try {
		return await resolveModelFile(file.uri, { directory: folder, download: false, cli: false });
	} catch {
		return undefined;
	}
}

export interface DownloadPresetOptions {
	/** Default: node-llama-cpp's models folder. */
	readonly downloadFolder?: string;
	/** Per file. */
	readonly timeoutMs: number;
	readonly onProgress?: (role: 'target' | 'draft', downloadedBytes: number, totalBytes: number) => void;
	readonly signal?: AbortSignal;
}

/**
 * Downloads a preset's target and draft (each once: a file already in the folder is not fetched again), then checks
 * that the draft's vocabulary is the target's. Resolves to both local paths.
 */
export async function downloadPreset(preset: ModelPreset, options: DownloadPresetOptions): Promise<{ target: string; draft: string }> {
	const downloadFolder = options.downloadFolder ?? defaultModelsFolder();
	await mkdir(downloadFolder, { recursive: true });
	const fetchOne = async (role: 'target' | 'draft'): Promise<string> => {
		try {
			return await resolveModelPath(preset[role].uri, {
				downloadFolder,
				timeoutMs: options.timeoutMs,
				onProgress: (done, total) => options.onProgress?.(role, done, total),
				...(options.signal === undefined ? {} : { signal: options.signal }),
			});
		} catch (error) {
			throw new UserError(`preset ${preset.id}: the ${role} (${preset[role].uri}) could not be downloaded: ${errorMessage(error)}`);
		}
	};
	// One after the other: two parallel downloads of one server would only share its bandwidth, and the progress
	// of one file at a time is what a person can follow.
	const target = await fetchOne('target');
	const draft = preset.draft.uri === preset.target.uri ? target : await fetchOne('draft');
	await checkDraftPairing(target, draft);
	return { target, draft };
}
