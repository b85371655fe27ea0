#!/usr/bin/env node
// Checks that a built addon is the product one: none of the test addon's exports (native/src/test/test_bindings.cpp,
// NativeSession.dequantizeActive) and none of the engine members only tests use (native/src/test/test_hooks.cpp).
// Looks at the binary itself (the export names are strings in it; the C++ symbols are in its symbol table), so it
// also works on an addon that cannot be loaded here, e.g. the one inside a .vsix.
//
// usage: node native/tools/check-product-addon.mjs FILE.node   (exit 1 and the findings when it is not)
// Used by test/native/product-addon.test.mjs and extension/package.mjs (on the addon inside the .vsix).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Export names only the test addon registers. */
export const testExports = ['dequantizeActive', 'scoreAttention', 'dumpKv', 'kernelSets', 'rotateNormals', 'softmaxKernels', 'f16Scores'];
/** C++ symbols (demangled) only the test addon defines. */
export const testSymbols = ['register_test_bindings', 'Session::dequantize_active', 'KvStore::dequantized'];

/** What in `file` belongs to the test addon only (empty: a product addon). */
export function testOnlyContent(file) {
	const bytes = fs.readFileSync(file);
	const found = testExports.filter((name) => bytes.includes(Buffer.from(`${name}\0`))).map((name) => `export "${name}"`);
	const symbols = execFileSync('nm', ['-C', '--defined-only', file], { maxBuffer: 64 << 20 }).toString();
	for (const symbol of testSymbols) if (symbols.includes(symbol)) found.push(`symbol ${symbol}`);
	return found;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
	const file = process.argv[2];
	if (!file) {
		console.error('usage: node native/tools/check-product-addon.mjs FILE.node');
		process.exit(2);
	}
	const found = testOnlyContent(file);
	if (found.length > 0) {
		console.error(`${file} carries test-only code: ${found.join(', ')}`);
		process.exit(1);
	}
	console.log(`${file}: product addon (no test-only exports or symbols)`);
}
