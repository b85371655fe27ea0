// A synthetic but self-consistent cache snapshot (the shape of protocol.ts `CacheSnapshot`), for testing the
// inspector at the sizes docs/architecture.md ("Cache inspector") asks for (64 layers × 32 KV heads) without a model
// that big. Every tier the engine has holds tokens, so the screenshots show each one.
import { seededRandom } from '../../../bench/random.mjs';

const tiers = ['f16', 'q8', 'kivi4', 'kivi2', 'onebit', 'dropped'];
// Bytes per token position per head (K + V) at head dimension d, for each tier: its bits per element (f16 16, q8 8.5,
// kivi4 5, kivi2 3, onebit ~1.6) plus 4 bytes of position.
const bytesPerPosition = (d) => ({ f16: 4 * d + 4, q8: Math.ceil((2 * d * 8.5) / 8) + 4, kivi4: Math.ceil((2 * d * 5) / 8) + 4, kivi2: Math.ceil((2 * d * 3) / 8) + 4, onebit: Math.ceil((2 * d * 1.6) / 8) + 4, dropped: 0 });


export function syntheticSnapshot({ layers = 64, kvHeads = 32, headDim = 128, contextTokens = 32768, sequence = 1, seed = 7 } = {}) {
	const rand = seededRandom(seed);
	const per = bytesPerPosition(headDim);
	const layerStats = [];
	let kvBytes = 0;
	for (let layer = 0; layer < layers; layer++) {
		// Pyramid allocation: lower layers keep more at high precision.
		const keep = 0.5 - 0.35 * (layer / Math.max(1, layers - 1));
		const heads = [];
		const layerTiers = Object.fromEntries(tiers.map((tier) => [tier, { tokens: 0, bytes: 0 }]));
		let layerBytes = 0;
		for (let head = 0; head < kvHeads; head++) {
			const jitter = 0.6 + 0.8 * rand();
			const f16 = 64 + 256;
			const kivi4 = Math.round(contextTokens * keep * 0.5 * jitter);
			const q8 = Math.round(kivi4 * 0.15);
			const kivi2 = Math.round(kivi4 * 0.3);
			const onebit = Math.round((contextTokens - f16 - q8 - kivi4 - kivi2) * (0.55 + 0.3 * rand()));
			const dropped = contextTokens - f16 - q8 - kivi4 - kivi2 - onebit;
			const counts = { f16, q8, kivi4, kivi2, onebit, dropped };
			const headTiers = Object.fromEntries(tiers.map((tier) => [tier, { tokens: counts[tier], bytes: counts[tier] * per[tier] }]));
			const bytes = tiers.reduce((sum, tier) => sum + headTiers[tier].bytes, 0);
			for (const tier of tiers) {
				layerTiers[tier].tokens += counts[tier];
				layerTiers[tier].bytes += headTiers[tier].bytes;
			}
			heads.push({ head, tokens: contextTokens - dropped, bytes, tiers: headTiers });
			layerBytes += bytes;
		}
		kvBytes += layerBytes;
		layerStats.push({ layer, bytes: layerBytes, fp16Bytes: kvHeads * contextTokens * 4 * headDim, tiers: layerTiers, heads });
	}
	const fp16Bytes = layers * kvHeads * contextTokens * 4 * headDim;
	const fileNames = ['src/config.ts', 'src/http.ts', 'src/logger.ts', 'src/orders.ts', 'src/queue.ts', 'README.md', 'package.json', 'src/main.ts'];
	const files = [];
	let start = 1;
	for (const [index, path] of fileNames.entries()) {
		const span = index === fileNames.length - 1 ? contextTokens - start : Math.round((contextTokens - 1) / fileNames.length);
		const kept = index === 0 || index === fileNames.length - 1 ? 0.9 : 0.1 + 0.3 * rand();
		const keptTokens = { f16: span * kept * 0.3, q8: span * kept * 0.1, kivi4: span * kept * 0.6, kivi2: span * (1 - kept) * 0.2, onebit: span * (1 - kept) * 0.5, dropped: span * (1 - kept) * 0.3 };
		files.push({ path, role: index === fileNames.length - 1 ? 'active' : 'repo', startToken: start, endToken: start + span, keptTokens, keptFraction: kept });
		start += span;
	}
	return {
		sequence,
		time: new Date(Date.UTC(2026, 10, 27, 17, 0, 0)).toISOString(),
		request: 'completion',
		engine: 'native',
		source: 'engineStats',
		model: { path: '/models/synthetic-64x32.gguf', architecture: 'llama', layers, kvHeads, headDim, contextSize: 65536 },
		budget: { policy: 'speckv', allocation: 'pyramid', bytesPerToken: Math.round(kvBytes / contextTokens), sinkTokens: 64, recentWindow: 256, description: 'SpecKV importance from 64 draft tokens; top-k at kivi4 and q8, the rest at kivi2 and onebit or dropped, pyramid budget' },
		layers: layerStats,
		files,
		totals: { contextTokens, kvBytes, fp16Bytes, bitsPerElement: (8 * kvBytes) / (layers * kvHeads * contextTokens * 2 * headDim), compressionRatio: fp16Bytes / kvBytes },
		latency: { prefillMs: 5230, draftMs: 410, scoringMs: 380, decodeMs: 920, totalMs: 6940, prefillTokens: 1200, reusedTokens: contextTokens - 1200, generatedTokens: 12 },
	};
}
