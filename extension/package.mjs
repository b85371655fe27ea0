#!/usr/bin/env node
// `npm run package`: builds the addon and a production bundle, stages exactly what runs into a temporary folder,
// packs it with vsce (linux-x64 target), then checks what is inside and prints its size.
//
// What ships, and nothing else:
//   package.json, README.md, bin/repokv.js, dist/ (the bundled extension, sidecar and webview), the native addon
//   (native/build/repokv.node), the bundled models (models/*.gguf, tokenizer.json, their card);
//   node-llama-cpp as two esbuild bundles (its import graph is 540 files of JavaScript over 60 packages at run time):
//   dist/index.js and dist/bindings/utils/testBindingBinary.js (which node-llama-cpp forks by its own path to test a
//   binary), each module's `import.meta.url` rewritten to the path it had in the package, so every path it derives
//   (../llama, ../package.json, the platform package) is what it was; its package.json, LICENSE, llama/*.json and
//   llama/grammars; and @node-llama-cpp/linux-x64 (its package.json, dist/index.js, the CPU binaries in bins/). Not
//   the CUDA, Vulkan or other platforms' packages, not llama.cpp's source bundle, not node-llama-cpp's CLI and build
//   tool chain (cmake-js, yargs, tar, ...), which a prebuilt binary never needs.
//
// Usage: node extension/package.mjs [--out FILE] [--skip-native]
//   (default: repokv-<version>-linux-x64.vsix in the repository root; --skip-native packs the addon already built)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const outArg = process.argv.indexOf('--out');
const out = path.resolve(root, outArg > 0 ? process.argv[outArg + 1] : `repokv-${manifest.version}-linux-x64.vsix`);
const target = 'linux-x64';
// Outside the repository: nothing in it should be linted, type-checked or searched. Removed after packing.
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'repokv-vsix-stage-'));

function readJson(relative) {
	return JSON.parse(fs.readFileSync(path.join(root, relative), 'utf8'));
}

function run(command, args, cwd = root) {
	execFileSync(command, args, { cwd, stdio: 'inherit' });
}

if (!process.argv.includes('--skip-native')) {
	run(process.execPath, ['native/build.mjs', '--quiet']);
}
run(process.execPath, ['esbuild.mjs', '--production']);

// --- The stage: only files that run ---------------------------------------------------------------------------
const copy = (relative, from = path.join(root, relative)) => {
	const to = path.join(stage, relative);
	fs.mkdirSync(path.dirname(to), { recursive: true });
	fs.cpSync(from, to, { recursive: true, dereference: true });
};
// The stage has no dev tool chain: nothing may run at pack time. vsce takes node_modules from `npm list
// --production`, so the staged manifests name exactly the two staged packages and nothing below them (node-llama-cpp's
// own dependencies are inside its bundle).
const stagedManifest = { ...manifest, dependencies: { 'node-llama-cpp': manifest.dependencies['node-llama-cpp'], [`@node-llama-cpp/${target}`]: readJson(`node_modules/@node-llama-cpp/${target}/package.json`).version } };
delete stagedManifest.scripts;
delete stagedManifest.devDependencies;
fs.mkdirSync(stage, { recursive: true });
fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(stagedManifest, null, 2)}\n`);
// The stage holds only what ships; the ignore file is for vsce's check that one exists.
fs.writeFileSync(path.join(stage, '.vscodeignore'), '# extension/package.mjs stages only what ships\n**/*.map\n');
for (const file of ['README.md', 'bin/repokv.js', 'dist/extension.js', 'dist/sidecar.mjs', 'dist/webview.js', 'native/build/repokv.node', 'models/target.gguf', 'models/draft.gguf', 'models/tokenizer.json', 'models/README.md']) {
	copy(file);
}

// node-llama-cpp, bundled. `import.meta.url` in each of its modules becomes the URL that module had in the package,
// computed from the bundle's own location, so the bundle can sit where the package's files sat.
const llamaPackage = path.join(root, 'node_modules', 'node-llama-cpp');
const llamaStage = path.join(stage, 'node_modules', 'node-llama-cpp');
const bundleLlama = async (entry) => {
	const outfile = path.join(llamaStage, entry);
	const outDir = path.dirname(path.join(llamaPackage, entry));
	const result = await esbuild.build({
		entryPoints: [path.join(llamaPackage, entry)],
		metafile: true,
		outfile,
		bundle: true,
		platform: 'node',
		target: 'node20',
		format: 'esm',
		minify: true,
		legalComments: 'none',
		logLevel: 'warning',
		// Platform packages are imported by name at run time (only linux-x64 ships); native addons load from disk; ipull's
		// optional copy-on-write helper (@reflink) is imported only when present.
		external: ['@node-llama-cpp/*', '@reflink/*', '*.node'],
		banner: { js: "import { createRequire as __nlcCreateRequire } from 'node:module';\nconst require = __nlcCreateRequire(import.meta.url);" },
		plugins: [
			{
				name: 'original-import-meta-url',
				setup(build) {
					build.onLoad({ filter: /[\\/]node-llama-cpp[\\/]dist[\\/].*\.js$/ }, (args) => {
						const text = fs.readFileSync(args.path, 'utf8');
						if (!text.includes('import.meta.url')) {
							return undefined;
						}
						const relative = path.relative(outDir, args.path).split(path.sep).join('/');
						return { contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(relative.startsWith('.') ? relative : `./${relative}`)}, import.meta.url).href`), loader: 'js' };
					});
				},
			},
		],
	});
	for (const input of Object.keys(result.metafile.inputs)) {
		const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
		if (match !== null) {
			bundledPackages.add(path.resolve(root, match[1]));
		}
	}
};
/** Every package folder whose code went into a bundle: their licences ship in one notices file. */
const bundledPackages = new Set();
await bundleLlama('dist/index.js');
await bundleLlama('dist/bindings/utils/testBindingBinary.js');
const notices = [...bundledPackages].sort().flatMap((folder) => {
	const licence = fs.readdirSync(folder).find((name) => /^licen[cs]e/i.test(name));
	const { name, version, license } = JSON.parse(fs.readFileSync(path.join(folder, 'package.json'), 'utf8'));
	return [`${name} ${version} (${license ?? 'see below'})`, licence === undefined ? '(no licence file)' : fs.readFileSync(path.join(folder, licence), 'utf8').trim(), ''];
});
fs.writeFileSync(path.join(llamaStage, 'THIRD-PARTY-NOTICES.txt'), `The packages bundled into node-llama-cpp's dist/index.js and dist/bindings/utils/testBindingBinary.js, with their licences.\n\n${notices.join('\n')}\n`);
const llamaManifest = readJson('node_modules/node-llama-cpp/package.json');
for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies', 'peerDependenciesMeta', 'devDependencies', 'scripts']) {
	delete llamaManifest[field];
}
fs.mkdirSync(llamaStage, { recursive: true });
fs.writeFileSync(path.join(llamaStage, 'package.json'), `${JSON.stringify(llamaManifest, null, 2)}\n`);
for (const file of ['LICENSE', 'llama/package.json', 'llama/binariesGithubRelease.json', 'llama/llama.cpp.info.json', 'llama/grammars']) {
	copy(`node_modules/node-llama-cpp/${file}`);
}
for (const file of ['package.json', 'LICENSE', 'dist/index.js', 'bins']) {
	copy(`node_modules/@node-llama-cpp/${target}/${file}`);
}

// --- Pack ---------------------------------------------------------------------------------------------------------
fs.rmSync(out, { force: true });
try {
	run(process.execPath, [path.join(root, 'node_modules/@vscode/vsce/vsce'), 'package', '--target', target, '--allow-missing-repository', '--skip-license', '--no-update-package-json', '--out', out], stage);
} finally {
	fs.rmSync(stage, { recursive: true, force: true });
}

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
const required = ['package.json', 'dist/extension.js', 'dist/sidecar.mjs', 'dist/webview.js', 'bin/repokv.js', 'native/build/repokv.node', 'models/target.gguf', 'models/draft.gguf', 'node_modules/node-llama-cpp/package.json', 'node_modules/node-llama-cpp/dist/index.js', 'node_modules/node-llama-cpp/dist/bindings/utils/testBindingBinary.js', `node_modules/@node-llama-cpp/${target}/package.json`, `node_modules/@node-llama-cpp/${target}/bins/${target}/llama-addon.node`];
const missing = required.filter((name) => !names.has(name));
const forbidden = entries.filter(({ name }) => /(^node_modules\/@node-llama-cpp\/[^/]*(cuda|vulkan|arm)|\.ts$|\.map$|^test\/|^sidecar\/|^bench\/|^dist\/bench\.mjs$|^models\/recipe\/|^\.cache\/|^node_modules\/typescript\/|gitRelease\.bundle|llama\.cpp\/|^native\/build\/(?!repokv\.node$))/.test(name));
// The addon inside the .vsix is the product one: none of the test addon's exports or code (native/build.mjs builds both).
const { testOnlyContent } = await import('../native/tools/check-product-addon.mjs');
const packedAddon = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'repokv-vsix-addon-')), 'repokv.node');
await new Promise((resolve, reject) => {
	yauzl.open(out, { lazyEntries: true }, (error, zip) => {
		if (error) return reject(error);
		zip.on('entry', (entry) => {
			if (entry.fileName !== 'extension/native/build/repokv.node') return zip.readEntry();
			zip.openReadStream(entry, (err, stream) => {
				if (err) return reject(err);
				stream.pipe(fs.createWriteStream(packedAddon)).on('finish', resolve).on('error', reject);
			});
		});
		zip.on('end', resolve);
		zip.on('error', reject);
		zip.readEntry();
	});
});
const testOnly = fs.existsSync(packedAddon) ? testOnlyContent(packedAddon) : [];
fs.rmSync(path.dirname(packedAddon), { recursive: true, force: true });
const size = fs.statSync(out).size;
const unpacked = entries.reduce((sum, entry) => sum + entry.size, 0);
const scripts = entries.filter((entry) => /\.(m?js|cjs)$/.test(entry.name)).length;
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const biggest = [...entries].sort((a, b) => b.size - a.size).slice(0, 6).map((entry) => `${entry.name} ${mb(entry.size)}`);
console.log(`\n${path.relative(root, out)}: ${mb(size)} (${entries.length} files, ${scripts} of them JavaScript, ${mb(unpacked)} unpacked)`);
console.log(`largest: ${biggest.join(', ')}`);
if (testOnly.length === 0 && names.has('native/build/repokv.node')) console.log('native/build/repokv.node: the product addon (no test-only exports or symbols: native/tools/check-product-addon.mjs)');
if (missing.length > 0 || forbidden.length > 0 || testOnly.length > 0 || entries.length >= 150) {
	if (missing.length > 0) console.error(`package: missing from the .vsix: ${missing.join(', ')}`);
	if (testOnly.length > 0) console.error(`package: the .vsix's native/build/repokv.node carries test-only code: ${testOnly.join(', ')}`);
	if (forbidden.length > 0) console.error(`package: must not be in the .vsix: ${forbidden.slice(0, 10).map((entry) => entry.name).join(', ')}`);
	if (entries.length >= 150) console.error(`package: ${entries.length} files; the lean package has fewer than 150`);
	process.exit(1);
}
