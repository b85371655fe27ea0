import { appendFileSync } from 'node:fs';

import { UserError } from '../errors';
import type { Engine, EngineName } from './types';

// The engine registry behind the CLI's `--engine` option. Engines are imported lazily so that choosing one never
// loads another's native code. The native engine (native/ addon) registers here when it lands.
const engineLoaders: Record<EngineName, (() => Promise<Engine>) | undefined> = {
	llama: async () => (await import('./llama')).llamaEngine,
	native: async () => (await import('./native-engine')).nativeEngine,
};

/** Engine names that can be used in this build. */
export function availableEngines(): EngineName[] {
	return (Object.keys(engineLoaders) as EngineName[]).filter((name) => engineLoaders[name] !== undefined);
}

export function isEngineName(name: string): name is EngineName {
	return Object.hasOwn(engineLoaders, name);
}

export async function loadEngine(name: EngineName): Promise<Engine> {
	const loader = engineLoaders[name];
	if (loader === undefined) {
		throw new UserError(`engine '${name}' is not available yet; available: ${availableEngines().join(', ')}`, 2);
	}
	const engine = await loader();
	const traceFile = process.env['REPOKV_TRACE_PROMPTS'];
	return traceFile === undefined || traceFile === '' ? engine : tracingEngine(engine, traceFile);
}

/**
 * `REPOKV_TRACE_PROMPTS=FILE` (off by default): every prompt an engine is asked to complete is appended to FILE as one
 * JSON line `{engine, model, prompt}`, before the engine sees it. The privacy test reads the prompts themselves from it.
 */
function tracingEngine(engine: Engine, traceFile: string): Engine {
	return {
		name: engine.name,
		loadModel: async (options) => {
			const model = await engine.loadModel(options);
			const complete = model.complete.bind(model);
			model.complete = (request) => {
				appendFileSync(traceFile, `${JSON.stringify({ engine: engine.name, model: model.info.path, prompt: request.prompt })}\n`);
				return complete(request);
			};
			return model;
		},
	};
}
