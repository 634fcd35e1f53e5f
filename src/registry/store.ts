/**
 * The service registry file (contract §5): one JSON object, each key a job_id mapping to an entry,
 * plus `"latest"` → the most recently started job_id. Compatible with NVIDIA's published skill:
 * same keys, entries it wrote are accepted, unknown keys are preserved.
 *
 * Safety: every read-modify-write runs under a proper-lockfile lock (`<file>.lock`, stale-lock
 * recovery); writes are atomic (unique temp file, fsync, rename) with mode 0600; a symlink or a file
 * owned by another user is refused; a file that does not parse is moved aside and reported, never
 * replaced by `{}`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, constants as fsc, watch } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import lockfile from 'proper-lockfile';
import { RegistryCorruptError, RegistryError } from '../errors.js';
import type { RegistryEntry } from '../types.js';

export const DEFAULT_STATE_FILE = '/tmp/tao-inf-ms-state.json';

/** Registry path: `TAO_INF_STATE_FILE` or `/tmp/tao-inf-ms-state.json`. */
export function statePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.TAO_INF_STATE_FILE?.trim() || DEFAULT_STATE_FILE;
}

/** The parsed registry: entries by job_id, the latest pointer, and any other keys kept verbatim. */
export interface RegistryState {
  entries: Record<string, RegistryEntry>;
  latest?: string;
  /** Keys that are neither entries nor `latest` (kept on write). */
  other: Record<string, unknown>;
}

export interface RegistryOptions {
  /** A lock whose holder stopped refreshing it for this long is taken over (ms, ≥ 2000). Default 10000 or TAO_INF_LOCK_STALE_MS. */
  staleMs?: number;
  /** Give up waiting for the lock after this long (ms). Default 60000. */
  lockTimeoutMs?: number;
}

export interface LockStats {
  acquisitions: number;
  /** Acquisitions that had to wait for another holder. */
  contended: number;
  totalWaitMs: number;
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
  const state: RegistryState = { entries: {}, other: {} };
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'latest' && typeof v === 'string') state.latest = v;
    else if (isEntry(v)) state.entries[k] = v;
    else state.other[k] = v;
  }
  return state;
}

/** The file's JSON object for a state (entries first, `latest` last, like the skill writes). */
export function serializeState(state: RegistryState): Record<string, unknown> {
  const out: Record<string, unknown> = { ...state.other };
  for (const [k, e] of Object.entries(state.entries)) out[k] = e;
  if (state.latest && state.entries[state.latest]) out.latest = state.latest;
  return out;
}

/** After removing entries: point `latest` at the remaining entry with the newest started_at, or drop it (contract §5). */
export function repairLatest(state: RegistryState): void {
  if (state.latest && state.entries[state.latest]) return;
  const newest = Object.values(state.entries).sort((a, b) => (a.started_at < b.started_at ? 1 : a.started_at > b.started_at ? -1 : 0))[0];
  if (newest) state.latest = newest.job_id;
  else delete state.latest;
}

/**
 * Resolve once the lock directory `lockDir` (proper-lockfile's `<file>.lock`) is removed, or after `maxMs`.
 * An inotify watch on the parent directory wakes the waiter as soon as the holder releases, instead of a
 * fixed sleep; the timer bounds the wait when watching is not possible or the event is missed.
 */
function lockReleased(lockDir: string, maxMs: number): Promise<void> {
  return new Promise((resolve) => {
    let watcher: ReturnType<typeof watch> | undefined;
    const done = () => {
      clearTimeout(timer);
      watcher?.close();
      resolve();
    };
    const timer = setTimeout(done, maxMs);
    try {
      watcher = watch(dirname(lockDir), { persistent: false }, (_event, name) => {
        if (name === null || name === basename(lockDir)) done();
      });
      watcher.on('error', done);
    } catch {
      return; // no watch: the timer wakes us
    }
    if (!existsSync(lockDir)) done(); // released between the failed attempt and the watch
  });
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
  }

  /** Refuse a symlink or a file owned by someone else. Returns false when the file does not exist. */
  private async checkSafe(): Promise<boolean> {
    let st;
    try {
      st = await fsp.lstat(this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new RegistryError('registry_unreadable', `cannot stat registry ${this.file}: ${(e as Error).message}`);
    }
    if (st.isSymbolicLink())
      throw new RegistryError('registry_unsafe', `registry ${this.file} is a symbolic link; refusing to follow it`, {
        hint: 'Remove the link, or point TAO_INF_STATE_FILE at a regular file you own.',
      });
    if (!st.isFile())
      throw new RegistryError('registry_unsafe', `registry ${this.file} is not a regular file`, { hint: 'Point TAO_INF_STATE_FILE at a regular file.' });
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid)
      throw new RegistryError('registry_unsafe', `registry ${this.file} is owned by uid ${st.uid}, not by you (uid ${uid}); refusing to use it`, {
        hint: 'Set TAO_INF_STATE_FILE to a path of your own, e.g. ~/.tao-inf-ms-state.json.',
      });
    return true;
  }

  /** Read the registry (no lock: writes are atomic renames). A missing file is an empty registry. */
  async read(): Promise<RegistryState> {
    if (!(await this.checkSafe())) return { entries: {}, other: {} };
    return this.load(false);
  }

  /**
   * Read without side effects, for --dry-run: a file that does not parse is reported (RegistryError
   * `registry_corrupt`) but not moved aside.
   */
  async peek(): Promise<RegistryState> {
    if (!(await this.checkSafe())) return { entries: {}, other: {} };
    return this.load(false, false);
  }

  private async load(locked: boolean, quarantine = true): Promise<RegistryState> {
    let text: string;
    try {
      // O_NOFOLLOW: the symlink check above cannot race with a swap to a link.
      const fh = await fsp.open(this.file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
      try {
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { entries: {}, other: {} };
      if ((e as NodeJS.ErrnoException).code === 'ELOOP')
        throw new RegistryError('registry_unsafe', `registry ${this.file} is a symbolic link; refusing to follow it`);
      throw new RegistryError('registry_unreadable', `cannot read registry ${this.file}: ${(e as Error).message}`);
    }
    if (text.trim() === '') return { entries: {}, other: {} };
    let obj: unknown;
    let reason = '';
    try {
      obj = JSON.parse(text);
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) reason = 'top level is not a JSON object';
    } catch (e) {
      reason = (e as Error).message;
    }
    if (reason) {
      if (!quarantine)
        throw new RegistryError('registry_corrupt', `registry ${this.file} could not be parsed (${reason})`, {
          hint: 'Run any command without --dry-run to move it aside (it is never deleted), or repair it.',
        });
      if (!locked) {
        // Quarantine only while holding the lock, so a concurrent writer's file is never moved.
        return this.withLock(() => this.load(true));
      }
      const to = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`;
      await fsp.rename(this.file, to);
      throw new RegistryCorruptError(this.file, to, reason);
    }
    return parseState(obj as Record<string, unknown>);
  }

  private async write(state: RegistryState): Promise<void> {
    const dir = dirname(this.file);
    const tmp = join(dir, `.${basename(this.file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    try {
      await fh.writeFile(JSON.stringify(serializeState(state), null, 2) + '\n', 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fsp.rename(tmp, this.file);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw new RegistryError('registry_write_failed', `cannot write registry ${this.file}: ${(e as Error).message}`);
    }
  }

  private async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    let release: (() => Promise<void>) | undefined;
    let waited = false;
    await fsp.mkdir(dirname(this.file), { recursive: true });
    while (!release) {
      try {
        release = await lockfile.lock(this.file, {
          realpath: false,
          stale: this.staleMs,
          update: Math.max(1000, Math.floor(this.staleMs / 2)),
          retries: 0,
          onCompromised: () => {
            /* the lock was taken over as stale; our write is still atomic */
          },
        });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw new RegistryError('registry_lock_failed', `cannot lock registry ${this.file}: ${(e as Error).message}`);
        waited = true;
        if (Date.now() - t0 > this.lockTimeoutMs)
          throw new RegistryError('registry_lock_timeout', `registry ${this.file} stayed locked for ${Math.round(this.lockTimeoutMs / 1000)}s`, {
            hint: `Another tao-infer is writing it. If none runs, remove ${this.file}.lock.`,
          });
        await lockReleased(`${this.file}.lock`, 25 + Math.random() * 50);
      }
    }
    this.stats.acquisitions++;
    if (waited) this.stats.contended++;
    this.stats.totalWaitMs += Date.now() - t0;
    try {
      return await fn();
    } finally {
      await release().catch(() => undefined);
    }
  }

  /**
   * Read-modify-write under the lock. `fn` may change `state` in place; the file is written only when
   * the serialized state changed. Returns what `fn` returns.
   * @throws RegistryError (unsafe file, lock timeout), RegistryCorruptError (file quarantined), or what fn throws (nothing written then)
   */
  async mutate<T>(fn: (state: RegistryState) => T | Promise<T>): Promise<T> {
    await this.checkSafe();
    return this.withLock(async () => {
      await this.checkSafe();
      const state = await this.load(true);
      const before = JSON.stringify(serializeState(state));
      const result = await fn(state);
      if (JSON.stringify(serializeState(state)) !== before) await this.write(state);
      return result;
    });
  }

  /** Fetch one entry (or undefined). */
  async get(job_id: string): Promise<RegistryEntry | undefined> {
    return (await this.read()).entries[job_id];
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
