// Editor positions (1-based) and the first post-processing step.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { sidecar } from '../support/sidecar.mjs';

const { offsetAt, PositionOutOfRangeError, postprocessCompletion, chooseMode } = sidecar;

describe('offsetAt', () => {
	const text = 'ab\n\tcd\n\nlast';
	test('maps 1-based line and column to a string offset', () => {
		assert.equal(offsetAt(text, { line: 1, column: 1 }), 0);
		assert.equal(offsetAt(text, { line: 1, column: 3 }), 2, 'end of line 1');
		assert.equal(offsetAt(text, { line: 2, column: 2 }), 4, 'a tab is one column');
		assert.equal(offsetAt(text, { line: 3, column: 1 }), 7, 'empty line');
		assert.equal(offsetAt(text, { line: 4, column: 5 }), text.length, 'end of file');
	});
	test('treats CRLF like LF', () => {
		assert.equal(offsetAt('ab\r\ncd', { line: 2, column: 3 }), 6);
		assert.throws(() => offsetAt('ab\r\ncd', { line: 1, column: 4 }), PositionOutOfRangeError);
	});
	test('rejects positions outside the text with a message naming the bound', () => {
		assert.throws(() => offsetAt(text, { line: 5, column: 1 }), /line 5 is past the end of the file, which has 4 lines/);
		assert.throws(() => offsetAt(text, { line: 1, column: 4 }), /column 4 is past the end of line 1, which has 2 characters \(the last valid column is 3\)/);
		assert.throws(() => offsetAt(text, { line: 0, column: 1 }), /start at 1/);
	});
});

describe('postprocessCompletion', () => {
	test('chooses single-line mode mid-line and multi-line mode on an empty line', () => {
		assert.equal(chooseMode('  assert.equal(X, '), 'singleLine');
		assert.equal(chooseMode('    '), 'multiLine');
	});
	test('single-line mode keeps the rest of the line only', () => {
		assert.equal(postprocessCompletion('4817);\n}\n', { mode: 'singleLine', linePrefix: '  assert.equal(X, ', lineSuffix: '' }), '4817);');
	});
	test('does not repeat what already follows the cursor', () => {
		assert.equal(postprocessCompletion('4817);', { mode: 'singleLine', linePrefix: '  f(', lineSuffix: ');' }), '4817');
	});
	test('multi-line mode stops at a blank line and at the end of the block', () => {
		const ctx = /** @type {const} */ ({ mode: 'multiLine', linePrefix: '  ', lineSuffix: '' });
		assert.equal(postprocessCompletion('a();\n  b();\n\n  c();', ctx), 'a();\n  b();');
		assert.equal(postprocessCompletion('a();\n  b();\n}\nfunction next() {', ctx), 'a();\n  b();');
		assert.equal(postprocessCompletion('x   \r\n  y  ', ctx), 'x   \n  y');
	});
});
