// Builds bench/data/heldout-repos.json: the held-out real code of `repokv bench fidelity`'s primary suite.
//
// The bundled models were trained on the JavaScript/TypeScript sources of the npm packages listed in
// models/recipe/corpus-manifest.json (and pinned in corpus-packages.json). This picks other packages installed in
// node_modules (this project's own dependencies, pinned by package-lock.json), groups them by source repository (the
// package.json `repository`; packages of one monorepo are one repository, so prompts split by repository, never by
// file), and records per repository: the packages with version and licence, and the files (path, size, SHA-256).
// The text is not copied: the benchmark reads it from node_modules and checks each file's hash.
//
// node bench/data/build-heldout-repos.mjs
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const modules = path.join(root, 'node_modules');
const manifest = JSON.parse(readFileSync(path.join(root, 'models', 'recipe', 'corpus-manifest.json'), 'utf8'));
const pinned = JSON.parse(readFileSync(path.join(root, 'models', 'recipe', 'corpus-packages.json'), 'utf8'));
const trained = new Set([...Object.keys(manifest.packages), ...Object.keys(pinned.packages)]);

// Files as the training corpus took them (models/recipe/collect_corpus.py): sources, not declarations or minified
// bundles; 1.5-40 KB so one file does not fill a prompt alone.
const MIN_BYTES = 1500;
const MAX_BYTES = 40_000;
/** Bytes of code kept per repository: about five 4K-token prompts (the tokenizer gives ~3 bytes per token). */
const MAX_REPO_BYTES = 64_000;
/** This project's own runtime and tools are not held-out code for a benchmark of this project. */
const EXCLUDE = new Set(['node-llama-cpp']);

function packageDirs() {
	const out = [];
	for (const e of readdirSync(modules)) {
		if (e.startsWith('.')) continue;
		if (e.startsWith('@')) {
			for (const s of readdirSync(path.join(modules, e))) out.push(`${e}/${s}`);
		} else {
			out.push(e);
		}
	}
	return out.sort();
}

function repositoryOf(pkg) {
	const r = typeof pkg.repository === 'string' ? pkg.repository : pkg.repository?.url;
	if (typeof r !== 'string' || r === '') return `npm:${pkg.name}`;
	return r
		.replace(/^git\+/, '')
		.replace(/^(git|ssh|https?):\/\/(git@)?/, '')
		.replace(/^github:/, 'github.com/')
		.replace(/^git@github\.com:/, 'github.com/')
		.replace(/\.git$/, '')
		.replace(/\/$/, '')
		.replace(/^github\.com\//, '')
		.toLowerCase();
}

function sources(dir) {
	const out = [];
	const walk = (d) => {
		for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
			const p = path.join(d, e.name);
			if (e.isDirectory()) {
				if (e.name !== 'node_modules' && !e.name.startsWith('.')) walk(p);
			} else if (/\.(m|c)?(j|t)s$/.test(e.name) && !/\.d\.(m|c)?ts$/.test(e.name) && !e.name.includes('.min.')) {
				const size = statSync(p).size;
				if (size >= MIN_BYTES && size <= MAX_BYTES) out.push(p);
			}
		}
	};
	walk(dir);
	return out;
}

/** Minified or generated: very long lines. */
function looksGenerated(text) {
	const lines = text.split('\n');
	return lines.some((l) => l.length > 500) || text.length / lines.length > 120;
}

const repos = new Map();
for (const name of packageDirs()) {
	const dir = path.join(modules, name);
	const pj = path.join(dir, 'package.json');
	if (!existsSync(pj) || trained.has(name) || EXCLUDE.has(name)) continue;
	const pkg = JSON.parse(readFileSync(pj, 'utf8'));
	const repo = repositoryOf(pkg);
	const entry = repos.get(repo) ?? { repository: repo, packages: [], files: [], bytes: 0 };
	entry.packages.push({ name, version: pkg.version ?? null, license: typeof pkg.license === 'string' ? pkg.license : (pkg.license?.type ?? null) });
	repos.set(repo, entry);
}
// files: per package in name order, deduplicated by content across the repository (cjs/esm copies of one source)
for (const entry of repos.values()) {
	const seen = new Set();
	for (const p of entry.packages) {
		for (const file of sources(path.join(modules, p.name))) {
			if (entry.bytes >= MAX_REPO_BYTES) break;
			const text = readFileSync(file, 'utf8');
			const normalized = text.replace(/\s+/g, ' ');
			const key = createHash('sha256').update(normalized).digest('hex');
			if (seen.has(key) || looksGenerated(text)) continue;
			seen.add(key);
			entry.files.push({ path: path.relative(modules, file).split(path.sep).join('/'), bytes: Buffer.byteLength(text), sha256: createHash('sha256').update(text).digest('hex').slice(0, 16) });
			entry.bytes += Buffer.byteLength(text);
		}
	}
}
/**
 * A repository the training corpus drew on under another package name: its last path segment is a trained
 * package's name (e.g. lodash/lodash, which the lodash.* packages are cut from).
 */
const trainedRepo = (r) => trained.has(r.repository.split('/').at(-1)) || r.packages.some((p) => trained.has(p.name.split('.')[0]));
/** Licences that allow reading and quoting the code (an SPDX expression; not "SEE LICENSE IN ..."). */
const openLicence = (r) => r.packages.every((p) => typeof p.license === 'string' && !/^SEE /i.test(p.license));
const kept = [...repos.values()].filter((r) => r.bytes >= 16_000 && !trainedRepo(r) && openLicence(r)).sort((a, b) => a.repository.localeCompare(b.repository));
const out = {
	comment:
		'Held-out real code for bench fidelity (bench/data/build-heldout-repos.mjs): npm packages installed in node_modules that are not in the bundled models\' training corpus (models/recipe/corpus-manifest.json), grouped by source repository. Text is read from node_modules and checked against sha256 (first 16 hex digits).',
	trainedPackages: trained.size,
	repositories: kept,
};
writeFileSync(path.join(root, 'bench', 'data', 'heldout-repos.json'), JSON.stringify(out, null, 1) + '\n');
console.log(`${kept.length} repositories, ${kept.reduce((a, r) => a + r.files.length, 0)} files, ${kept.reduce((a, r) => a + r.bytes, 0)} bytes`);
for (const r of kept) console.log(`${r.repository}: ${r.packages.map((p) => `${p.name}@${p.version} (${p.license})`).join(', ')}; ${r.files.length} files, ${r.bytes} B`);
