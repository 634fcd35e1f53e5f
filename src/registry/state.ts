/**
 * The registry's shape (contract §5): entries by job_id, the `latest` pointer, other keys kept verbatim; parsing
 * and serializing the file's JSON object, and where the file is. Pure: no file access (see file.ts, store.ts).
 */
import { InvalidInputError } from '../errors.js';
import type { RegistryEntry } from '../types.js';

export const DEFAULT_STATE_FILE = '/tmp/tao-inf-ms-state.json';

/** Registry path: `TAO_INF_STATE_FILE` or `/tmp/tao-inf-ms-state.json`. */
export function statePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.TAO_INF_STATE_FILE?.trim() || DEFAULT_STATE_FILE;
}

/**
 * The parsed registry: entries by job_id, the latest pointer, and any other keys kept verbatim. All maps have
 * a null prototype, so keys from the file or the command line (`constructor`, `__proto__`) are plain keys.
 */
export interface RegistryState {
  entries: Record<string, RegistryEntry>;
  latest?: string;
  /** Keys that are neither entries nor `latest` (kept on write), including inconsistent entries. */
  other: Record<string, unknown>;
  /**
   * Keys whose value looks like an entry but whose `job_id` field differs from the key (the key is the
   * identity): kept verbatim in `other`, shown by `ls` as inconsistent, never acted on. Key → the entry's job_id.
   */
  inconsistent?: Record<string, string>;
}

/** A map with no prototype: lookups by user or file data never reach Object.prototype. */
export function nullMap<V>(): Record<string, V> {
  return Object.create(null) as Record<string, V>;
}

/** An empty registry state. */
export function emptyState(): RegistryState {
  return { entries: nullMap(), other: nullMap(), inconsistent: nullMap() };
}

/**
 * Refuse to act on a registry key: one whose entry's job_id disagrees with the key (issue 8.5), or a job id that
 * would reach a platform CLI as a flag (starts with '-', issue 8.7).
 * @throws InvalidInputError (exit 2) naming the key
 */
export function checkActionable(state: RegistryState, key: string): void {
  const other = state.inconsistent && Object.hasOwn(state.inconsistent, key) ? state.inconsistent[key] : undefined;
  if (other !== undefined)
    throw new InvalidInputError('<job_id>', `registry key '${key}' holds an entry whose job_id is '${other}'; tao-infer does not act on an inconsistent entry`, {
      hint: `Inspect ${key} in the registry file ('tao-infer ls' marks it inconsistent) and repair or remove it by hand.`,
    });
  const e = Object.hasOwn(state.entries, key) ? state.entries[key] : undefined;
  for (const [what, id] of [
    ['job_id', key],
    ['platform_job_id', e?.platform_job_id],
  ] as const)
    if (typeof id === 'string' && id.startsWith('-'))
      throw new InvalidInputError('<job_id>', `${what} '${id}' starts with '-', so a platform command would read it as an option; refusing to act on it`, {
        hint: 'Remove that entry from the registry file by hand.',
      });
}

function isEntry(v: unknown): v is RegistryEntry {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.job_id === 'string' &&
    typeof e.network_arch === 'string' &&
    typeof e.platform === 'string' &&
    typeof e.host_url === 'string' &&
    typeof e.started_at === 'string'
  );
}

/** Split a parsed registry object into entries / latest / other keys. */
export function parseState(obj: Record<string, unknown>): RegistryState {
  const state = emptyState();
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'latest' && typeof v === 'string') state.latest = v;
    else if (isEntry(v) && v.job_id === k) state.entries[k] = v;
    else {
      if (isEntry(v)) state.inconsistent![k] = v.job_id;
      state.other[k] = v;
    }
  }
  return state;
}

/** The file's JSON object for a state (entries first, `latest` last, like the skill writes). */
export function serializeState(state: RegistryState): Record<string, unknown> {
  const out = nullMap<unknown>();
  for (const [k, v] of Object.entries(state.other)) out[k] = v;
  for (const [k, e] of Object.entries(state.entries)) out[k] = e;
  if (state.latest && Object.hasOwn(state.entries, state.latest)) out.latest = state.latest;
  return out;
}

/** After removing entries: point `latest` at the remaining entry with the newest started_at, or drop it (contract §5). */
export function repairLatest(state: RegistryState): void {
  if (state.latest && Object.hasOwn(state.entries, state.latest)) return;
  const newest = Object.values(state.entries).sort((a, b) => (a.started_at < b.started_at ? 1 : a.started_at > b.started_at ? -1 : 0))[0];
  if (newest) state.latest = newest.job_id;
  else delete state.latest;
}
