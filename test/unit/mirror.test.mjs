// The server's workspace mirror: batches and deltas, limits, binary detection, ignore and secret rules enforced
// server-side, overlays of open documents, and the edit clock behind the stable-first prompt order.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { sidecar } from '../support/sidecar.mjs';

const { WorkspaceMirror, normalisePath, orderStableFirst } = sidecar;

const file = (path, text, extra = {}) => ({ path, text, ...extra });

describe('WorkspaceMirror', () => {
	test('applies batches, then deltas: change, delete, rename', () => {
		const mirror = new WorkspaceMirror();
		mirror.apply({ changed: [file('a.ts', 'a'), file('b.ts', 'b')], batch: { index: 0, count: 2 } });
		mirror.apply({ changed: [file('c.ts', 'c')], batch: { index: 1, count: 2 } });
		assert.deepEqual(mirror.files().map((f) => f.path), ['a.ts', 'b.ts', 'c.ts']);

		const change = mirror.apply({ changed: [file('a.ts', 'a2')], deleted: ['b.ts'], renamed: [{ from: 'c.ts', to: 'src/c.ts' }] });
		assert.deepEqual([...change.changed].sort(), ['a.ts', 'src/c.ts']);
		assert.deepEqual([...change.removed].sort(), ['b.ts', 'c.ts']);
		assert.deepEqual(mirror.files().map((f) => [f.path, f.text]), [['a.ts', 'a2'], ['src/c.ts', 'c']]);
		assert.equal(mirror.bytes, 3);
	});

	test('an unchanged text is not a change; a stale version is refused', () => {
		const mirror = new WorkspaceMirror();
		mirror.apply({ changed: [file('a.ts', 'one', { version: 5 })] });
		assert.deepEqual(mirror.apply({ changed: [file('a.ts', 'one', { version: 6 })] }).changed, []);
		const stale = mirror.apply({ changed: [file('a.ts', 'old', { version: 2 })] });
		assert.deepEqual(stale.skipped, [{ path: 'a.ts', reason: 'stale' }]);
		assert.equal(mirror.get('a.ts').text, 'one');
	});

	test('enforces size, binary, count and total limits', () => {
		const mirror = new WorkspaceMirror({ maxFileBytes: 10, maxTotalBytes: 15, maxFiles: 3 });
		const result = mirror.apply({
			changed: [file('big.txt', 'x'.repeat(11)), file('bin.dat', 'a\u0000b'), file('a.ts', '12345678'), file('b.ts', '12345678'), file('c.ts', '1'), file('d.ts', '1'), file('e.ts', '1')],
		});
		const reasons = Object.fromEntries(result.skipped.map((s) => [s.path, s.reason]));
		assert.equal(reasons['big.txt'], 'tooLarge');
		assert.equal(reasons['bin.dat'], 'binary');
		assert.equal(reasons['b.ts'], 'overTotal');
		assert.equal(reasons['e.ts'], 'tooMany');
		assert.deepEqual(mirror.files().map((f) => f.path), ['a.ts', 'c.ts', 'd.ts']);
		assert.equal(mirror.skipped().tooLarge, 1);
	});

	test('a 50 MB text is refused without being measured or kept', () => {
		const mirror = new WorkspaceMirror();
		const started = performance.now();
		const result = mirror.apply({ changed: [file('huge.js', 'x'.repeat(50 * 1024 * 1024))] });
		assert.deepEqual(result.skipped, [{ path: 'huge.js', reason: 'tooLarge' }]);
		assert.equal(mirror.size, 0);
		assert.ok(performance.now() - started < 200, 'refused quickly');
	});

	test('secret files and folders are refused whatever the client sends', () => {
		const mirror = new WorkspaceMirror();
		const result = mirror.apply({ changed: [file('.env', 'KEY=1'), file('keys/id_rsa', 'k'), file('.ssh/config', 'c'), file('config/credentials.json', '{}'), file('ok.ts', 'ok')] });
		assert.deepEqual(result.skipped.map((s) => s.reason), ['secret', 'secret', 'secret', 'secret']);
		assert.deepEqual(mirror.files().map((f) => f.path), ['ok.ts']);
	});

	test('ignore files in the feed apply to the batch they arrive in, later files, and earlier ones', () => {
		const mirror = new WorkspaceMirror();
		mirror.apply({ changed: [file('dist/out.js', 'x'), file('src/a.ts', 'a')] });
		const result = mirror.apply({ changed: [file('src/gen/b.ts', 'b'), file('.gitignore', 'dist/\n'), file('src/.repokvignore', 'gen/\n')] });
		assert.ok(result.removed.includes('dist/out.js'), 'an earlier file newly ignored is removed');
		assert.ok(result.skipped.some((s) => s.path === 'src/gen/b.ts' && s.reason === 'ignored'));
		mirror.apply({ changed: [file('node_modules/x/index.js', 'x'), file('dist/new.js', 'n')] });
		assert.deepEqual(mirror.files().map((f) => f.path).filter((p) => !p.endsWith('ignore')), ['src/a.ts']);
		// Deleting the ignore file lifts its rules for what comes next.
		mirror.apply({ deleted: ['.gitignore'] });
		mirror.apply({ changed: [file('dist/new.js', 'n')] });
		assert.ok(mirror.get('dist/new.js') !== undefined);
	});

	test('negated patterns in a nested ignore file re-include', () => {
		const mirror = new WorkspaceMirror();
		mirror.apply({ changed: [file('.gitignore', '*.log\n'), file('logs/.gitignore', '!keep.log\n'), file('logs/keep.log', 'k'), file('logs/drop.log', 'd')] });
		assert.ok(mirror.get('logs/keep.log') !== undefined);
		assert.equal(mirror.get('logs/drop.log'), undefined);
	});

	test('bad input never throws: invalid paths, missing fields, wrong types', () => {
		const mirror = new WorkspaceMirror();
		// What a misbehaving client could send, whatever the protocol's types say.
		/** @type {any} */
		const bad = { changed: [null, 42, { path: '../outside.ts', text: 'x' }, { path: '/abs.ts', text: 'x' }, { path: 'a.ts' }, { path: 'C:\\win.ts', text: 'x' }], deleted: [null, 5], renamed: [null, { from: 1 }] };
		const result = mirror.apply(bad);
		assert.equal(mirror.size, 0);
		assert.ok(result.skipped.every((s) => s.reason === 'invalidPath'));
		assert.doesNotThrow(() => mirror.apply({}));
		assert.doesNotThrow(() => mirror.apply(/** @type {any} */ ({ changed: 'nope' })));
	});

	test('a reset feed removes files that are not in it', () => {
		const mirror = new WorkspaceMirror();
		mirror.apply({ changed: [file('old.ts', 'o'), file('a.ts', 'a')] });
		mirror.apply({ changed: [file('a.ts', 'a')], reset: true, batch: { index: 0, count: 2 } });
		assert.ok(mirror.get('old.ts') !== undefined, 'not before the last batch');
		const last = mirror.apply({ changed: [file('b.ts', 'b')], reset: true, batch: { index: 1, count: 2 } });
		assert.deepEqual(last.removed, ['old.ts']);
		assert.deepEqual(mirror.files().map((f) => f.path), ['a.ts', 'b.ts']);
	});

	test('open documents overlay the fed text and move up the edit clock', () => {
		const mirror = new WorkspaceMirror();
		mirror.apply({ changed: [file('a.ts', 'a'), file('b.ts', 'b')] });
		assert.equal(mirror.get('a.ts').editedAt, 0);
		assert.equal(mirror.setOverlay('a.ts', 'a edited'), true);
		assert.equal(mirror.setOverlay('a.ts', 'a edited'), false, 'same text: no change');
		assert.equal(mirror.get('a.ts').text, 'a edited');
		assert.ok(mirror.get('a.ts').editedAt > 0);
		mirror.clearOverlay('a.ts');
		assert.equal(mirror.get('a.ts').text, 'a');
		assert.equal(mirror.setOverlay('.env', 'SECRET=1'), false, 'secrets stay out as overlays too');
	});

	test('normalisePath', () => {
		assert.equal(normalisePath('src\\a.ts'), 'src/a.ts');
		assert.equal(normalisePath('./src//a.ts'), 'src/a.ts');
		assert.equal(normalisePath('src/../../a.ts'), undefined);
		assert.equal(normalisePath(''), undefined);
		assert.equal(normalisePath(7), undefined);
	});
});

describe('orderStableFirst', () => {
	test('least recently edited first, then the same folder, then imports nearest the cursor', () => {
		const files = [
			{ path: 'lib/z.ts', text: '', editedAt: 0, mtimeMs: 1 },
			{ path: 'lib/edited.ts', text: '', editedAt: 5, mtimeMs: 0 },
			{ path: 'docs/a.md', text: '', editedAt: 0, mtimeMs: 2 },
			{ path: 'src/sibling.ts', text: '', editedAt: 0, mtimeMs: 0 },
			{ path: 'src/config.ts', text: '', editedAt: 0, mtimeMs: 0 },
			{ path: 'src/main.ts', text: '', editedAt: 9, mtimeMs: 0 },
		];
		const order = orderStableFirst(files, 'src/main.ts', "import { X } from './config';").map((f) => f.path);
		assert.deepEqual(order, ['lib/z.ts', 'docs/a.md', 'lib/edited.ts', 'src/sibling.ts', 'src/config.ts']);
	});

	test('editing a file moves only it: the prefix before it is unchanged', () => {
		const files = ['a.ts', 'b.ts', 'c.ts', 'd.ts'].map((path) => ({ path, text: path, editedAt: 0, mtimeMs: 0 }));
		const before = orderStableFirst(files, 'x/active.ts', '').map((f) => f.path);
		files[1] = { ...files[1], editedAt: 1 };
		const after = orderStableFirst(files, 'x/active.ts', '').map((f) => f.path);
		assert.deepEqual(before, ['a.ts', 'b.ts', 'c.ts', 'd.ts']);
		assert.deepEqual(after, ['a.ts', 'c.ts', 'd.ts', 'b.ts']);
	});
});

describe('WorkspaceMirror: ignore files that move or go (found by test/fuzz/workspace.fuzz.mjs)', () => {
	test('a renamed ignore file takes its rules along; a reset forgets the rules of ignore files it no longer has', () => {
		const mirror = new WorkspaceMirror();
		mirror.apply({ changed: [file('.gitignore', '*.md'), file('a.md', 'a'), file('b.ts', 'b')], reset: true });
		assert.deepEqual(mirror.files().map((f) => f.path), ['.gitignore', 'b.ts']);
		mirror.apply({ renamed: [{ from: '.gitignore', to: 'sub/.gitignore' }] });
		mirror.apply({ changed: [file('c.md', 'c')] });
		assert.deepEqual(mirror.files().map((f) => f.path), ['b.ts', 'c.md', 'sub/.gitignore']);
		mirror.apply({ renamed: [{ from: 'sub/.gitignore', to: '.gitignore' }] });
		assert.deepEqual(mirror.files().map((f) => f.path), ['.gitignore', 'b.ts']);
		// The client deleted .gitignore and rescanned: a.md is back, though the old rules once refused it.
		mirror.apply({ changed: [file('a.md', 'a'), file('b.ts', 'b')], reset: true });
		assert.deepEqual(mirror.files().map((f) => f.path), ['a.md', 'b.ts']);
	});
});
