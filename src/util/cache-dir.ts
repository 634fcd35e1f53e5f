/**
 * The per-user cache of tao-infer (the validated references, src/references/cache.ts; the bin's V8 code cache,
 * src/cli/code-cache.ts): where it lives, and how its files are read and written. A cache is an optimisation: a
 * file that is missing, not ours or unusable is ignored, and one that cannot be written is skipped, silently.
 * Cheap to load: node:fs, node:os and node:path only.
 */
import { accessSync, closeSync, fstatSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeFileSync, constants as fsc } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';

/**
 * `$XDG_CACHE_HOME/tao-infer` when XDG_CACHE_HOME is absolute, else `~/.cache/tao-infer` (HOME, then the
 * passwd entry), or undefined when no absolute home directory is known. Nothing is created here.
 */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'tao-infer');
  let home = env.HOME;
  if (!home) {
    try {
      home = homedir();
    } catch {
      return undefined;
    }
  }
  return home && isAbsolute(home) ? join(home, '.cache', 'tao-infer') : undefined;
}

/**
 * The bytes of cache file `file`, or undefined when it does not exist or must not be used: not a regular file
 * (a symlink is not followed), empty, larger than `maxBytes`, owned by another user, or writable by group or
 * others. Never throws.
 */
export function readCacheFile(file: string, maxBytes: number): Buffer | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    const st = fstatSync(fd);
    const uid = process.getuid?.();
    if (!st.isFile() || st.size === 0 || st.size > maxBytes || (st.mode & 0o022) !== 0 || (uid !== undefined && st.uid !== uid)) return undefined;
    const buf = Buffer.allocUnsafe(st.size);
    for (let off = 0; off < buf.length; ) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) return undefined; // shrank while read: not the file that was checked
      off += n;
    }
    return buf;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Create cache directory `dir` (mode 0700) when missing; true when this process may write in it. Never throws. */
export function writableCacheDir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, fsc.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Write cache file `file` atomically (a temp file of this process beside it, mode 0600, then rename), creating
 * its directory with mode 0700. Returns whether it was written; never throws.
 */
export function writeCacheFile(file: string, data: string | Buffer): boolean {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
    renameSync(tmp, file);
    return true;
  } catch {
    try {
      rmSync(tmp, { force: true });
    } catch {
      /* nothing more to do */
    }
    return false;
  }
}
