/**
 * tao-infer library API (no CLI imports). See README.md for the behaviour and src/types.ts for shapes.
 */
export * from './errors.js';
export type * from './types.js';
export { PLATFORM_NAMES } from './types.js';
export { startService, prepareLaunch, prepareRequest, sendRequest, authHeaders } from './lifecycle.js';
export type { StartInput, StartResult, RequestInput, RequestHooks, PreparedRequest, Deps, Reporter } from './lifecycle.js';
export { stopService, listServices, serviceLogs, latestJobId, findService, liveState } from './manage.js';
export type { ListedService, LiveState, ManageDeps } from './manage.js';
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
export { resolveTarget, resolveJobId, MIN_JOB_ID_PREFIX } from './service/routing.js';
export { expiryWarning } from './service/lifetime.js';
export { parseDuration } from './util/duration.js';
export { loadAdapter, PLATFORM_OPTIONS } from './platforms/index.js';
export type { Gateway } from './gateway/server.js';
export type { GatewayOptions } from './gateway/options.js';

/**
 * Start the tao-infer gateway in-process (issue 12; README § gateway): one OpenAI-compatible URL for every
 * service in the registry, routed by the body's `model` (job_id, network_arch or unique job_id prefix), by
 * `POST /v1/jobs/{job_id}/chat/completions` or by the `x-tao-job-id` header. Resolves `{url, close()}` once
 * it listens; `close()` stops accepting, lets requests in flight finish (drainTimeoutS, default 30 s) and
 * releases everything. The server (node:http, undici, prom-client) is loaded only when this is called.
 * Options (all optional): host (127.0.0.1), port (8000; 0 = any free port), apiKeyEnv (NAME of the env
 * var holding the client key), insecure, logFile (JSONL), stateFile, retryWindowS (60), firstByteTimeoutS
 * (900), idleTimeoutS (120), maxBodyMb (256), byteBudgetMb (1024), env, onWarning.
 * @throws InvalidInputError (exit 2 in the CLI): a bad option, port in use, $apiKeyEnv unset, a non-loopback
 *         host without a key and without insecure
 */
export async function startGateway(options: import('./gateway/options.js').GatewayOptions = {}): Promise<import('./gateway/server.js').Gateway> {
  return (await import('./gateway/server.js')).startGateway(options);
}
