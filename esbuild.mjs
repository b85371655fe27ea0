// Bundles repokv's three programs with one esbuild run:
//   extension  extension/src/extension.ts -> dist/extension.js   CommonJS, loaded by VS Code's extension host
//   sidecar    sidecar/src/cli/main.ts    -> dist/sidecar.mjs    ESM, run by Node (bin/repokv.js, or the extension)
//   webview    webview/src/main.ts        -> dist/webview.js     IIFE for the cache inspector's browser frame
//
// Usage: node esbuild.mjs [--watch] [--production]
import * as esbuild from 'esbuild';

const watch = process.argv.includes('--watch');
const production = process.argv.includes('--production');

/** @type {esbuild.BuildOptions} */
const common = {
	bundle: true,
	sourcemap: !production,
	minify: production,
	logLevel: 'warning',
	legalComments: 'none',
};

/** @type {esbuild.BuildOptions[]} */
const targets = [
	{
		...common,
		entryPoints: ['extension/src/extension.ts'],
		outfile: 'dist/extension.js',
		platform: 'node',
		target: 'node20',
		format: 'cjs',
		// Provided by the extension host at run time; there is no real `vscode` package to bundle.
		external: ['vscode'],
	},
	{
		...common,
		entryPoints: ['sidecar/src/cli/main.ts'],
		outfile: 'dist/sidecar.mjs',
		platform: 'node',
		target: 'node20',
		// ESM because node-llama-cpp is ESM-only (and uses top-level await); a CommonJS bundle could not import it.
		format: 'esm',
		// node-llama-cpp locates its prebuilt binaries relative to its own package folder, and native addons
		// (`*.node`, our own included) must be loaded from disk: neither can be inlined into a bundle.
		external: ['node-llama-cpp', '*.node'],
		// CommonJS dependencies bundled into ESM call `require` for Node built-ins; give them a real one.
		banner: { js: "import { createRequire as __repokvCreateRequire } from 'node:module';\nconst require = __repokvCreateRequire(import.meta.url);" },
	},
	{
		...common,
		entryPoints: ['webview/src/main.ts'],
		outfile: 'dist/webview.js',
		platform: 'browser',
		target: 'es2022',
		format: 'iife',
	},
];

if (watch) {
	const contexts = await Promise.all(targets.map((options) => esbuild.context(options)));
	await Promise.all(contexts.map((context) => context.watch()));
	console.log('esbuild: watching extension, sidecar and webview');
} else {
	await Promise.all(targets.map((options) => esbuild.build(options)));
}
