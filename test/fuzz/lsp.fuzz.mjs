// LSP fuzz: the real server (`node bin/repokv.js serve --stdio`, bundled models, 1 thread) gets malformed and
// adversarial traffic written as raw bytes: broken framing (no or bad Content-Length, header lines without ':',
// bodies padded or cut), bodies that are not JSON or not JSON-RPC, wrong types for every field of every method it
// serves, huge strings, out-of-range positions, unknown URIs, edits against stale versions, cancellations of
// random ids, completions and asks in between, and at the end requests after `shutdown`. Every well-formed request
// (a string or integer id and a method) must get exactly one response (a result or a JSON-RPC error), the process
// must stay up until `exit`, and exit 0 then.
//
//   node test/fuzz/lsp.fuzz.mjs [--messages N] [--seed S] [--heap-snapshot DIR] [--cli FILE]
// `--cli FILE`: another build of the sidecar launcher (to compare before and after a change).
// `--heap-snapshot DIR`: the server writes a V8 heap snapshot into DIR after the last message (what holds its memory).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { guardEnv, networkAttempts } from '../support/privacy.mjs';
import { argValue, rng } from './support/random.mjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cliPath = path.join(repoRoot, 'bin', 'repokv.js');

/** Kilobytes of resident memory of a process (VmRSS) and its peak (VmHWM), from /proc. */
export function memoryOf(pid) {
	const text = readFileSync(`/proc/${pid}/status`, 'utf8');
	const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
	return { rssKB: field('VmRSS'), peakKB: field('VmHWM') };
}

/** A raw JSON-RPC peer over a child's stdio: frames what it is given, parses what comes back, answers the server's requests. */
class RawPeer {
	constructor(child, settings) {
		this.child = child;
		this.responses = new Map();
		this.waiters = new Map();
		this.notifications = 0;
		this.serverRequests = 0;
		this.stray = [];
		this.buffer = Buffer.alloc(0);
		child.stdout.on('data', (chunk) => this.onData(chunk));
		this.settings = settings;
	}
	onData(chunk) {
		this.buffer = Buffer.concat([this.buffer, chunk]);
		for (;;) {
			const end = this.buffer.indexOf('\r\n\r\n');
			if (end === -1) return;
			const header = this.buffer.subarray(0, end).toString('ascii');
			const length = Number(/Content-Length: (\d+)/i.exec(header)?.[1]);
			if (this.buffer.length < end + 4 + length) return;
			const body = this.buffer.subarray(end + 4, end + 4 + length).toString('utf8');
			this.buffer = this.buffer.subarray(end + 4 + length);
			this.onMessage(JSON.parse(body));
		}
	}
	onMessage(message) {
		if ('method' in message && 'id' in message) {
			this.serverRequests++;
			const result = message.method === 'workspace/configuration' ? message.params.items.map(() => this.settings) : null;
			this.sendJson({ jsonrpc: '2.0', id: message.id, result });
		} else if ('method' in message) {
			this.notifications++;
		} else if ('id' in message) {
			const key = JSON.stringify(message.id);
			if (this.responses.has(key)) this.stray.push({ duplicate: message });
			this.responses.set(key, message);
			this.waiters.get(key)?.(message);
			this.waiters.delete(key);
		}
	}
	write(bytes) {
		if (process.env.FUZZ_DUMP) appendFileSync(process.env.FUZZ_DUMP, bytes);
		this.child.stdin.write(bytes);
	}
	frame(body) {
		const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
		return Buffer.concat([Buffer.from(`Content-Length: ${bytes.length}\r\n\r\n`, 'ascii'), bytes]);
	}
	sendJson(message) {
		this.write(this.frame(JSON.stringify(message)));
	}
	response(id, timeoutMs) {
		const key = JSON.stringify(id);
		if (this.responses.has(key)) return Promise.resolve(this.responses.get(key));
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`no response to request ${key} in ${timeoutMs} ms`)), timeoutMs);
			this.waiters.set(key, (message) => {
				clearTimeout(timer);
				resolve(message);
			});
		});
	}
}

/** A small workspace for the fuzz: completions stay fast (a short prompt), and there are files to edit and rename. */
async function makeWorkspace() {
	const root = await mkdtemp(path.join(tmpdir(), 'repokv-lspfuzz-'));
	await mkdir(path.join(root, 'src'));
	await writeFile(path.join(root, 'src', 'config.ts'), 'export const RETRY_LIMIT_MS = 4817;\n');
	await writeFile(path.join(root, 'src', 'main.ts'), "import { RETRY_LIMIT_MS } from './config';\nexport function retry() {\n\treturn RETRY_LIMIT_MS;\n}\n");
	return root;
}

/**
 * @param {{ messages?: number, seed?: number, log?: (line: string) => void, responseTimeoutMs?: number, heapSnapshotDir?: string, cli?: string }} [options]
 */
export async function runLspFuzz({ messages = 10_000, seed = 1, log = () => {}, responseTimeoutMs = 120_000, heapSnapshotDir, cli = cliPath } = {}) {
	const random = rng(seed);
	const pick = (items) => items[Math.floor(random() * items.length)];
	const int = (max) => Math.floor(random() * max);
	const root = await makeWorkspace();
	const settings = { threads: 1, completion: { maxTokens: 8 }, ask: { maxTokens: 8 } };
	const netLog = path.join(root, '..', `${path.basename(root)}-net.jsonl`);
	const heapOptions = heapSnapshotDir === undefined ? [] : ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${heapSnapshotDir}`];
	const child = spawn(process.execPath, [...heapOptions, cli, 'serve', '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...guardEnv(netLog), REPOKV_TEST_HOOKS: '1' } });
	let stderr = '';
	child.stderr.on('data', (chunk) => {
		stderr = (stderr + chunk).slice(-20_000);
	});
	const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
	let exitInfo;
	void exited.then((info) => {
		exitInfo = info;
	});
	const peer = new RawPeer(child, settings);
	const uri = (relative) => pathToFileURL(path.join(root, relative)).href;
	let nextId = 1;
	/** Ids of well-formed requests still owed a response. */
	const owed = [];
	const counts = {};
	const count = (kind) => {
		counts[kind] = (counts[kind] ?? 0) + 1;
	};
	const request = (method, params, kind) => {
		const id = random() < 0.3 ? `s${nextId++}` : nextId++;
		peer.sendJson({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
		owed.push({ id, method, kind });
		count(kind);
		return id;
	};
	const notify = (method, params, kind) => {
		peer.sendJson({ jsonrpc: '2.0', method, ...(params === undefined ? {} : { params }) });
		count(kind);
	};
	const settle = async () => {
		const waiting = owed.splice(0);
		for (const { id, method } of waiting) {
			const reply = await peer.response(id, responseTimeoutMs).catch((error) => {
				throw new Error(`${error.message} (${method}); exit ${JSON.stringify(exitInfo)}; stderr: ${stderr}`);
			});
			assert.ok('result' in reply || (typeof reply.error?.code === 'number' && typeof reply.error?.message === 'string'), `malformed response ${JSON.stringify(reply)}`);
			assert.equal(reply.jsonrpc, '2.0');
			counts.responses = (counts.responses ?? 0) + 1;
			if ('error' in reply) counts.errorResponses = (counts.errorResponses ?? 0) + 1;
		}
		assert.equal(exitInfo, undefined, `the server exited: ${JSON.stringify(exitInfo)}; stderr: ${stderr}`);
	};

	// Documents the fuzz opened, with the versions it sent.
	const open = new Map();
	const strings = ['', 'x', '\u0000', '\ud800', '🙂'.repeat(10), '../../etc/passwd', 'file:///etc/shadow', 'C:\\win', ' '.repeat(3), '%00', '<|fim_middle|>', '\r\n'];
	const junk = () => pick([null, true, 0, -1, 1.5, 2 ** 53, -(2 ** 31), NaN, 'str', [], [1, 'a'], {}, { a: { b: [] } }, pick(strings)]);
	const hugeString = (bytes) => 'é'.repeat(Math.ceil(bytes / 2)).slice(0, bytes);
	const position = () => (random() < 0.5 ? { line: int(6), character: int(40) } : { line: pick([-1, 1e9, 2 ** 31, 0.5, 'a', null]), character: pick([-5, 1e12, NaN, '3', null]) });
	const docUri = () => (random() < 0.7 && open.size > 0 ? pick([...open.keys()]) : pick([uri('src/nope.ts'), 'untitled:Untitled-1', 'file:///', 'not a uri', '', uri('../outside.ts'), 'file:///%E0%A4%A']));
	const maybeJunk = (value) => (random() < 0.15 ? junk() : value);

	const generators = {
		// ---- framing ----
		framingNoLength: () => peer.write(Buffer.from('Content-Type: application/vscode-jsonrpc\r\n\r\n')),
		// Lengths that parse as no number (a number that is wrong, like 0x10 = 16, desynchronises any LSP reader).
		framingBadLength: () => peer.write(Buffer.from(`Content-Length: ${pick(['abc', '', 'x10', '-', 'NaN'])}\r\n\r\n`)),
		framingNoColon: () => peer.write(Buffer.from('Content-Length 10\r\nhello\r\n\r\n')),
		framingGarbage: () => {
			// No CR (so the garbage ends exactly at the blank line we put after it) and no ':' (so it is no header).
			const bytes = Buffer.from(Array.from({ length: 1 + int(200) }, () => int(256)));
			peer.write(Buffer.concat([Buffer.from(bytes.toString('latin1').replaceAll('\r', '').replaceAll(':', ''), 'latin1'), Buffer.from('\r\n\r\n')]));
		},
		framingZeroLength: () => peer.write(Buffer.from('Content-Length: 0\r\n\r\n')),
		framingPadded: () => {
			// Content-Length larger than the JSON: the padding completes the body, which is then not JSON.
			const body = JSON.stringify({ jsonrpc: '2.0', id: nextId++, method: 'repokv/status' });
			const pad = 1 + int(20);
			peer.write(Buffer.concat([Buffer.from(`Content-Length: ${body.length + pad}\r\n\r\n${body}`), Buffer.alloc(pad, 0x20 + int(90))]));
		},
		framingSplit: () => {
			// A valid request written a few bytes at a time.
			const id = nextId++;
			const bytes = peer.frame(JSON.stringify({ jsonrpc: '2.0', id, method: 'repokv/status' }));
			for (let at = 0; at < bytes.length; ) {
				const step = 1 + int(7);
				peer.write(bytes.subarray(at, at + step));
				at += step;
			}
			owed.push({ id, method: 'repokv/status (split)' });
			count('framingSplit');
		},
		// ---- bodies ----
		bodyNotJson: () => peer.write(peer.frame(pick(['{', '}', '{"jsonrpc":"2.0","id":1,"method":', 'nul', '\u0000\u0001', '{"a":1}}', Buffer.from([0xff, 0xfe, 0x00]).toString('latin1')]))),
		bodyNotRpc: () => peer.sendJson(pick([1, 'x', null, [], [{ jsonrpc: '2.0', id: 1, method: 'repokv/status' }], { jsonrpc: '1.0' }, { id: 7 }, { jsonrpc: '2.0', id: 'nobody', result: 1 }, { jsonrpc: '2.0', method: 42 }, { jsonrpc: '2.0', id: { a: 1 }, method: 'repokv/status' }, { jsonrpc: '2.0', id: true, method: 'repokv/status' }])),
		unknownRequest: () => request(pick(['repokv/nope', 'textDocument/hover', '$/nope', '', 'x'.repeat(10_000)]), maybeJunk({}), 'unknownRequest'),
		unknownNotification: () => notify(pick(['repokv/nope', 'textDocument/nope', '$/nope', 'workspace/didChangeWatchedFiles']), junk(), 'unknownNotification'),
		// ---- the methods the server serves, with bad and good params ----
		status: () => request('repokv/status', random() < 0.5 ? undefined : junk(), 'status'),
		snapshot: () => request('repokv/cache/snapshot', random() < 0.5 ? { summaryOnly: pick([true, false, 'yes', null]) } : junk(), 'snapshot'),
		askBad: () => request('repokv/repo/ask', pick([null, {}, { question: '' }, { question: 5 }, { question: '   ' }, [], 'what']), 'askBad'),
		ask: () => request('repokv/repo/ask', { question: pick(['where is RETRY_LIMIT_MS defined?', 'é'.repeat(300), '<|endoftext|>?']), maxTokens: pick([1, 4, -1, 1e9, 'x']), activeFile: maybeJunk('src/main.ts') }, 'ask'),
		initializeAgain: () => request('initialize', maybeJunk({ processId: null, rootUri: null, capabilities: {} }), 'initializeAgain'),
		completion: () => {
			const target = docUri();
			request('textDocument/inlineCompletion', { textDocument: { uri: target }, position: position(), context: { triggerKind: pick([1, 2, 1]) } }, 'completion');
		},
		completionBad: () =>
			request('textDocument/inlineCompletion', pick([null, {}, { textDocument: null }, { textDocument: { uri: 5 }, position: { line: 0, character: 0 } }, { textDocument: { uri: docUri() }, position: junk(), context: junk() }]), 'completionBad'),
		cancel: () => notify('$/cancelRequest', { id: random() < 0.7 ? nextId - 1 - int(5) : junk() }, 'cancel'),
		didOpen: () => {
			const relative = pick(['src/main.ts', 'src/a.ts', 'src/é.ts', '.env', 'node_modules/x.js', 'src/big.ts']);
			const text = relative === 'src/big.ts' && random() < 0.3 ? hugeString(2 * 1024 * 1024) : `export const v${int(100)} = ${int(1e6)};\n`.repeat(1 + int(5));
			const version = pick([1, 0, -1, 2 ** 31]);
			notify('textDocument/didOpen', maybeJunk({ textDocument: { uri: maybeJunk(uri(relative)), languageId: maybeJunk('typescript'), version, text: maybeJunk(text) } }), 'didOpen');
			open.set(uri(relative), version);
		},
		didChange: () => {
			const target = docUri();
			const current = open.get(target) ?? 1;
			// Stale or skipped versions, ranges past the end or reversed, full-text and incremental changes mixed.
			const version = pick([current + 1, current, current - 5, 0, -1, current + 100]);
			const change = pick([
				{ text: 'whole new text\n' },
				{ range: { start: position(), end: position() }, text: pick(strings) },
				{ range: { start: { line: 2, character: 0 }, end: { line: 0, character: 0 } }, text: 'reversed' },
				{ range: null, text: 'x' },
				{ text: 5 },
			]);
			notify('textDocument/didChange', maybeJunk({ textDocument: { uri: target, version }, contentChanges: maybeJunk([change]) }), 'didChange');
			if (typeof version === 'number') open.set(target, version);
		},
		didClose: () => {
			const target = docUri();
			notify('textDocument/didClose', maybeJunk({ textDocument: { uri: target } }), 'didClose');
			open.delete(target);
		},
		didSave: () => notify('textDocument/didSave', { textDocument: { uri: docUri() } }, 'didSave'),
		didChangeFiles: () => {
			const file = () => ({ path: maybeJunk(pick(['src/a.ts', 'src/b.ts', '../x.ts', '/abs.ts', 'a\u0000b', '.env', 'src/.gitignore', 'x'.repeat(5000), 'src\\win.ts'])), text: maybeJunk(`const a = ${int(100)};\n`), version: maybeJunk(int(10)), mtimeMs: maybeJunk(Date.now()) });
			const params = {
				changed: maybeJunk(Array.from({ length: int(4) }, file)),
				deleted: maybeJunk([pick(['src/a.ts', 'src/b.ts', 'nope', 5, null])]),
				renamed: maybeJunk([{ from: pick(['src/a.ts', 'src/b.ts', null]), to: pick(['src/c.ts', '../up.ts', '', 7]) }]),
				reset: maybeJunk(random() < 0.05),
				batch: maybeJunk(random() < 0.2 ? { index: int(3), count: int(3), totalFiles: int(10) } : undefined),
			};
			notify('repokv/workspace/didChangeFiles', random() < 0.1 ? junk() : params, 'didChangeFiles');
		},
		didChangeFilesHuge: () => notify('repokv/workspace/didChangeFiles', { changed: [{ path: 'src/huge.ts', text: hugeString(3 * 1024 * 1024) }, { path: 'src/many.ts', text: '\n'.repeat(100_000) }] }, 'didChangeFilesHuge'),
		didChangeConfiguration: () => notify('workspace/didChangeConfiguration', { settings: maybeJunk({ repokv: { threads: 1 } }) }, 'didChangeConfiguration'),
		setTrace: () => notify('$/setTrace', { value: pick(['off', 'messages', 'verbose', 5]) }, 'setTrace'),
	};
	// Weights: mostly cheap messages; completions and asks (which run the model) are a few percent.
	const weights = {
		framingNoLength: 3, framingBadLength: 3, framingNoColon: 2, framingGarbage: 4, framingZeroLength: 2, framingPadded: 3, framingSplit: 3,
		bodyNotJson: 6, bodyNotRpc: 6, unknownRequest: 5, unknownNotification: 4,
		status: 6, snapshot: 4, askBad: 4, ask: 0.2, initializeAgain: 1, completion: 3, completionBad: 4, cancel: 5,
		didOpen: 6, didChange: 12, didClose: 3, didSave: 2, didChangeFiles: 8, didChangeFilesHuge: 0.1, didChangeConfiguration: 0.5, setTrace: 1,
	};
	const table = Object.entries(weights);
	const totalWeight = table.reduce((sum, [, weight]) => sum + weight, 0);
	const choose = () => {
		let roll = random() * totalWeight;
		for (const [name, weight] of table) {
			roll -= weight;
			if (roll < 0) return name;
		}
		return table[0][0];
	};

	const started = Date.now();
	let memoryBefore;
	/** What the server says of its memory every 2,000 messages (repokv/debug/memory). */
	const memorySeries = [];
	try {
		// A proper start: initialize, initialized, the workspace, an open document; then the storm.
		const init = nextId++;
		peer.sendJson({ jsonrpc: '2.0', id: init, method: 'initialize', params: { processId: process.pid, rootUri: pathToFileURL(root).href, workspaceFolders: [{ uri: pathToFileURL(root).href, name: 'ws' }], capabilities: { workspace: { configuration: true } }, initializationOptions: { settings } } });
		await peer.response(init, 60_000);
		peer.sendJson({ jsonrpc: '2.0', method: 'initialized', params: {} });
		peer.sendJson({ jsonrpc: '2.0', method: 'repokv/workspace/didChangeFiles', params: { changed: [{ path: 'src/config.ts', text: 'export const RETRY_LIMIT_MS = 4817;\n' }], reset: true } });
		peer.sendJson({ jsonrpc: '2.0', method: 'textDocument/didOpen', params: { textDocument: { uri: uri('src/main.ts'), languageId: 'typescript', version: 1, text: 'import { RETRY_LIMIT_MS } from "./config";\nconst x = ' } } });
		open.set(uri('src/main.ts'), 1);
		// Wait for the model (completions and asks need it).
		const statusId = nextId++;
		for (;;) {
			peer.sendJson({ jsonrpc: '2.0', id: `wait${statusId}-${Date.now()}`, method: 'repokv/status' });
			await new Promise((resolve) => setTimeout(resolve, 200));
			const last = [...peer.responses.values()].filter((reply) => String(reply.id).startsWith(`wait${statusId}`)).at(-1);
			if (last?.result?.state === 'ready' || last?.result?.state === 'error') break;
			assert.ok(Date.now() - started < 60_000, `the model did not load: ${stderr}`);
		}
		memoryBefore = memoryOf(child.pid);
		let sent = 0;
		while (sent < messages) {
			const burst = Math.min(messages - sent, 20 + int(60));
			for (let index = 0; index < burst; index++) {
				const kind = choose();
				const before = counts[kind];
				generators[kind]();
				if (counts[kind] === before) count(kind);
			}
			sent += burst;
			await settle();
			if (sent % 2000 < burst) {
				// After a garbage collection. Retried: broken framing just before can swallow the request (answered
				// with an error, as any request may be).
				let inside;
				let reply;
				for (let attempt = 0; attempt < 3 && inside === undefined; attempt++) {
					const id = request('repokv/debug/memory', { gc: true }, 'debugMemory');
					reply = await peer.response(id, responseTimeoutMs);
					inside = reply.result;
					await settle();
				}
				assert.ok(inside, `repokv/debug/memory answered: ${JSON.stringify(reply)}`);
				const mib = (bytes) => Math.round(bytes / 1048576);
				memorySeries.push({ messages: sent, rssKB: memoryOf(child.pid).rssKB, ...inside });
				log(`${sent} messages, ${counts.responses ?? 0} responses, rss ${memoryOf(child.pid).rssKB} kB (V8 heap ${mib(inside.heapUsed)} of ${mib(inside.heapTotal)} MiB, external ${mib(inside.external)} MiB, ${inside.documents} documents of ${mib(inside.documentChars * 2)} MiB, mirror ${inside.mirror.files} files)`);
			}
		}
		const memoryAfter = memoryOf(child.pid);
		if (heapSnapshotDir !== undefined) {
			const { readdir } = await import('node:fs/promises');
			const before = new Set(await readdir(heapSnapshotDir));
			child.kill('SIGUSR2');
			// Written synchronously by the server's main thread: a status request is answered once it is done.
			await peer.response(request('repokv/status', undefined, 'status'), responseTimeoutMs);
			await settle();
			log(`heap snapshot: ${(await readdir(heapSnapshotDir)).filter((name) => !before.has(name)).join(', ')}`);
		}
		// Requests after shutdown: answered (with an error), and the process waits for `exit`.
		request('shutdown', undefined, 'shutdown');
		await settle();
		for (let index = 0; index < 20; index++) request(pick(['repokv/status', 'textDocument/inlineCompletion', 'repokv/repo/ask', 'shutdown', 'repokv/nope']), { textDocument: { uri: uri('src/main.ts') }, position: { line: 0, character: 0 }, context: { triggerKind: 1 }, question: 'x' }, 'afterShutdown');
		for (let index = 0; index < 10; index++) notify(pick(['textDocument/didChange', 'repokv/workspace/didChangeFiles']), {}, 'afterShutdownNotification');
		await settle();
		peer.sendJson({ jsonrpc: '2.0', method: 'exit' });
		count('exit');
		const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
		const exit = await exited;
		clearTimeout(timer);
		assert.deepEqual(exit, { code: 0, signal: null }, `exit after shutdown: ${JSON.stringify(exit)}; stderr: ${stderr}`);
		assert.deepEqual(peer.stray, [], 'a request was answered twice');
		assert.deepEqual(networkAttempts(netLog), [], 'the server attempted network access');
		const total = Object.entries(counts).filter(([kind]) => !['responses', 'errorResponses'].includes(kind)).reduce((sum, [, value]) => sum + value, 0);
		return { messages: total, byKind: counts, serverRequests: peer.serverRequests, serverNotifications: peer.notifications, crashes: 0, rssBeforeKB: memoryBefore.rssKB, rssAfterKB: memoryAfter.rssKB, peakRssKB: memoryAfter.peakKB, memorySeries, ms: Date.now() - started };
	} finally {
		if (exitInfo === undefined) child.kill('SIGKILL');
		await rm(root, { recursive: true, force: true });
		await rm(netLog, { force: true });
	}
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const messages = Number(argValue('--messages', '10000'));
	const seed = Number(argValue('--seed', '1'));
	const heapSnapshotDir = argValue('--heap-snapshot', undefined);
	const cli = argValue('--cli', undefined);
	const result = await runLspFuzz({ messages, seed, responseTimeoutMs: Number(argValue('--timeout-ms', '120000')), log: (line) => console.error(line), ...(heapSnapshotDir === undefined ? {} : { heapSnapshotDir: path.resolve(heapSnapshotDir) }), ...(cli === undefined ? {} : { cli: path.resolve(cli) }) });
	console.log(JSON.stringify({ fuzzer: 'lsp', seed, ...result }));
}
