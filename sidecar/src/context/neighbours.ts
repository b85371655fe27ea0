import * as path from 'node:path';

// Which workspace files are the active file's neighbours: files in the same folder and files it imports. They go
// last in the repository block, closest to the cursor, because that is where definitions the completion needs
// usually are, and small models attend most reliably to nearby text.

/** Extensions tried, in order, when an import specifier has none (TypeScript and Node resolution). */
const resolvableExtensions = ['.ts', '.tsx', '.mts', '.cts', '.d.ts', '.js', '.jsx', '.mjs', '.cjs', '.json'];

/** Matches `from '...'`, `import '...'`, `require('...')`, `import('...')` and `export ... from '...'`. */
const specifierPattern = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)(['"])([^'"\n]+)\1/g;

/** The relative module specifiers (`./x`, `../y`) that `text` imports, in order of appearance, without repeats. */
export function relativeImportSpecifiers(text: string): string[] {
	const found = new Set<string>();
	for (const match of text.matchAll(specifierPattern)) {
		const specifier = match[2];
		if (specifier?.startsWith('./') === true || specifier?.startsWith('../') === true) {
			found.add(specifier);
		}
	}
	return [...found];
}

/**
 * Resolve the files that the file at `fromPath` imports to workspace paths among `knownPaths`. Unresolvable
 * specifiers are left out: they may be generated, ignored, or simply wrong.
 */
export function resolveImports(fromPath: string, text: string, knownPaths: ReadonlySet<string>): string[] {
	const folder = path.posix.dirname(fromPath);
	const resolved: string[] = [];
	for (const specifier of relativeImportSpecifiers(text)) {
		const base = path.posix.normalize(path.posix.join(folder, specifier));
		// ESM TypeScript imports name the emitted `.js` file; the source beside it is `.ts`.
		const withoutJs = base.replace(/\.(m|c)?js$/, '');
		const candidates = [base, ...resolvableExtensions.map((ext) => withoutJs + ext), ...resolvableExtensions.map((ext) => `${base}/index${ext}`)];
		const hit = candidates.find((candidate) => knownPaths.has(candidate));
		if (hit !== undefined && hit !== fromPath && !resolved.includes(hit)) {
			resolved.push(hit);
		}
	}
	return resolved;
}

/** Whether two workspace paths are in the same folder. */
export function inSameFolder(a: string, b: string): boolean {
	return path.posix.dirname(a) === path.posix.dirname(b);
}
