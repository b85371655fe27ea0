// Bundles repokv's four programs with one esbuild run:
//   extension  extension/src/extension.ts -> dist/extension.js   CommonJS, loaded by VS Code's extension host
//   sidecar    sidecar/src/cli/main.ts    -> dist/sidecar.mjs    ESM, run by Node (bin/repokv.js, or the extension)
//   bench      bench/main.ts              -> dist/bench.mjs      ESM, loaded by `repokv bench` from beside the sidecar
//   webview    webview/src/main.ts        -> dist/webview.js     IIFE for the cache inspector's browser frame
//
// Usage: node esbuild.mjs [--watch] [--production]. Importing this file builds nothing: test/unit/import-graph.test.mjs
// reads `targets` to check what each bundle is made of.
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const production = process.argv.includes('--production');
const root = path.dirname(fileURLToPath(import.meta.url));
const sidecarApi = path.join(root, 'sidecar', 'src', 'api.ts');

/**
 * The benchmarks use the sidecar only through its public API (sidecar/src/api.ts), and at run time that is the
 * sidecar bundle itself, `./sidecar.mjs` beside dist/bench.mjs: one copy of the sidecar in the process, so its module
 * state and classes are shared (a `UserError` thrown in a benchmark is the one the CLI's `main` catches). Any other
 * import of sidecar/ from bench/ would bundle a second copy, and fails the build.
 * @type {esbuild.Plugin}
 */
const sidecarApiExternal = {
	name: 'sidecar-api-external',
	setup(build) {
		build.onResolve({ filter: /sidecar[\\/]src[\\/]/ }, (args) => {
			const resolved = path.resolve(args.resolveDir, args.path);
			const file = resolved.endsWith('.ts') ? resolved : `${resolved}.ts`;
			if (file === sidecarApi) {
				return { path: './sidecar.mjs', external: true };
			}
			return { errors: [{ text: `bench imports the sidecar only through sidecar/src/api.ts, not ${path.relative(root, resolved)}` }] };
		});
	},
};

/** @type {esbuild.BuildOptions} */
const common = {
	absWorkingDir: root,
	bundle: true,
	sourcemap: !production,
	minify: production,
	logLevel: 'warning',
	legalComments: 'none',
};

/** What a Node ESM bundle needs. @type {esbuild.BuildOptions} */
const nodeEsm = {
	platform: 'node',
	target: 'node20',
	// ESM because node-llama-cpp is ESM-only (and uses top-level await); a CommonJS bundle could not import it.
	format: 'esm',
	// node-llama-cpp locates its prebuilt binaries relative to its own package folder, and native addons
	// (`*.node`, our own included) must be loaded from disk: neither can be inlined into a bundle.
	external: ['node-llama-cpp', '*.node'],
	// CommonJS dependencies bundled into ESM call `require` for Node built-ins; give them a real one.
	banner: { js: "import { createRequire as __repokvCreateRequire } from 'node:module';\nconst require = __repokvCreateRequire(import.meta.url);" },
};

/** @type {Record<'extension' | 'sidecar' | 'bench' | 'webview', esbuild.BuildOptions>} */
export const targets = {
	extension: {
		...common,
		entryPoints: ['extension/src/extension.ts'],
		outfile: 'dist/extension.js',
		platform: 'node',
		target: 'node20',
		format: 'cjs',
		// Provided by the extension host at run time; there is no real `vscode` package to bundle.
		external: ['vscode'],
	},
	sidecar: {
		...common,
		...nodeEsm,
		entryPoints: ['sidecar/src/cli/main.ts'],
		outfile: 'dist/sidecar.mjs',
	},
	bench: {
		...common,
		...nodeEsm,
		entryPoints: ['bench/main.ts'],
		outfile: 'dist/bench.mjs',
		plugins: [sidecarApiExternal],
	},
	webview: {
		...common,
		entryPoints: ['webview/src/main.ts'],
		outfile: 'dist/webview.js',
		platform: 'browser',
		target: 'es2022',
		format: 'iife',
	},
};

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
	const options = Object.values(targets);
	if (process.argv.includes('--watch')) {
		const contexts = await Promise.all(options.map((o) => esbuild.context(o)));
		await Promise.all(contexts.map((context) => context.watch()));
		console.log(`esbuild: watching ${Object.keys(targets).join(', ')}`);
	} else {
		await Promise.all(options.map((o) => esbuild.build(o)));
	}
}
