// Run make_eval_tasks.py's retrieval tasks through llama.cpp (node-llama-cpp) on the shipped GGUF files:
// greedy decoding, exact match of the expected first line. Prints accuracy by kind, length, form and layout (FIM-ordered
// usage file or plain) as JSON.
//   node models/recipe/eval_llama.mjs models/target.gguf models/recipe/work/eval-tasks.json [threads]
import fs from "node:fs";
import { getLlama } from "node-llama-cpp";

const [modelPath, tasksPath, threadsArg] = process.argv.slice(2);
const threads = Number(threadsArg ?? 2);
const { tasks } = JSON.parse(fs.readFileSync(tasksPath, "utf8"));
const llama = await getLlama({ maxThreads: threads, logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const maxLen = Math.max(...tasks.map((t) => t.prompt.length)) + 64;
const context = await model.createContext({ contextSize: maxLen, threads, batchSize: 512 });
const sequence = context.getSequence();
const results = {};
let done = 0;
const started = Date.now();
for (const task of tasks) {
  await sequence.clearHistory();
  let out = "";
  const budget = model.tokenize(task.expected).length + 2;
  let n = 0;
  for await (const token of sequence.evaluate(task.prompt, { temperature: 0 })) {
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
console.log(JSON.stringify({ model: modelPath, threads, seconds: (Date.now() - started) / 1000, results: table }, null, 1));
