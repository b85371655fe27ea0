// The CLI's contract without a model: help, usage errors, and clear messages (no stack traces) for bad input.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';

import { cliPath, needleWorkspace, tempFolder } from '../support/sidecar.mjs';

function repokv(...args) {
	const result = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 60_000 });
	return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const needle = ['--workspace', needleWorkspace, '--file', 'src/main.ts'];

function assertCleanError(result, code, message) {
	assert.equal(result.code, code, result.stderr);
	assert.match(result.stderr, message);
	assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

describe('repokv CLI', () => {
	test('prints help listing the commands', () => {
		const result = repokv('help');
		assert.equal(result.code, 0);
		assert.match(result.stdout, /complete/);
		const completeHelp = repokv('complete', '--help');
		assert.equal(completeHelp.code, 0);
		assert.match(completeHelp.stdout, /1-based/);
	});
	test('unknown commands and options are usage errors (exit 2)', () => {
		assertCleanError(repokv('frobnicate'), 2, /unknown command 'frobnicate'/);
		assertCleanError(repokv('complete', '--bogus'), 2, /Unknown option '--bogus'/);
		assertCleanError(repokv('complete', '--workspace', '.'), 2, /missing required option --file/);
		assertCleanError(repokv('complete', ...needle, '--line', 'ten', '--column', '1'), 2, /--line must be an integer/);
		assertCleanError(repokv('complete', ...needle, '--line', '1', '--column', '1', '--engine', 'gpt'), 2, /unknown engine 'gpt'/);
	});
	test('KV options are checked before any model is read', () => {
		const at = [...needle, '--line', '10', '--column', '32'];
		// the llama engine keeps the full cache: a KV option would be silently ignored
		assertCleanError(repokv('complete', ...at, '--engine', 'llama', '--policy', 'speckv'), 2, /--policy speckv needs --engine native/);
		assertCleanError(repokv('complete', ...at, '--engine', 'llama', '--budget', '6'), 2, /--budget 6 needs --engine native/);
		assertCleanError(repokv('complete', ...at, '--policy', 'lru'), 2, /--policy must be one of full, window, h2o, snapkv, pyramidkv, adakv, speckv \(got 'lru'\)/);
		assertCleanError(repokv('complete', ...at, '--precision', 'int3'), 2, /--precision must be one of/);
		assertCleanError(repokv('complete', ...at, '--budget', '0'), 2, /--budget must be a percentage from 1 to 100/);
		assertCleanError(repokv('complete', ...at, '--policy', 'window', '--precision', 'mixed'), 2, /needs a ranking policy/);
		assertCleanError(repokv('complete', ...at, '--policy', 'snapkv', '--draft', 'x.gguf'), 2, /--draft is for --policy speckv/);
		assertCleanError(repokv('ask', '--workspace', needleWorkspace, '--question', 'q', '--engine', 'llama', '--split', 'pyramid'), 2, /--split pyramid needs --engine native/);
	});
	test('a missing workspace or file is named', () => {
		assertCleanError(repokv('complete', '--workspace', '/no/such/folder', '--file', 'a.ts', '--line', '1', '--column', '1'), 1, /workspace folder not found: \/no\/such\/folder/);
		assertCleanError(repokv('complete', '--workspace', needleWorkspace, '--file', 'src/nope.ts', '--line', '1', '--column', '1'), 1, /file not found in the workspace: src\/nope\.ts/);
		assertCleanError(repokv('complete', '--workspace', needleWorkspace, '--file', '../../../package.json', '--line', '1', '--column', '1'), 2, /not inside the workspace/);
		assertCleanError(repokv('complete', '--workspace', needleWorkspace, '--file', '.env', '--line', '1', '--column', '1'), 1, /looks like a secret file/);
	});
	test('an out-of-range position is named', () => {
		assertCleanError(repokv('complete', ...needle, '--line', '99', '--column', '1'), 2, /src\/main\.ts: line 99 is past the end of the file/);
		assertCleanError(repokv('complete', ...needle, '--line', '10', '--column', '40'), 2, /column 40 is past the end of line 10.*last valid column is 32/);
	});
	test('a missing or broken model file is named', async (t) => {
		const folder = await tempFolder(t);
		const broken = path.join(folder, 'broken.gguf');
		await writeFile(broken, 'this is not a GGUF file');
		assertCleanError(repokv('complete', ...needle, '--line', '10', '--column', '32', '--model', path.join(folder, 'absent.gguf')), 1, /model file not found: .*absent\.gguf/);
		assertCleanError(repokv('complete', ...needle, '--line', '10', '--column', '32', '--model', broken), 1, /model file .*broken\.gguf is not a valid GGUF file/);
	});
});
