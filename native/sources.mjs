// The addon's C++ sources, for native/build.mjs and native/tools/cross-compile-arm64.mjs: every .cpp under src/, but
// kernels/x86/ only for x86-64 and kernels/arm/ only for arm64 (their intrinsics exist on that target only), and
// test/ only in the test addon (native/build/repokv-test.node: test bindings and test-only engine members, never shipped).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const srcDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'src');

const archDirs = { 'kernels/x86': 'x64', 'kernels/arm': 'arm64' };

function walk(dir, rel = '') {
	return fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) => {
		const r = rel ? `${rel}/${e.name}` : e.name;
		return e.isDirectory() ? walk(dir, r) : [r];
	});
}

/** Sources relative to src/ for `arch` ('x64' | 'arm64'): { product, test } (test: the test addon's extra files). */
export function addonSources(arch) {
	const files = walk(srcDir).filter((f) => f.endsWith('.cpp')).sort();
	const forArch = files.filter((f) => Object.entries(archDirs).every(([dir, a]) => !f.startsWith(`${dir}/`) || a === arch));
	return { product: forArch.filter((f) => !f.startsWith('test/')), test: forArch.filter((f) => f.startsWith('test/')) };
}

/** Every header under src/ (an object is rebuilt when one changes). */
export function addonHeaders() {
	return walk(srcDir).filter((f) => f.endsWith('.h')).map((f) => path.join(srcDir, f));
}
