/**
 * The registry lock: proper-lockfile's `<file>.lock` directory with stale-lock recovery, waits woken by an
 * inotify watch, and a test that the lock is still provably ours right before a write.
 */
import { existsSync, mkdirSync, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import * as fsCallbacks from 'node:fs';
import { RegistryError } from '../errors.js';

export interface LockStats {
  acquisitions: number;
  /** Acquisitions that had to wait for another holder. */
  contended: number;
  totalWaitMs: number;
}

type Lockfile = typeof import('proper-lockfile');
let lockfileModule: Promise<Lockfile> | undefined;

/**
 * proper-lockfile, imported once on first use: read-only commands (ls, request) never load it, nor graceful-fs
 * with it. Calling it early (Registry.prepareWrite) lets the import overlap a wait, e.g. start's preflight.
 */
export function loadLockfile(): Promise<Lockfile> {
  // A CommonJS module: its exports are the namespace's `default` (esbuild's bundle has no named exports for it).
  return (lockfileModule ??= import('proper-lockfile').then((m) => (m as { default?: Lockfile }).default ?? m));
}

/** Internal: the lock was lost before the rename; the mutation is retried from a fresh read. */
export class LockLostError extends Error {}

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
 * Run `fn` holding the lock on `file` (`<file>.lock`, proper-lockfile, stale after `opts.staleMs`, given up after
 * `opts.lockTimeoutMs` with RegistryError `registry_lock_timeout`); `stats` counts acquisitions and waits.
 * `fn` gets `stillOwned()`: true while the lock is provably ours — proper-lockfile has
 * not reported it compromised, the lock directory still carries the mtime our process last set on it
 * (proper-lockfile's own ownership test, `isMtimeOurs` in lib/lockfile.js), and that mtime is younger than
 * the stale time minus a margin, so no other process can have judged it stale and taken it over. A holder
 * that was frozen (SIGSTOP, Ctrl-Z, a suspended VM) past the stale time fails this test when it resumes.
 */
export async function withLock<T>(
  file: string,
  opts: { staleMs: number; lockTimeoutMs: number },
  stats: LockStats,
  fn: (stillOwned: () => Promise<boolean>) => Promise<T>,
): Promise<T> {
  const t0 = Date.now();
  let release: (() => Promise<void>) | undefined;
  let waited = false;
  let compromised = false;
  let ourMtime: number | undefined;
  const lockDir = `${file}.lock`;
  // The calls lockSync makes (its sync adapter calls `<name>Sync` of the fs it is given: mkdir, realpath, stat,
  // rmdir, utimes; rmdirSync on exit). Named one by one: spreading node:fs would also read its lazy `promises`,
  // loading fs/promises for nothing. proper-lockfile sets the lock's mtime with utimes (on acquisition and every
  // `update` ms); recording the value it set lets us recognise our own lock directory later.
  const lockFs = {
    mkdirSync: fsCallbacks.mkdirSync,
    realpathSync: fsCallbacks.realpathSync,
    statSync: fsCallbacks.statSync,
    rmdirSync: fsCallbacks.rmdirSync,
    utimesSync: (p: string, atime: Date, mtime: Date) => {
      fsCallbacks.utimesSync(p, atime, mtime);
      if (p === lockDir) ourMtime = mtime.getTime();
    },
  };
  const lockfile = await loadLockfile();
  mkdirSync(dirname(file), { recursive: true });
  while (!release) {
    try {
      // The sync API (no retries; waits are ours, below): a registry is a small local file, and each of the
      // lock's few calls costs a thread-pool round trip when made asynchronously.
      const releaseSync = lockfile.lockSync(file, {
        realpath: false,
        lockfilePath: lockDir,
        stale: opts.staleMs,
        update: Math.max(1000, Math.floor(opts.staleMs / 2)),
        retries: 0,
        fs: lockFs,
        onCompromised: () => {
          // Taken over as stale (we were frozen or starved past staleMs): the next write is aborted.
          compromised = true;
        },
      });
      release = async () => releaseSync();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw new RegistryError('registry_lock_failed', `cannot lock registry ${file}: ${(e as Error).message}`);
      waited = true;
      if (Date.now() - t0 > opts.lockTimeoutMs)
        throw new RegistryError('registry_lock_timeout', `registry ${file} stayed locked for ${Math.round(opts.lockTimeoutMs / 1000)}s`, {
          hint: `Another tao-infer is writing it. If none runs, remove ${file}.lock.`,
        });
      await lockReleased(`${file}.lock`, 25 + Math.random() * 50);
    }
  }
  stats.acquisitions++;
  if (waited) stats.contended++;
  stats.totalWaitMs += Date.now() - t0;
  const margin = Math.min(1000, opts.staleMs / 4);
  /** Ours: not reported compromised and still carrying our mtime; `fresh`: also too young for anyone to take over. */
  const ours = async (fresh: boolean): Promise<boolean> => {
    if (compromised || ourMtime === undefined) return false;
    let st;
    try {
      st = statSync(lockDir);
    } catch {
      return false;
    }
    return st.mtime.getTime() === ourMtime && (!fresh || Date.now() - ourMtime < opts.staleMs - margin);
  };
  try {
    return await fn(() => ours(true));
  } finally {
    // proper-lockfile's release removes the lock directory without asking whose it is: once another process
    // took the lock over, that directory is theirs and must stay (their timer marks ours compromised).
    if (await ours(false)) await release().catch(() => undefined);
  }
}
