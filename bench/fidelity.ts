import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import {
	argmax,
	compressSession,
	DraftModel,
	kvPolicies,
	kvPrecisions,
	NativeModel,
	observationFor,
	packageRoot,
	resolveKvSettings,
	resolveSettings,
	scoringPass,
	tierCost,
	type DraftLayout,
	type KvMasterPrecision,
	type KvPolicy,
	type KvPrecision,
	type NativeSession,
} from '../sidecar/src/api';
import { fileFingerprint, loadVocab, round } from './common';
import { bootstrapMean, formatInterval, halfWidth, orderingCheck, pairedDifference, withinMargin, type Bounds, type Interval, type MarginOutcome, type OrderingOutcome } from './stats';
import { HeldoutCode, needleTasks, novelNeedleTasks, TaskBuilder, type FidelityTask, type HeldoutPrompt, type NeedleTask, type Tokenizer } from './tasks';

// `repokv bench fidelity`: how closely each KV policy's compressed cache reproduces what the target does with the
// full cache, in the product's configuration (the settings module's defaults: resolveSettings / resolveKvSettings).
//
// Primary suite (`heldout`): windows of real code from repositories the bundled models never saw (bench/tasks.ts
// HeldoutCode), at the model's full context. Per prompt the real continuation is teacher-forced and every cache's
// next-token distributions are compared with the full cache's: top-1 agreement and KL(full ‖ policy); and the
// greedy continuation from each cache is compared with full's (matched-prefix share of `greedyTokens`, and exact
// match). Secondary suites: `needle` (the retrieval format the models were trained on) and `needle-novel` (formats
// they were not), scored by the value found, reported apart.
//
// Configurations: `full` (the reference, fp16, never staged); per policy the product's precision (resolveKvSettings:
// mixed tiers for the ranking policies, f16 for window) from a master copy staged as the product stages it
// (`masterPrecision`, kivi4); the same policies at f16 (eviction only, unstaged master: the product with
// kv.precision f16); speckv with every other packed precision at equal bytes; `speckv-L0` (SpecKV's selection with
// no draft token: what the selected cache is without the draft); `draft` (the draft model alone: its own
// distributions and greedy guess against full's); `master` (the staged master copy, no selection).
//
// Every figure is a mean over prompts with a bootstrap 95 % interval; comparisons are paired on the same prompts
// (bench/stats.ts). Per-prompt records are appended to a JSONL file as the run goes, so a stopped run still reports.

/** The product's configuration: the settings module's defaults, and the engine's lookahead rule. */
export interface ProductConfig {
	readonly maxTokens: number;
	/** SpecKV's draft lookahead: native-engine.ts `min(64, request.maxTokens)`. */
	readonly lookahead: number;
	readonly masterPrecision: KvMasterPrecision;
	readonly draftLayout: DraftLayout;
	/** Share of a mixed budget at 4-bit (undefined: the policy module's default). */
	readonly hiFraction: number | undefined;
	/** The product's default (policy, precision, budget). */
	readonly defaultPolicy: KvPolicy;
	readonly defaultPrecision: KvPrecision;
	readonly defaultBudget: number;
}

export function productConfig(): ProductConfig {
	const s = resolveSettings({});
	return {
		maxTokens: s.completion.maxTokens,
		lookahead: Math.min(64, s.completion.maxTokens),
		masterPrecision: s.kv.masterPrecision,
		draftLayout: s.kv.draftLayout,
		hiFraction: undefined,
		defaultPolicy: s.kv.policy,
		defaultPrecision: s.kv.precision,
		defaultBudget: s.kv.budgetPercent,
	};
}

export type FidelitySuite = 'heldout' | 'needle' | 'needle-novel';
export const fidelitySuites: readonly FidelitySuite[] = ['heldout', 'needle', 'needle-novel'];
export const fidelityBudgets = [3, 6, 12, 25] as const;

export interface FidelityOptions {
	readonly modelPath: string;
	readonly draftPath: string;
	readonly quick: boolean;
	readonly threads: number;
	readonly suites?: readonly FidelitySuite[];
	/** Held-out prompts (default 160; quick 4). */
	readonly n?: number;
	/** Budgets every held-out and needle prompt runs (default 3, 6, 12, 25). */
	readonly budgets?: readonly number[];
	/** Budgets run again on the first `extraN` held-out prompts after everything else (a column-first run). */
	readonly extraBudgets?: readonly number[];
	readonly extraN?: number;
	/** Needle prompts per task (default 4; quick 1) and their contexts (default the model's context; quick 1024). */
	readonly needleN?: number;
	readonly needleContexts?: readonly number[];
	/** Teacher-forced real tokens per held-out prompt (default 64), greedy tokens compared (default 16). */
	readonly heldTokens?: number;
	readonly greedyTokens?: number;
	readonly seed?: number;
	/** Ranking policies (default: all of kvPolicies but full and window, and speckv-L0); window always runs. */
	readonly policies?: readonly string[];
	/** Other packed precisions speckv also runs with (default all but the product's). */
	readonly precisions?: readonly KvPrecision[];
	/** Departures from the product configuration, each named in the output. */
	readonly lookahead?: number;
	readonly masterPrecision?: KvMasterPrecision;
	readonly draftLayout?: DraftLayout;
	readonly hiFraction?: number;
	/** Stop starting new prompts after this time (ms since the epoch); what finished is reported. */
	readonly deadline?: number;
	readonly command?: string;
	/** Results file name in bench/results (default fidelity / fidelity-quick), without extension. */
	readonly outName?: string;
	readonly onProgress?: (line: string) => void;
}

/** One prompt's measurements: config key → metric → value. */
export interface PromptRecord {
	readonly suite: FidelitySuite;
	readonly task: string;
	readonly id: string;
	readonly context: number;
	readonly values: Record<string, Record<string, number>>;
}

export interface FidelityRun {
	readonly model: string;
	readonly draft: string;
	readonly modelSha256: string;
	readonly draftSha256: string;
	readonly quick: boolean;
	readonly seed: number;
	readonly threads: number;
	readonly product: ProductConfig;
	readonly departures: readonly string[];
	readonly heldTokens: number;
	readonly greedyTokens: number;
	readonly context: number;
	readonly command: string;
	readonly started: string;
	readonly wallSeconds: number;
	readonly cpuSeconds: number;
	readonly stoppedAtDeadline: boolean;
	readonly licences: readonly { repository: string; packages: string }[];
}

const L0 = 'speckv-L0';
const allRankingPolicies: string[] = [...kvPolicies.filter((p) => p !== 'full' && p !== 'window'), L0];
const key = (policy: string, quant: string, budget: number): string => `${policy}|${quant}|${budget}`;
const quantName = (p: KvPrecision): string => (p === 'f16' ? 'fp16' : p);
export const FULL = key('full', 'fp16', 100);
export const DRAFT = key('draft', 'none', 0);

function logSoftmax(x: Float32Array): Float64Array {
	let mx = -Infinity;
	for (const v of x) mx = Math.max(mx, v);
	let s = 0;
	for (const v of x) s += Math.exp(v - mx);
	const l = Math.log(s) + mx;
	return Float64Array.from(x, (v) => v - l);
}

/** Mean top-1 agreement (×100) and mean KL(ref ‖ x) over `rows` rows of `nVocab` logits. */
function compareRows(ref: Float32Array, x: Float32Array, rows: number, nVocab: number): { top1: number; kl: number } {
	let agree = 0;
	let kl = 0;
	for (let r = 0; r < rows; r++) {
		const a = ref.subarray(r * nVocab, (r + 1) * nVocab);
		const b = x.subarray(r * nVocab, (r + 1) * nVocab);
		if (argmax(a) === argmax(b)) agree++;
		const la = logSoftmax(a);
		const lb = logSoftmax(b);
		let s = 0;
		for (let i = 0; i < nVocab; i++) s += Math.exp(la[i] ?? 0) * ((la[i] ?? 0) - (lb[i] ?? 0));
		kl += Math.max(0, s);
	}
	return { top1: (100 * agree) / rows, kl: kl / rows };
}

/** Greedy agreement of `x` with the reference `ref` (both ≤ g tokens): ×100 share of matched prefix; 100 if equal. */
function greedyAgreement(ref: readonly number[], x: readonly number[], g: number): { greedy: number; greedyExact: number } {
	const same = ref.length === x.length && ref.every((t, i) => x[i] === t);
	let k = 0;
	while (k < ref.length && k < x.length && ref[k] === x[k]) k++;
	return { greedy: same ? 100 : (100 * k) / g, greedyExact: same ? 100 : 0 };
}

export async function runFidelity(options: FidelityOptions): Promise<{ markdownFile: string; records: number; stoppedAtDeadline: boolean }> {
	const started = performance.now();
	const startedAt = new Date().toISOString();
	const seed = options.seed ?? 20260127;
	const product = productConfig();
	const departures: string[] = [];
	const lookahead = options.lookahead ?? product.lookahead;
	if (options.lookahead !== undefined && options.lookahead !== product.lookahead) departures.push(`lookahead ${lookahead} (product ${product.lookahead})`);
	const masterPrecision = options.masterPrecision ?? product.masterPrecision;
	if (masterPrecision !== product.masterPrecision) departures.push(`master copy staged as ${masterPrecision} (product ${product.masterPrecision})`);
	const draftLayout = options.draftLayout ?? product.draftLayout;
	if (draftLayout !== product.draftLayout) departures.push(`draft layout ${draftLayout} (product ${product.draftLayout})`);
	if (options.hiFraction !== undefined) departures.push(`mixed: ${options.hiFraction} of the bytes at 4-bit (product: the policy's default)`);
	const budgets = options.budgets ?? (options.quick ? [12] : [...fidelityBudgets]);
	const extraBudgets = options.extraBudgets ?? [];
	const suites = options.suites ?? fidelitySuites;
	const heldTokens = options.heldTokens ?? 64;
	const greedyTokens = options.greedyTokens ?? 16;
	const reserve = product.maxTokens + 1;
	if (heldTokens + 1 > reserve + 1 || greedyTokens + 1 > reserve) throw new Error(`held (${heldTokens}) and greedy (${greedyTokens}) tokens must fit the product's reserve of ${reserve}`);
	const rankingPolicies = options.policies ?? allRankingPolicies;
	for (const p of rankingPolicies) if (!allRankingPolicies.includes(p)) throw new Error(`unknown policy '${p}' (${allRankingPolicies.join(', ')})`);
	const productPrecision = (policy: string): KvPrecision => resolveKvSettings({ policy: (policy === L0 ? 'speckv' : policy) as KvPolicy }).precision;
	const otherPrecisions = options.precisions ?? kvPrecisions.filter((q) => q !== 'f16' && q !== productPrecision('speckv'));

	const vocab = await loadVocab(options.modelPath, options.threads);
	const tok: Tokenizer = {
		tokenize: (text, special) => vocab.tokenize(text, special).map(Number),
		detokenize: (tokens) => vocab.detokenize(tokens as Parameters<typeof vocab.detokenize>[0]),
	};
	const isStop = (t: number): boolean => vocab.isEogToken(t as never) || vocab.isSpecialToken(t as never);
	const model = NativeModel.load(options.modelPath, { threads: options.threads });
	const { nLayer, nHeadKv, headDim, nVocab, contextLength } = model.info;
	const context = contextLength;
	const cost = tierCost(headDim);
	const needleContexts = options.needleContexts ?? (options.quick ? [1024] : [context]);
	const maxContext = Math.max(context, ...needleContexts);
	// fp16 master (full, window, the f16 rows) and the product's staged master (the packed precisions)
	const s16 = model.createSession({ contextSize: maxContext + 256 });
	const sQ = model.createSession({ contextSize: maxContext + 256 });
	sQ.setStaging(masterPrecision);
	const draft = await DraftModel.load(options.draftPath, { threads: options.threads, contextSize: maxContext + 128, layout: draftLayout });
	// the draft's own distributions on the held-out code (the draft alone), in the native engine
	const draftNative = suites.includes('heldout') ? NativeModel.load(options.draftPath, { threads: options.threads }) : undefined;
	const sDraft = draftNative?.createSession({ contextSize: context + 64 });

	const dir = path.join(packageRoot(), 'bench', 'results');
	mkdirSync(dir, { recursive: true });
	const outName = options.outName ?? (options.quick ? 'fidelity-quick' : 'fidelity');
	const recordsFile = path.join(dir, `${outName}.records.jsonl`);
	writeFileSync(recordsFile, '');
	const records: PromptRecord[] = [];
	const save = (r: PromptRecord): void => {
		records.push(r);
		const rounded = Object.fromEntries(Object.entries(r.values).map(([k, v]) => [k, Object.fromEntries(Object.entries(v).map(([mk, x]) => [mk, Number(x.toPrecision(5))]))]));
		appendFileSync(recordsFile, JSON.stringify({ ...r, values: rounded }) + '\n');
	};

	/** Greedy tokens after the cache's end, from `first` (the last row's logits); a stop token ends it (kept). */
	const greedy = async (s: NativeSession, first: Float32Array, n: number, stopAtNewline = false): Promise<number[]> => {
		const out: number[] = [];
		let logits = first;
		for (;;) {
			const t = argmax(logits);
			out.push(t);
			if (isStop(t) || out.length >= n || (stopAtNewline && tok.detokenize(out).includes('\n'))) break;
			await s.decode(t);
			logits = s.logits();
		}
		return out;
	};

	interface Config {
		readonly policy: string;
		readonly precision: KvPrecision;
		readonly budget: number;
	}
	const configsFor = (bs: readonly number[]): { fp16: Config[]; staged: Config[] } => {
		const fp16: Config[] = [];
		const staged: Config[] = [];
		for (const budget of bs) {
			fp16.push({ policy: 'window', precision: 'f16', budget });
			for (const policy of rankingPolicies) {
				fp16.push({ policy, precision: 'f16', budget });
				const q = productPrecision(policy);
				if (q !== 'f16') staged.push({ policy, precision: q, budget });
			}
			if (rankingPolicies.includes('speckv')) for (const q of otherPrecisions) staged.push({ policy: 'speckv', precision: q, budget });
		}
		return { fp16, staged };
	};

	/**
	 * Prefills `prompt` into `s` observed for every policy (H2O needs every row; the window ends with the last prompt
	 * token), cut to m = n − 1 (decoding re-feeds the last token), as the native engine does. Observation then
	 * pauses (its scores kept): the reference's own evaluations must not fold into the scores, which in the product
	 * see only the prompt and the draft's lookahead (scoringPass resumes it for that).
	 */
	const prefillObserved = async (s: NativeSession, prompt: readonly number[]): Promise<number> => {
		s.truncate(0);
		s.observe(observationFor('h2o', prompt.length));
		await s.prefill([...prompt]);
		s.stopObserving();
		s.truncate(prompt.length - 1);
		return s.stats().masterBytes;
	};

	/** Selects, runs `measure` on the compressed cache, restores the master. */
	const withConfig = async <T>(s: NativeSession, c: Config, m: number, measure: () => Promise<T>): Promise<{ bytes: number; out: T }> => {
		const selection = c.policy === L0 ? { policy: 'speckv' as const, scoreKind: 'window-max' as const } : { policy: c.policy as KvPolicy };
		const tiers = c.precision === 'f16' ? {} : { precision: c.precision, tierCost: cost, ...(options.hiFraction === undefined ? {} : { hiFraction: options.hiFraction }) };
		const sel = compressSession(s, nLayer, nHeadKv, { ...selection, ...tiers, budget: { percent: c.budget }, reserveTokens: reserve }, reserve);
		const bytes = sel === undefined ? s.stats().masterBytes : s.stats().bytes;
		const out = await measure();
		s.truncate(m);
		if (s.stats().compressed) s.decompress();
		return { bytes, out };
	};

	const heldoutPrompt = async (p: HeldoutPrompt, bs: readonly number[]): Promise<PromptRecord> => {
		const t0 = performance.now();
		const { prompt, held } = p;
		const m = prompt.length - 1;
		const last = prompt[m] ?? 0;
		const tf = [last, ...held.slice(0, heldTokens - 1)];
		const values: Record<string, Record<string, number>> = {};
		const fp16Bytes = await prefillObserved(s16, prompt);
		await s16.prefill(tf, { allLogits: true });
		const ref = s16.logits('all').slice();
		s16.truncate(m + 1);
		const refGreedy = await greedy(s16, ref.subarray(0, nVocab), greedyTokens);
		s16.truncate(m);
		values[FULL] = { top1: 100, kl: 0, greedy: 100, greedyExact: 100, bytes: 1 };
		// measured on a compressed (or master) cache at length m
		const measure = async (s: NativeSession): Promise<Record<string, number>> => {
			await s.prefill(tf, { allLogits: true });
			const rows = s.logits('all');
			const c = compareRows(ref, rows, heldTokens, nVocab);
			s.truncate(m + 1);
			const g = await greedy(s, rows.subarray(0, nVocab), greedyTokens);
			return { ...c, ...greedyAgreement(refGreedy, g, greedyTokens) };
		};
		const t1 = performance.now();
		// the draft alone: its lookahead against full's greedy, its distributions against full's
		const guess = await draft.lookahead(prompt, lookahead);
		if (sDraft !== undefined) {
			sDraft.truncate(0);
			await sDraft.prefill(prompt.slice(0, m));
			await sDraft.prefill(tf, { allLogits: true });
			values[DRAFT] = { ...compareRows(ref, sDraft.logits('all'), heldTokens, nVocab), ...greedyAgreement(refGreedy, guess.slice(0, greedyTokens), greedyTokens) };
		}
		await scoringPass(s16, last, guess);
		s16.stopObserving();
		const t2 = performance.now();
		const { fp16, staged } = configsFor(bs);
		for (const c of fp16) {
			const { bytes, out } = await withConfig(s16, c, m, () => measure(s16));
			values[key(c.policy, quantName(c.precision), c.budget)] = { ...out, bytes: bytes / fp16Bytes };
		}
		const t3 = performance.now();
		if (staged.length > 0) {
			const masterBytes = await prefillObserved(sQ, prompt);
			values[key('master', masterPrecision, 100)] = { ...(await measure(sQ)), bytes: masterBytes / fp16Bytes };
			sQ.truncate(m);
			await scoringPass(sQ, last, guess);
			sQ.stopObserving();
			for (const c of staged) {
				const { bytes, out } = await withConfig(sQ, c, m, () => measure(sQ));
				values[key(c.policy, quantName(c.precision), c.budget)] = { ...out, bytes: bytes / fp16Bytes };
			}
		}
		const t4 = performance.now();
		const def = values[key(product.defaultPolicy, quantName(product.defaultPrecision), product.defaultBudget)];
		options.onProgress?.(
			`heldout ${p.id}: prefill+full ${round((t1 - t0) / 1000, 2)} s, draft ${round((t2 - t1) / 1000, 2)} s, fp16 configs ${round((t3 - t2) / 1000, 2)} s, staged ${round((t4 - t3) / 1000, 2)} s; draft top-1 ${round(values[DRAFT]?.['top1'] ?? NaN, 1)}` +
				(def === undefined ? '' : `, default top-1 ${round(def['top1'] ?? NaN, 1)} KL ${round(def['kl'] ?? NaN, 3)} greedy ${round(def['greedy'] ?? NaN, 1)}`),
		);
		return { suite: 'heldout', task: 'code', id: p.id, context, values };
	};

	const scoreNeedle = (task: FidelityTask, generated: readonly number[]): number => {
		const text = tok.detokenize(generated.filter((t) => !isStop(t)));
		if (task.task === 'multivalue') {
			const want = task.answer.split(', ');
			const got = text.split(']')[0]?.split(',').map((v) => v.trim()) ?? [];
			return (100 * want.filter((v, i) => got[i] === v).length) / want.length;
		}
		return text.trimStart().startsWith(task.answer) ? 100 : 0;
	};

	const needlePrompt = async (task: FidelityTask, bs: readonly number[]): Promise<PromptRecord> => {
		const t0 = performance.now();
		const prompt = task.tokens;
		const m = prompt.length - 1;
		const last = prompt[m] ?? 0;
		const values: Record<string, Record<string, number>> = {};
		const answer = async (s: NativeSession): Promise<Record<string, number>> => {
			await s.decode(last);
			return { score: scoreNeedle(task, await greedy(s, s.logits(), task.maxTokens, true)) };
		};
		const fp16Bytes = await prefillObserved(s16, prompt);
		values[FULL] = { ...(await answer(s16)), bytes: 1 };
		s16.truncate(m);
		const guess = await draft.lookahead(prompt, lookahead);
		values[DRAFT] = { score: scoreNeedle(task, guess.slice(0, task.maxTokens)) };
		await scoringPass(s16, last, guess);
		s16.stopObserving();
		const { fp16, staged } = configsFor(bs);
		for (const c of fp16) {
			const { bytes, out } = await withConfig(s16, c, m, () => answer(s16));
			values[key(c.policy, quantName(c.precision), c.budget)] = { ...out, bytes: bytes / fp16Bytes };
		}
		if (staged.length > 0) {
			const masterBytes = await prefillObserved(sQ, prompt);
			values[key('master', masterPrecision, 100)] = { ...(await answer(sQ)), bytes: masterBytes / fp16Bytes };
			sQ.truncate(m);
			await scoringPass(sQ, last, guess);
			sQ.stopObserving();
			for (const c of staged) {
				const { bytes, out } = await withConfig(sQ, c, m, () => answer(sQ));
				values[key(c.policy, quantName(c.precision), c.budget)] = { ...out, bytes: bytes / fp16Bytes };
			}
		}
		options.onProgress?.(`${task.suite}/${task.task} ctx ${task.context} #${task.index}: ${round((performance.now() - t0) / 1000, 2)} s; answer ${JSON.stringify(task.answer)} full ${values[FULL]?.['score']} draft ${values[DRAFT]?.['score']}`);
		return { suite: task.suite, task: task.task, id: `${task.task}@${task.context}#${task.index}`, context: task.context, values };
	};

	// the schedule: held-out prompts (the resolving n), then the needles, then the extra budgets
	const n = options.n ?? (options.quick ? 4 : 160);
	const heldout = new HeldoutCode(tok);
	const heldoutPrompts = suites.includes('heldout') ? heldout.schedule(n, context, heldTokens) : [];
	const builder = new TaskBuilder(tok);
	const needleN = options.needleN ?? (options.quick ? 1 : 4);
	const needles: FidelityTask[] = [];
	for (const ctx of needleContexts) {
		for (let i = 0; i < needleN; i++) {
			const tasks: NeedleTask[] = [...(suites.includes('needle') ? needleTasks : []), ...(suites.includes('needle-novel') ? novelNeedleTasks : [])];
			for (const t of tasks) needles.push(builder.needle(t, ctx, i, seed));
		}
	}
	// needles spread evenly among the held-out prompts (a run stopped at its deadline still has both), then the
	// extra budgets
	const jobs: (() => Promise<PromptRecord>)[] = [];
	let placedNeedles = 0;
	heldoutPrompts.forEach((p, i) => {
		jobs.push(() => heldoutPrompt(p, budgets));
		while (placedNeedles < needles.length && (placedNeedles + 1) * heldoutPrompts.length <= (i + 1) * needles.length) {
			const t = needles[placedNeedles++];
			if (t !== undefined) jobs.push(() => needlePrompt(t, budgets));
		}
	});
	for (const t of needles.slice(placedNeedles)) jobs.push(() => needlePrompt(t, budgets));
	if (extraBudgets.length > 0) for (const p of heldoutPrompts.slice(0, options.extraN ?? heldoutPrompts.length)) jobs.push(() => heldoutPrompt(p, extraBudgets));
	let stoppedAtDeadline = false;
	// the run's header first: a run stopped from outside can still be reported from its records (--report-from)
	writeFileSync(path.join(dir, `${outName}.json`), JSON.stringify({ ...runHeader(true), partial: true, records: path.relative(packageRoot(), recordsFile) }, null, 1) + '\n');
	for (const job of jobs) {
		if (options.deadline !== undefined && Date.now() > options.deadline) {
			stoppedAtDeadline = true;
			options.onProgress?.(`deadline reached: ${records.length} of ${jobs.length} prompts done`);
			break;
		}
		save(await job());
	}
	s16.dispose();
	sQ.dispose();
	sDraft?.dispose();
	draftNative?.dispose();
	model.dispose();
	await draft.dispose();
	await vocab.dispose();

	const file = path.join(dir, `${outName}.md`);
	const run = runHeader(false);
	writeFileSync(file, fidelityReport(run, records));
	writeFileSync(file.replace(/\.md$/, '.json'), JSON.stringify({ ...run, summary: summarize(run, records), records: path.relative(packageRoot(), recordsFile) }, null, 1) + '\n');
	return { markdownFile: path.relative(packageRoot(), file), records: records.length, stoppedAtDeadline };

	function runHeader(partial: boolean): FidelityRun {
	const usage = process.resourceUsage();
	return {
		model: path.relative(packageRoot(), options.modelPath) || options.modelPath,
		draft: path.relative(packageRoot(), options.draftPath) || options.draftPath,
		modelSha256: fileFingerprint(options.modelPath),
		draftSha256: fileFingerprint(options.draftPath),
		quick: options.quick,
		seed,
		threads: options.threads,
		product,
		departures,
		heldTokens,
		greedyTokens,
		context,
		command: options.command ?? `npx repokv bench fidelity${options.quick ? ' --quick' : ''}`,
		started: startedAt,
		wallSeconds: round((performance.now() - started) / 1000, 1),
		cpuSeconds: round((usage.userCPUTime + usage.systemCPUTime) / 1e6, 1),
		stoppedAtDeadline: partial ? false : stoppedAtDeadline,
		licences: heldout.repositories
			.filter((r) => partial || records.some((x) => x.suite === 'heldout' && x.id.startsWith(`${r.repository}#`)))
			.map((r) => ({ repository: r.repository, packages: r.packages.map((p) => `${p.name}@${p.version ?? '?'} (${p.license ?? '?'})`).join(', ') })),
	};
	}
}

/**
 * Re-reports the run `outName` from bench/results/<outName>.records.jsonl and the header in <outName>.json (written
 * when the run starts), e.g. after it was stopped from outside; rewrites <outName>.md and .json.
 */
export function reportFromRecords(outName: string): { markdownFile: string; records: number } {
	const dir = path.join(packageRoot(), 'bench', 'results');
	const runFile = path.join(dir, `${outName}.json`);
	const recordsFile = path.join(dir, `${outName}.records.jsonl`);
	const run = JSON.parse(readFileSync(runFile, 'utf8')) as FidelityRun & { partial?: boolean; summary?: unknown; records?: string };
	const records = readFileSync(recordsFile, 'utf8')
		.split('\n')
		.filter((l) => l.trim() !== '')
		.map((l) => JSON.parse(l) as PromptRecord);
	const header: FidelityRun = { ...run, stoppedAtDeadline: run.stoppedAtDeadline || run.partial === true };
	const { summary: _summary, partial: _partial, ...rest } = { ...run, ...header };
	writeFileSync(path.join(dir, `${outName}.md`), fidelityReport(header, records));
	writeFileSync(runFile, JSON.stringify({ ...rest, reportedFromRecords: true, summary: summarize(header, records), records: path.relative(packageRoot(), recordsFile) }, null, 1) + '\n');
	return { markdownFile: path.relative(packageRoot(), path.join(dir, `${outName}.md`)), records: records.length };
}

// ---- statistics and report ----

const TOP1: Bounds = { floor: 0, ceiling: 100 };
const KL: Bounds = { floor: Infinity, ceiling: 0 };

/** metric → config → prompt id → value, for one suite (or several). */
function collect(records: readonly PromptRecord[], suites: readonly string[], metric: string): Map<string, Map<string, number>> {
	const out = new Map<string, Map<string, number>>();
	for (const r of records) {
		if (!suites.includes(r.suite)) continue;
		for (const [cfg, v] of Object.entries(r.values)) {
			const x = v[metric];
			if (x === undefined) continue;
			let m = out.get(cfg);
			if (m === undefined) out.set(cfg, (m = new Map<string, number>()));
			m.set(r.id, x);
		}
	}
	return out;
}

interface Summary {
	readonly headline: { readonly config: string; readonly top1VsFull: Interval; readonly halfWidth: number; readonly resolved: boolean };
	readonly at12: Record<string, { top1: Interval; top1VsFull: Interval; kl: Interval; greedy: Interval; bytes: number }>;
	readonly ordering: Record<string, OrderingOutcome>;
	readonly defaultWithinThree: MarginOutcome | undefined;
	readonly draftContribution: Record<string, Interval>;
}

function orderKey(cfg: string): [number, number, number, string] {
	const [policy = '', quant = '', budget = '0'] = cfg.split('|');
	const pr = ['full', 'draft', 'master', 'speckv', L0, 'snapkv', 'pyramidkv', 'adakv', 'h2o', 'window'].indexOf(policy);
	const qr = ['mixed', 'fp16', 'q8', 'kivi4', 'kivi2', 'onebit', 'none'].indexOf(quant);
	return [Number(budget) === 100 || Number(budget) === 0 ? -1 : Number(budget), pr, qr, cfg];
}
const byOrder = (a: string, b: string): number => {
	const x = orderKey(a);
	const y = orderKey(b);
	return x[0] - y[0] || x[1] - y[1] || x[2] - y[2] || x[3].localeCompare(y[3]);
};

function summarize(run: FidelityRun, records: readonly PromptRecord[]): Summary {
	const seed = run.seed;
	const top1 = collect(records, ['heldout'], 'top1');
	const kl = collect(records, ['heldout'], 'kl');
	const greedy = collect(records, ['heldout'], 'greedy');
	const bytes = collect(records, ['heldout', 'needle', 'needle-novel'], 'bytes');
	const full = top1.get(FULL) ?? new Map<string, number>();
	const p = run.product;
	const defaultKey = key(p.defaultPolicy, quantName(p.defaultPrecision), p.defaultBudget);
	const hd = pairedDifference(top1.get(defaultKey) ?? new Map(), full, seed);
	const at12: Summary['at12'] = {};
	for (const cfg of [...top1.keys()].filter((c) => c.endsWith('|12') || c === DRAFT).sort(byOrder)) {
		const b = [...(bytes.get(cfg)?.values() ?? [])];
		at12[cfg] = {
			top1: bootstrapMean([...(top1.get(cfg)?.values() ?? [])], seed),
			top1VsFull: pairedDifference(top1.get(cfg) ?? new Map<string, number>(), full, seed),
			kl: bootstrapMean([...(kl.get(cfg)?.values() ?? [])], seed),
			greedy: bootstrapMean([...(greedy.get(cfg)?.values() ?? [])], seed),
			bytes: b.length === 0 ? NaN : round(b.reduce((a, x) => a + x, 0) / b.length, 4),
		};
	}
	const ordering: Record<string, OrderingOutcome> = {};
	const budgetsRun = [...new Set([...top1.keys()].map((c) => Number(c.split('|')[2])).filter((b) => b > 0 && b < 100))].sort((a, b) => a - b);
	for (const b of budgetsRun) {
		const productOrder = ['speckv', 'snapkv', 'h2o'].map((x) => key(x, quantName(resolveKvSettings({ policy: x as KvPolicy }).precision), b)).concat(key('window', 'fp16', b));
		const f16Order = ['speckv', 'snapkv', 'h2o', 'window'].map((x) => key(x, 'fp16', b));
		if (productOrder.every((c) => top1.has(c))) {
			ordering[`top1 product ${b}%`] = orderingCheck(productOrder, top1, true, TOP1, seed);
			ordering[`KL product ${b}%`] = orderingCheck(productOrder, kl, false, KL, seed);
		}
		if (f16Order.every((c) => top1.has(c))) ordering[`top1 fp16 ${b}%`] = orderingCheck(f16Order, top1, true, TOP1, seed);
	}
	const defaultWithinThree = top1.has(defaultKey) ? withinMargin(defaultKey, FULL, top1, 3, true, TOP1, seed) : undefined;
	const draftContribution: Record<string, Interval> = {};
	for (const cfg of top1.keys()) {
		const [policy, quant, budget] = cfg.split('|');
		if (policy !== 'speckv') continue;
		const ablation = top1.get(key(L0, quant ?? '', Number(budget)));
		if (ablation !== undefined) draftContribution[cfg] = pairedDifference(top1.get(cfg) ?? new Map<string, number>(), ablation, seed);
	}
	return { headline: { config: defaultKey, top1VsFull: hd, halfWidth: round(halfWidth(hd), 2), resolved: halfWidth(hd) <= 1.5 }, at12, ordering, defaultWithinThree, draftContribution };
}

const label = (cfg: string): string => {
	const [policy = '', quant = '', budget = ''] = cfg.split('|');
	if (policy === 'full' || policy === 'draft') return `| ${policy} | ${quant} | ${budget === '0' ? '–' : budget}`;
	return `| ${policy} | ${quant} | ${budget}`;
};

function verdictText(o: OrderingOutcome): string {
	return `**${o.verdict}** (${o.pairs.map((p) => `${p.better.split('|')[0]} vs ${p.worse.split('|')[0]}: ${formatInterval(p.difference, 2)} ${p.verdict}${p.reason ? ` (${p.reason})` : ''}`).join('; ')})`;
}

export function fidelityReport(run: FidelityRun, records: readonly PromptRecord[]): string {
	const seed = run.seed;
	const s = summarize(run, records);
	const p = run.product;
	const nOf = (suite: string): number => new Set(records.filter((r) => r.suite === suite).map((r) => r.id)).size;
	const lines: string[] = [];
	lines.push(`# KV policy fidelity to the full cache${run.quick ? ' — SMOKE RUN (--quick): too few prompts to resolve anything; do not quote' : ''}`);
	lines.push('');
	lines.push(
		`Command: \`${run.command}\` · started ${run.started} · target \`${run.model}\` (sha256 ${run.modelSha256}), draft \`${run.draft}\` (sha256 ${run.draftSha256}) · seed ${seed} · wall ${run.wallSeconds} s, CPU ${run.cpuSeconds} s (${run.threads} thread; other jobs shared the 2 cores)${run.stoppedAtDeadline ? ' · **stopped early** (its deadline, or from outside and reported from its records): the n below is what finished' : ''}.`,
	);
	lines.push('');
	lines.push(
		`Product configuration (settings module defaults): completion maxTokens ${p.maxTokens} → SpecKV lookahead min(64, maxTokens) = ${p.lookahead}; master copy staged as ${p.masterPrecision} for the packed precisions (kept, not dropped); draft layout ${p.draftLayout}; default ${p.defaultPolicy} + ${p.defaultPrecision} at ${p.defaultBudget} %; reserve ${p.maxTokens + 1} tokens. Departures: ${run.departures.length === 0 ? 'none' : run.departures.join('; ')}.`,
	);
	lines.push('');
	lines.push(
		`Intervals: 95 % percentile bootstrap over prompts (2000 resamples, seeded); "vs full" is the paired difference on the same prompts. Checks count a comparison only when its interval decides it; ties at the floor or ceiling are "not resolved".`,
	);
	lines.push('');
	// primary suite
	const nH = nOf('heldout');
	if (nH > 0) {
		lines.push(`## Primary: fidelity to full on held-out real code (n = ${nH} prompts, ${run.context} tokens each: ${run.context - run.heldTokens} cached + ${run.heldTokens} real tokens teacher-forced)`);
		lines.push('');
		lines.push(
			`top-1: agreement of the next-token argmax with full's over the ${run.heldTokens} teacher-forced rows (×100); KL: mean KL(full ‖ config) in nats; greedy: share of full's ${run.greedyTokens} greedy tokens matched before the first difference (×100; 100 when identical); exact: all ${run.greedyTokens} identical. bytes: KV bytes kept / the fp16 cache. \`draft\` = the draft model alone; \`speckv-L0\` = SpecKV's selection with no draft token; \`master\` = the staged master copy, no selection; \`fp16\` rows = eviction only.`,
		);
		lines.push('');
		const H = (m: string): Map<string, Map<string, number>> => collect(records, ['heldout'], m);
		const top1 = H('top1');
		const kl = H('kl');
		const greedy = H('greedy');
		const exact = H('greedyExact');
		const bytes = collect(records, ['heldout'], 'bytes');
		const full = top1.get(FULL) ?? new Map<string, number>();
		lines.push('| policy | quant | budget % | n | bytes | top-1 | top-1 − full | KL | greedy | exact |');
		lines.push('|---|---|---|---|---|---|---|---|---|---|');
		for (const cfg of [...top1.keys()].sort(byOrder)) {
			const vals = top1.get(cfg) ?? new Map<string, number>();
			const b = [...(bytes.get(cfg)?.values() ?? [])];
			lines.push(
				`${label(cfg)} | ${vals.size} | ${b.length === 0 ? '–' : (b.reduce((a, x) => a + x, 0) / b.length).toFixed(3)} | ${formatInterval(bootstrapMean([...vals.values()], seed))} | ${cfg === FULL ? '–' : formatInterval(pairedDifference(vals, full, seed))} | ${formatInterval(bootstrapMean([...(kl.get(cfg)?.values() ?? [])], seed), 3)} | ${formatInterval(bootstrapMean([...(greedy.get(cfg)?.values() ?? [])], seed))} | ${bootstrapMean([...(exact.get(cfg)?.values() ?? [])], seed).mean.toFixed(1)} |`,
			);
		}
		lines.push('');
		lines.push(
			`Headline: the default (${s.headline.config}) top-1 − full = ${formatInterval(s.headline.top1VsFull, 2)} (n ${s.headline.top1VsFull.n}), half-width ${s.headline.halfWidth} points: ${s.headline.resolved ? 'resolves a 3-point difference (≤ 1.5)' : '**does not** resolve a 3-point difference (> 1.5)'}.`,
		);
		lines.push('');
		if (s.defaultWithinThree !== undefined) lines.push(`Default within 3 top-1 points of full (whole interval above −3): **${s.defaultWithinThree.verdict}** (${formatInterval(s.defaultWithinThree.difference, 2)}).`);
		lines.push('');
		lines.push('Ordering speckv ≥ snapkv ≥ h2o ≥ window at equal bytes (product precisions: ranking policies mixed, window fp16; and all fp16):');
		lines.push('');
		for (const [name, o] of Object.entries(s.ordering)) lines.push(`- ${name}: ${verdictText(o)}`);
		lines.push('');
		lines.push('What the draft contributes to SpecKV\'s selection (speckv − speckv-L0, paired, top-1 points):');
		lines.push('');
		for (const [cfg, d] of Object.entries(s.draftContribution).sort(([a], [b]) => byOrder(a, b))) lines.push(`- ${cfg}: ${formatInterval(d, 2)} (n ${d.n})`);
		lines.push('');
		lines.push(`Held-out repositories (not in the training corpus; licences as their package.json declares): ${run.licences.filter((l) => records.some((x) => x.suite === 'heldout' && x.id.startsWith(`${l.repository}#`))).map((l) => `${l.repository} [${l.packages}]`).join('; ')}.`);
		lines.push('');
	}
	for (const suite of ['needle', 'needle-novel'] as const) {
		const nN = nOf(suite);
		if (nN === 0) continue;
		const score = collect(records, [suite], 'score');
		const full = score.get(FULL) ?? new Map<string, number>();
		const tasks = [...new Set(records.filter((r) => r.suite === suite).map((r) => r.task))];
		const ctxs = [...new Set(records.filter((r) => r.suite === suite).map((r) => r.context))];
		lines.push(
			`## Secondary: ${suite === 'needle' ? 'needles in the trained format' : 'needles in formats the models were not trained on'} (n = ${nN} prompts: ${tasks.join(', ')} at ${ctxs.join(', ')} tokens)`,
		);
		lines.push('');
		lines.push('Score ×100: the asked value found by greedy decoding from the cache (multivalue: share of values in order). `draft` = the draft\'s own guess (its lookahead) with no target.');
		lines.push('');
		lines.push(`| policy | quant | budget % | n | mean | − full | ${tasks.join(' | ')} |`);
		lines.push(`|---|---|---|---|---|---|${tasks.map(() => '---').join('|')}|`);
		for (const cfg of [...score.keys()].sort(byOrder)) {
			const vals = score.get(cfg) ?? new Map<string, number>();
			const perTask = tasks.map((t) => {
				const v = records.filter((r) => r.suite === suite && r.task === t).map((r) => r.values[cfg]?.['score']).filter((x): x is number => x !== undefined);
				return v.length === 0 ? '–' : (v.reduce((a, x) => a + x, 0) / v.length).toFixed(0);
			});
			lines.push(`${label(cfg)} | ${vals.size} | ${formatInterval(bootstrapMean([...vals.values()], seed))} | ${cfg === FULL ? '–' : formatInterval(pairedDifference(vals, full, seed))} | ${perTask.join(' | ')} |`);
		}
		lines.push('');
	}
	return lines.join('\n');
}
