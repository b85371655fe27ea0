#!/usr/bin/env node
// `npm run package`: builds the addon and a production bundle, packs the .vsix with vsce (linux-x64 target), then
// checks what is inside and prints its size. The .vsix holds the bundled extension and sidecar (dist/), the native
// addon, node-llama-cpp with only this platform's CPU binaries, and the bundled models; .vscodeignore says the rest.
//
// Usage: node extension/package.mjs [--out FILE]   (default: repokv-<version>-linux-x64.vsix in the repository root)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const outArg = process.argv.indexOf('--out');
const out = path.resolve(root, outArg > 0 ? process.argv[outArg + 1] : `repokv-${manifest.version}-linux-x64.vsix`);

function run(command, args) {
	execFileSync(command, args, { cwd: root, stdio: 'inherit' });
}

run(process.execPath, ['native/build.mjs', '--quiet']);
run(process.execPath, ['esbuild.mjs', '--production']);
fs.rmSync(out, { force: true });
run(process.execPath, [path.join(root, 'node_modules/@vscode/vsce/vsce'), 'package', '--target', 'linux-x64', '--allow-missing-repository', '--skip-license', '--no-update-package-json', '--out', out]);

// What is inside: a .vsix is a zip; list it with the unzip of vsce's own dependency-free reader (yauzl).
const { default: yauzl } = await import('yauzl');
const entries = await new Promise((resolve, reject) => {
	yauzl.open(out, { lazyEntries: true }, (error, zip) => {
		if (error) return reject(error);
		const list = [];
		zip.on('entry', (entry) => { list.push({ name: entry.fileName.replace(/^extension\//, ''), size: entry.uncompressedSize }); zip.readEntry(); });
		zip.on('end', () => resolve(list));
		zip.on('error', reject);
		zip.readEntry();
	});
});
const names = new Set(entries.map((entry) => entry.name));
const required = ['package.json', 'dist/extension.js', 'dist/sidecar.mjs', 'dist/webview.js', 'bin/repokv.js', 'native/build/repokv.node', 'models/target.gguf', 'models/draft.gguf', 'node_modules/node-llama-cpp/package.json', 'node_modules/@node-llama-cpp/linux-x64/package.json'];
const missing = required.filter((name) => !names.has(name));
const forbidden = entries.filter(({ name }) => /(^node_modules\/@node-llama-cpp\/[^/]*(cuda|vulkan|arm)|\.ts$|\.map$|^test\/|^sidecar\/|^models\/recipe\/|^\.cache\/|^node_modules\/typescript\/)/.test(name) && !name.endsWith('.d.ts'));
const size = fs.statSync(out).size;
const unpacked = entries.reduce((sum, entry) => sum + entry.size, 0);
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const biggest = [...entries].sort((a, b) => b.size - a.size).slice(0, 6).map((entry) => `${entry.name} ${mb(entry.size)}`);
console.log(`\n${path.relative(root, out)}: ${mb(size)} (${entries.length} files, ${mb(unpacked)} unpacked)`);
console.log(`largest: ${biggest.join(', ')}`);
if (missing.length > 0 || forbidden.length > 0) {
	if (missing.length > 0) console.error(`package: missing from the .vsix: ${missing.join(', ')}`);
	if (forbidden.length > 0) console.error(`package: must not be in the .vsix: ${forbidden.slice(0, 10).map((entry) => entry.name).join(', ')}`);
	process.exit(1);
}
