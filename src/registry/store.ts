/**
 * The service registry file (contract §5): one JSON object, each key a job_id mapping to an entry,
 * plus `"latest"` → the most recently started job_id. Compatible with NVIDIA's published skill:
 * same keys, entries it wrote are accepted, unknown keys are preserved.
 *
 * Safety: every read-modify-write runs under a proper-lockfile lock (`<file>.lock`, stale-lock
 * recovery); writes are atomic (unique temp file, fsync, rename) with mode 0600 and happen only while
 * the lock is provably still ours (a holder frozen past the stale time re-reads and retries instead); a symlink or a file
 * owned by another user is refused; a file that does not parse is moved aside and reported, never
 * replaced by `{}`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fsp, constants as fsc, watch } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as fsCallbacks from 'node:fs';
import lockfile from 'proper-lockfile';
import { InvalidInputError, RegistryCorruptError, RegistryError } from '../errors.js';
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

export interface RegistryOptions {
  /** A lock whose holder stopped refreshing it for this long is taken over (ms, ≥ 2000). Default 10000 or TAO_INF_LOCK_STALE_MS. */
  staleMs?: number;
  /** Give up waiting for the lock after this long (ms). Default 60000. */
  lockTimeoutMs?: number;
  /** Where warnings go (a group/other-writable file). Default: `warning: ...` on stderr. */
  warn?: (msg: string) => void;
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

/** Largest registry file read (the registry holds a few entries; more is not a registry). */
const MAX_REGISTRY_BYTES = 64 * 1024 * 1024;
/** Pauses between reads of a registry that did not parse (ms). */
const PARSE_RETRY_MS = [10, 20, 40, 80, 160, 320];
/** Registry files already warned about (group/other writable): warned once per process. */
const warnedWritable = new Set<string>();

/** Internal: the lock was lost before the rename; the mutation is retried from a fresh read. */
class LockLostError extends Error {}

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
    this.warn = opts.warn ?? ((m) => void process.stderr.write(`warning: ${m}\n`));
  }
  private readonly warn: (msg: string) => void;

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

  /**
   * Read the registry (no lock: our writes are atomic renames). A missing file is an empty registry.
   * Read-only: a file that does not parse is reported (RegistryError `registry_corrupt`, exit 6), never moved.
   */
  async read(): Promise<RegistryState> {
    if (!(await this.checkSafe())) return emptyState();
    return this.load(false);
  }

  /** Read without side effects (for --dry-run); the same as `read`. */
  async peek(): Promise<RegistryState> {
    return this.read();
  }

  /** The file's text and a signature (inode, size, mtime) of what was read; undefined when it does not exist. */
  private async readOnce(): Promise<{ text: string; sig: string } | undefined> {
    let fh;
    try {
      // O_NOFOLLOW: the symlink check cannot race with a swap to a link.
      fh = await fsp.open(this.file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      if ((e as NodeJS.ErrnoException).code === 'ELOOP')
        throw new RegistryError('registry_unsafe', `registry ${this.file} is a symbolic link; refusing to follow it`);
      throw new RegistryError('registry_unreadable', `cannot read registry ${this.file}: ${(e as Error).message}`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new RegistryError('registry_unsafe', `registry ${this.file} is not a regular file`);
      if (st.size > MAX_REGISTRY_BYTES)
        throw new RegistryError('registry_too_large', `registry ${this.file} is ${st.size} bytes, more than the ${MAX_REGISTRY_BYTES} a registry may have`, {
          hint: 'Inspect the file; point TAO_INF_STATE_FILE at another path to start a new registry.',
        });
      if (st.mode & 0o022 && !warnedWritable.has(this.file)) {
        warnedWritable.add(this.file);
        this.warn(`registry ${this.file} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); tao-infer rewrites it with mode 600 at the next change`);
      }
      const buf = Buffer.alloc(st.size);
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
        if (!bytesRead) break;
        off += bytesRead;
      }
      return { text: buf.subarray(0, off).toString('utf8'), sig: `${st.ino}:${st.size}:${st.mtimeMs}:${off}` };
    } finally {
      await fh.close();
    }
  }

  /**
   * Read and parse. A file that does not parse is read again a few times (about 0.6 s): another program may
   * be rewriting it in place (not atomically). Only a failure that stays the same (same inode, size, mtime and
   * text) counts as corrupt; it is moved aside only by a locked read-modify-write (`quarantine`), so a
   * concurrent writer's file is never moved and a read-only command never moves anything.
   */
  private async load(quarantine: boolean): Promise<RegistryState> {
    let prev: { text: string; sig: string } | undefined;
    let reason = '';
    for (let attempt = 0; ; attempt++) {
      const cur = await this.readOnce();
      if (!cur || cur.text.trim() === '') return emptyState();
      let obj: unknown;
      try {
        obj = JSON.parse(cur.text);
        reason = !obj || typeof obj !== 'object' || Array.isArray(obj) ? 'top level is not a JSON object' : '';
      } catch (e) {
        reason = (e as Error).message;
      }
      if (!reason) return parseState(obj as Record<string, unknown>);
      const stable = prev !== undefined && prev.sig === cur.sig && prev.text === cur.text;
      if (stable && attempt >= 2) break;
      if (attempt >= 6)
        throw new RegistryError('registry_unstable', `registry ${this.file} kept changing and never parsed for ${PARSE_RETRY_MS.reduce((a, b) => a + b, 0)} ms (${reason}); another program seems to be rewriting it in place`, {
          hint: 'Retry when that program is done; nothing was moved or changed.',
        });
      prev = cur;
      await new Promise((r) => setTimeout(r, PARSE_RETRY_MS[Math.min(attempt, PARSE_RETRY_MS.length - 1)]));
    }
    if (!quarantine)
      throw new RegistryError('registry_corrupt', `registry ${this.file} could not be parsed (${reason}); it was left in place`, {
        hint: 'Repair it, or run a command that changes the registry (start, stop) to move it aside (it is never deleted).',
      });
    const to = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`;
    await fsp.rename(this.file, to);
    throw new RegistryCorruptError(this.file, to, reason);
  }

  /**
   * Atomic write: unique temp file, fsync, then rename over the registry. `stillOwned` is checked right
   * before the rename; when it says the lock was lost the temp file is removed and LockLostError thrown.
   */
  private async write(state: RegistryState, stillOwned: () => Promise<boolean>): Promise<void> {
    const dir = dirname(this.file);
    const tmp = join(dir, `.${basename(this.file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    try {
      await fh.writeFile(JSON.stringify(serializeState(state), null, 2) + '\n', 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (!(await stillOwned())) {
      await fsp.rm(tmp, { force: true });
      throw new LockLostError();
    }
    try {
      await fsp.rename(tmp, this.file);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw new RegistryError('registry_write_failed', `cannot write registry ${this.file}: ${(e as Error).message}`);
    }
  }

  /**
   * Run `fn` holding the lock. `fn` gets `stillOwned()`: true while the lock is provably ours — proper-lockfile has
   * not reported it compromised, the lock directory still carries the mtime our process last set on it
   * (proper-lockfile's own ownership test, `isMtimeOurs` in lib/lockfile.js), and that mtime is younger than
   * the stale time minus a margin, so no other process can have judged it stale and taken it over. A holder
   * that was frozen (SIGSTOP, Ctrl-Z, a suspended VM) past the stale time fails this test when it resumes.
   */
  private async withLock<T>(fn: (stillOwned: () => Promise<boolean>) => Promise<T>): Promise<T> {
    const t0 = Date.now();
    let release: (() => Promise<void>) | undefined;
    let waited = false;
    let compromised = false;
    let ourMtime: number | undefined;
    const lockDir = `${this.file}.lock`;
    // proper-lockfile sets the lock's mtime with fs.utimes (on acquisition and every `update` ms);
    // recording the value it set lets us recognise our own lock directory later.
    const lockFs = {
      ...fsCallbacks,
      utimes: (p: string, atime: Date, mtime: Date, cb: (err: NodeJS.ErrnoException | null) => void) =>
        fsCallbacks.utimes(p, atime, mtime, (err) => {
          if (!err && p === lockDir) ourMtime = mtime.getTime();
          cb(err);
        }),
    };
    await fsp.mkdir(dirname(this.file), { recursive: true });
    while (!release) {
      try {
        release = await lockfile.lock(this.file, {
          realpath: false,
          lockfilePath: lockDir,
          stale: this.staleMs,
          update: Math.max(1000, Math.floor(this.staleMs / 2)),
          retries: 0,
          fs: lockFs,
          onCompromised: () => {
            // Taken over as stale (we were frozen or starved past staleMs): the next write is aborted.
            compromised = true;
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
    const margin = Math.min(1000, this.staleMs / 4);
    /** Ours: not reported compromised and still carrying our mtime; `fresh`: also too young for anyone to take over. */
    const ours = async (fresh: boolean): Promise<boolean> => {
      if (compromised || ourMtime === undefined) return false;
      let st;
      try {
        st = await fsp.stat(lockDir);
      } catch {
        return false;
      }
      return st.mtime.getTime() === ourMtime && (!fresh || Date.now() - ourMtime < this.staleMs - margin);
    };
    try {
      return await fn(() => ours(true));
    } finally {
      // proper-lockfile's release removes the lock directory without asking whose it is: once another process
      // took the lock over, that directory is theirs and must stay (their timer marks ours compromised).
      if (await ours(false)) await release().catch(() => undefined);
    }
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
    await this.checkSafe();
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.withLock(async (stillOwned) => {
          await this.checkSafe();
          const state = await this.load(true);
          const before = JSON.stringify(serializeState(state));
          const result = await fn(state);
          if (JSON.stringify(serializeState(state)) !== before) await this.write(state, stillOwned);
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
