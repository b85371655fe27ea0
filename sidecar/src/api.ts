// The sidecar's library surface, exported from the bundle (dist/sidecar.mjs) next to the CLI's `main`. Tests import
// the bundle rather than the TypeScript sources, so they run with plain `node --test` and test what ships.
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
