/**
 * The service registry file (contract §5): one JSON object, each key a job_id mapping to an entry,
 * plus `"latest"` → the most recently started job_id. Compatible with NVIDIA's published skill:
 * same keys, entries it wrote are accepted, unknown keys are preserved.
 *
 * Safety: every read-modify-write runs under a proper-lockfile lock (`<file>.lock`, stale-lock
 * recovery); writes are atomic (unique temp file, fsync, rename) with mode 0600 and happen only while
 * the lock is provably still ours (a holder frozen past the stale time re-reads and retries instead); a symlink or a file
 * owned by another user is refused; a file that does not parse is moved aside and reported, never
 * replaced by `{}`. The parts: state.ts (shape, parse), lock.ts (the lock), file.ts (read-validate, atomic write).
 */
import { RegistryError } from '../errors.js';
import type { RegistryEntry } from '../types.js';
import { checkSafe, loadState, writeState } from './file.js';
import { LockLostError, loadLockfile, withLock, type LockStats } from './lock.js';
import { emptyState, repairLatest, serializeState, statePath, type RegistryState } from './state.js';

export { DEFAULT_STATE_FILE, checkActionable, emptyState, nullMap, parseState, repairLatest, serializeState, statePath, type RegistryState } from './state.js';
export type { LockStats } from './lock.js';

export interface RegistryOptions {
  /** A lock whose holder stopped refreshing it for this long is taken over (ms, ≥ 2000). Default 10000 or TAO_INF_LOCK_STALE_MS. */
  staleMs?: number;
  /** Give up waiting for the lock after this long (ms). Default 60000. */
  lockTimeoutMs?: number;
  /** Where warnings go (a group/other-writable file). Default: `warning: ...` on stderr. */
  warn?: (msg: string) => void;
}

/**
 * The service registry file (contract §5): `job_id → entry` plus `latest`, default `/tmp/tao-inf-ms-state.json`
 * or `TAO_INF_STATE_FILE`. Every read-modify-write holds a proper-lockfile lock (stale after
 * `TAO_INF_LOCK_STALE_MS`, default 10 000 ms); writes are atomic (temp file + rename, mode 0600). A symlinked
 * or foreign-owned file is refused and a file that does not parse is moved aside and reported (RegistryError,
 * exit 6), never replaced by `{}`.
 */
export class Registry {
  readonly file: string;
  readonly staleMs: number;
  readonly lockTimeoutMs: number;
  readonly stats: LockStats = { acquisitions: 0, contended: 0, totalWaitMs: 0 };

  constructor(file = statePath(), opts: RegistryOptions = {}) {
    this.file = file;
    const envStale = Number(process.env.TAO_INF_LOCK_STALE_MS);
    this.staleMs = Math.max(2000, opts.staleMs ?? (Number.isFinite(envStale) && envStale > 0 ? envStale : 10_000));
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 60_000;
    this.warn = opts.warn ?? ((m) => void process.stderr.write(`warning: ${m}\n`));
  }
  private readonly warn: (msg: string) => void;

  /**
   * Read the registry (no lock: our writes are atomic renames). A missing file is an empty registry.
   * Read-only: a file that does not parse is reported (RegistryError `registry_corrupt`, exit 6), never moved.
   */
  async read(): Promise<RegistryState> {
    if (!(await checkSafe(this.file))) return emptyState();
    return loadState(this.file, false, this.warn);
  }

  /**
   * Start loading the code writes need (the lock library) now, without waiting: a command that will write after a
   * slow step (start: after its platform preflight) calls it first so the load overlaps that step.
   */
  prepareWrite(): void {
    loadLockfile().catch(() => undefined);
  }

  /** Read without side effects (for --dry-run); the same as `read`. */
  async peek(): Promise<RegistryState> {
    return this.read();
  }

  /**
   * Read-modify-write under the lock. `fn` may change `state` in place; the file is written only when
   * the serialized state changed. Returns what `fn` returns. When the lock was lost before the write
   * (this process was frozen past the stale time and another took the lock over), nothing is written:
   * the mutation runs again from a fresh read under a new lock, so `fn` must only change `state` (it may
   * run more than once).
   * @throws RegistryError (unsafe file, lock timeout, `registry_lock_lost` when the lock was lost 3 times in a row),
   *         RegistryCorruptError (file quarantined), or what fn throws (nothing written then)
   */
  async mutate<T>(fn: (state: RegistryState) => T | Promise<T>): Promise<T> {
    await checkSafe(this.file);
    for (let attempt = 1; ; attempt++) {
      try {
        return await withLock(this.file, this, this.stats, async (stillOwned) => {
          await checkSafe(this.file);
          const state = await loadState(this.file, true, this.warn);
          const before = JSON.stringify(serializeState(state));
          const result = await fn(state);
          if (JSON.stringify(serializeState(state)) !== before) await writeState(this.file, state, stillOwned);
          return result;
        });
      } catch (e) {
        if (!(e instanceof LockLostError)) throw e;
        if (attempt >= 3)
          throw new RegistryError(
            'registry_lock_lost',
            `the lock on registry ${this.file} was taken over by another process ${attempt} times while this one held it (frozen or starved past ${this.staleMs} ms); nothing was written`,
            { hint: 'Re-run the command; if this process is being suspended, raise TAO_INF_LOCK_STALE_MS.' },
          );
      }
    }
  }

  /** Fetch one entry (or undefined). */
  async get(job_id: string): Promise<RegistryEntry | undefined> {
    const { entries } = await this.read();
    return Object.hasOwn(entries, job_id) ? entries[job_id] : undefined;
  }

  /** Merge fields into an existing entry. No-op when the entry is gone. */
  async update(job_id: string, fields: Partial<RegistryEntry>): Promise<RegistryEntry | undefined> {
    return this.mutate((s) => {
      const e = s.entries[job_id];
      if (!e) return undefined;
      const next = { ...e, ...fields } as RegistryEntry;
      for (const [k, v] of Object.entries(fields)) if (v === undefined) delete next[k];
      s.entries[job_id] = next;
      return next;
    });
  }

  /** Remove an entry and repair `latest`. Returns the removed entry. */
  async remove(job_id: string): Promise<RegistryEntry | undefined> {
    return this.mutate((s) => {
      const e = s.entries[job_id];
      if (!e) return undefined;
      delete s.entries[job_id];
      repairLatest(s);
      return e;
    });
  }
}
