import type { PromptFile } from './builder';
import { inSameFolder, resolveImports } from './neighbours';

// The language server's file order for the repository block (docs/architecture.md, "Prompt layout"), built for KV
// prefix reuse: files that change least come first, so consecutive prompts share the longest possible prefix and only
// the tail is re-evaluated after an edit.
//
//   [others, least recently edited first] [same folder as the active file] [files the active file imports]
//
// Within the first two groups the order is (edit clock, modification time, path): a file edited in this session
// moves towards the end, and nothing before it changes. The active file's neighbours sit closest to the cursor,
// where a small model attends most reliably.

/** A prompt file with the edit metadata the order uses; both fields default to 0. */
export interface EditedPromptFile extends PromptFile {
	/** Logical edit clock of the server's mirror: 0 = not edited since it was fed. */
	readonly editedAt?: number;
	readonly mtimeMs?: number;
}

export function orderStableFirst(files: readonly PromptFile[], activePath: string, activeText: string): PromptFile[] {
	const candidates = (files as readonly EditedPromptFile[]).filter((file) => file.path !== activePath);
	const byPath = new Map(candidates.map((file) => [file.path, file]));
	const imported = resolveImports(activePath, activeText, new Set(byPath.keys()));
	const importedSet = new Set(imported);
	const rest = candidates.filter((file) => !importedSet.has(file.path)).sort(leastRecentlyEditedFirst);
	const importedFiles = imported.flatMap((p) => {
		const file = byPath.get(p);
		return file === undefined ? [] : [file];
	});
	return [...rest.filter((file) => !inSameFolder(file.path, activePath)), ...rest.filter((file) => inSameFolder(file.path, activePath)), ...importedFiles];
}

function leastRecentlyEditedFirst(a: EditedPromptFile, b: EditedPromptFile): number {
	return (a.editedAt ?? 0) - (b.editedAt ?? 0) || (a.mtimeMs ?? 0) - (b.mtimeMs ?? 0) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
}
