// repokv's gitignore matching (sidecar/src/workspace/ignore-rules.ts: the `ignore` package per folder, stacked so a
// deeper .gitignore overrides its parents) against git itself, on the cases of git's gitignore documentation and its
// t0008-ignores tests: anchoring, directory-only patterns, `**`, negation and the "cannot re-include below an
// excluded folder" rule, escapes, trailing spaces, character classes, nested .gitignore files, case sensitivity.
// Each case builds a small repository; git's answer (`git ls-files --others --exclude-standard`, core.ignoreCase
// false as on Linux) must equal the files readWorkspace keeps. Skipped without git.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

import { sidecar, tempFolder } from '../support/sidecar.mjs';

const hasGit = spawnSync('git', ['--version']).status === 0;

/** name → { ignore files by path, other files }. */
const cases = {
	'glob and negation': { '.gitignore': '*.o\n!keep.o\n', files: ['a.o', 'keep.o', 'src/b.o', 'src/keep.o', 'src/c.c'] },
	'anchored vs anywhere': { '.gitignore': '/top.txt\nany.txt\n', files: ['top.txt', 'sub/top.txt', 'any.txt', 'sub/any.txt'] },
	'slash in the middle anchors': { '.gitignore': 'doc/frotz\n', files: ['doc/frotz', 'a/doc/frotz', 'doc/other'] },
	'directory-only pattern': { '.gitignore': 'build/\nfrotz/\n', files: ['build/out.js', 'src/build/out.js', 'frotz', 'x/frotz/y.txt'] },
	'foo/* is one level, foo/** all': { '.gitignore': 'one/*\nall/**\n!one/keep/\n', files: ['one/a.txt', 'one/keep/b.txt', 'one/deep/c.txt', 'all/a.txt', 'all/deep/b.txt', 'one.txt'] },
	'leading and middle **': { '.gitignore': '**/logs\n**/cache/tmp\na/**/b\n', files: ['logs/x', 'deep/logs/y', 'cache/tmp/z', 'q/cache/tmp/z', 'a/b', 'a/x/b', 'a/x/y/b', 'a/c', 'b'] },
	'cannot re-include below an excluded folder': { '.gitignore': 'dir/\n!dir/keep.txt\n', files: ['dir/keep.txt', 'dir/other.txt', 'keep.txt'] },
	'the documented /* !/foo /foo/* !/foo/bar': { '.gitignore': '/*\n!/foo\n/foo/*\n!/foo/bar\n', files: ['foo/bar/x.txt', 'foo/baz/y.txt', 'foo/z.txt', 'other/w.txt', 'root.txt'] },
	'comments, escapes, trailing spaces': { '.gitignore': '# comment\n\\#hash\n\\!bang\ntrail   \nkept\\ \n\n', files: ['#hash', '!bang', 'trail', '# comment', 'kept ', 'kept'] },
	'character classes and ?': { '.gitignore': 'file[0-2].txt\nx?.md\n[ab]y.js\n', files: ['file0.txt', 'file2.txt', 'file3.txt', 'xa.md', 'xab.md', 'ay.js', 'cy.js'] },
	// The one disagreement left: git's wildmatch negates a bracket expression (`[!a]`, `[^a]`); the `ignore` package
	// (7.0.5) escapes the `!`/`^` and reads `[!a]` as "`!` or `a`", so `[!a]z.js` leaves out `az.js` and keeps `bz.js`,
	// the opposite of git. Negated classes are rare in real ignore files. Recorded here, so that the day the package
	// matches git this case fails and the record goes.
	'negated character class [!a] (known difference: the ignore package reads it as a set)': { '.gitignore': '[!a]z.js\n', files: ['az.js', 'bz.js'], known: { gitKeeps: ['az.js'], repokvKeeps: ['bz.js'] } },
	'nested .gitignore re-includes and anchors': {
		'.gitignore': '*.log\n/gen\n',
		'sub/.gitignore': '!*.log\n/local\n',
		files: ['a.log', 'sub/b.log', 'sub/deep/c.log', 'gen/x.ts', 'sub/gen/y.ts', 'sub/local/z.ts', 'local/w.ts'],
	},
	'nested rule does not reach above its folder': { 'sub/.gitignore': 'only.txt\n/anchored.txt\n', files: ['only.txt', 'sub/only.txt', 'sub/x/only.txt', 'anchored.txt', 'sub/anchored.txt', 'sub/x/anchored.txt'] },
	'case sensitivity (core.ignoreCase false)': { '.gitignore': '*.log\nBuild/\n', files: ['a.log', 'B.LOG', 'Build/x.ts', 'build/y.ts'] },
	'a pattern for a file does not match a folder of that name only with a slash': { '.gitignore': 'name\nfolder/\n', files: ['name/inner.txt', 'x/name', 'folder', 'y/folder/z.txt'] },
};

for (const [name, spec] of Object.entries(cases)) {
	test(`gitignore as git does it: ${name}`, { skip: hasGit ? false : 'SKIPPED: git is not installed' }, async (t) => {
		const root = await tempFolder(t, 'repokv-ignore-');
		const write = async (relative, text) => {
			await mkdir(path.dirname(path.join(root, relative)), { recursive: true });
			await writeFile(path.join(root, relative), text);
		};
		for (const [file, text] of Object.entries(spec)) {
			if (file !== 'files' && file !== 'known') {
				await write(file, text);
			}
		}
		for (const file of spec.files) {
			await write(file, `// ${file}\n`);
		}
		const git = (...args) => spawnSync('git', ['-c', 'core.ignoreCase=false', '-c', 'core.excludesFile=/dev/null', ...args], { cwd: root, encoding: 'utf8' });
		assert.equal(git('init', '-q').status, 0);
		const listed = git('ls-files', '--others', '--exclude-standard', '-z');
		assert.equal(listed.status, 0, listed.stderr);
		const byGit = listed.stdout.split('\0').filter((entry) => entry !== '');
		const expected = spec.known === undefined ? byGit.sort() : [...byGit.filter((entry) => !spec.known.gitKeeps.includes(entry)), ...spec.known.repokvKeeps].sort();
		if (spec.known !== undefined) {
			for (const entry of spec.known.gitKeeps) {
				assert.ok(byGit.includes(entry), `git keeps ${entry}`);
			}
		}
		const snapshot = await sidecar.readWorkspace(root);
		const actual = snapshot.files.map((file) => file.path).sort();
		assert.deepEqual(actual, expected);
	});
}
