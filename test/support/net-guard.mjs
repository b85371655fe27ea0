// Preloaded into the sidecar by the integration tests (`node --import <this file>`, through NODE_OPTIONS): records
// every network attempt the process makes (a TCP or IPC connect, a listen, a UDP bind or send, a DNS lookup) as one
// JSON line in $REPOKV_NET_LOG, with the call site. It records and lets the call proceed, so behaviour is unchanged;
// the tests read the log (test/support/privacy.mjs). Undici (fetch), http, https and tls all end in net.Socket#connect.
import { appendFileSync } from 'node:fs';
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';

const logFile = process.env.REPOKV_NET_LOG;

function record(kind, target) {
	if (!logFile) return;
	const stack = (new Error().stack ?? '').split('\n').slice(3, 8).map((line) => line.trim());
	try {
		appendFileSync(logFile, `${JSON.stringify({ pid: process.pid, kind, target, stack })}\n`);
	} catch {
		// The log is for the test; never break the process over it.
	}
}

function describe(args) {
	const [first, second] = args;
	if (Array.isArray(first)) return describe(first);
	if (typeof first === 'object' && first !== null) return { host: first.host, port: first.port, path: first.path };
	return typeof first === 'string' && typeof second !== 'number' ? { path: first } : { port: first, host: second };
}

const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
	record('connect', describe(args));
	return connect.apply(this, /** @type {any} */ (args));
};
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
	record('listen', describe(args));
	return listen.apply(this, /** @type {any} */ (args));
};
const bind = dgram.Socket.prototype.bind;
dgram.Socket.prototype.bind = function (...args) {
	record('udpBind', describe(args));
	return bind.apply(this, /** @type {any} */ (args));
};
const send = dgram.Socket.prototype.send;
dgram.Socket.prototype.send = function (...args) {
	record('udpSend', { port: args[args.length - 3], host: args[args.length - 2] });
	return send.apply(this, /** @type {any} */ (args));
};
for (const [owner, name] of /** @type {[any, string][]} */ ([[dns, 'lookup'], [dns, 'resolve'], [dns, 'resolve4'], [dns, 'resolve6'], [dns.promises, 'lookup'], [dns.promises, 'resolve']])) {
	const original = owner[name];
	owner[name] = function (hostname, ...rest) {
		record(`dns.${name}`, { host: hostname });
		return original.call(this, hostname, ...rest);
	};
}
