// A workspace of 100,000 files and 2 GB, generated under /tmp and deleted afterwards: the extension's real workspace
// feed (extension/src/feed.ts under the vscode stub of test/fuzz/support, in this process, standing in for the
// extension host; VS Code's findFiles runs in a search process, the stub's here, so its cost is counted against us)
// streams it to the real sidecar. Reports the event loop's longest block in this process (perf_hooks
// monitorEventLoopDelay, 1 ms resolution), this process's and the sidecar's peak RSS, the feed's time, and the
// sidecar's indexing time and progress statuses.
//
//   node bench/reliability/large-workspace.mjs [--files 100000] [--gib 2]
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { feedConfig, loadFeed } from '../../test/fuzz/support/feed-bundle.mjs';
import { argValue } from '../../test/fuzz/support/random.mjs';
import { memoryOf } from '../../test/fuzz/lsp.fuzz.mjs';
import { startServer } from '../../test/support/lsp-client.mjs';

const fileCount = Number(argValue('--files', '100000'));
const totalBytes = Number(argValue('--gib', '2')) * 1024 ** 3;
const root = await mkdtemp(path.join(tmpdir(), 'repokv-large-'));
const log = (message) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);

try {
	// 1% of the files are large data files (over the 1 MiB limit) holding half the bytes; the rest are sources.
	const large = Math.max(1, Math.floor(fileCount / 100));
	const largeSize = Math.floor(totalBytes / 2 / large);
	const smallSize = Math.floor(totalBytes / 2 / (fileCount - large));
	const line = 'export function handler(request: Request): Response { return new Response(String(request.url)); }\n';
	const small = line.repeat(Math.ceil(smallSize / line.length)).slice(0, smallSize);
	const big = 'x,'.repeat(Math.ceil(largeSize / 2)).slice(0, largeSize);
	const started = Date.now();
	for (let index = 0; index < fileCount; index++) {
		const folder = path.join(root, `pkg${Math.floor(index / 1000)}`, `mod${Math.floor(index / 100) % 10}`);
		if (index % 100 === 0) mkdirSync(folder, { recursive: true });
		writeFileSync(path.join(folder, index < large ? `data${index}.csv` : `file${index}.ts`), index < large ? big : `// ${index}\n${small}`);
	}
	writeFileSync(path.join(root, '.gitignore'), 'pkg9*/\n');
	log(`generated ${fileCount} files, ${(totalBytes / 1024 ** 3).toFixed(2)} GiB in ${Date.now() - started} ms`);

	const server = await startServer({ settings: { threads: 1 }, workspace: root });
	await server.waitForStatus((s) => s.state === 'ready' || s.state === 'error', 120_000);
	const { WorkspaceFeed, vscode } = await loadFeed();
	let sentBytes = 0;
	let batches = 0;
	const sink = async (params) => {
		batches++;
		for (const file of params.changed ?? []) sentBytes += file.text.length;
		await server.connection.sendNotification('repokv/workspace/didChangeFiles', params);
	};
	const channel = vscode.logChannel();
	const feed = new WorkspaceFeed(vscode.Uri.file(root), feedConfig(), sink, channel);
	const loop = monitorEventLoopDelay({ resolution: 1 });
	const sidecarRss = [];
	const sampler = setInterval(() => sidecarRss.push(memoryOf(server.child.pid).rssKB), 250);
	// The delay monitor counts wall time, so a process the OS did not schedule (this machine's 2 cores are shared)
	// looks blocked too. A 1 ms tick also takes this process's own CPU time over each gap: what the feed itself
	// spent without yielding.
	const gaps = [];
	let lastTick = performance.now();
	let lastCpu = process.cpuUsage();
	const ticker = setInterval(() => {
		const now = performance.now();
		const cpu = process.cpuUsage();
		if (now - lastTick > 20) gaps.push({ wallMs: Math.round(now - lastTick), cpuMs: Math.round((cpu.user + cpu.system - lastCpu.user - lastCpu.system) / 1000) });
		lastTick = now;
		lastCpu = cpu;
	}, 1);
	loop.enable();
	const feedStarted = Date.now();
	await feed.rescan();
	const feedMs = Date.now() - feedStarted;
	// Indexing: the sidecar tokenizes every file's piece; done when the status is ready after the last batch.
	await new Promise((resolve) => setTimeout(resolve, 200));
	const deadline = Date.now() + 600_000;
	while (server.statuses.at(-1)?.state !== 'ready' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
	const indexedMs = Date.now() - feedStarted;
	loop.disable();
	clearInterval(sampler);
	clearInterval(ticker);
	const status = await server.connection.sendRequest('repokv/status');
	const progress = server.statuses.filter((s) => s.state === 'indexing');
	const sidecarPeak = memoryOf(server.child.pid).peakKB;
	await server.stop();
	feed.dispose();
	console.log(
		JSON.stringify(
			{
				workspace: { files: fileCount, bytes: totalBytes },
				feed: { ms: feedMs, batches, sentFiles: feed.stats.files, sentMiB: Math.round(sentBytes / 1024 / 1024), skipped: feed.stats.skipped, log: channel.lines.filter((entry) => entry.includes('sent')) },
				extensionHost: {
					note: 'feed.ts under the vscode stub, in this process',
					loadAverage: os.loadavg().map((value) => Math.round(value * 10) / 10),
					eventLoopDelayMs: { max: Math.round(loop.max / 1e5) / 10, p99: Math.round(loop.percentile(99) / 1e5) / 10, p50: Math.round(loop.percentile(50) / 1e5) / 10, mean: Math.round(loop.mean / 1e5) / 10 },
					gapsOver20ms: gaps.length,
					gapsOver50ms: gaps.filter((gap) => gap.wallMs > 50).length,
					maxCpuWithinOneGapMs: Math.max(0, ...gaps.map((gap) => gap.cpuMs)),
					worstGaps: [...gaps].sort((a, b) => b.wallMs - a.wallMs).slice(0, 5),
					peakRssKB: process.resourceUsage().maxRSS,
				},
				sidecar: { peakRssKB: sidecarPeak, maxSampledRssKB: Math.max(...sidecarRss), indexedMs, mirror: status.workspace, progressStatuses: progress.length, firstProgress: progress[0]?.message, lastProgress: progress.at(-1)?.message },
			},
			null,
			2,
		),
	);
} finally {
	const removing = Date.now();
	await rm(root, { recursive: true, force: true });
	log(`deleted the workspace in ${Date.now() - removing} ms`);
}
