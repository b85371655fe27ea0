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
	return loader();
}
