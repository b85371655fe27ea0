// The sidecar's library surface, exported from the bundle (dist/sidecar.mjs) next to the CLI's `main`. Tests import
// the bundle rather than the TypeScript sources, so they run with plain `node --test` and test what ships. The
// benchmarks (bench/, their own bundle dist/bench.mjs) reach the sidecar only through this file, and at run time
// through dist/sidecar.mjs itself (esbuild.mjs); nothing in the sidecar imports bench/.
export { UserError } from './errors';
export { readWorkspace, decodeText, defaultMaxFileBytes, defaultMaxTotalBytes } from './workspace/reader';
export type { WorkspaceFile, WorkspaceSnapshot, SkippedPath, SkipReason, ReadWorkspaceOptions, WorkspaceFs } from './workspace/reader';
export { isSecretPath } from './workspace/secrets';
export { buildCompletionPrompt, orderByRelevance, neutraliseSpecialTokens, keepFirstTokens, keepLastTokens, ContextBudgetError } from './context/builder';
export type { BuildPromptOptions, BuiltPrompt, PromptFile } from './context/builder';
export { resolveImports, relativeImportSpecifiers } from './context/neighbours';
export { offsetAt, PositionOutOfRangeError } from './context/position';
export type { EditorPosition } from './context/position';
export { postprocessCompletion, chooseMode, stopStringsFor } from './completion/postprocess';
export { completeInWorkspace } from './completion/workspace-completion';
export { loadEngine, availableEngines } from './engine';
export { defaultSpecialTokenTexts } from './engine/types';
export type * from './engine/types';
export { bundledModelPath, packageRoot } from './models/bundled';
export { NativeModel, NativeSession, loadNativeAddon, nativeAddonPath, nativeRuntimeInfo, physicalCores, argmax } from './engine/native';
export type { NativeModelInfo, NativeCacheStats, NativeHeadStats, NativeSegmentStats, NativeRuntimeInfo } from './engine/native';
export { repoPieceText } from './context/builder';
export type { PromptSpan } from './context/builder';
export { orderStableFirst } from './context/stable-order';
export { postprocessContextAt } from './completion/postprocess';
export * as protocol from './protocol';
export { WorkspaceMirror, normalisePath, defaultMirrorLimits } from './server/mirror';
export { AdaptiveDebouncer, sleep, median } from './server/debounce';
export { LruCache } from './server/lru';
export { JobQueue } from './server/job-queue';
export { CompletionPipeline } from './server/completion-pipeline';
export { CachingCounter } from './server/engine-host';
export { buildCacheSnapshot, fp16BytesPerHeadToken } from './server/cache-snapshot';
export { reloadNeeded, resolveSettings } from './server/settings';
export { chooseKvCache, resolveKvSettings, describeKvCache, describeFallback } from './engine/kv-choice';
export { resolveDevice, describeDevice, probeCuda } from './engine/device';
export { StatusReporter } from './server/status';
export { Bm25Index, terms } from './ask/bm25';
export { chunkFile } from './ask/chunks';
export { RetrievalIndex, citationsFrom } from './ask/retrieval';
export { answerQuestion, holdBack } from './ask/answer';
export * as nativePolicy from './engine/native-policy';
export { DraftModel } from './engine/native-draft';
export { draftPromptFor } from './engine/draft-prompt';
export { draftLayouts } from './protocol';
export { nativeStorageFormats, tierCost } from './engine/native';
export { specialTokenTextsOf, hasRepoLevelFormat, repoHeaderText, repoNameTokenText, controlTokenId } from './context/repo-format';
export { defaultRepoName } from './context/builder';
export { checkDraftPairing, vocabularyFingerprint, vocabularyDifference, DraftMismatchError } from './models/pairing';
export { modelPresets, presetById, downloadPreset, localPresetFile, defaultModelsFolder } from './models/presets';
export type { ModelPreset, PresetFile } from './models/presets';
export { buildModelCatalog, compatibleGroups, findPairedDraft } from './models/catalog';
export { chooseContextSize, fp16KvBytesPerToken } from './engine/load-options';
export * as memoryCheck from './server/memory-check';

// What the benchmarks use beyond the above.
export type { Command } from './cli/command';
export { parseCommandArgs, integerOption, oneOfOption, draftLayoutOption } from './cli/args';
export { compressSession, observationFor, scoringPass } from './engine/native-policy';
export { defaultKvSettings, kvPolicies, kvPrecisions, kvMasterPrecisions } from './protocol';
export type { DraftLayout, KvPolicy, KvPrecision, KvMasterPrecision } from './protocol';
export type { EditedPromptFile } from './context/stable-order';
export type { ModelShape } from './server/cache-snapshot';
export { readShape } from './server/engine-host';
export { createLlamaContext, getLlamaFor, loadVocabOnly } from './engine/node-llama';
