// Reading a workspace folder: ignore files at any depth, binary/oversized/secret files, unreadable folders.
import assert from 'node:assert/strict';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import * as fsPromises from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';

import { needleWorkspace, sidecar, tempFolder } from '../support/sidecar.mjs';

const { readWorkspace, isSecretPath } = sidecar;

/** Create files from a { 'relative/path': contents } map. */
async function layout(root, files) {
	for (const [relative, contents] of Object.entries(files)) {
		const file = path.join(root, relative);
		await mkdir(path.dirname(file), { recursive: true });
		await writeFile(file, contents);
	}
}

const paths = (snapshot) => snapshot.files.map((file) => file.path);
const reasonOf = (snapshot, relative) => snapshot.skipped.find((entry) => entry.path === relative)?.reason;

describe('readWorkspace', () => {
	test('honours .gitignore files at every depth, including negations and folder patterns', async (t) => {
		const root = await tempFolder(t);
		await layout(root, {
			'.gitignore': '*.log\nbuild/\n/top-only.ts\n',
			'top-only.ts': 'ignored at the root only',
			'src/a.ts': 'export const a = 1;\n',
			'src/debug.log': 'ignored by the root *.log',
			'src/top-only.ts': 'not ignored: the root pattern is anchored',
			'build/out.js': 'ignored folder',
			'pkg/.gitignore': 'generated.ts\n!keep.log\n',
			'pkg/generated.ts': 'ignored by pkg/.gitignore',
			'pkg/keep.log': 're-included by a deeper negation',
			'pkg/index.ts': 'export {};\n',
			'pkg/sub/deeper/.gitignore': 'local.ts\n',
			'pkg/sub/deeper/local.ts': 'ignored three levels down',
			'pkg/sub/deeper/shared.ts': 'kept',
			'other/generated.ts': 'kept: pkg/.gitignore does not apply here',
		});
		const snapshot = await readWorkspace(root);
		assert.deepEqual(paths(snapshot), [
			'.gitignore',
			'other/generated.ts',
			'pkg/.gitignore',
			'pkg/index.ts',
			'pkg/keep.log',
			'pkg/sub/deeper/.gitignore',
			'pkg/sub/deeper/shared.ts',
			'src/a.ts',
			'src/top-only.ts',
		]);
		for (const ignored of ['top-only.ts', 'src/debug.log', 'build', 'pkg/generated.ts', 'pkg/sub/deeper/local.ts']) {
			assert.equal(reasonOf(snapshot, ignored), 'ignored', ignored);
		}
	});

	test('honours .repokvignore like .gitignore, and always skips node_modules and .git', async (t) => {
		const root = await tempFolder(t);
		await layout(root, {
			'.repokvignore': 'docs/\n',
			'docs/guide.md': 'ignored by .repokvignore',
			'lib/.repokvignore': 'fixtures.ts\n',
			'lib/fixtures.ts': 'ignored',
			'lib/main.ts': 'kept',
			'node_modules/dep/index.js': 'never read',
			'lib/node_modules/dep/index.js': 'never read either',
			'.git/config': '[core]',
		});
		const snapshot = await readWorkspace(root);
		assert.deepEqual(paths(snapshot), ['.repokvignore', 'lib/.repokvignore', 'lib/main.ts']);
		assert.equal(reasonOf(snapshot, 'node_modules'), 'ignored');
		assert.equal(reasonOf(snapshot, 'lib/node_modules'), 'ignored');
		assert.equal(reasonOf(snapshot, '.git'), 'ignored');
	});

	test('skips binary files: NUL bytes, invalid UTF-8', async (t) => {
		const root = await tempFolder(t);
		await layout(root, {
			'text.ts': 'const café = "naïve ☕ 🚀";\n',
			'image.png': Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00]),
			'latin1.txt': Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]), // "café" in Latin-1: not UTF-8
			'utf16.txt': Buffer.from('\ufeffhi', 'utf16le'),
		});
		const snapshot = await readWorkspace(root);
		assert.deepEqual(paths(snapshot), ['text.ts']);
		assert.equal(snapshot.files[0].text, 'const café = "naïve ☕ 🚀";\n');
		for (const binary of ['image.png', 'latin1.txt', 'utf16.txt']) {
			assert.equal(reasonOf(snapshot, binary), 'binary', binary);
		}
	});

	test('skips files over the size limit (default 1 MB) and stops at the total-bytes cap', async (t) => {
		const root = await tempFolder(t);
		await layout(root, {
			'big.json': `"${'x'.repeat(1024 * 1024)}"`,
			'a.ts': 'a'.repeat(600),
			'b.ts': 'b'.repeat(600),
			'c.ts': 'c'.repeat(300),
		});
		const byDefault = await readWorkspace(root);
		assert.equal(reasonOf(byDefault, 'big.json'), 'tooLarge');
		assert.deepEqual(paths(byDefault), ['a.ts', 'b.ts', 'c.ts']);

		const capped = await readWorkspace(root, { maxFileBytes: 2000, maxTotalBytes: 1000 });
		// Files are taken in path order; b.ts would pass the cap, c.ts still fits after it.
		assert.deepEqual(paths(capped), ['a.ts', 'c.ts']);
		assert.equal(reasonOf(capped, 'b.ts'), 'overTotal');
		assert.equal(capped.totalBytes, 900);
	});

	test('never includes secret-looking files, even when no ignore file mentions them', async (t) => {
		const root = await tempFolder(t);
		const secretFiles = [
			'.env',
			'.env.local',
			'config/.env.production',
			'certs/server.pem',
			'certs/server.key',
			'certs/client.p12',
			'id_rsa',
			'id_ed25519.pub',
			'credentials.json',
			'deploy/aws-credentials.json',
			'gcp/service-account-prod.json',
			'client_secret_123.json',
			'.npmrc',
			'.ssh/config',
			'infra/terraform.tfstate',
		];
		await layout(root, {
			'src/index.ts': 'export const ok = true;\n',
			...Object.fromEntries(secretFiles.map((file) => [file, `FAKE-SECRET-${file}`])),
		});
		const snapshot = await readWorkspace(root);
		assert.deepEqual(paths(snapshot), ['src/index.ts']);
		for (const file of snapshot.files) {
			assert.doesNotMatch(file.text, /FAKE-SECRET/);
		}
		for (const file of secretFiles) {
			assert.ok(isSecretPath(file), `${file} should look secret`);
		}
		for (const file of ['src/env.ts', 'src/keyboard.ts', 'docs/secrets-management.md', 'environment.d.ts']) {
			assert.ok(!isSecretPath(file), `${file} should not look secret`);
		}
	});

	test('reports an unreadable folder and reads the rest', async (t) => {
		const root = await tempFolder(t);
		await layout(root, { 'a.ts': 'a', 'locked/secret-plans.ts': 'b', 'z.ts': 'z' });
		// root ignores permission bits, so the failure is injected through the fs seam as well as by chmod.
		const locked = path.join(root, 'locked');
		/** @type {import('../../sidecar/src/api').WorkspaceFs} */
		const fs = {
			readdir: async (folder, options) => {
				if (path.resolve(folder) === locked) {
					throw Object.assign(new Error(`EACCES: permission denied, scandir '${folder}'`), { code: 'EACCES' });
				}
				return fsPromises.readdir(folder, options);
			},
			stat: fsPromises.stat,
			readFile: fsPromises.readFile,
		};
		const snapshot = await readWorkspace(root, { fs });
		assert.deepEqual(paths(snapshot), ['a.ts', 'z.ts']);
		assert.deepEqual(snapshot.skipped.find((entry) => entry.path === 'locked'), { path: 'locked', reason: 'unreadable', detail: 'EACCES' });
	});

	test('reports an unreadable folder made with chmod (not as root)', { skip: process.getuid?.() === 0 ? 'root can read any folder' : false }, async (t) => {
		const root = await tempFolder(t);
		await layout(root, { 'a.ts': 'a', 'locked/b.ts': 'b' });
		await chmod(path.join(root, 'locked'), 0o000);
		t.after(() => chmod(path.join(root, 'locked'), 0o755));
		const snapshot = await readWorkspace(root);
		assert.deepEqual(paths(snapshot), ['a.ts']);
		assert.equal(reasonOf(snapshot, 'locked'), 'unreadable');
	});

	test('does not follow symbolic links', async (t) => {
		const root = await tempFolder(t);
		const outside = await tempFolder(t);
		await layout(outside, { 'outside.ts': 'not part of the workspace' });
		await layout(root, { 'a.ts': 'a' });
		await symlink(outside, path.join(root, 'linked'));
		await symlink(path.join(root, 'a.ts'), path.join(root, 'alias.ts'));
		const snapshot = await readWorkspace(root);
		assert.deepEqual(paths(snapshot), ['a.ts']);
	});

	test('a missing workspace root is an error', async () => {
		await assert.rejects(readWorkspace('/definitely/not/here'), { code: 'ENOENT' });
	});

	test('the needle fixture: the ignored token file and .env stay out', async () => {
		const snapshot = await readWorkspace(needleWorkspace);
		assert.deepEqual(paths(snapshot), [
			'.gitignore',
			'README.md',
			'package.json',
			'src/config.ts',
			'src/http.ts',
			'src/logger.ts',
			'src/main.ts',
			'src/orders.ts',
			'src/queue.ts',
		]);
		assert.equal(reasonOf(snapshot, 'deploy-token.json'), 'ignored');
		assert.equal(reasonOf(snapshot, '.env'), 'secret');
		for (const file of snapshot.files) {
			assert.doesNotMatch(file.text, /FAKE-(DEPLOY-TOKEN|ENV-KEY)/);
		}
	});
});
