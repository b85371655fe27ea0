// Workspace-feed fuzz: random edit, rename and delete sequences on a real folder, delivered as VS Code delivers them
// (watcher create/change/delete events; renames also through `workspace.onDidRenameFiles` when done in the editor)
// to the extension's real feed (extension/src/feed.ts, under the stub in support/), whose batches and deltas go to
// the server's real WorkspaceMirror, and optionally to a running sidecar too. After every step, the mirror must equal
// the files on disk as the sidecar's own reader (readWorkspace: ignore files, secrets, binary, size) sees them.
//
//   node test/fuzz/workspace.fuzz.mjs [--steps N] [--seed S]
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { feedConfig, loadFeed, loadMirror } from './support/feed-bundle.mjs';
import { argValue, rng } from './support/random.mjs';

const maxFileKB = 2;
const folders = ['', 'a', 'b', 'a/c', 'lib', 'build', '.ssh', 'node_modules', 'a/c/d'];
const names = ['x.ts', 'y.js', 'README.md', 'notes.txt', '.env', 'id_rsa', 'config.pem', 'util.ts', 'big.txt', 'blob.dat', '.gitignore', '.repokvignore'];
const patterns = ['*.js', 'build/', 'a/', '!a/x.ts', 'notes.txt', 'c/', '*.md', 'd', '/lib', 'x.*', '# comment', ''];

/**
 * Runs `steps` random operations; returns counts. `server` (optional): a startServer() result also fed, checked through `repokv/debug/mirror`.
 * @param {{ steps?: number, seed?: number, server?: Awaited<ReturnType<typeof import('../support/lsp-client.mjs').startServer>>, log?: (line: string) => void }} [options]
 */
export async function runWorkspaceFuzz({ steps = 300, seed = 1, server, log = () => {} } = {}) {
	const random = rng(seed);
	const pick = (items) => items[Math.floor(random() * items.length)];
	const root = await fs.mkdtemp(path.join(tmpdir(), 'repokv-wsfuzz-'));
	const { WorkspaceFeed, vscode } = await loadFeed();
	const sidecar = await loadMirror();
	const mirror = new sidecar.WorkspaceMirror({ maxFileBytes: maxFileKB * 1024, maxTotalBytes: 1 << 30, maxFiles: 100_000 });
	const sent = [];
	const sink = async (params) => {
		sent.push(params);
		mirror.apply(params);
		if (server !== undefined) await server.connection.sendNotification('repokv/workspace/didChangeFiles', params);
	};
	const channel = vscode.logChannel();
	const feed = new WorkspaceFeed(vscode.Uri.file(root), feedConfig(maxFileKB), sink, channel);
	const counts = { steps: 0, write: 0, writeIgnore: 0, delete: 0, deleteFolder: 0, rename: 0, renameFolder: 0, editorRename: 0, notifications: 0, comparedFiles: 0 };
	const abs = (relative) => path.join(root, relative);

	/** Every file and folder now on disk (relative), for picking operands. */
	const listing = async () => {
		const files = [];
		const dirs = [];
		const walk = async (folder) => {
			for (const entry of await fs.readdir(abs(folder), { withFileTypes: true })) {
				const relative = folder === '' ? entry.name : `${folder}/${entry.name}`;
				if (entry.isDirectory()) {
					dirs.push(relative);
					await walk(relative);
				} else files.push(relative);
			}
		};
		await walk('');
		return { files, dirs };
	};
	const textFor = (name) => {
		const roll = random();
		if (name === 'big.txt' || roll < 0.05) return 'z'.repeat(maxFileKB * 1024 + 1 + Math.floor(random() * 100));
		if (name === 'blob.dat' || roll < 0.1) return `bin\u0000ary ${Math.floor(random() * 1e6)}`;
		if (name === '.gitignore' || name === '.repokvignore') return Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(patterns)).join('\n');
		return `// ${Math.floor(random() * 1e9)} é ∑ 🙂\nexport const v = ${Math.floor(random() * 1000)};\n`.repeat(1 + Math.floor(random() * 5));
	};
	/** Create the missing parent folders of a path, firing the watcher's create event for each new one. */
	const mkdirs = async (relative) => {
		const parts = relative.split('/').slice(0, -1);
		for (let depth = 1; depth <= parts.length; depth++) {
			const folder = parts.slice(0, depth).join('/');
			if (!existsSync(abs(folder))) {
				await fs.mkdir(abs(folder));
				vscode.events.created(abs(folder));
			}
		}
	};
	const settle = async () => {
		// Renames are sent at once; watcher events wait for the feed's delta timer, flushed here instead; an ignore
		// file's change starts a rescan.
		for (let round = 0; round < 3; round++) {
			await new Promise((resolve) => setImmediate(resolve));
			if (feed.deltaTimer !== undefined) {
				clearTimeout(feed.deltaTimer);
				await feed.flushDelta();
			}
			await feed.scanning;
		}
	};

	const compare = async (step, op) => {
		const expected = await sidecar.readWorkspace(root, { maxFileBytes: maxFileKB * 1024, maxTotalBytes: 1 << 30 });
		const want = expected.files.map((file) => [file.path, file.text]);
		const got = mirror.files().map((file) => [file.path, file.text]);
		assert.deepEqual(got, want, `seed ${seed} step ${step} (${op}): the mirror differs from the disk\nsent: ${JSON.stringify(sent.slice(-3)).slice(0, 2000)}\nfeed log: ${channel.lines.slice(-5).join(' | ')}`);
		counts.comparedFiles += want.length;
		if (server !== undefined) {
			const remote = await server.connection.sendRequest('repokv/debug/mirror', {});
			assert.deepEqual(remote.files.map((file) => [file.path, file.text]), want, `seed ${seed} step ${step} (${op}): the sidecar's mirror differs from the disk`);
		}
	};

	try {
		await feed.rescan();
		await compare(0, 'initial scan');
		for (let step = 1; step <= steps; step++) {
			const { files, dirs } = await listing();
			const roll = random();
			let op;
			if (roll < 0.45 || files.length === 0) {
				const relative = pick(folders) === '' ? pick(names) : `${pick(folders)}/${pick(names)}`;
				const existed = existsSync(abs(relative));
				await mkdirs(relative);
				await fs.writeFile(abs(relative), textFor(path.posix.basename(relative)));
				if (existed) vscode.events.changed(abs(relative));
				else vscode.events.created(abs(relative));
				op = `write ${relative}`;
				counts[/ignore$/.test(relative) ? 'writeIgnore' : 'write']++;
			} else if (roll < 0.6) {
				const relative = pick(files);
				await fs.rm(abs(relative));
				vscode.events.deleted(abs(relative));
				op = `delete ${relative}`;
				counts.delete++;
			} else if (roll < 0.67 && dirs.length > 0) {
				const relative = pick(dirs);
				await fs.rm(abs(relative), { recursive: true });
				vscode.events.deleted(abs(relative));
				op = `delete folder ${relative}`;
				counts.deleteFolder++;
			} else {
				const folderRename = random() < 0.25 && dirs.length > 0;
				const from = folderRename ? pick(dirs) : pick(files);
				const target = folderRename ? pick(['e', 'a/e', 'lib2', 'build', '.ssh', 'b/f']) : pick(folders) === '' ? pick(names) : `${pick(folders)}/${pick(names)}`;
				if (target === from || target.startsWith(`${from}/`) || existsSync(abs(target))) {
					op = 'rename skipped';
				} else {
					await mkdirs(target);
					await fs.rename(abs(from), abs(target));
					// Done in the editor (explorer, refactoring): VS Code reports the rename, and its watcher sees the disk.
					if (random() < 0.5) {
						vscode.events.renamed([[abs(from), abs(target)]]);
						counts.editorRename++;
					}
					vscode.events.deleted(abs(from));
					vscode.events.created(abs(target));
					op = `rename ${from} -> ${target}`;
					counts[folderRename ? 'renameFolder' : 'rename']++;
				}
			}
			await settle();
			counts.steps++;
			log(`step ${step}: ${op}`);
			await compare(step, op);
		}
	} finally {
		feed.dispose();
		await fs.rm(root, { recursive: true, force: true });
	}
	counts.notifications = sent.length;
	return counts;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const steps = Number(argValue('--steps', '2000'));
	const seed = Number(argValue('--seed', '1'));
	const started = Date.now();
	const counts = await runWorkspaceFuzz({ steps, seed });
	console.log(JSON.stringify({ fuzzer: 'workspace-feed', seed, ...counts, ms: Date.now() - started }));
}
