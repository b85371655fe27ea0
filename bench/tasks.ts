import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

import { packageRoot } from '../sidecar/src/api';
import { seededRandom } from './random.mjs';

// Deterministic (seeded) fidelity tasks built with the project's tokenizer.
//
// - heldout (the primary suite, HeldoutCode below): windows of real code from repositories that are not in the
//   bundled models' training data (bench/data/heldout-repos.json, read from node_modules), one repository per
//   prompt; the benchmark teacher-forces the window's last tokens and compares every cache with the full one.
// - needle (the retrieval format the bundled models were trained on, models/recipe/data.py `retrieval_task`): a
//   definitions file `export const NAME = VALUE;` at a file boundary of real code (depth spread over the context),
//   queried at the end by a test file `assert.equal(NAME, ` → `VALUE`. Tasks: `single` (one definition),
//   `multikey` (eight definitions, one asked), `multivalue` (one key with four values,
//   `export const NAME = [V1, V2, V3, V4];`, asked by `assert.deepEqual(NAME, [`; scored by the fraction of values
//   recovered in order — a format the models were not trained on), `vt` (variable tracking: `export const B = A;` in
//   a second file at another depth, `B` asked), `fimsingle` (`single` with the test file FIM-ordered, the hole at the
//   value: `<|fim_prefix|>…assert.equal(NAME, <|fim_suffix|>);\n});\n<|fim_middle|>`, the layout the sidecar builds
//   for the cursor's file). Filler: files of the bundled models' held-out split (bench/data/heldout-code.json).
// - needle-novel (formats the models were never trained on, reported apart): `renamed` (the test file imports the
//   constant under another name, `import { NAME as localName }`, and asks `localName`), `comment` (the value only in
//   a comment above a definition that computes it), `json` / `yaml` (the value in a config file, asked as
//   `config.key` from TypeScript), `twohop` (two alias files, `B = A` then `C = B`, `C` asked).

export interface Tokenizer {
	tokenize(text: string, special: boolean): number[];
	detokenize(tokens: readonly number[]): string;
}

export const needleTasks = ['single', 'multikey', 'multivalue', 'vt', 'fimsingle'] as const;
export const novelNeedleTasks = ['renamed', 'comment', 'json', 'yaml', 'twohop'] as const;
export type NeedleTask = (typeof needleTasks)[number] | (typeof novelNeedleTasks)[number];

export interface FidelityTask {
	readonly suite: 'needle' | 'needle-novel';
	readonly task: NeedleTask;
	readonly context: number;
	readonly index: number;
	readonly tokens: number[];
	/** The value asked for. */
	readonly answer: string;
	/** Tokens generated (greedy) for scoring; also the draft's lookahead length. */
	readonly maxTokens: number;
	/** Where the needle sits (needle tasks): fraction of the context before it. */
	readonly depth?: number;
}

interface HeldoutFile {
	readonly path: string;
	readonly package: string;
	readonly text: string;
}

const WORDS = (
	'retry limit timeout max min count size buffer cache index offset window budget layer head token file path ' +
	'user session request response config option value key table column row node edge graph tree queue stack ' +
	'parser lexer scanner writer reader stream channel socket port host server client worker job task batch ' +
	'frame pixel color shader texture mesh vertex camera scene light shadow model tensor vector matrix scale ' +
	'delay interval deadline quota rate level depth width height length weight score rank seed hash salt nonce'
).split(' ');

function hashString(s: string): number {
	let h = 2166136261;
	for (let i = 0; i < s.length; i++) {
		h = Math.imul(h ^ s.charCodeAt(i), 16777619);
	}
	return h >>> 0;
}

function pick<T>(rng: () => number, items: readonly T[]): T {
	const item = items[Math.floor(rng() * items.length)];
	if (item === undefined) throw new Error('pick from an empty list');
	return item;
}

function sample<T>(rng: () => number, items: readonly T[], n: number): T[] {
	const copy = [...items];
	for (let i = copy.length - 1; i > 0; i--) {
		const j = Math.floor(rng() * (i + 1));
		[copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
	}
	return copy.slice(0, n);
}

function constName(rng: () => number): string {
	return sample(rng, WORDS, 2 + Math.floor(rng() * 3))
		.map((w) => w.toUpperCase())
		.join('_');
}

function fnName(rng: () => number): string {
	const parts = sample(rng, WORDS, 2 + Math.floor(rng() * 2));
	return (parts[0] ?? 'x') + parts.slice(1).map((p) => (p[0] ?? '').toUpperCase() + p.slice(1)).join('');
}

/** A value as the training data made them (numbers, hex, strings, floats). */
function makeValue(rng: () => number): string {
	const kind = rng();
	if (kind < 0.45) return String(10 + Math.floor(rng() * 999990));
	if (kind < 0.6) return '0x' + Array.from({ length: 4 + Math.floor(rng() * 5) }, () => '0123456789abcdef'[Math.floor(rng() * 16)]).join('');
	if (kind < 0.9) return `'${sample(rng, WORDS, 1 + Math.floor(rng() * 3)).join('-')}'`;
	return `${Math.floor(rng() * 100)}.${1 + Math.floor(rng() * 999)}`;
}

/** A number (integer or decimal): values a JSON or YAML file can hold unquoted. */
function makeNumber(rng: () => number): string {
	return rng() < 0.7 ? String(10 + Math.floor(rng() * 999990)) : `${Math.floor(rng() * 100)}.${1 + Math.floor(rng() * 999)}`;
}

function makePath(rng: () => number, ext = '.ts'): string {
	return 'src/' + Array.from({ length: 1 + Math.floor(rng() * 3) }, () => fnName(rng)).join('/') + ext;
}

export class TaskBuilder {
	private readonly files: HeldoutFile[];
	private readonly fileTokens = new Map<number, number[]>();
	private readonly sep: number;
	private readonly fimPrefix: number;
	private readonly fimSuffix: number;
	private readonly fimMiddle: number;

	constructor(private readonly tok: Tokenizer, dataFile = path.join(packageRoot(), 'bench', 'data', 'heldout-code.json')) {
		this.files = (JSON.parse(readFileSync(dataFile, 'utf8')) as { files: HeldoutFile[] }).files;
		const special = (text: string): number => {
			const ids = tok.tokenize(text, true);
			if (ids.length !== 1 || ids[0] === undefined) throw new Error(`${text} is not one token`);
			return ids[0];
		};
		this.sep = special('<|file_sep|>');
		this.fimPrefix = special('<|fim_prefix|>');
		this.fimSuffix = special('<|fim_suffix|>');
		this.fimMiddle = special('<|fim_middle|>');
	}

	private header(p: string): number[] {
		return [this.sep, ...this.tok.tokenize(`${p}\n`, false)];
	}

	private document(i: number): number[] {
		let t = this.fileTokens.get(i);
		if (t === undefined) {
			const f = this.files[i];
			if (f === undefined) throw new Error(`no file ${i}`);
			t = [...this.header(f.path), ...this.tok.tokenize(f.text, false)];
			this.fileTokens.set(i, t);
		}
		return t;
	}

	/**
	 * Real files (shuffled; each cut to at most `maxPiece` tokens, the last one to fit) filling `budget` tokens, leaving
	 * out `exclude`.
	 */
	private filler(rng: () => number, budget: number, exclude = -1, preferPackage?: string, maxPiece = Infinity): number[][] {
		const ids = sample(rng, [...this.files.keys()].filter((i) => i !== exclude), this.files.length);
		if (preferPackage !== undefined) {
			ids.sort((a, b) => Number(this.files[b]?.package === preferPackage) - Number(this.files[a]?.package === preferPackage));
		}
		const out: number[][] = [];
		let used = 0;
		for (const i of ids) {
			if (used >= budget) break;
			const t = this.document(i).slice(0, Math.min(maxPiece, budget - used));
			out.push(t);
			used += t.length;
		}
		return out;
	}

	needle(task: NeedleTask, context: number, index: number, seed: number): FidelityTask {
		const rng = seededRandom(hashString(`${seed}/${task}/${context}/${index}`));
		const depth = (index % 5) / 5 + 0.1; // 0.1, 0.3, 0.5, 0.7, 0.9
		const novel = (novelNeedleTasks as readonly string[]).includes(task);
		const names = new Set<string>();
		const defs: { name: string; value: string }[] = [];
		const nKeys = task === 'multikey' ? 8 : task === 'json' || task === 'yaml' ? 6 : 1;
		const keyed = task === 'json' || task === 'yaml';
		while (defs.length < nKeys) {
			const name = keyed ? fnName(rng) : constName(rng);
			if (!names.has(name)) {
				names.add(name);
				defs.push({ name, value: keyed ? makeNumber(rng) : makeValue(rng) });
			}
		}
		if (task === 'multivalue') {
			const first = defs[0];
			if (first !== undefined) first.value = Array.from({ length: 4 }, () => makeValue(rng)).join(', ');
		}
		const asked = pick(rng, defs);
		const freshName = (): string => {
			let n = constName(rng);
			while (names.has(n)) n = constName(rng);
			names.add(n);
			return n;
		};
		let defsPath = makePath(rng);
		let body: string;
		if (task === 'json') {
			defsPath = `config/${fnName(rng)}.json`;
			body = '{\n' + defs.map((d) => `  "${d.name}": ${d.value}`).join(',\n') + '\n}\n';
		} else if (task === 'yaml') {
			defsPath = `config/${fnName(rng)}.yaml`;
			body = `# ${fnName(rng)} settings\n` + defs.map((d) => `${d.name}: ${d.value}\n`).join('');
		} else if (task === 'comment') {
			body = `// ${asked.name} defaults to ${asked.value}; the environment can override it.\nexport const ${asked.name} = readSetting('${fnName(rng)}');\n`;
		} else {
			body = defs.map((d) => `export const ${d.name} = ${task === 'multivalue' ? `[${d.value}]` : d.value};\n` + (rng() < 0.3 ? '\n' : '')).join('');
		}
		const docs: { tokens: number[]; depth: number }[] = [{ tokens: [...this.header(defsPath), ...this.tok.tokenize(body, false)], depth }];
		const moduleOf = (p: string): string => p.slice(4, -3);
		let queried = asked.name;
		let importLine = `import { ${queried} } from './${moduleOf(defsPath)}';\n`;
		// alias files (vt: one hop; twohop: two), each at another depth
		const hops = task === 'vt' ? 1 : task === 'twohop' ? 2 : 0;
		let from = { name: asked.name, path: defsPath };
		let aliasDepth = depth;
		for (let h = 0; h < hops; h++) {
			const alias = freshName();
			const aliasPath = makePath(rng);
			const text = `import { ${from.name} } from '../${moduleOf(from.path)}';\n\nexport const ${alias} = ${from.name};\n`;
			aliasDepth = Math.min(0.95, aliasDepth + 0.3 + rng() * 0.1) % 1;
			docs.push({ tokens: [...this.header(aliasPath), ...this.tok.tokenize(text, false)], depth: aliasDepth });
			from = { name: alias, path: aliasPath };
			queried = alias;
			importLine = `import { ${alias} } from './${moduleOf(aliasPath)}';\n`;
		}
		if (task === 'renamed') {
			const local = fnName(rng);
			importLine = `import { ${asked.name} as ${local} } from './${moduleOf(defsPath)}';\n`;
			queried = local;
		} else if (keyed) {
			importLine = task === 'json' ? `import config from '../${defsPath}';\n` : `const config = loadYaml('${defsPath}');\n`;
			queried = `config.${asked.name}`;
		}
		const usagePrefix = this.tok.tokenize(
			`import assert from 'node:assert';\n${importLine}\ndescribe('${fnName(rng)}', () => {\n  assert.${task === 'multivalue' ? 'deepEqual' : 'equal'}(${queried}, ${task === 'multivalue' ? '[' : ''}`,
			false,
		);
		const usage = [
			...this.header(makePath(rng, '.test.ts')),
			...(task === 'fimsingle' ? [this.fimPrefix, ...usagePrefix, this.fimSuffix, ...this.tok.tokenize(');\n});\n', false), this.fimMiddle] : usagePrefix),
		];
		const budget = context - usage.length - docs.reduce((a, d) => a + d.tokens.length, 0);
		// files cut to at most a sixth of the context, so that file boundaries (where the definitions go) spread the depth
		const filler = this.filler(rng, Math.max(0, budget), -1, undefined, Math.max(64, Math.floor(context / 6)));
		// insert the documents at the file boundaries nearest their depths
		const total = filler.reduce((a, f) => a + f.length, 0);
		const placed = filler.map((f) => ({ tokens: f, at: 0 }));
		let acc = 0;
		for (const p of placed) {
			p.at = acc / Math.max(1, total);
			acc += p.tokens.length;
		}
		const sequence: number[][] = [];
		const pending = [...docs].sort((a, b) => a.depth - b.depth);
		for (const p of placed) {
			while (pending.length > 0 && (pending[0]?.depth ?? 1) <= p.at) sequence.push(pending.shift()?.tokens ?? []);
			sequence.push(p.tokens);
		}
		for (const d of pending) sequence.push(d.tokens);
		const tokens = [...sequence.flat(), ...usage].slice(-context);
		return { suite: novel ? 'needle-novel' : 'needle', task, context, index, tokens, answer: asked.value, maxTokens: task === 'multivalue' ? 32 : 12, depth };
	}
}

export interface HeldoutRepository {
	readonly repository: string;
	readonly packages: readonly { readonly name: string; readonly version: string | null; readonly license: string | null }[];
	readonly files: readonly { readonly path: string; readonly bytes: number; readonly sha256: string }[];
}

export interface HeldoutPrompt {
	/** `repository#k`: the k-th window of that repository. */
	readonly id: string;
	readonly repository: string;
	/** The cached prompt: context − held tokens. */
	readonly prompt: number[];
	/** The real code that follows it, teacher-forced. */
	readonly held: number[];
}

/**
 * The primary suite's prompts: per repository, its files (as `<|file_sep|>path\n text` documents, in the manifest's
 * order) as one token stream cut into non-overlapping windows of `context` tokens; a window's last `heldTokens` are
 * the held-out continuation. Every prompt comes from one repository, and no repository is in the training data, so
 * the split is by repository. `schedule` interleaves the repositories (window 0 of each, then window 1, …), so a
 * run stopped early still covers many repositories.
 */
export class HeldoutCode {
	readonly repositories: readonly HeldoutRepository[];

	constructor(
		private readonly tok: Tokenizer,
		dataFile = path.join(packageRoot(), 'bench', 'data', 'heldout-repos.json'),
		private readonly modules = path.join(packageRoot(), 'node_modules'),
	) {
		this.repositories = (JSON.parse(readFileSync(dataFile, 'utf8')) as { repositories: HeldoutRepository[] }).repositories;
	}

	private windows(repo: HeldoutRepository, context: number): number[][] {
		const sep = this.tok.tokenize('<|file_sep|>', true);
		const stream: number[] = [];
		for (const f of repo.files) {
			const text = readFileSync(path.join(this.modules, ...f.path.split('/')), 'utf8');
			const hash = createHash('sha256').update(text).digest('hex').slice(0, 16);
			if (hash !== f.sha256) throw new Error(`node_modules/${f.path} is not the file bench/data/heldout-repos.json names (sha256 ${hash}, expected ${f.sha256}); rebuild it with node bench/data/build-heldout-repos.mjs`);
			stream.push(...sep, ...this.tok.tokenize(`${f.path}\n`, false), ...this.tok.tokenize(text, false));
		}
		const out: number[][] = [];
		for (let at = 0; at + context <= stream.length; at += context) out.push(stream.slice(at, at + context));
		return out;
	}

	/** The first `n` prompts of the interleaved schedule, `context` tokens each (prompt + held). */
	schedule(n: number, context: number, heldTokens: number): HeldoutPrompt[] {
		const perRepo = this.repositories.map((r) => ({ repo: r, windows: undefined as number[][] | undefined }));
		const out: HeldoutPrompt[] = [];
		for (let k = 0; out.length < n; k++) {
			let any = false;
			for (const r of perRepo) {
				if (out.length >= n) break;
				r.windows ??= this.windows(r.repo, context);
				const w = r.windows[k];
				if (w === undefined) continue;
				any = true;
				out.push({ id: `${r.repo.repository}#${k}`, repository: r.repo.repository, prompt: w.slice(0, context - heldTokens), held: w.slice(context - heldTokens) });
			}
			if (!any) break;
		}
		return out;
	}
}
