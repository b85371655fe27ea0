import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

import { bundledModelPath, draftLayoutOption, integerOption, kvMasterPrecisions, oneOfOption, packageRoot, parseCommandArgs, physicalCores, UserError, type Command } from '../sidecar/src/api';
import { runParity } from './parity';
import { runSession, runSessionOnce, sessionConfigs, sessionMarkdown, type SessionConfig, type SessionOptions } from './session';
import { runSpeed, runSpeedRow, speedConfigs, speedMarkdown, type SpeedConfig } from './speed';

const usage = `usage: repokv bench <parity|speed|fidelity|kernels|session> [options]

  parity   the native engine (policy full) against llama.cpp's raw logits: every position of a code prompt, then
           greedy tokens
  speed    prefill and decode speed, KV bytes and peak RSS of the native engine (policy full, and the default:
           speckv + mixed 4-bit/1.x-bit tiers at 12 %) and node-llama-cpp (f16 K/V with flash attention off and on,
           q4_0 K/V with flash attention) on the same model, prompt and threads; each configuration in a process of
           its own; min/median/max over repeats
  kernels  the packed KV formats' attention kernels alone (q8, kivi4, kivi2, onebit): CPU ms per call for
           --contexts N tokens (default 32768) x 3 query rows, D 64, median of --repeats (default 20)
  session  an editing session as a user feels it: per configuration (repokv's default compressed path, repokv full,
           node-llama-cpp with prefix reuse in f16 / f16+FA / q8_0+FA / q4_0+FA), a cold start then --completions
           warm completions at other cursors in other files with a typed edit before each; TTFT and latency p50/p95
           cold and warm, decode tok/s, resident KV with master copy and draft cache counted, peak RSS; each run a
           fresh process, --runs per row (median)
  fidelity fidelity of every KV policy to the full cache in the product's configuration (the settings module's
           defaults; any departure is named in the output): on held-out real code (repositories the models were
           not trained on) at the model's context, teacher-forced top-1 agreement and KL(full || policy) and
           greedy-continuation agreement; needles in the trained format and in novel formats as secondary suites;
           every policy at its product precision and at fp16, speckv with every packed precision, speckv without
           the draft, the draft alone; 95 % bootstrap intervals over prompts, paired differences to full; writes
           bench/results/fidelity[-quick].{md,json} and a .records.jsonl of per-prompt values

options:
  --model PATH        GGUF model (default: the bundled models/target.gguf)
  --json              print one JSON object
  --threads LIST      thread counts, e.g. 1,2 (parity: the first; speed default: 1 and the physical cores)
  parity:
  --prompt-tokens N   prompt length (default 512)
  --greedy N          greedy tokens compared (default 64)
  speed:
  --contexts LIST     context lengths (default 1024), e.g. 1024,4096,16384
  --repeats N         repeats per configuration (default 3)
  --decode-tokens N   tokens decoded after the prompt (default 32)
  --configs LIST      of ${speedConfigs.join(', ')} (default: all)
  --draft PATH        repokv-default's draft (default: the bundled draft for the bundled target, else the model)
  --same-process      run every configuration in this process (peak RSS is then the process's so far)
  --out NAME          also write bench/results/NAME.{json,md}
  fidelity:
  --quick             a smoke run: 4 held-out prompts, 1 needle per task at 1024, budget 12 (says so in its output)
  --suites LIST       of heldout, needle, needle-novel (default all)
  --n N               held-out prompts (default 160)
  --budgets LIST      budgets in % of the fp16 cache (default 3,6,12,25)
  --extra-budgets LIST  budgets run afterwards on the first --extra-n held-out prompts (a column-first run)
  --needle-n N        needle prompts per task (default 4)
  --contexts LIST     needle contexts (default: the model's context)
  --policies LIST     ranking policies (default snapkv,h2o,pyramidkv,adakv,speckv,speckv-L0; window always runs)
  --seed N            task seed
  --deadline TIME     start no prompt after TIME (e.g. 2026-12-03T19:05Z); what finished is reported
  --report-from NAME  rewrite bench/results/NAME.md from NAME.records.jsonl and NAME.json (a stopped run)
  --draft PATH        draft model for speckv (default: the bundled models/draft.gguf)
  departures from the product (each named in the output):
  --lookahead N       SpecKV's draft lookahead (product: min(64, completion maxTokens))
  --master-precision NAME  the master copy's staging (product: kv.masterPrecision's default)
  --draft-layout NAME how the draft reads the prompts (product: kv.draftLayout's default)
  --hi-fraction X     mixed precision: share of the picked bytes at 4-bit
  --out NAME          results file name in bench/results (default fidelity[-quick])

  session:
  --workspace DIR     the workspace (default: one generated from this repository's sources)
  --workspace-tokens N  its size in tokens, and the context (N + 2048) (default 4096)
  --completions N     warm completions after the cold one (default 20)
  --max-tokens N      tokens per completion (default 32)
  --runs N            fresh-process runs per row (default 3)
  --configs LIST      of ${sessionConfigs.join(', ')} (default: all)
  --draft PATH        repokv-default's draft (default: the bundled draft for the bundled target, else the model)
  --master-precision NAME  repokv-default's master copy staging: ${kvMasterPrecisions.join(', ')} (default: the product's)
  --seed N            the session's cursors and edits
  --switch-probability X  chance that the next completion is in another file (default 0.3)
  --out NAME          also write bench/results/NAME.{json,md}

Run speed benchmarks on a quiet machine: with other processes on the same cores ggml's thread pool collapses.`;

function fractionOption(value: string, name = 'hi-fraction'): number {
	const x = Number(value);
	if (!(x >= 0 && x <= 1)) {
		throw new UserError(`--${name} must be a number in [0, 1] (got '${value}')`, 2);
	}
	return x;
}

function listOption(value: string | undefined, name: string): number[] | undefined {
	if (value === undefined) {
		return undefined;
	}
	const parts = value.split(',').map((s) => integerOption(s.trim(), name, 1));
	return parts.filter((n): n is number => n !== undefined);
}

export const benchCommand: Command = {
	summary: 'benchmarks: parity with llama.cpp, speed against node-llama-cpp',
	usage,
	async run(argv) {
		const [which, ...rest] = argv;
		if (which === undefined || which === '--help' || which === '-h') {
			console.log(usage);
			return which === undefined ? 2 : 0;
		}
		const { values } = parseCommandArgs(rest, {
			model: { type: 'string' },
			json: { type: 'boolean' },
			threads: { type: 'string' },
			'prompt-tokens': { type: 'string' },
			greedy: { type: 'string' },
			contexts: { type: 'string' },
			repeats: { type: 'string' },
			'decode-tokens': { type: 'string' },
			quick: { type: 'boolean' },
			n: { type: 'string' },
			seed: { type: 'string' },
			draft: { type: 'string' },
			'draft-layout': { type: 'string' },
			policies: { type: 'string' },
			suites: { type: 'string' },
			budgets: { type: 'string' },
			'extra-budgets': { type: 'string' },
			'extra-n': { type: 'string' },
			'needle-n': { type: 'string' },
			lookahead: { type: 'string' },
			deadline: { type: 'string' },
			'report-from': { type: 'string' },
			'hi-fraction': { type: 'string' },
			out: { type: 'string' },
			configs: { type: 'string' },
			row: { type: 'string' },
			'same-process': { type: 'boolean' },
			workspace: { type: 'string' },
			'workspace-tokens': { type: 'string' },
			completions: { type: 'string' },
			'max-tokens': { type: 'string' },
			runs: { type: 'string' },
			run: { type: 'string' },
			'switch-probability': { type: 'string' },
			'master-precision': { type: 'string' },
			help: { type: 'boolean', short: 'h' },
		});
		if (values.help === true) {
			console.log(usage);
			return 0;
		}
		const modelPath = path.resolve(values.model ?? bundledModelPath('target'));
		if (!existsSync(modelPath)) {
			throw new UserError(`model file not found: ${modelPath}`);
		}
		const cores = physicalCores();
		const threads = listOption(values.threads, 'threads') ?? [...new Set([1, cores])];
		if (which === 'parity') {
			const result = await runParity({
				modelPath,
				promptTokens: integerOption(values['prompt-tokens'], 'prompt-tokens', 1) ?? 512,
				greedy: integerOption(values.greedy, 'greedy', 0) ?? 64,
				threads: threads[0] ?? 1,
			});
			if (values.json === true) {
				console.log(JSON.stringify(result, null, 2));
			} else {
				console.log(`${result.model}: max |logit diff| ${result.maxAbsLogitDiff.toExponential(3)} (max |logit| ${result.maxAbsRefLogit}), top-1 agreement ${(result.top1Agreement * 100).toFixed(1)}%, greedy ${result.greedyMatch}`);
			}
			return result.greedyMatch.split('/')[0] === result.greedyMatch.split('/')[1] ? 0 : 1;
		}
		if (which === 'fidelity') {
			const { runFidelity, fidelitySuites, reportFromRecords } = await import('./fidelity');
			if (values['report-from'] !== undefined) {
				const r = reportFromRecords(values['report-from']);
				console.log(`${r.markdownFile}: ${r.records} prompts, reported from their records`);
				return 0;
			}
			const draftPath = path.resolve(values.draft ?? bundledModelPath('draft'));
			if (!existsSync(draftPath)) {
				throw new UserError(`draft model file not found: ${draftPath}`);
			}
			const needleContexts = listOption(values.contexts, 'contexts');
			const draftLayout = draftLayoutOption(values['draft-layout']);
			const n = integerOption(values.n, 'n', 1);
			const needleN = integerOption(values['needle-n'], 'needle-n', 0);
			const extraN = integerOption(values['extra-n'], 'extra-n', 0);
			const lookahead = integerOption(values.lookahead, 'lookahead', 0);
			const seed = integerOption(values.seed, 'seed', 0);
			const budgets = listOption(values.budgets, 'budgets');
			const extraBudgets = listOption(values['extra-budgets'], 'extra-budgets');
			const suites = values.suites?.split(',').filter((x) => x !== '');
			for (const x of suites ?? []) if (!(fidelitySuites as readonly string[]).includes(x)) throw new UserError(`unknown suite '${x}' (${fidelitySuites.join(', ')})`, 2);
			const masterPrecision = values['master-precision'] === undefined ? undefined : oneOfOption(values['master-precision'], 'master-precision', kvMasterPrecisions);
			const deadline = values.deadline === undefined ? undefined : Date.parse(values.deadline);
			if (deadline !== undefined && Number.isNaN(deadline)) throw new UserError(`--deadline must be a date and time, e.g. 2026-12-03T19:05Z (got '${values.deadline}')`, 2);
			const result = await runFidelity({
				modelPath,
				draftPath,
				quick: values.quick === true,
				threads: threads[0] ?? 1,
				...(suites === undefined ? {} : { suites: suites as (typeof fidelitySuites)[number][] }),
				...(n === undefined ? {} : { n }),
				...(needleN === undefined ? {} : { needleN }),
				...(needleContexts === undefined ? {} : { needleContexts }),
				...(budgets === undefined ? {} : { budgets }),
				...(extraBudgets === undefined ? {} : { extraBudgets }),
				...(extraN === undefined ? {} : { extraN }),
				...(seed === undefined ? {} : { seed }),
				...(values.policies === undefined ? {} : { policies: values.policies.split(',').filter((p) => p !== '') }),
				...(lookahead === undefined ? {} : { lookahead }),
				...(masterPrecision === undefined ? {} : { masterPrecision }),
				...(draftLayout === undefined ? {} : { draftLayout }),
				...(values['hi-fraction'] === undefined ? {} : { hiFraction: fractionOption(values['hi-fraction']) }),
				...(deadline === undefined ? {} : { deadline }),
				...(values.out === undefined ? {} : { outName: values.out }),
				command: `npx repokv bench fidelity ${rest.join(' ')}`,
				onProgress: (line) => {
					console.error(line);
				},
			});
			console.log(`${result.markdownFile}: ${result.records} prompts${result.stoppedAtDeadline ? ' (stopped at the deadline)' : ''}${values.quick === true ? ' — SMOKE RUN (--quick): too few prompts to resolve anything' : ''}`);
			return 0;
		}
		if (which === 'kernels') {
			const { runKernels } = await import('./kernels');
			const rows = runKernels({ tokens: integerOption(values.contexts, 'contexts', 1) ?? 32768, rows: 3, headDim: 64, repeats: integerOption(values.repeats, 'repeats', 1) ?? 20 });
			if (values.json === true) {
				console.log(JSON.stringify(rows, null, 2));
			} else {
				for (const r of rows) console.log(`${r.format.padEnd(7)} ${r.tokens} tokens x ${r.rows} rows, D ${r.headDim}, ${r.bytes} bytes: scores ${r.scoresMs} ms, accumulate ${r.accumulateMs} ms (CPU, median)`);
			}
			return 0;
		}
		if (which === 'speed') {
			const isConfig = (c: string): c is SpeedConfig => (speedConfigs as readonly string[]).includes(c);
			const configs = values.configs?.split(',').filter((c) => c !== '');
			for (const c of [...(configs ?? []), ...(values.row === undefined ? [] : [values.row])]) {
				if (!isConfig(c)) throw new UserError(`unknown speed configuration '${c}'; available: ${speedConfigs.join(', ')}`, 2);
			}
			const speedOptions = {
				modelPath,
				contexts: listOption(values.contexts, 'contexts') ?? [1024],
				threads,
				repeats: integerOption(values.repeats, 'repeats', 1) ?? 3,
				decodeTokens: integerOption(values['decode-tokens'], 'decode-tokens', 1) ?? 32,
				...(configs === undefined ? {} : { configs: configs.filter(isConfig) }),
				isolate: values['same-process'] !== true,
				...(values.draft === undefined ? {} : { draftPath: path.resolve(values.draft) }),
				onProgress: values.json === true ? undefined : (line: string) => { console.error(line); },
			};
			if (values.row !== undefined && isConfig(values.row)) {
				// internal: one row in this process, for the parent's isolated run
				console.log(JSON.stringify(await runSpeedRow(speedOptions, values.row, speedOptions.contexts[0] ?? 1024, threads[0] ?? 1)));
				return 0;
			}
			const result = await runSpeed(speedOptions);
			if (values.out !== undefined) {
				// bench/results/<out>.json and .md, with the command line that made them
				const dir = path.join(packageRoot(), 'bench', 'results');
				mkdirSync(dir, { recursive: true });
				const command = `npx repokv bench speed ${rest.join(' ')}`;
				writeFileSync(path.join(dir, `${values.out}.json`), JSON.stringify({ command, ...result }, null, 2) + '\n');
				writeFileSync(path.join(dir, `${values.out}.md`), speedMarkdown(result, command));
			}
			if (values.json === true) {
				console.log(JSON.stringify(result, null, 2));
			} else {
				for (const s of result.summary) {
					const parts: string[] = [];
					const f = s.full;
					if (f) {
						parts.push(
							`full prefill ${f.repokvBestPrefill.prefillTokPerS} (${f.repokvBestPrefill.threads}t) vs ${f.baselineBestPrefill.prefillTokPerS} tok/s (${f.baselineBestPrefill.threads}t, fa ${f.baselineBestPrefill.flashAttention}) = ${f.prefillRatio}x`,
							`full decode ${f.repokvBestDecode.decodeTokPerS} (${f.repokvBestDecode.threads}t) vs ${f.baselineBestDecode.decodeTokPerS} tok/s (${f.baselineBestDecode.threads}t, fa ${f.baselineBestDecode.flashAttention}) = ${f.decodeRatio}x`,
						);
					}
					if (s.defaultDecodeOverF16 !== undefined) parts.push(`default decode / llama f16 = ${s.defaultDecodeOverF16}x`);
					if (s.defaultDecodeOverQ4Fa !== undefined) parts.push(`default decode / llama q4_0+FA = ${s.defaultDecodeOverQ4Fa}x`);
					console.log(`context ${s.context}: ${parts.join('; ')}`);
				}
			}
			return 0;
		}
		if (which === 'session') {
			return runSessionCommand(values, modelPath, threads, rest);
		}
		throw new UserError(`unknown benchmark '${which}'\n\n${usage}`, 2);
	},
};

/** `repokv bench session`: the whole run, or (internal, `--row`) one fresh-process session for the parent. */
async function runSessionCommand(values: Record<string, string | boolean | undefined>, modelPath: string, threads: number[], rest: string[]): Promise<number> {
	const str = (name: string): string | undefined => (typeof values[name] === 'string' ? values[name] : undefined);
	const isConfig = (c: string): c is SessionConfig => (sessionConfigs as readonly string[]).includes(c);
	const configs = str('configs')?.split(',').filter((c) => c !== '');
	for (const c of [...(configs ?? []), ...(str('row') === undefined ? [] : [str('row') ?? ''])]) {
		if (!isConfig(c)) throw new UserError(`unknown session configuration '${c}'; available: ${sessionConfigs.join(', ')}`, 2);
	}
	const draft = str('draft');
	const workspace = str('workspace');
	const masterPrecision = oneOfOption(str('master-precision'), 'master-precision', kvMasterPrecisions);
	const opts: SessionOptions = {
		modelPath,
		...(draft === undefined ? {} : { draftPath: path.resolve(draft) }),
		...(masterPrecision === undefined ? {} : { masterPrecision }),
		...(workspace === undefined ? {} : { workspace: path.resolve(workspace) }),
		workspaceTokens: integerOption(str('workspace-tokens'), 'workspace-tokens', 64) ?? 4096,
		completions: integerOption(str('completions'), 'completions', 0) ?? 20,
		maxTokens: integerOption(str('max-tokens'), 'max-tokens', 1) ?? 32,
		runs: integerOption(str('runs'), 'runs', 1) ?? 3,
		threads,
		...(configs === undefined ? {} : { configs: configs.filter(isConfig) }),
		seed: integerOption(str('seed'), 'seed', 0) ?? 1,
		...(str('switch-probability') === undefined ? {} : { switchProbability: fractionOption(str('switch-probability') ?? '', 'switch-probability') }),
		onProgress: values['json'] === true ? undefined : (line: string) => { console.error(line); },
	};
	const row = str('row');
	if (row !== undefined && isConfig(row)) {
		console.log(JSON.stringify(await runSessionOnce({ ...opts, onProgress: (line: string) => { console.error(line); } }, row, threads[0] ?? 1, integerOption(str('run'), 'run', 0) ?? 0)));
		return 0;
	}
	const result = await runSession(opts);
	const out = str('out');
	const command = `npx repokv bench session ${rest.join(' ')}`;
	if (out !== undefined) {
		const dir = path.join(packageRoot(), 'bench', 'results');
		mkdirSync(dir, { recursive: true });
		writeFileSync(path.join(dir, `${out}.json`), JSON.stringify({ command, ...result }, null, 2) + '\n');
		writeFileSync(path.join(dir, `${out}.md`), sessionMarkdown(result, command));
	}
	console.log(values['json'] === true ? JSON.stringify(result, null, 2) : sessionMarkdown(result, command));
	return 0;
}
