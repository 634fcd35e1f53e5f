/**
 * The registry file on disk: refuse a symlink or a foreign-owned file, read it bounded and validate it
 * (a file that does not parse is re-read, then reported or moved aside, never replaced), and write it
 * atomically (unique temp file, fsync, rename, mode 0600) only while the lock is still ours.
 * File calls are synchronous: the registry is a small file, and an asynchronous call costs a thread-pool round
 * trip each (a start makes some thirty); the functions stay async for their callers.
 */
import { closeSync, fstatSync, fsyncSync, lstatSync, openSync, readSync, renameSync, rmSync, writeSync, constants as fsc } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { RegistryCorruptError, RegistryError } from '../errors.js';
import { LockLostError } from './lock.js';
import { emptyState, parseState, serializeState, type RegistryState } from './state.js';

/** Largest registry file read (the registry holds a few entries; more is not a registry). */
const MAX_REGISTRY_BYTES = 64 * 1024 * 1024;
/** Pauses between reads of a registry that did not parse (ms). */
const PARSE_RETRY_MS = [10, 20, 40, 80, 160, 320];
/** Random hex for temp and quarantine names; node:crypto is loaded only by writers (read-only commands skip it). */
async function randomHex(bytes: number): Promise<string> {
  return (await import('node:crypto')).randomBytes(bytes).toString('hex');
}
/** Registry files already warned about (group/other writable): warned once per process. */
const warnedWritable = new Set<string>();

/** Refuse a symlink or a file owned by someone else. Returns false when the file does not exist. */
export async function checkSafe(file: string): Promise<boolean> {
  let st;
  try {
    st = lstatSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new RegistryError('registry_unreadable', `cannot stat registry ${file}: ${(e as Error).message}`);
  }
  if (st.isSymbolicLink())
    throw new RegistryError('registry_unsafe', `registry ${file} is a symbolic link; refusing to follow it`, {
      hint: 'Remove the link, or point TAO_INF_STATE_FILE at a regular file you own.',
    });
  if (!st.isFile())
    throw new RegistryError('registry_unsafe', `registry ${file} is not a regular file`, { hint: 'Point TAO_INF_STATE_FILE at a regular file.' });
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid)
    throw new RegistryError('registry_unsafe', `registry ${file} is owned by uid ${st.uid}, not by you (uid ${uid}); refusing to use it`, {
      hint: 'Set TAO_INF_STATE_FILE to a path of your own, e.g. ~/.tao-inf-ms-state.json.',
    });
  return true;
}

/** The file's text and a signature (inode, size, mtime) of what was read; undefined when it does not exist. */
function readOnce(file: string, warn: (msg: string) => void): { text: string; sig: string } | undefined {
  let fd;
  try {
    // O_NOFOLLOW: the symlink check cannot race with a swap to a link.
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if ((e as NodeJS.ErrnoException).code === 'ELOOP')
      throw new RegistryError('registry_unsafe', `registry ${file} is a symbolic link; refusing to follow it`);
    throw new RegistryError('registry_unreadable', `cannot read registry ${file}: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new RegistryError('registry_unsafe', `registry ${file} is not a regular file`);
    if (st.size > MAX_REGISTRY_BYTES)
      throw new RegistryError('registry_too_large', `registry ${file} is ${st.size} bytes, more than the ${MAX_REGISTRY_BYTES} a registry may have`, {
        hint: 'Inspect the file; point TAO_INF_STATE_FILE at another path to start a new registry.',
      });
    if (st.mode & 0o022 && !warnedWritable.has(file)) {
      warnedWritable.add(file);
      warn(`registry ${file} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); tao-infer rewrites it with mode 600 at the next change`);
    }
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const bytesRead = readSync(fd, buf, off, buf.length - off, off);
      if (!bytesRead) break;
      off += bytesRead;
    }
    return { text: buf.subarray(0, off).toString('utf8'), sig: `${st.ino}:${st.size}:${st.mtimeMs}:${off}` };
  } finally {
    closeSync(fd);
  }
}

/**
 * Read and parse. A file that does not parse is read again a few times (about 0.6 s): another program may
 * be rewriting it in place (not atomically). Only a failure that stays the same (same inode, size, mtime and
 * text) counts as corrupt; it is moved aside only by a locked read-modify-write (`quarantine`), so a
 * concurrent writer's file is never moved and a read-only command never moves anything.
 */
export async function loadState(file: string, quarantine: boolean, warn: (msg: string) => void): Promise<RegistryState> {
  let prev: { text: string; sig: string } | undefined;
  let reason = '';
  for (let attempt = 0; ; attempt++) {
    const cur = readOnce(file, warn);
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
      throw new RegistryError('registry_unstable', `registry ${file} kept changing and never parsed for ${PARSE_RETRY_MS.reduce((a, b) => a + b, 0)} ms (${reason}); another program seems to be rewriting it in place`, {
        hint: 'Retry when that program is done; nothing was moved or changed.',
      });
    prev = cur;
    await new Promise((r) => setTimeout(r, PARSE_RETRY_MS[Math.min(attempt, PARSE_RETRY_MS.length - 1)]));
  }
  if (!quarantine)
    throw new RegistryError('registry_corrupt', `registry ${file} could not be parsed (${reason}); it was left in place`, {
      hint: 'Repair it, or run a command that changes the registry (start, stop) to move it aside (it is never deleted).',
    });
  const to = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}-${await randomHex(3)}`;
  renameSync(file, to);
  throw new RegistryCorruptError(file, to, reason);
}

/**
 * Atomic write: unique temp file, fsync, then rename over the registry. `stillOwned` is checked right
 * before the rename; when it says the lock was lost the temp file is removed and LockLostError thrown.
 */
export async function writeState(file: string, state: RegistryState, stillOwned: () => Promise<boolean>): Promise<void> {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${await randomHex(6)}.tmp`);
  const data = Buffer.from(JSON.stringify(serializeState(state), null, 2) + '\n', 'utf8');
  const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  try {
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new RegistryError('registry_write_failed', `cannot write registry ${file}: ${(e as Error).message}`);
  } finally {
    closeSync(fd);
  }
  if (!(await stillOwned())) {
    rmSync(tmp, { force: true });
    throw new LockLostError();
  }
  try {
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new RegistryError('registry_write_failed', `cannot write registry ${file}: ${(e as Error).message}`);
  }
}
