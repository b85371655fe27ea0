// Entry point of the benchmarks' bundle (dist/bench.mjs, esbuild.mjs), which `repokv bench` loads from beside the
// sidecar bundle, so the sidecar the extension runs carries no benchmark code. It also exports the fidelity tasks'
// builder for the tests that check them.
export { benchCommand } from './command';
export { TaskBuilder, HeldoutCode } from './tasks';
export { bootstrapMean, pairedDifference, comparePair, orderingCheck, withinMargin } from './stats';
