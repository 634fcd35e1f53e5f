/**
 * Options of `tao-infer gateway` / startGateway, their defaults (issue 12) and the checks made before
 * anything listens: an api key is read from the env var NAMED by `apiKeyEnv` (never passed as a value),
 * and a non-loopback address without a key is refused unless `insecure`.
 */
import { isIP } from 'node:net';
import { InvalidInputError } from '../errors.js';
import { statePath } from '../registry/store.js';

export interface GatewayOptions {
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Port (default 8000; 0 picks a free one). */
  port?: number;
  /** Name of the env var holding the key clients must send as `Authorization: Bearer <key>`. */
  apiKeyEnv?: string;
  /** Allow a non-loopback host without an api key. */
  insecure?: boolean;
  /** JSONL access log file (appended, mode 0600). */
  logFile?: string;
  /** Registry file (default TAO_INF_STATE_FILE or /tmp/tao-inf-ms-state.json). */
  stateFile?: string;
  /** Seconds to keep retrying members that are warming up (default 60). */
  retryWindowS?: number;
  /** Seconds to wait for the first response byte (default 900: video generation is slow). */
  firstByteTimeoutS?: number;
  /** Seconds allowed between two chunks of a response (default 120). */
  idleTimeoutS?: number;
  /** Seconds to connect to a member (default 5). */
  connectTimeoutS?: number;
  /** Largest request body, MiB (default 256; 413 above). */
  maxBodyMb?: number;
  /** Request-body bytes held at once over all requests, MiB (default 1024; 503 + Retry-After above). */
  byteBudgetMb?: number;
  /** Bodies above this many MiB are spooled to a temp file instead of memory (default 4). */
  spoolAboveMb?: number;
  /** Seconds between readiness probes of each member (default 3). */
  probeIntervalS?: number;
  /** Seconds between stat checks of the registry file, besides fs.watch (default 1). */
  registryPollS?: number;
  /** Seconds close() waits for requests in flight before cutting them (default 30). */
  drainTimeoutS?: number;
  /** Environment for the api key and upstream tokens (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Warnings for people (registry unreadable, access log failing, members ejected). */
  onWarning?: (message: string) => void;
}

export interface ResolvedOptions {
  host: string;
  port: number;
  apiKey?: string;
  logFile?: string;
  stateFile: string;
  retryWindowMs: number;
  firstByteMs: number;
  idleMs: number;
  connectMs: number;
  maxBodyBytes: number;
  byteBudget: number;
  spoolAbove: number;
  parseLimit: number;
  probeIntervalMs: number;
  registryPollMs: number;
  drainMs: number;
  env: NodeJS.ProcessEnv;
  warn: (message: string) => void;
}

const MiB = 1024 * 1024;

/** Whether `host` only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

function positive(flag: string, v: number | undefined, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v < min) throw new InvalidInputError(flag, `${flag} must be a number ≥ ${min}, got ${v}`);
  return v;
}

/**
 * Defaults and checks.
 * @throws InvalidInputError (bad number, api key env var unset or misnamed, non-loopback host without a key)
 */
export function resolveOptions(o: GatewayOptions): ResolvedOptions {
  const env = o.env ?? process.env;
  const host = o.host ?? '127.0.0.1';
  const port = positive('--port', o.port, 8000);
  if (!Number.isInteger(port) || port > 65535) throw new InvalidInputError('--port', `--port must be a whole number 0–65535, got ${port}`);
  let apiKey: string | undefined;
  if (o.apiKeyEnv !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(o.apiKeyEnv))
      throw new InvalidInputError('--api-key-env', '--api-key-env takes the NAME of an environment variable (letters, digits, _), not the key itself', {
        hint: 'export GATEWAY_KEY=... then pass --api-key-env GATEWAY_KEY.',
      });
    apiKey = env[o.apiKeyEnv];
    if (!apiKey) throw new InvalidInputError('--api-key-env', `$${o.apiKeyEnv} is not set or empty`, { hint: `export ${o.apiKeyEnv}=<key> and start the gateway again.` });
  }
  if (!isLoopback(host) && !apiKey && !o.insecure)
    throw new InvalidInputError('--host', `refusing to serve on ${host} (reachable from other machines) without an api key`, {
      hint: 'Pass --api-key-env NAME (clients then send Authorization: Bearer <key>), or --insecure if the network is trusted.',
    });
  const maxBodyBytes = Math.round(positive('--max-body-mb', o.maxBodyMb, 256, 0.001) * MiB);
  const parseLimit = MiB;
  return {
    host,
    port,
    apiKey,
    logFile: o.logFile,
    stateFile: o.stateFile ?? statePath(env),
    retryWindowMs: positive('--retry-window', o.retryWindowS, 60) * 1000,
    firstByteMs: positive('--first-byte-timeout', o.firstByteTimeoutS, 900, 0.001) * 1000,
    idleMs: positive('--idle-timeout', o.idleTimeoutS, 120, 0.001) * 1000,
    connectMs: positive('connectTimeoutS', o.connectTimeoutS, 5, 0.001) * 1000,
    maxBodyBytes,
    byteBudget: Math.max(maxBodyBytes, Math.round(positive('--byte-budget-mb', o.byteBudgetMb, 1024, 0.001) * MiB)),
    spoolAbove: Math.max(parseLimit, Math.round(positive('spoolAboveMb', o.spoolAboveMb, 4) * MiB)),
    parseLimit,
    probeIntervalMs: positive('probeIntervalS', o.probeIntervalS, 3, 0.05) * 1000,
    registryPollMs: positive('registryPollS', o.registryPollS, 1, 0.05) * 1000,
    drainMs: positive('--drain-timeout', o.drainTimeoutS, 30) * 1000,
    env,
    warn: o.onWarning ?? (() => undefined),
  };
}
