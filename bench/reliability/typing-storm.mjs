// Typing storm over LSP: 100 completion requests per second for 60 s against the real server on the bundled models
// (threads 1), on the needle workspace. Each request follows a keystroke (didChange, new version); the client does
// not cancel anything, so the server's own newest-wins and its queue are what is measured. Reports p50/p99 latency of
// all answers and of answers with a completion, the most requests outstanding at once, the server's counters, and
// the sidecar's RSS sampled every second (first 10 s vs last 10 s, peak VmHWM).
// `--trigger invoked` sends every request as an explicit one (Alt+\: no debounce), so each reaches the engine queue
// and most are superseded while the previous computation runs: what the server's newest-wins costs under load.
// `--cli FILE` runs another build of the sidecar launcher (to compare before and after a change).
//
//   node bench/reliability/typing-storm.mjs [--rate 100] [--seconds 60] [--trigger automatic|invoked] [--cli FILE]
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { argValue } from '../../test/fuzz/support/random.mjs';
import { memoryOf } from '../../test/fuzz/lsp.fuzz.mjs';
import { startServer, workspaceFiles } from '../../test/support/lsp-client.mjs';
import { needleWorkspace } from '../../test/support/sidecar.mjs';

const rate = Number(argValue('--rate', '100'));
const seconds = Number(argValue('--seconds', '60'));
const trigger = argValue('--trigger', 'automatic');
if (trigger !== 'automatic' && trigger !== 'invoked') throw new Error(`--trigger ${trigger}: automatic or invoked`);
const cli = argValue('--cli', undefined);

const percentile = (values, p) => {
	if (values.length === 0) return null;
	const sorted = [...values].sort((a, b) => a - b);
	return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] * 10) / 10;
};

const server = await startServer({ settings: { threads: 1 }, ...(cli === undefined ? {} : { cli: path.resolve(cli) }) });
await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error', 120_000);
const files = await workspaceFiles(needleWorkspace);
await server.connection.sendNotification('repokv/workspace/didChangeFiles', { changed: files, batch: { index: 0, count: 1, totalFiles: files.length }, reset: true });
const mainText = await readFile(path.join(needleWorkspace, 'src/main.ts'), 'utf8');
const uri = server.uri('src/main.ts');
await server.connection.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'typescript', version: 1, text: mainText } });
// One completion first, so the storm measures steady state rather than the cold prefill.
await server.connection.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 9, character: 31 }, context: { triggerKind: 1 } });
const statusBefore = await server.connection.sendRequest('repokv/status');

const rss = [];
const sampler = setInterval(() => rss.push(memoryOf(server.child.pid).rssKB), 1000);
const latencies = [];
const withItems = [];
let outstanding = 0;
let maxOutstanding = 0;
let version = 1;
const pending = [];
const started = performance.now();
const total = rate * seconds;
for (let index = 0; index < total; index++) {
	// Keep the schedule: request i goes at i / rate seconds.
	const due = started + (index * 1000) / rate;
	const wait = due - performance.now();
	if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
	// A keystroke: one space more or less after the cursor's comma, alternately.
	const text = mainText.replace('assert.equal(RETRY_LIMIT_MS, ', `assert.equal(RETRY_LIMIT_MS, ${' '.repeat(index % 2)}`);
	await server.connection.sendNotification('textDocument/didChange', { textDocument: { uri, version: ++version }, contentChanges: [{ text }] });
	const sent = performance.now();
	outstanding++;
	maxOutstanding = Math.max(maxOutstanding, outstanding);
	pending.push(
		server.connection
			.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 9, character: 31 + (index % 2) }, context: { triggerKind: trigger === 'invoked' ? 1 : 2 } })
			.then((result) => {
				const ms = performance.now() - sent;
				latencies.push(ms);
				if ((result?.items ?? []).length > 0) withItems.push({ ms, index, text: result.items[0].insertText });
			})
			.finally(() => {
				outstanding--;
			}),
	);
}
const sendSeconds = (performance.now() - started) / 1000;
await Promise.all(pending);
clearInterval(sampler);
const statusAfter = await server.connection.sendRequest('repokv/status');
const memory = memoryOf(server.child.pid);
await server.stop();
const avg = (values) => Math.round(values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length));
const counters = Object.fromEntries(Object.keys(statusAfter.completions).map((key) => [key, statusAfter.completions[key] - (statusBefore.completions[key] ?? 0)]));
const last = withItems.at(-1);
const result = {
	rate,
	seconds,
	trigger,
	requests: total,
	achievedRate: Math.round((total / sendSeconds) * 10) / 10,
	answered: latencies.length,
	answeredWithCompletion: withItems.length,
	latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: percentile(latencies, 100) },
	completionLatencyMs: { p50: percentile(withItems.map((entry) => entry.ms), 50), p99: percentile(withItems.map((entry) => entry.ms), 99) },
	maxOutstanding,
	lastRequestAnswered: last?.index === total - 1,
	lastCompletion: last?.text,
	serverCounters: counters,
	rssKB: { first10s: avg(rss.slice(0, 10)), last10s: avg(rss.slice(-10)), min: Math.min(...rss), max: Math.max(...rss), peakVmHWM: memory.peakKB },
	engine: statusAfter.engine,
};
console.log(JSON.stringify(result, null, 2));
