import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { argmax, compressSession, defaultKvSettings, DraftModel, kvPolicies, kvPrecisions, NativeModel, observationFor, packageRoot, scoringPass, tierCost, type DraftLayout, type KvPolicy, type KvPrecision, type NativeSession } from '../sidecar/src/api';
import { fileFingerprint, loadVocab, round } from './common';
import { editSimilarity, needleTasks, TaskBuilder, type FidelityTask, type Tokenizer } from './tasks';

// `repokv bench fidelity`: every KV policy at 3/6/12/25% of the fp16 cache's bytes on the same deterministic prompts
// (bench/tasks.ts), against `full`. One target prefill per prompt serves every policy: the engine observes all scores
// at once (H2O column sums, SnapKV window, SpecKV max after the draft's lookahead and the scoring pass) and each
// policy/budget selects from the retained master copy.
//
// The quantizer axis (`quant` column): the ranking policies in `quantPolicies` (default speckv) also run with every
// packed precision (q8, kivi4, kivi2, onebit, mixed) at the same budget, which then buys bytes: equal bytes across
// the column (native-policy.ts). `fp16` rows are the eviction-only policies.

export interface FidelityRow {
	readonly suite: string;
	readonly task: string;
	readonly context: number;
	readonly policy: string;
	readonly quant: string;
	readonly budgetPct: number;
	/** Real compressed KV bytes / the full fp16 cache's bytes (mean over prompts). */
	readonly bytesRatio: number;
	readonly score: number;
	readonly n: number;
}

export interface FidelityOptions {
	readonly modelPath: string;
	readonly draftPath: string;
	/** How the draft reads the prompts (draft-prompt.ts; default `prefix-last`). */
	readonly draftLayout?: DraftLayout;
	readonly quick: boolean;
	readonly threads: number;
	readonly contexts?: readonly number[];
	readonly n?: number;
	readonly seed?: number;
	/** Eviction policies to run (default: all, plus the speckv-L0 ablation). */
	readonly policies?: readonly string[];
	/** Policies that also run with the packed precisions (default: speckv). */
	readonly quantPolicies?: readonly string[];
	/** The command line that ran this (recorded in the results). */
	readonly command?: string;
	/** Results file name in bench/results (default fidelity / fidelity-quick), without extension. */
	readonly outName?: string;
	/** `mixed`: share of the picked bytes at 4-bit (default: the policy's, 0.75). */
	readonly hiFraction?: number;
	readonly onProgress?: (line: string) => void;
}

export interface FidelityResult {
	readonly model: string;
	readonly draft: string;
	readonly draftLayout: DraftLayout;
	/** SHA-256 prefixes of the target and draft files (fileFingerprint). */
	readonly modelSha256: string;
	readonly draftSha256: string;
	readonly quick: boolean;
	readonly seed: number;
	readonly contexts: readonly number[];
	readonly perTask: number;
	readonly threads: number;
	readonly budgets: readonly number[];
	readonly wallSeconds: number;
	/** CPU seconds of this process (user + system): robust to other processes on the cores, unlike wall time. */
	readonly cpuSeconds: number;
	readonly rows: FidelityRow[];
	readonly checks: {
		readonly orderingAtEqualBytes: Record<string, boolean>;
		readonly speckv12WithinThreeOfFull: boolean;
		/** The default (speckv + mixed tiers at 12 %): within 3 needle points of full, and its bytes ratio. */
		readonly defaultWithinThreeOfFull: boolean;
		readonly defaultBytesRatio: number;
		readonly needleMeans: Record<string, number>;
	};
	readonly markdownFile: string;
	readonly command: string;
	readonly hiFraction: number | null;
}

export const fidelityBudgets = [3, 6, 12, 25] as const;
// `speckv-L0`: SpecKV's scoring (max over rows and heads, window incl. the last prompt token) without any draft
// token, the ablation that separates the draft's contribution from the aggregation.
const allEvictPolicies: string[] = [...kvPolicies.filter((p) => p !== 'full'), 'speckv-L0'];
const packedPrecisions = kvPrecisions.filter((q) => q !== 'f16');
/** The `quant` column's name of a precision. */
const quantName = (precision: KvPrecision): string => (precision === 'f16' ? 'fp16' : precision);
/** needleMeans key: `policy@budget` for fp16, `policy+quant@budget` otherwise. */
const configKey = (policy: string, quant: string, budget: number): string => (quant === 'fp16' ? `${policy}@${budget}` : `${policy}+${quant}@${budget}`);
const TF = 16; // teacher-forced tokens

interface Acc {
	sum: number;
	n: number;
	bytes: number;
}

function logSoftmax(x: Float32Array): Float64Array {
	let mx = -Infinity;
	for (const v of x) mx = Math.max(mx, v);
	let s = 0;
	for (const v of x) s += Math.exp(v - mx);
	const l = Math.log(s) + mx;
	return Float64Array.from(x, (v) => v - l);
}

/** KL(p || q) from logits. */
function kl(p: Float32Array, q: Float32Array): number {
	const lp = logSoftmax(p);
	const lq = logSoftmax(q);
	let s = 0;
	for (let i = 0; i < lp.length; i++) {
		const a = lp[i] ?? 0;
		s += Math.exp(a) * (a - (lq[i] ?? 0));
	}
	return Math.max(0, s);
}

function firstLine(text: string): string {
	return (text.split('\n')[0] ?? '').trim();
}

export async function runFidelity(options: FidelityOptions): Promise<FidelityResult> {
	const started = performance.now();
	const seed = options.seed ?? 20260127;
	const contexts = options.contexts ?? (options.quick ? [1024, 4096] : [1024, 2048, 4096]);
	const perTask = options.n ?? (options.quick ? 2 : 10);
	const vocab = await loadVocab(options.modelPath, options.threads);
	const tok: Tokenizer = {
		tokenize: (text, special) => vocab.tokenize(text, special).map(Number),
		detokenize: (tokens) => vocab.detokenize(tokens as Parameters<typeof vocab.detokenize>[0]),
	};
	const isStop = (t: number): boolean => vocab.isEogToken(t as never) || vocab.isSpecialToken(t as never);
	const builder = new TaskBuilder(tok);
	const model = NativeModel.load(options.modelPath, { threads: options.threads });
	const { nLayer, nHeadKv, headDim } = model.info;
	const cost = tierCost(headDim);
	const evictPolicies = options.policies ?? allEvictPolicies;
	const quantPolicies = options.quantPolicies ?? ['speckv'];
	for (const p of [...evictPolicies, ...quantPolicies]) {
		if (!allEvictPolicies.includes(p)) throw new Error(`unknown policy '${p}' (${allEvictPolicies.join(', ')})`);
	}
	if (quantPolicies.includes('window')) throw new Error('policy window keeps fp16 tokens only');
	const maxContext = Math.max(...contexts);
	const session = model.createSession({ contextSize: maxContext + 64 });
	const draftLayout = options.draftLayout ?? defaultKvSettings.draftLayout;
	const draft = await DraftModel.load(options.draftPath, { threads: options.threads, contextSize: maxContext + 64, layout: draftLayout });

	const acc = new Map<string, Acc>();
	const add = (key: string, score: number, bytes: number): void => {
		const a = acc.get(key) ?? { sum: 0, n: 0, bytes: 0 };
		a.sum += score;
		a.n += 1;
		a.bytes += bytes;
		acc.set(key, a);
	};
	const keyOf = (suite: string, task: string, context: number, policy: string, budget: number, quant = 'fp16'): string => JSON.stringify([suite, task, context, policy, budget, quant]);

	/** Greedy tokens after the cache's current end, given the logits of the last evaluated row. */
	const greedy = async (s: NativeSession, first: Float32Array, n: number, stopAtNewline: boolean): Promise<number[]> => {
		const out: number[] = [];
		let logits = first;
		for (;;) {
			const t = argmax(logits);
			if (isStop(t)) break;
			out.push(t);
			if (out.length >= n || (stopAtNewline && tok.detokenize(out).includes('\n'))) break;
			await s.decode(t);
			logits = s.logits();
		}
		return out;
	};

	const scoreTask = (task: FidelityTask, generated: number[]): { name: string; score: number }[] => {
		const text = tok.detokenize(generated);
		if (task.task === 'multivalue') {
			// the fraction of the values recovered, in order
			const want = task.answer.split(', ');
			const got = text.split(']')[0]?.split(',').map((v) => v.trim()) ?? [];
			return [{ name: task.task, score: want.filter((v, i) => got[i] === v).length / want.length }];
		}
		if (task.suite === 'needle') {
			return [{ name: task.task, score: text.trimStart().startsWith(task.answer) ? 1 : 0 }];
		}
		const line = firstLine(text);
		return [
			{ name: `${task.task}-exact`, score: line === task.answer ? 1 : 0 },
			{ name: `${task.task}-edit`, score: editSimilarity(line, task.answer) },
		];
	};

	for (const context of contexts) {
		const tasks: FidelityTask[] = [];
		for (let i = 0; i < perTask; i++) {
			for (const t of needleTasks) tasks.push(builder.needle(t, context, i, seed));
			for (const t of ['nextline', 'fim'] as const) tasks.push(builder.code(t, context, i, seed));
		}
		for (const task of tasks) {
			const t0 = performance.now();
			const prompt = task.tokens;
			const m = prompt.length - 1;
			const last = prompt[m] ?? 0;
			session.truncate(0);
			// every policy's scores from one prefill of the whole prompt (H2O needs every row observed; the window
			// includes the last prompt token), then the cache is cut to m and decoding re-feeds the last token
			session.observe(observationFor('h2o', prompt.length));
			await session.prefill(prompt);
			session.truncate(m);
			const masterBytes = session.stats().masterBytes;
			// full: the reference continuation and its teacher-forced logits
			await session.decode(last);
			const refTokens = await greedy(session, session.logits(), TF, false);
			while (refTokens.length < TF) refTokens.push(refTokens.at(-1) ?? last);
			session.truncate(m);
			const tfInput = [last, ...refTokens.slice(0, TF - 1)];
			await session.prefill(tfInput, { allLogits: true });
			const nVocab = model.info.nVocab;
			const fullRows = session.logits('all');
			session.truncate(m);
			// the task's greedy answer is a prefix of the reference continuation (same cache, same greedy steps)
			const fullGen: number[] = [];
			for (const t of refTokens.slice(0, task.maxTokens)) {
				if (isStop(t)) break;
				fullGen.push(t);
				if (tok.detokenize(fullGen).includes('\n')) break;
			}
			for (const s of scoreTask(task, fullGen)) add(keyOf(task.suite, s.name, context, 'full', 100), s.score, masterBytes);
			add(keyOf('proxy', 'top1', context, 'full', 100), 1, masterBytes);
			add(keyOf('proxy', 'kl', context, 'full', 100), 0, masterBytes);
			// SpecKV: the draft's lookahead (also scored on its own: the draft-only line), then the target's scoring pass
			const t1 = performance.now();
			const lookahead = await draft.lookahead(prompt, task.maxTokens);
			for (const s of scoreTask(task, lookahead)) {
				add(keyOf(task.suite, s.name, context, 'draft', 0), s.score, 0);
			}
			await scoringPass(session, last, lookahead);
			session.stopObserving();
			const t2 = performance.now();
			const configs: [string, KvPrecision][] = [];
			for (const policy of evictPolicies) configs.push([policy, 'f16']);
			for (const policy of quantPolicies) for (const precision of packedPrecisions) configs.push([policy, precision]);
			for (const [policy, precision] of configs) {
				const quant = quantName(precision);
				for (const budgetPct of fidelityBudgets) {
					const selection = policy === 'speckv-L0' ? { policy: 'speckv' as const, scoreKind: 'window-max' as const } : { policy: policy as KvPolicy };
					const tiers = precision === 'f16' ? {} : { precision, tierCost: cost, ...(options.hiFraction === undefined ? {} : { hiFraction: options.hiFraction }) };
					const sel = compressSession(session, nLayer, nHeadKv, { ...selection, ...tiers, budget: { percent: budgetPct } }, TF + task.maxTokens + 2);
					const bytes = sel === undefined ? masterBytes : session.stats().bytes;
					// teacher-forced rows against full's
					await session.prefill(tfInput, { allLogits: true });
					const rows = session.logits('all');
					let agree = 0;
					let klSum = 0;
					for (let r = 0; r < TF; r++) {
						const pf = fullRows.subarray(r * nVocab, (r + 1) * nVocab);
						const pc = rows.subarray(r * nVocab, (r + 1) * nVocab);
						if (argmax(pf) === argmax(pc)) agree++;
						klSum += kl(pf, pc);
					}
					add(keyOf('proxy', 'top1', context, policy, budgetPct, quant), agree / TF, bytes);
					add(keyOf('proxy', 'kl', context, policy, budgetPct, quant), klSum / TF, bytes);
					// the task's own score: greedy from the same compressed cache
					session.truncate(m + 1);
					const gen = await greedy(session, rows.subarray(0, nVocab), task.maxTokens, true);
					for (const s of scoreTask(task, gen)) add(keyOf(task.suite, s.name, context, policy, budgetPct, quant), s.score, bytes);
					session.truncate(m);
					if (session.stats().compressed) session.decompress();
				}
			}
			options.onProgress?.(
				`${task.suite}/${task.task} ctx ${context} #${task.index}: prefill+full ${round((t1 - t0) / 1000, 2)} s, draft+scoring ${round((t2 - t1) / 1000, 2)} s, policies ${round((performance.now() - t2) / 1000, 2)} s; answer ${JSON.stringify(task.answer)} full ${JSON.stringify(tok.detokenize(fullGen))} draft ${JSON.stringify(tok.detokenize(lookahead))}`,
			);
		}
	}
	session.dispose();
	model.dispose();
	await draft.dispose();
	await vocab.dispose();

	const fullBytes = new Map<number, number>();
	for (const [key, a] of acc) {
		const [suite, task, context, policy] = JSON.parse(key) as [string, string, number, string, number];
		if (policy === 'full' && suite === 'proxy' && task === 'top1') fullBytes.set(context, a.bytes / a.n);
	}
	const rows: FidelityRow[] = [...acc.entries()].map(([key, a]) => {
		const [suite, task, context, policy, budgetPct, quant] = JSON.parse(key) as [string, string, number, string, number, string];
		const full = fullBytes.get(context) ?? 1;
		const scale = suite === 'proxy' && task === 'kl' ? 1 : 100;
		return {
			suite,
			task,
			context,
			policy,
			quant: policy === 'draft' ? 'none' : quant,
			budgetPct,
			bytesRatio: policy === 'draft' ? 0 : round(a.bytes / a.n / full, 4),
			score: round((a.sum / a.n) * scale, scale === 1 ? 4 : 1),
			n: a.n,
		};
	});
	rows.sort((a, b) => a.suite.localeCompare(b.suite) || a.task.localeCompare(b.task) || a.context - b.context || a.policy.localeCompare(b.policy) || a.quant.localeCompare(b.quant) || a.budgetPct - b.budgetPct);

	// the issue's targets: needle mean over tasks and contexts, per policy and budget
	const needleMean = (policy: string, budget: number, quant = 'fp16'): number => {
		const sel = rows.filter((r) => r.suite === 'needle' && r.policy === policy && (policy === 'full' || (r.budgetPct === budget && (policy === 'draft' || r.quant === quant))));
		const n = sel.reduce((a, r) => a + r.n, 0);
		return n === 0 ? NaN : round(sel.reduce((a, r) => a + r.score * r.n, 0) / n, 1);
	};
	const needleMeans: Record<string, number> = { full: needleMean('full', 100), draft: needleMean('draft', 0) };
	const orderingAtEqualBytes: Record<string, boolean> = {};
	for (const b of fidelityBudgets) {
		for (const p of evictPolicies) needleMeans[configKey(p, 'fp16', b)] = needleMean(p, b);
		for (const p of quantPolicies) for (const q of packedPrecisions) needleMeans[configKey(p, q, b)] = needleMean(p, b, q);
		const v = (p: string): number => needleMeans[`${p}@${b}`] ?? NaN;
		orderingAtEqualBytes[`${b}%`] = v('speckv') >= v('snapkv') && v('snapkv') >= v('h2o') && v('h2o') >= v('window');
	}
	const speckv12WithinThreeOfFull = (needleMeans['speckv@12'] ?? NaN) >= (needleMeans['full'] ?? NaN) - 3;
	const defaultWithinThreeOfFull = (needleMeans['speckv+mixed@12'] ?? NaN) >= (needleMeans['full'] ?? NaN) - 3;
	const defaultRows = rows.filter((r) => r.policy === 'speckv' && r.quant === 'mixed' && r.budgetPct === 12 && r.suite === 'proxy' && r.task === 'top1');
	const defaultBytesRatio = defaultRows.length === 0 ? NaN : round(defaultRows.reduce((a, r) => a + r.bytesRatio, 0) / defaultRows.length, 4);
	const wallSeconds = round((performance.now() - started) / 1000, 1);
	const usage = process.resourceUsage();
	const cpuSeconds = round((usage.userCPUTime + usage.systemCPUTime) / 1e6, 1);
	const result = {
		model: path.relative(packageRoot(), options.modelPath) || options.modelPath,
		draft: path.relative(packageRoot(), options.draftPath) || options.draftPath,
		modelSha256: fileFingerprint(options.modelPath),
		draftSha256: fileFingerprint(options.draftPath),
		draftLayout,
		quick: options.quick,
		seed,
		contexts,
		perTask,
		threads: options.threads,
		budgets: [...fidelityBudgets],
		wallSeconds,
		cpuSeconds,
		rows,
		checks: { orderingAtEqualBytes, speckv12WithinThreeOfFull, defaultWithinThreeOfFull, defaultBytesRatio, needleMeans },
		markdownFile: '',
		command: options.command ?? `npx repokv bench fidelity --json${options.quick ? ' --quick' : ''} --n ${String(perTask)}`,
		hiFraction: options.hiFraction ?? null,
	};
	const dir = path.join(packageRoot(), 'bench', 'results');
	mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `${options.outName ?? (options.quick ? 'fidelity-quick' : 'fidelity')}.md`);
	writeFileSync(file, markdown(result));
	writeFileSync(file.replace(/\.md$/, '.json'), JSON.stringify({ ...result, markdownFile: path.relative(packageRoot(), file) }, null, 2) + '\n');
	return { ...result, markdownFile: path.relative(packageRoot(), file) };
}

function markdown(r: Omit<FidelityResult, 'markdownFile'>): string {
	const cols: [string, string][] = [
		['needle', 'single'],
		['needle', 'multikey'],
		['needle', 'multivalue'],
		['needle', 'vt'],
		['needle', 'fimsingle'],
		['code', 'nextline-exact'],
		['code', 'nextline-edit'],
		['code', 'fim-exact'],
		['code', 'fim-edit'],
		['proxy', 'top1'],
		['proxy', 'kl'],
	];
	type Config = readonly [policy: string, quant: string, budget: number];
	const matches = (x: FidelityRow, [policy, quant, budget]: Config): boolean => x.policy === policy && x.budgetPct === budget && (policy === 'draft' || x.quant === quant);
	const cell = (c: Config, suite: string, task: string, context?: number): string => {
		const sel = r.rows.filter((x) => x.suite === suite && x.task === task && matches(x, c) && (context === undefined || x.context === context));
		const n = sel.reduce((a, x) => a + x.n, 0);
		if (n === 0) return '–';
		const v = sel.reduce((a, x) => a + x.score * x.n, 0) / n;
		return task === 'kl' ? v.toFixed(3) : v.toFixed(1);
	};
	const bytes = (c: Config): string => {
		const sel = r.rows.filter((x) => matches(x, c) && x.suite === 'proxy' && x.task === 'top1');
		return sel.length === 0 ? '–' : (sel.reduce((a, x) => a + x.bytesRatio, 0) / sel.length).toFixed(3);
	};
	// every (policy, quant) the run has, budgets ascending, fp16 first
	const configs: Config[] = [['full', 'fp16', 100], ['draft', 'none', 0]];
	const pairs = [...new Set(r.rows.filter((x) => x.policy !== 'full' && x.policy !== 'draft').map((x) => `${x.policy} ${x.quant}`))].map((k) => k.split(' ') as [string, string]);
	for (const b of fidelityBudgets) for (const [p, q] of pairs) configs.push([p, q, b]);
	const budgetText = ([p, , b]: Config): string => (p === 'full' ? '100' : p === 'draft' ? '–' : String(b));
	const lines = [
		`# KV policy fidelity (${r.quick ? 'quick' : 'full'} run)`,
		'',
		`Command: \`${r.command}\` · target \`${r.model}\` (sha256 ${r.modelSha256}), draft \`${r.draft}\` (sha256 ${r.draftSha256}, layout ${r.draftLayout}) · contexts ${r.contexts.join(', ')} · ${r.perTask} prompts per task and context (seed ${r.seed}) · wall time ${r.wallSeconds} s, CPU time ${r.cpuSeconds} s (${r.threads} thread${r.threads === 1 ? '' : 's'}; other jobs shared the 2 cores, so wall time is inflated).`,
		'',
		'Scores ×100 (needle: exact value; code: exact line / edit similarity; proxy: teacher-forced top-1 agreement with `full` over 16 tokens of its greedy continuation, and mean KL(full ‖ policy) in nats). `bytes` = real KV bytes kept (positions and format metadata included) / the full fp16 cache. `quant`: how the picked tokens are stored; sinks and the recent window are fp16 in every row, and at one budget every quant spends the same bytes (`mixed` = ' + String((r.hiFraction ?? 0.75) * 100) + ' % of them at 4-bit kivi4 for the top-ranked, the rest at 1.x-bit onebit). `draft` = the draft model alone (its lookahead, no target).',
		'',
		`| policy | quant | budget % | bytes | ${cols.map(([, t]) => t).join(' | ')} |`,
		`|---|---|---|---|${cols.map(() => '---').join('|')}|`,
		...configs.map((c) => `| ${c[0]} | ${c[1]} | ${budgetText(c)} | ${c[0] === 'draft' ? '–' : bytes(c)} | ${cols.map(([s, t]) => cell(c, s, t)).join(' | ')} |`),
		'',
		`Needle mean (${needleTasks.join(', ')}) per context:`,
		'',
		`| policy | quant | budget % | ${r.contexts.join(' | ')} |`,
		`|---|---|---|${r.contexts.map(() => '---').join('|')}|`,
		...configs.map((c) => {
			const per = r.contexts.map((ctx) => {
				const sel = r.rows.filter((x) => x.suite === 'needle' && matches(x, c) && x.context === ctx);
				const n = sel.reduce((a, x) => a + x.n, 0);
				return n === 0 ? '–' : (sel.reduce((a, x) => a + x.score * x.n, 0) / n).toFixed(1);
			});
			return `| ${c[0]} | ${c[1]} | ${budgetText(c)} | ${per.join(' | ')} |`;
		}),
		'',
		`Targets (automatic, read them with the n above; 0 ≥ 0 counts as holding): speckv ≥ snapkv ≥ h2o ≥ window on the needle mean at equal bytes: ${Object.entries(r.checks.orderingAtEqualBytes).map(([b, ok]) => `${b} ${ok ? 'holds' : 'does not hold'}`).join(', ')}; speckv@12% within 3 points of full: ${r.checks.speckv12WithinThreeOfFull ? 'yes' : 'no'} (${r.checks.needleMeans['speckv@12']} vs ${r.checks.needleMeans['full']}); the default, speckv + mixed tiers @12%, within 3 points of full: ${r.checks.defaultWithinThreeOfFull ? 'yes' : 'no'} (${r.checks.needleMeans['speckv+mixed@12']} vs ${r.checks.needleMeans['full']}, bytes ${r.checks.defaultBytesRatio} of fp16).`,
		'',
	];
	return lines.join('\n');
}
