/**
 * The library behind the CLI: start and request. Never prompts, never exits the process; interactive
 * choices come in as callbacks. This module gathers their public names; the code lives by operation:
 *
 * - start (`src/start/`): prepare (`prepare.ts`: inputs → LaunchSpec) → preflight → reserve → launch →
 *   await ready → roll back (`steps.ts`), run by `startService` (`index.ts`).
 * - request (`src/request.ts`): route, build the body, send.
 * - what both take (`src/deps.ts`): registry, env, reporter, signals, references; `authHeaders`.
 */
export { authHeaders, type Deps, type Reporter } from './deps.js';
export { ENV_OVERRIDE_GUARDED, SECRET_LIKE, checkCapabilities, prepareLaunch, type StartInput } from './start/prepare.js';
export { ROLLBACK_TIMEOUT_MS, logTail } from './start/steps.js';
export { startService, type StartResult } from './start/index.js';
export { prepareRequest, sendRequest, type PreparedRequest, type RequestHooks, type RequestInput } from './request.js';
