/**
 * tao-infer library API (no CLI imports). See README.md for the behaviour and src/types.ts for shapes.
 */
export * from './errors.js';
export type * from './types.js';
export { PLATFORM_NAMES } from './types.js';
export { startService, prepareLaunch, prepareRequest, sendRequest, authHeaders } from './lifecycle.js';
export type { StartInput, StartResult, RequestInput, RequestHooks, PreparedRequest, Deps, Reporter } from './lifecycle.js';
export { stopService, listServices, serviceLogs, latestJobId } from './manage.js';
export type { ListedService, ManageDeps } from './manage.js';
export { Registry, statePath, DEFAULT_STATE_FILE } from './registry/store.js';
export type { RegistryState } from './registry/store.js';
export { pickPort, isPortFree } from './registry/ports.js';
export { loadReferences, secretNames } from './references.js';
export type { References } from './references.js';
export { resolveImage, supportedArchs } from './archs/image.js';
export { buildInnerCommand, envPayload } from './archs/command.js';
export { parseModelPath } from './archs/inputs.js';
export { waitForReadiness, probeReadiness } from './service/readiness.js';
export { sendChatCompletion } from './service/chat.js';
export type { ChatCompletion } from './service/chat.js';
export { buildBody, resolveSampling, samplingFields } from './service/request-body.js';
export { resolveTarget } from './service/routing.js';
export { loadAdapter, PLATFORM_OPTIONS } from './platforms/index.js';
