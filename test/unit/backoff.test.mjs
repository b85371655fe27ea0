// The extension's restart policy for a crashed sidecar (extension/src/backoff.ts, used by sidecar.ts): growing
// delays, giving up after six crashes in a row, and a fresh count once a sidecar has run a minute.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { loadBackoff } from '../fuzz/support/feed-bundle.mjs';

const { RestartBackoff, backoffMs, healthyAfterMs } = await loadBackoff();

test('restart backoff: 1, 2, 4, 8, 16, 30 s, then give up; reset after a healthy run or by the user', () => {
	const backoff = new RestartBackoff();
	const now = 1_000_000;
	const delays = [];
	for (let crash = 0; crash < 7; crash++) delays.push(backoff.next(now - 10, now));
	assert.deepEqual(delays, [...backoffMs, undefined]);
	assert.deepEqual(backoffMs, [1000, 2000, 4000, 8000, 16000, 30000]);
	// A sidecar that ran longer than healthyAfterMs crashed: the count starts again.
	assert.equal(backoff.next(now - healthyAfterMs - 1, now), 1000);
	assert.equal(backoff.next(now - 10, now), 2000);
	backoff.reset();
	assert.equal(backoff.next(now - 10, now), 1000);
});
