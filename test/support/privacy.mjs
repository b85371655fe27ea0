// What a process does on the network, from two sides: what it tried (the net-guard preload's log) and what the
// kernel holds for it (its socket inodes in /proc/<pid>/fd, looked up in /proc/net/{tcp,tcp6,udp,udp6,unix}).
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const netGuardPath = path.join(path.dirname(fileURLToPath(import.meta.url)), 'net-guard.mjs');

/** Environment that preloads the guard into a Node child, logging to `logFile`. */
export function guardEnv(logFile, env = process.env) {
	return { NODE_OPTIONS: `${env.NODE_OPTIONS ?? ''} --import ${netGuardPath}`.trim(), REPOKV_NET_LOG: logFile };
}

/** The attempts the guard recorded (empty when the log does not exist). */
export function networkAttempts(logFile) {
	if (!existsSync(logFile)) return [];
	return readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
}

/**
 * The sockets a process holds, by kind: `tcp`/`udp` sockets of any state (a local tool's sidecar should hold none),
 * and listening ones (TCP state 0A, or a UNIX socket with __SO_ACCEPTCON). The process's stdio socketpairs are UNIX
 * sockets, connected, and not listening.
 */
export function socketsOf(pid) {
	const inodes = new Set();
	let fds = [];
	try {
		fds = readdirSync(`/proc/${pid}/fd`);
	} catch {
		return { inet: [], listening: [], unix: 0 };
	}
	for (const fd of fds) {
		try {
			const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
			if (match) inodes.add(match[1]);
		} catch {
			// Closed meanwhile.
		}
	}
	const inet = [];
	const listening = [];
	for (const table of ['tcp', 'tcp6', 'udp', 'udp6']) {
		let text = '';
		try {
			text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
		} catch {
			continue;
		}
		for (const line of text.split('\n').slice(1)) {
			const fields = line.trim().split(/\s+/);
			if (fields.length < 10 || !inodes.has(fields[9])) continue;
			const entry = { table, local: fields[1], remote: fields[2], state: fields[3] };
			inet.push(entry);
			if (table.startsWith('tcp') && fields[3] === '0A') listening.push(entry);
		}
	}
	let unix = 0;
	try {
		for (const line of readFileSync(`/proc/${pid}/net/unix`, 'utf8').split('\n').slice(1)) {
			const fields = line.trim().split(/\s+/);
			if (fields.length < 7 || !inodes.has(fields[6])) continue;
			unix++;
			if ((parseInt(fields[3], 16) & 0x10000) !== 0) listening.push({ table: 'unix', path: fields[7] ?? '', state: fields[5] });
		}
	} catch {
		// No /proc/net/unix: nothing to add.
	}
	return { inet, listening, unix };
}
