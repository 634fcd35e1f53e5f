/**
 * What the library functions (start, request) take besides their input: the registry, the environment,
 * where progress goes, the interrupt signal, the reference data. All optional; defaults are this process's.
 */
import { InvalidInputError } from './errors.js';
import { loadReferences, type References } from './references.js';
import { Registry } from './registry/store.js';
import type { RegistryEntry } from './types.js';

/** Where progress, warnings and readiness updates go. All optional. */
export interface Reporter {
  log?: (msg: string) => void;
  warn?: (msg: string) => void;
  /** Readiness progress: elapsed seconds and last state. */
  progress?: (elapsedS: number, state: string) => void;
  /** Launch progress lines such as an image pull (see AdapterContext.progressLine). */
  progressLine?: (line: string, important: boolean) => void;
}

export interface Deps {
  registry?: Registry;
  env?: NodeJS.ProcessEnv;
  reporter?: Reporter;
  signal?: AbortSignal;
  /**
   * Aborts the rollback of a failed or interrupted start (the CLI: a second Ctrl-C). The rollback never uses
   * `signal`, which an interrupt has already aborted; it runs with its own bound (ROLLBACK_TIMEOUT_MS).
   */
  rollbackSignal?: AbortSignal;
  refs?: References;
}

/** The parts every library call uses: env, registry, references (loaded on first use), warnings collected. */
export function ctxParts(deps: Deps) {
  const env = deps.env ?? process.env;
  const registry = deps.registry ?? new Registry();
  // Loaded on first use: ls, stop and logs never parse the reference data.
  const refs = () => deps.refs ?? loadReferences();
  const warnings: string[] = [];
  const log = (m: string) => deps.reporter?.log?.(m);
  const warn = (m: string) => {
    warnings.push(m);
    deps.reporter?.warn?.(m);
  };
  return { env, registry, refs, warnings, log, warn };
}

/** Headers for requests to an entry: Bearer token from the env var named in `auth_env` (never stored). */
export function authHeaders(entry: RegistryEntry, env: NodeJS.ProcessEnv): Record<string, string> {
  if (!entry.auth_env) return {};
  const token = env[entry.auth_env];
  if (!token)
    throw new InvalidInputError(entry.auth_env, `service ${entry.job_id} needs a bearer token from $${entry.auth_env}, which is not set`, {
      hint: `export ${entry.auth_env}=... and retry.`,
    });
  return { authorization: `Bearer ${token}` };
}
