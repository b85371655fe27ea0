import ignore, { type Ignore } from 'ignore';

/** The ignore files repokv honours, in every folder of the workspace. */
export const ignoreFileNames: readonly string[] = ['.gitignore', '.repokvignore'];

/** Folders that are never read, whatever the ignore files say: huge, generated, or version-control internals. */
export const alwaysSkippedFolders: ReadonlySet<string> = new Set(['.git', 'node_modules', '.hg', '.svn']);

/** The ignore rules declared in one folder, which apply to paths below it. */
interface FolderRules {
	/** Workspace-relative folder, '' for the root, no trailing slash. */
	readonly folder: string;
	readonly matcher: Ignore;
}

/**
 * The stack of ignore rules in force while walking one folder: the rules of that folder and of all its ancestors.
 * git semantics: a deeper file's rules take precedence, so a nested `.gitignore` can re-include (`!pattern`) what
 * a parent excluded — except below an excluded folder, which the walker never enters.
 */
export class IgnoreRules {
	private constructor(private readonly levels: readonly FolderRules[]) {}

	static empty(): IgnoreRules {
		return new IgnoreRules([]);
	}

	/** Rules for a child folder that declares `patterns` (the concatenated text of its ignore files). */
	withFolder(folder: string, patterns: readonly string[]): IgnoreRules {
		if (patterns.length === 0) {
			return this;
		}
		// git matches case-sensitively where its file system does (core.ignoreCase is false on Linux): `*.log` keeps
		// `B.LOG`, and `Build/` keeps `build/`. The package ignores case by default.
		const matcher = ignore({ allowRelativePaths: true, ignorecase: caseInsensitiveFileSystem });
		for (const text of patterns) {
			matcher.add(text);
		}
		return new IgnoreRules([...this.levels, { folder, matcher }]);
	}

	/**
	 * Whether a workspace-relative path is ignored. Folders must be tested with `isFolder` so that patterns with a
	 * trailing slash (`build/`) match them.
	 */
	isIgnored(relativePath: string, isFolder: boolean): boolean {
		let ignored = false;
		for (const { folder, matcher } of this.levels) {
			const local = folder === '' ? relativePath : relativePath.slice(folder.length + 1);
			const result = matcher.test(isFolder ? `${local}/` : local);
			// Only a level that says something overrides what the levels above it decided.
			if (result.ignored) {
				ignored = true;
			} else if (result.unignored) {
				ignored = false;
			}
		}
		return ignored;
	}
}

/** git's default core.ignoreCase: true where the file system usually folds case (macOS, Windows). */
const caseInsensitiveFileSystem = process.platform === 'darwin' || process.platform === 'win32';

