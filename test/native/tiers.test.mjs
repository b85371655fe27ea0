// Tiered KV caches of the native engine (issue 5): packed segments (q8, kivi4, kivi2, onebit) next to the fp16 one in
// a session's store, attention reading them with the packed kernels, the byte accounting of every segment, and the
// policies' precision axis (the budget buys bytes). The kernels themselves are checked in quant.test.mjs.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';

import { importSidecar } from '../support/bundles.mjs';
import { dequantizeActive, randomTokens, root, useTestAddon } from './helpers.mjs';

useTestAddon();

const { NativeModel, nativePolicy: P, tierCost, loadNativeAddon } = await importSidecar();
const Q = /** @type {any} */ (loadNativeAddon()).quant; // a test-addon binding, untyped

const model = NativeModel.load(path.join(root, 'models', 'target.gguf'), { threads: 1 });
const { nLayer, nHeadKv, headDim } = model.info;
const nh = nLayer * nHeadKv;
const cost = tierCost(headDim);

function maxAbsDiff(a, b) {
	let d = 0;
	for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
	return d;
}
function argmaxOf(x) {
	let best = 0;
	for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
	return best;
}
/** Every head: positions [from, to). */
function range(from, to) {
	return Array.from({ length: nh }, () => Int32Array.from({ length: to - from }, (_, i) => from + i));
}

describe('tier costs and byte-budget assignment', () => {
	test('tierCost is the allocation formula: packed bytes (quant.bytes) plus 4 bytes of position per token', () => {
		for (const tier of /** @type {const} */ (['q8', 'kivi4', 'kivi2', 'onebit'])) {
			for (const n of [1, 31, 32, 127, 128, 129, 1000]) assert.equal(cost(tier, n), Q.bytes(tier, headDim, n).total + 4 * n);
		}
		assert.equal(cost('f16', 10), 10 * (4 * headDim + 4));
		assert.equal(cost('onebit', 0), 0);
	});

	test('tokensForBytes: the largest count that fits, equal to brute force', () => {
		for (const tier of /** @type {const} */ (['f16', 'q8', 'kivi4', 'onebit'])) {
			for (const bytes of [0, 100, 5000, 77777]) {
				let brute = 0;
				while (brute < 3000 && cost(tier, brute + 1) <= bytes) brute++;
				assert.equal(P.tokensForBytes(cost, tier, bytes, 3000), brute, `${tier} ${bytes}`);
			}
		}
	});

	test('assignTiers: equal bytes, rank order, mixed puts the top-ranked at 4-bit and the next at 1.x-bit', () => {
		const ranked = Array.from({ length: 2000 }, (_, i) => 2000 - i); // best first
		const budget = cost('f16', 100);
		for (const precision of /** @type {const} */ (['q8', 'kivi4', 'kivi2', 'onebit'])) {
			const t = P.assignTiers(ranked, budget, precision, cost);
			const n = t[precision].length;
			assert.deepEqual(t[precision], ranked.slice(0, n));
			assert.ok(cost(precision, n) <= budget && cost(precision, n + 1) > budget, precision);
			assert.ok(n > 100, `${precision} buys more tokens than fp16 (${n})`);
		}
		const mixed = P.assignTiers(ranked, budget, 'mixed', cost);
		const hi = mixed.kivi4.length;
		const lo = mixed.onebit.length;
		assert.deepEqual(mixed.kivi4, ranked.slice(0, hi));
		assert.deepEqual(mixed.onebit, ranked.slice(hi, hi + lo));
		assert.ok(cost('kivi4', hi) <= 0.75 * budget && cost('kivi4', hi + 1) > 0.75 * budget);
		assert.ok(cost('kivi4', hi) + cost('onebit', lo) <= budget);
		assert.ok(cost('kivi4', hi) + cost('onebit', lo + 1) > budget);
		// more candidates than the bytes buy: the rest is dropped; fewer: every one is kept
		assert.ok(hi + lo < 2000);
		const few = P.assignTiers(ranked.slice(0, 50), budget, 'mixed', cost);
		assert.equal(few.kivi4.length + few.onebit.length, 50);
	});
});

describe('tiered sessions (bundled target)', () => {
	const tokens = randomTokens(700, model.info.nVocab, 21);
	const m = tokens.length - 1;

	async function prefilled() {
		const s = model.createSession({ contextSize: 1024 });
		s.observe(P.observationFor('snapkv', tokens.length));
		await s.prefill(tokens);
		s.truncate(m);
		return s;
	}

	test('allocated bytes equal the bit accounting per segment, head, tier and store', async () => {
		const s = await prefilled();
		const tiers = { f16: range(0, 40), q8: range(40, 200), kivi4: range(200, 400), kivi2: range(400, 500), onebit: range(500, m) };
		s.compress(tiers, { extraTokens: 8, policy: 'tiers' });
		const st = s.stats();
		const want = { f16: 40, q8: 160, kivi4: 200, kivi2: 100, onebit: m - 500 };
		let total = 0;
		for (const layer of st.layers) {
			for (const head of layer.heads) {
				assert.equal(head.tokens, m);
				assert.equal(head.segments.length, 5);
				assert.equal(head.segments.at(-1).tier, 'f16', 'the fp16 segment is last: decoding appends there');
				let headBytes = 0;
				for (const seg of head.segments) {
					assert.equal(seg.tokens, want[seg.tier]);
					assert.equal(seg.bytes, cost(seg.tier, seg.tokens), `${seg.tier}: allocated = accounted`);
					assert.equal(seg.positionBytes, 4 * seg.tokens);
					headBytes += seg.bytes;
				}
				assert.equal(head.bytes, headBytes);
				total += headBytes;
			}
		}
		assert.equal(st.bytes, total);
		for (const [tier, n] of /** @type {[keyof typeof want, number][]} */ (Object.entries(want))) {
			assert.equal(st.tiers[tier].tokens, n * nh);
			assert.equal(st.tiers[tier].bytes, cost(tier, n) * nh);
		}
		// onebit: about 1.6 bits per element plus positions, against 16 for fp16
		const bits = ((cost('onebit', m - 500) - 4 * (m - 500)) * 8) / ((m - 500) * 2 * headDim);
		assert.ok(bits < 1.8, `onebit ${bits.toFixed(3)} bits/element`);
		s.dispose();
	});

	test('attention over the tiers equals dense attention over the dequantized cache; decoding appends in fp16', async () => {
		const full = await prefilled();
		await full.decode(tokens[m]);
		const reference = full.logits();
		full.dispose();
		const rows = [];
		for (const tier of /** @type {const} */ (['q8', 'kivi4', 'kivi2', 'onebit'])) {
			const tiers = { f16: range(0, 4).map((a, i) => Int32Array.from([...a, ...range(m - 32, m)[i]])), [tier]: range(4, m - 32) };
			const a = await prefilled();
			a.compress(tiers, { extraTokens: 8, policy: tier });
			await a.decode(tokens[m]);
			const packed = a.logits();
			await a.decode(5);
			assert.equal(a.stats().layers[0].heads[0].segments.at(-1).tokens, 36 + 2, 'two decoded tokens in the fp16 segment');
			a.dispose();
			const b = await prefilled();
			b.compress(tiers, { extraTokens: 8, policy: tier });
			dequantizeActive(b);
			assert.deepEqual(b.stats().layers[0].heads[0].segments.map((seg) => seg.tier), ['f16']);
			await b.decode(tokens[m]);
			const dense = b.logits();
			b.dispose();
			const scale = Math.max(...reference.map(Math.abs));
			const vsDense = maxAbsDiff(packed, dense) / scale;
			const vsFull = maxAbsDiff(packed, reference) / scale;
			rows.push({ tier, vsDense: vsDense.toExponential(2), vsFull: vsFull.toExponential(2), top1: argmaxOf(packed) === argmaxOf(reference) });
			// packed kernels vs fp16 kernels over the same decoded values: only the summation order and the fp16
			// rounding of the dequantized values differ
			assert.ok(vsDense < 2e-3, `${tier}: packed attention vs dense over dequantized, max |Δlogit|/max|logit| = ${vsDense}`);
			assert.equal(argmaxOf(packed), argmaxOf(dense), tier);
		}
		console.log('# tiered attention, 695 of 699 positions packed (next-token logits, relative max error):');
		for (const r of rows) console.log(`#   ${r.tier.padEnd(7)} vs dense-dequantized ${r.vsDense}  vs full fp16 ${r.vsFull}  same top-1 as full: ${r.top1}`);
	});

	test('a budget in bytes: mixed at 12 % keeps over twice the tokens of fp16 at 12 %, within 12 % of the fp16 bytes after decoding', async () => {
		const s = await prefilled();
		const f16 = P.compressSession(s, nLayer, nHeadKv, { policy: 'snapkv', budget: { percent: 12 } }, 8);
		const fBytes = s.stats().bytes;
		s.truncate(m);
		const mixed = P.compressSession(s, nLayer, nHeadKv, { policy: 'snapkv', budget: { percent: 12 }, precision: 'mixed', tierCost: cost, reserveTokens: 8 }, 8);
		const st = s.stats();
		assert.equal(st.policy, 'snapkv+mixed');
		// per head: C tokens' fp16 bytes (4D each), less the fp16 room reserved for the 8 extra tokens
		const C = Math.round(0.12 * m);
		const budget = C * 4 * headDim * nh;
		assert.ok(st.bytes <= fBytes, `mixed ${st.bytes} <= fp16 ${fBytes}`);
		assert.ok(st.bytes <= budget - 8 * (4 * headDim + 4) * nh, `${st.bytes} within the budget less the reserve`);
		assert.ok(st.bytes >= 0.97 * (budget - 8 * (4 * headDim + 4) * nh), 'the bytes are spent');
		const kept = mixed.keep.reduce((a, k) => a + k.length, 0);
		const keptF16 = f16.keep.reduce((a, k) => a + k.length, 0);
		assert.ok(kept > 2 * keptF16, `mixed keeps ${kept}, fp16 ${keptF16}`);
		assert.ok(st.tiers.kivi4.tokens > 0 && st.tiers.onebit.tokens > 0 && st.tiers.f16.tokens === 36 * nh);
		// under 12 % of the fp16 cache (keys and values at 2 bytes, positions included in ours)
		assert.ok(st.bytes <= 0.125 * m * nh * 4 * headDim, `${((100 * st.bytes) / (m * nh * 4 * headDim)).toFixed(2)} %`);
		for (let i = 0; i < 8; i++) await s.decode(i === 0 ? tokens[m] : 7);
		assert.equal(s.length, m + 8);
		assert.ok(s.stats().bytes <= budget, 'after decoding the reserved tokens the store still holds at most 12 % of the fp16 bytes');
		s.dispose();
	});

	test('bad tier lists are clear errors and leave the session usable', async () => {
		const s = await prefilled();
		assert.throws(() => s.compress(/** @type {any} */ ({ f16: range(0, 10), q3: range(10, 20) }), { extraTokens: 1, policy: 'x' }), /unknown tier 'q3'/);
		assert.throws(() => s.compress({ f16: range(0, 10), onebit: range(5, 20) }, { extraTokens: 1, policy: 'x' }), /two tiers/);
		assert.throws(() => s.compress({ q8: range(0, 10).slice(1) }, { extraTokens: 1, policy: 'x' }), /one per \(layer, KV head\)/);
		assert.throws(() => dequantizeActive(s), /not compressed/);
		assert.throws(() => P.selectKeep(600, nLayer, nHeadKv, { policy: 'snapkv', budget: { percent: 12 }, precision: 'onebit' }, () => new Float32Array(600)), /tierCost/);
		assert.equal(s.stats().compressed, false);
		await s.decode(tokens[m]);
		assert.equal(s.length, m + 1);
		s.dispose();
	});
});

describe('q8 staging of the master copy', () => {
	const tokens = randomTokens(1500, model.info.nVocab, 33);
	const m = tokens.length - 1;

	test('prefill stages old tokens in q8: the master holds sinks + the newest in fp16, memory falls, compression still works', async () => {
		const plain = model.createSession({ contextSize: 2048 });
		plain.observe(P.observationFor('speckv', tokens.length));
		await plain.prefill(tokens);
		plain.truncate(m);
		const plainBytes = plain.stats().bytes;
		await plain.decode(tokens[m]);
		const plainLogits = plain.logits();
		plain.truncate(m);

		const staged = model.createSession({ contextSize: 2048 });
		staged.setStaging(true);
		staged.observe(P.observationFor('speckv', tokens.length));
		await staged.prefill(tokens);
		staged.truncate(m);
		const st = staged.stats();
		for (const layer of st.layers) {
			for (const head of layer.heads) {
				assert.equal(head.tokens, m);
				assert.deepEqual(head.segments.map((s) => s.tier), ['q8', 'f16']);
				const [q8, f16] = head.segments;
				assert.ok(f16.tokens >= 4 + 255 && f16.tokens < 4 + 256 + 512, `fp16 part ${f16.tokens}`);
				assert.equal(q8.bytes, cost('q8', q8.tokens));
			}
		}
		assert.ok(st.bytes < 0.65 * plainBytes, `staged ${st.bytes} vs fp16 ${plainBytes}`);
		// attention over the staged prompt: close to the fp16 master's (q8 keys and values for old tokens)
		await staged.decode(tokens[m]);
		const stagedLogits = staged.logits();
		const scale = Math.max(...plainLogits.map(Math.abs));
		assert.ok(maxAbsDiff(stagedLogits, plainLogits) / scale < 0.05, `staged vs fp16 ${maxAbsDiff(stagedLogits, plainLogits) / scale}`);
		assert.equal(argmaxOf(stagedLogits), argmaxOf(plainLogits));
		staged.truncate(m);
		// tiering from the staged master, then the staging itself is dropped
		P.compressSession(staged, nLayer, nHeadKv, { policy: 'speckv', budget: { percent: 12 }, precision: 'mixed', tierCost: cost }, 8, { dropMaster: true });
		const after = staged.stats();
		assert.equal(after.masterBytes, 0);
		assert.ok(after.tiers.onebit.tokens > 0 && after.tiers.kivi4.tokens > 0);
		assert.ok(after.bytes <= Math.round(0.12 * m) * 4 * headDim * nh);
		await staged.decode(tokens[m]);
		assert.equal(staged.length, m + 1);
		// prefix reuse over a staged master: truncating into the q8 part keeps what is before
		plain.setStaging(true);
		plain.truncate(0);
		await plain.prefill(tokens.subarray(0, m));
		plain.truncate(700);
		assert.equal(plain.length, 700);
		assert.equal(plain.stats().layers[0].heads[0].tokens, 700);
		await plain.prefill(tokens.subarray(700, m));
		assert.equal(plain.length, m);
		plain.dispose();
		staged.dispose();
	});
});

describe('kivi staging of the master copy', () => {
	const tokens = randomTokens(1500, model.info.nVocab, 33);
	const m = tokens.length - 1;

	test('quant.truncate keeps a prefix of a q8 or kivi segment exactly (a cut kivi block keeps its scales); onebit declines', () => {
		const D = headDim;
		const n = 100;
		const K = Float32Array.from({ length: n * D }, (_, i) => Math.sin(i * 0.37) * (1 + (i % D) / 8));
		const V = Float32Array.from({ length: n * D }, (_, i) => Math.cos(i * 0.11));
		for (const f of ['q8', 'kivi4', 'kivi2']) {
			for (const keep of [0, 1, 31, 32, 45, 64, 99]) {
				const seg = Q.quantize(f, D, K, V);
				const before = Q.dequantize(seg);
				assert.equal(Q.truncate(seg, keep), true);
				const info = Q.info(seg);
				assert.equal(info.tokens, keep);
				assert.deepEqual(info.allocated, info.accounted, `${f} ${keep}: exact allocation`);
				const after = Q.dequantize(seg);
				assert.deepEqual(after.k, before.k.subarray(0, keep * D), `${f} ${keep}: keys`);
				assert.deepEqual(after.v, before.v.subarray(0, keep * D), `${f} ${keep}: values`);
			}
		}
		const ob = Q.quantize('onebit', D, K, V);
		assert.equal(Q.truncate(ob, 50), false);
		assert.equal(Q.info(ob).tokens, n);
	});

	test('setStaging takes a tier name; true is q8; onebit and unknown names are errors', () => {
		const s = model.createSession({ contextSize: 64 });
		s.setStaging('kivi4');
		s.setStaging('kivi2');
		s.setStaging(true);
		s.setStaging(false);
		assert.throws(() => s.setStaging(/** @type {any} */ ('onebit')), /onebit cannot stage/);
		assert.throws(() => s.setStaging(/** @type {any} */ ('q3')), /unknown tier 'q3'/);
		s.dispose();
	});

	test('prefill stages whole 32-token blocks in kivi4/kivi2: bytes, logits close to fp16, tiering and prefix reuse', async (t) => {
		const plain = model.createSession({ contextSize: 2048 });
		plain.observe(P.observationFor('speckv', tokens.length));
		await plain.prefill(tokens);
		plain.truncate(m);
		const plainBytes = plain.stats().bytes;
		await plain.decode(tokens[m]);
		const plainLogits = plain.logits();
		plain.dispose();
		const scale = Math.max(...plainLogits.map(Math.abs));
		const bytesOf = {};
		for (const tier of /** @type {const} */ (['q8', 'kivi4', 'kivi2'])) {
			const staged = model.createSession({ contextSize: 2048 });
			staged.setStaging(tier);
			staged.observe(P.observationFor('speckv', tokens.length));
			await staged.prefill(tokens);
			staged.truncate(m);
			const st = staged.stats();
			for (const layer of st.layers) {
				for (const head of layer.heads) {
					assert.equal(head.tokens, m);
					assert.deepEqual(head.segments.map((s) => s.tier), [tier, 'f16']);
					const [packed, f16] = head.segments;
					if (tier !== 'q8') assert.equal(packed.tokens % 32, 0, 'whole blocks only');
					assert.ok(f16.tokens >= 4 + 255 && f16.tokens < 4 + 256 + 512 + 32, `fp16 part ${f16.tokens}`);
					assert.equal(packed.bytes, cost(tier, packed.tokens));
				}
			}
			bytesOf[tier] = st.bytes;
			await staged.decode(tokens[m]);
			const logits = staged.logits();
			const rel = maxAbsDiff(logits, plainLogits) / scale;
			t.diagnostic(`${tier}-staged master: ${st.bytes} bytes (${(st.bytes / plainBytes).toFixed(3)} of fp16), max |Δ logit| / max |logit| ${rel.toFixed(4)}, argmax ${argmaxOf(logits) === argmaxOf(plainLogits) ? 'same' : 'differs'}`);
			// measured 0.0033 / 0.062 / 0.51 (random tokens: the staged error propagates through later prompt tokens)
			assert.ok(rel < { q8: 0.02, kivi4: 0.12, kivi2: 0.8 }[tier], `${tier} vs fp16 ${rel}`);
			if (tier !== 'kivi2') assert.equal(argmaxOf(logits), argmaxOf(plainLogits));
			staged.truncate(m);
			if (tier === 'q8') {
				staged.dispose();
				continue;
			}
			// prefix reuse: truncating into the middle of a block (position 700: 696 staged tokens after the 4 sinks, 21
			// whole blocks and 24 of the 22nd) keeps what is before, exactly; the next staging starts a segment of its own
			staged.truncate(700);
			const cut = staged.stats().layers[0].heads[0];
			assert.equal(cut.tokens, 700);
			assert.deepEqual(cut.segments.map((s) => [s.tier, s.tokens]), [[tier, 696], ['f16', 4]]);
			assert.equal(cut.segments[0].bytes, cost(tier, 696));
			await staged.prefill(tokens.subarray(700, m));
			assert.equal(staged.length, m);
			const again = staged.stats().layers[0].heads[0];
			assert.deepEqual(again.segments.map((s) => s.tier), [tier, tier, 'f16']);
			assert.equal(again.segments[1].tokens % 32, 0);
			await staged.decode(tokens[m]);
			const reused = staged.logits();
			const relReused = maxAbsDiff(reused, plainLogits) / scale;
			t.diagnostic(`${tier}: after prefix reuse at 700, max |Δ logit| / max |logit| ${relReused.toFixed(4)}`);
			// measured 0.20 / 0.46: other blocks and micro-batch boundaries than the fresh prefill's, so other rounding
			assert.ok(relReused < { kivi4: 0.3, kivi2: 0.8 }[tier], `logits after prefix reuse ${relReused}`);
			// the reading itself is right: the same tokens dequantized into one dense fp16 segment give the same logits
			staged.truncate(m);
			const all = Array.from({ length: nh }, () => Int32Array.from({ length: m }, (_, i) => i));
			staged.compress({ f16: all }, { extraTokens: 8, policy: 'dense' });
			await staged.decode(tokens[m]);
			assert.ok(maxAbsDiff(staged.logits(), reused) / scale < 0.005, 'kivi segments read as their dequantized tokens');
			staged.decompress();
			staged.truncate(m);
			// truncating before every staged token leaves no empty packed segment
			staged.truncate(3);
			assert.deepEqual(staged.stats().layers[0].heads[0].segments.map((s) => [s.tier, s.tokens]), [['f16', 3]]);
			await staged.prefill(tokens.subarray(3, m));
			// tiering from the kivi master (SpecKV scores observed again), then the staging is dropped
			staged.truncate(0);
			staged.observe(P.observationFor('speckv', tokens.length));
			await staged.prefill(tokens);
			staged.truncate(m);
			P.compressSession(staged, nLayer, nHeadKv, { policy: 'speckv', budget: { percent: 12 }, precision: 'mixed', tierCost: cost }, 8, { dropMaster: true });
			const after = staged.stats();
			assert.equal(after.masterBytes, 0);
			assert.ok(after.tiers.onebit.tokens > 0 && after.tiers.kivi4.tokens > 0);
			assert.ok(after.bytes <= Math.round(0.12 * m) * 4 * headDim * nh);
			await staged.decode(tokens[m]);
			assert.equal(staged.length, m + 1);
			staged.dispose();
		}
		assert.ok(bytesOf.kivi4 < 0.75 * bytesOf.q8 && bytesOf.kivi2 < bytesOf.kivi4, JSON.stringify(bytesOf));
	});
});
