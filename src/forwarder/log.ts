/**
 * Where a forwarder's output goes: `<tmpdir>/tao-infer-<uid>/forwarders/<platform>-<job_id>.log`.
 * The per-user directory (mode 0700) keeps other users of a shared host from reading the log or planting a
 * symlink in its place. The path also names the forwarder on its command line (see `isOurs`).
 */
import { closeSync, lstatSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PlatformUnavailableError } from '../errors.js';
import { tailLines } from '../util/run.js';

function baseDir(): string {
  return join(tmpdir(), `tao-infer-${process.getuid?.() ?? 'user'}`);
}

/** The log path of the forwarder of `jobId` on `platform`, without creating anything. */
export function forwarderLogPath(platform: string, jobId: string): string {
  return join(baseDir(), 'forwarders', `${platform}-${jobId}.log`);
}

/**
 * The log path of a new forwarder; creates the per-user directory (0700) on first use.
 * @throws PlatformUnavailableError (exit 3) when that directory is a symlink or belongs to another user.
 */
export function forwarderLogFile(platform: string, jobId: string): string {
  const uid = process.getuid?.();
  const base = baseDir();
  mkdirSync(join(base, 'forwarders'), { recursive: true, mode: 0o700 });
  const st = lstatSync(base);
  if (st.isSymbolicLink() || !st.isDirectory() || (uid !== undefined && st.uid !== uid))
    throw new PlatformUnavailableError(platform, `${base} (where forwarder logs go) is not a directory of this user`, {
      hint: `Remove ${base} (it may have been planted by another user), or set TMPDIR to a directory of your own.`,
    });
  return forwarderLogPath(platform, jobId);
}

/** True when `arg` is the log path of the forwarder of `jobId` (any platform). */
export function isForwarderLogOf(arg: string, jobId: string): boolean {
  return arg.startsWith(join(baseDir(), 'forwarders') + '/') && arg.endsWith(`-${jobId}.log`);
}

/** Size of a log file now (0 when absent), so a later read shows only what a new process wrote. */
export function logOffset(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** The last `n` lines written to `file` after byte `offset`; [] when it cannot be read. Reads at most 64 KiB. */
export function logTailSince(file: string, offset: number, n: number): string[] {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const size = statSync(file).size;
    const from = Math.max(offset, size - 65_536);
    const buf = Buffer.alloc(Math.max(0, size - from));
    const got = readSync(fd, buf, 0, buf.length, from);
    return tailLines(buf.subarray(0, got).toString('utf8'), n);
  } catch {
    return [];
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
