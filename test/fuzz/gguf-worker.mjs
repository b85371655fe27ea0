// Child process of the GGUF loader fuzz (gguf.fuzz.mjs): loads each file it is sent through the native addon's
// loadModel, and when a file loads, evaluates two tokens on it (a loaded model must also run). Answers with the
// outcome and its RSS; a crash or hang of this process is what the parent looks for.
import { createRequire } from 'node:module';

const addon = createRequire(import.meta.url)(process.env.REPOKV_FUZZ_ADDON);

function run(file) {
	let model;
	try {
		model = addon.loadModel(file, { threads: 1 });
	} catch (error) {
		return { outcome: 'error', code: error.code, message: String(error.message) };
	}
	try {
		const info = model.info();
		const session = addon.createSession(model, { contextSize: 8, batchSize: 8 });
		try {
			session.evalSync(Int32Array.from([0, Math.min(1, info.nVocab - 1)]), false);
			const logits = session.logits();
			if (logits.length !== info.nVocab) return { outcome: 'loaded', evalError: `logits have ${logits.length} entries, vocabulary ${info.nVocab}` };
		} finally {
			session.dispose();
		}
		return { outcome: 'loaded' };
	} catch (error) {
		return { outcome: 'loaded', evalError: String(error.message), code: error.code };
	} finally {
		model.dispose();
	}
}

process.on('message', ({ id, file }) => {
	const result = run(file);
	process.send({ id, ...result, rss: process.memoryUsage().rss });
});
process.send({ ready: true, rss: process.memoryUsage().rss });
