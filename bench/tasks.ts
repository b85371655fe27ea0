import { readFileSync } from 'node:fs';
import * as path from 'node:path';

import { packageRoot } from '../sidecar/src/api';

// Deterministic (seeded) fidelity tasks built with the project's tokenizer from committed held-out code
// (bench/data/heldout-code.json: files of the bundled models' held-out split, never trained on).
//
// - needle (the retrieval format the bundled models were trained on, models/recipe/data.py `retrieval_task`): a
//   definitions file `export const NAME = VALUE;` at a file boundary of real code (depth spread over the context),
//   queried at the end by a test file `assert.equal(NAME, ` → `VALUE`. Tasks: `single` (one definition),
//   `multikey` (eight definitions, one asked), `multivalue` (one key with four values,
//   `export const NAME = [V1, V2, V3, V4];`, asked by `assert.deepEqual(NAME, [`; scored by the fraction of values
//   recovered in order — a format the models were not trained on), `vt` (variable tracking: `export const B = A;` in
//   a second file at another depth, `B` asked), `fimsingle` (`single` with the test file FIM-ordered, the hole at the
//   value: `<|fim_prefix|>…assert.equal(NAME, <|fim_suffix|>);\n});\n<|fim_middle|>`, the layout the sidecar builds
//   for the cursor's file).
// - code: `nextline` (a real file cut at a line boundary, other files before it; the next line is expected) and `fim`
//   (the active file as `<|fim_prefix|>…<|fim_suffix|>…<|fim_middle|>`, one missing line expected).

export interface Tokenizer {
	tokenize(text: string, special: boolean): number[];
	detokenize(tokens: readonly number[]): string;
}

export const needleTasks = ['single', 'multikey', 'multivalue', 'vt', 'fimsingle'] as const;
export type NeedleTask = (typeof needleTasks)[number];

export interface FidelityTask {
	readonly suite: 'needle' | 'code';
	readonly task: NeedleTask | 'nextline' | 'fim';
	readonly context: number;
	readonly index: number;
	readonly tokens: number[];
	/** needle: the value; code: the expected line (no newline). */
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

/** mulberry32 */
export function seededRandom(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

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
		const names = new Set<string>();
		const defs: { name: string; value: string }[] = [];
		const nKeys = task === 'multikey' ? 8 : 1;
		while (defs.length < nKeys) {
			const name = constName(rng);
			if (!names.has(name)) {
				names.add(name);
				defs.push({ name, value: makeValue(rng) });
			}
		}
		if (task === 'multivalue') {
			const first = defs[0];
			if (first !== undefined) first.value = Array.from({ length: 4 }, () => makeValue(rng)).join(', ');
		}
		const asked = pick(rng, defs);
		const defsPath = makePath(rng);
		const body = defs.map((d) => `export const ${d.name} = ${task === 'multivalue' ? `[${d.value}]` : d.value};\n` + (rng() < 0.3 ? '\n' : '')).join('');
		const docs: { tokens: number[]; depth: number }[] = [{ tokens: [...this.header(defsPath), ...this.tok.tokenize(body, false)], depth }];
		let queried = asked.name;
		let importPath = defsPath;
		if (task === 'vt') {
			let alias = constName(rng);
			while (names.has(alias)) alias = constName(rng);
			const aliasPath = makePath(rng);
			const text = `import { ${asked.name} } from '../${defsPath.slice(4, -3)}';\n\nexport const ${alias} = ${asked.name};\n`;
			docs.push({ tokens: [...this.header(aliasPath), ...this.tok.tokenize(text, false)], depth: Math.min(0.95, depth + 0.3 + rng() * 0.1) % 1 });
			queried = alias;
			importPath = aliasPath;
		}
		const usagePrefix = this.tok.tokenize(`import assert from 'node:assert';\nimport { ${queried} } from './${importPath.slice(4, -3)}';\n\ndescribe('${fnName(rng)}', () => {\n  assert.${task === 'multivalue' ? 'deepEqual' : 'equal'}(${queried}, ${task === 'multivalue' ? '[' : ''}`, false);
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
		return { suite: 'needle', task, context, index, tokens, answer: asked.value, maxTokens: task === 'multivalue' ? 32 : 12, depth };
	}

	code(task: 'nextline' | 'fim', context: number, index: number, seed: number): FidelityTask {
		const rng = seededRandom(hashString(`${seed}/${task}/${context}/${index}`));
		for (;;) {
			const fi = Math.floor(rng() * this.files.length);
			const file = this.files[fi];
			if (file === undefined) continue;
			const lines = file.text.split('\n');
			if (lines.length < 12) continue;
			// a line with real content, not the first few
			const li = 6 + Math.floor(rng() * (lines.length - 8));
			const answer = lines[li] ?? '';
			if (answer.trim().length < 8) continue;
			const prefixText = lines.slice(0, li).join('\n') + '\n';
			let prefix = this.tok.tokenize(prefixText, false);
			let doc: number[];
			if (task === 'nextline') {
				prefix = prefix.slice(-Math.floor(context * 0.6));
				doc = [...this.header(file.path), ...prefix];
			} else {
				prefix = prefix.slice(-Math.floor(context * 0.45));
				const suffix = this.tok.tokenize('\n' + lines.slice(li + 1).join('\n'), false).slice(0, Math.floor(context * 0.2));
				doc = [...this.header(file.path), this.fimPrefix, ...prefix, this.fimSuffix, ...suffix, this.fimMiddle];
			}
			const filler = this.filler(rng, Math.max(0, context - doc.length), fi, file.package);
			const tokens = [...filler.flat(), ...doc].slice(-context);
			return { suite: 'code', task, context, index, tokens, answer: answer.trim(), maxTokens: 24 };
		}
	}
}

/** Edit similarity: 2 * LCS / (|a| + |b|) (python-Levenshtein's ratio as LongBench's code_sim_score uses it). */
export function editSimilarity(a: string, b: string): number {
	if (a.length + b.length === 0) return 1;
	let prev = new Array<number>(b.length + 1).fill(0);
	for (let i = 1; i <= a.length; i++) {
		const cur = new Array<number>(b.length + 1).fill(0);
		for (let j = 1; j <= b.length; j++) {
			cur[j] = a[i - 1] === b[j - 1] ? (prev[j - 1] ?? 0) + 1 : Math.max(prev[j] ?? 0, cur[j - 1] ?? 0);
		}
		prev = cur;
	}
	return (2 * (prev[b.length] ?? 0)) / (a.length + b.length);
}
