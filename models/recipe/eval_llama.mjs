// Run make_eval_tasks.py's retrieval tasks through llama.cpp (node-llama-cpp) on the shipped GGUF files:
// greedy decoding, exact match of the expected first line. Prints accuracy by kind, length, form and layout (FIM-ordered
// usage file or plain) as JSON.
//   node models/recipe/eval_llama.mjs models/target.gguf models/recipe/work/eval-tasks.json [threads] [--draft-layout L]
// --draft-layout prefix-last: each prompt first goes through the rewrite SpecKV's draft applies in the engine
// (sidecar/src/engine/draft-prompt.ts, imported from the built dist/sidecar.mjs; `npm run build` first), so a draft
// is measured on what the engine gives it; a FIM-ordered usage file becomes its plain prefix.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { getLlama } from "node-llama-cpp";

const args = process.argv.slice(2);
const layoutAt = args.indexOf("--draft-layout");
const draftLayout = layoutAt < 0 ? "fim" : args.splice(layoutAt, 2)[1];
const [modelPath, tasksPath, threadsArg] = args;
const threads = Number(threadsArg ?? 2);
const { tasks } = JSON.parse(fs.readFileSync(tasksPath, "utf8"));
const bundle = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "dist", "sidecar.mjs");
const { draftPromptFor, draftLayouts } = await import(pathToFileURL(bundle).href);
if (!draftLayouts.includes(draftLayout)) throw new Error(`--draft-layout: one of ${draftLayouts.join(", ")}`);
const llama = await getLlama({ maxThreads: threads, logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const maxLen = Math.max(...tasks.map((t) => t.prompt.length)) + 64;
const context = await model.createContext({ contextSize: maxLen, threads, batchSize: 512 });
const { infill } = model.tokens; // the GGUF's FIM token ids, as DraftModel reads them
const fim = { prefix: infill.prefix, suffix: infill.suffix, middle: infill.middle };
const sequence = context.getSequence();
const results = {};
let done = 0;
const started = Date.now();
for (const task of tasks) {
  await sequence.clearHistory();
  let out = "";
  const budget = model.tokenize(task.expected).length + 2;
  let n = 0;
  for await (const token of sequence.evaluate(draftPromptFor(task.prompt, draftLayout, fim), { temperature: 0 })) {
    const piece = model.detokenize([token], true);
    if (piece.includes("\n") || model.isSpecialToken(token)) break;
    out += piece;
    if (++n >= budget) break;
  }
  const ok = out.startsWith(task.expected);
  done += 1;
  if (done % 10 === 0) {
    process.stderr.write(`${done}/${tasks.length} tasks, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  }
  const layout = task.fim ? 'fim' : 'plain';
  for (const key of [`${task.kind}/${task.length}`, `${task.kind}/${task.length}/${task.form}`, `${task.kind}/form/${task.form}`,
    `${task.kind}/${task.length}/${layout}`, `${task.kind}/layout/${layout}`]) {
    const r = (results[key] ??= { ok: 0, n: 0 });
    r.ok += ok ? 1 : 0;
    r.n += 1;
  }
}
const table = Object.fromEntries(Object.entries(results).sort().map(([k, r]) => [k, { acc: +(r.ok / r.n).toFixed(3), n: r.n }]));
console.log(JSON.stringify({ model: modelPath, draftLayout, threads, seconds: (Date.now() - started) / 1000, results: table }, null, 1));
