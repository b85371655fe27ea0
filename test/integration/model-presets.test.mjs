// Model presets and `repokv models`: the presets are hf: pairs of a Qwen2.5-Coder target and the 0.5B draft; the
// catalog lists local GGUF files and groups the ones that share a vocabulary; picking a preset downloads both files
// through node-llama-cpp's downloader with progress, and checks the pair. Downloads are tested against a local HTTP
// server on 127.0.0.1 serving generated fixtures: never the internet.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';

import { FIXTURES, makeFixture } from '../../native/test-fixtures/make-fixture.mjs';
import { cliPath, draftModelPath, sidecar, tempFolder } from '../support/sidecar.mjs';

const { modelPresets, presetById, downloadPreset, findPairedDraft, DraftMismatchError, UserError } = sidecar;
const run = promisify(execFile);

/** Serves `files` (name -> path) over HTTP with Content-Length and byte ranges, as a model host does. */
async function serveFiles(files) {
	const server = http.createServer((req, res) => {
		const name = decodeURIComponent(new URL(req.url, 'http://x').pathname.slice(1));
		const file = files[name];
		if (file === undefined) {
			res.writeHead(404).end();
			return;
		}
		const size = fs.statSync(file).size;
		const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
		const start = range ? Number(range[1]) : 0;
		const end = range && range[2] !== '' ? Number(range[2]) : size - 1;
		const headers = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', 'content-length': String(end - start + 1) };
		if (range) headers['content-range'] = `bytes ${start}-${end}/${size}`;
		res.writeHead(range ? 206 : 200, headers);
		if (req.method === 'HEAD') {
			res.end();
			return;
		}
		fs.createReadStream(file, { start, end }).pipe(res);
	});
	await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
	return { url: (name) => `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}/${name}`, close: () => new Promise((resolve) => server.close(resolve)) };
}

describe('model presets', () => {
	test('each preset is a Qwen2.5-Coder target with the 0.5B Q8_0 draft, as hf: URIs with a named quantization', () => {
		const ids = modelPresets.map((p) => p.id);
		assert.equal(new Set(ids).size, ids.length);
		for (const size of ['1.5b', '3b', '7b']) assert.ok(ids.includes(`qwen2.5-coder-${size}`), size);
		for (const preset of modelPresets) {
			assert.match(preset.target.uri, /^hf:[\w.-]+\/[\w.-]+\/[\w.-]+\.gguf$/);
			assert.equal(preset.draft.uri, 'hf:ggml-org/Qwen2.5-Coder-0.5B-Q8_0-GGUF/qwen2.5-coder-0.5b-q8_0.gguf');
			assert.ok(['Q8_0', 'Q4_K_M'].includes(preset.target.quantization));
			assert.ok(preset.target.uri.toLowerCase().includes(preset.target.quantization.toLowerCase()), preset.target.uri);
			assert.equal(preset.contextLength, 32768);
		}
		assert.throws(() => presetById('nope'), UserError);
	});
});

describe('downloading a preset (local HTTP server)', () => {
	let folder;
	let server;
	before(async () => {
		folder = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'repokv-presets-'));
		// Two tiny fixtures with the same 259-token vocabulary (a target and a draft), and the bundled draft (2048).
		makeFixture(path.join(folder, 'served-target.gguf'), { ...FIXTURES.llama });
		makeFixture(path.join(folder, 'served-draft.gguf'), { ...FIXTURES.qwen2 });
		server = await serveFiles({ 'target.gguf': path.join(folder, 'served-target.gguf'), 'draft.gguf': path.join(folder, 'served-draft.gguf'), 'other-draft.gguf': draftModelPath });
	});
	after(async () => {
		await server.close();
		fs.rmSync(folder, { recursive: true, force: true });
	});

	const presetOf = (draftName) => ({
		id: 'local-test',
		description: 'served from 127.0.0.1',
		target: { uri: server.url('target.gguf'), quantization: 'F16', approxBytes: 1e6 },
		draft: { uri: server.url(draftName), quantization: 'F16', approxBytes: 1e6 },
		contextLength: 4096,
	});

	test('downloads both files with progress, byte for byte, checks the pair, and does not fetch them again', async () => {
		const downloads = path.join(folder, 'downloads');
		const progress = [];
		const files = await downloadPreset(presetOf('draft.gguf'), { downloadFolder: downloads, timeoutMs: 60_000, onProgress: (role, done, total) => progress.push({ role, done, total }) });
		assert.ok(files.target.startsWith(downloads) && files.draft.startsWith(downloads), JSON.stringify(files));
		assert.deepEqual(fs.readFileSync(files.target), fs.readFileSync(path.join(folder, 'served-target.gguf')));
		assert.deepEqual(fs.readFileSync(files.draft), fs.readFileSync(path.join(folder, 'served-draft.gguf')));
		for (const role of ['target', 'draft']) {
			const last = progress.filter((p) => p.role === role).at(-1);
			assert.ok(last !== undefined, `progress reported for the ${role}`);
			assert.equal(last.done, last.total);
		}
		// A second pick finds both files and leaves them as they are (node-llama-cpp probes a plain URL; hf: URIs are
		// found by their file names, offline).
		const mtimes = [files.target, files.draft].map((f) => fs.statSync(f).mtimeMs);
		const again = await downloadPreset(presetOf('draft.gguf'), { downloadFolder: downloads, timeoutMs: 60_000 });
		assert.deepEqual(again, files);
		assert.deepEqual([files.target, files.draft].map((f) => fs.statSync(f).mtimeMs), mtimes, 'files already downloaded are not written again');
	});

	test('a draft with another vocabulary: downloaded, then one DraftMismatchError naming both files', async () => {
		const downloads = path.join(folder, 'downloads-mismatch');
		await assert.rejects(downloadPreset(presetOf('other-draft.gguf'), { downloadFolder: downloads, timeoutMs: 60_000 }), (error) => {
			assert.ok(error instanceof DraftMismatchError, String(error));
			assert.match(error.message, /259 tokens and the draft 2048/);
			return true;
		});
	});

	test('a file the server does not have: a UserError naming the preset and the file', async () => {
		const preset = { ...presetOf('draft.gguf'), target: { uri: server.url('missing.gguf'), quantization: 'F16', approxBytes: 1 } };
		await assert.rejects(downloadPreset(preset, { downloadFolder: path.join(folder, 'downloads-missing'), timeoutMs: 20_000 }), (error) => {
			assert.ok(error instanceof UserError, String(error));
			assert.match(error.message, /preset local-test: the target \(http:\/\/127\.0\.0\.1:\d+\/missing\.gguf\)/);
			return true;
		});
	});
});

describe('repokv models', () => {
	test('--json lists the presets, the bundled models and a folder, and pairs files by vocabulary', async (t) => {
		const folder = await tempFolder(t, 'repokv-models-');
		makeFixture(path.join(folder, 'a-target.gguf'), { ...FIXTURES.llama });
		makeFixture(path.join(folder, 'b-draft.gguf'), { ...FIXTURES.qwen2 });
		fs.writeFileSync(path.join(folder, 'broken.gguf'), 'not a model');
		const { stdout } = await run(process.execPath, [cliPath, 'models', '--json', '--folder', folder, '--download-folder', path.join(folder, 'none')]);
		const result = JSON.parse(stdout);
		assert.equal(result.presets.length, modelPresets.length);
		assert.ok(result.presets.every((p) => p.downloaded === false));
		const byPath = new Map(result.models.map((m) => [m.path, m]));
		assert.equal(byPath.get(path.join(folder, 'a-target.gguf'))?.vocabulary.tokenCount, 259);
		assert.ok(byPath.get(path.join(folder, 'broken.gguf'))?.error, 'an unreadable file is listed with its error');
		assert.ok(result.models.some((m) => m.source === 'bundled'));
		const fixtures = result.compatible.find((g) => g.tokenCount === 259);
		assert.ok(fixtures, JSON.stringify(result.compatible));
		// The smaller file (the qwen2 fixture) is the draft.
		assert.equal(fixtures.draft, path.join(folder, 'b-draft.gguf'));
		assert.deepEqual(fixtures.targets, [path.join(folder, 'a-target.gguf')]);
		const bundled = result.compatible.find((g) => g.tokenCount === 2048);
		assert.ok(bundled?.draft.endsWith('draft.gguf'));
	});

	test('the text listing names the presets and the pairs', async () => {
		const { stdout } = await run(process.execPath, [cliPath, 'models', '--download-folder', '/nonexistent-repokv-folder']);
		assert.match(stdout, /qwen2\.5-coder-7b\s+Qwen2\.5-Coder 7B/);
		assert.match(stdout, /pairs \(same vocabulary/);
	});

	test('--download with an unknown preset is a usage error', async () => {
		await assert.rejects(run(process.execPath, [cliPath, 'models', '--download', 'no-such-preset']), (/** @type {any} */ error) => {
			assert.equal(error.code, 2);
			assert.match(error.stderr, /unknown model preset 'no-such-preset'; known presets: qwen2\.5-coder-1\.5b/);
			return true;
		});
	});
});

describe('findPairedDraft', () => {
	test("finds the smallest local file with the target's vocabulary, smaller than the target; none for a lone target", async (t) => {
		const folder = await tempFolder(t, 'repokv-find-draft-');
		const target = path.join(folder, 'target.gguf');
		makeFixture(target, { ...FIXTURES.llama });
		const empty = path.join(folder, 'empty');
		assert.equal(await findPairedDraft(target, { downloadFolder: empty }), undefined);
		const drafts = path.join(folder, 'drafts');
		fs.mkdirSync(drafts);
		makeFixture(path.join(drafts, 'draft.gguf'), { ...FIXTURES.qwen2 }); // same 259-token vocabulary, smaller
		makeFixture(path.join(drafts, 'bigger.gguf'), { ...FIXTURES.llama, nLayer: 3 }); // same vocabulary, not smaller
		makeFixture(path.join(drafts, 'other-vocab.gguf'), { ...FIXTURES.qwen2, nVocab: 300 });
		assert.equal(await findPairedDraft(target, { downloadFolder: empty, folders: [drafts] }), path.join(drafts, 'draft.gguf'));
		// The target's own folder is searched too (drafts/ is one level below it).
		assert.equal(await findPairedDraft(target, { downloadFolder: empty }), path.join(drafts, 'draft.gguf'));
	});
});
