/**
 * Reading files named on the command line (issue 8.3): only a regular file below a stated size is read,
 * opened with O_NONBLOCK (a FIFO never blocks the open) and checked on the open descriptor (no swap between
 * check and read), read asynchronously so SIGINT/SIGTERM are still handled. Violations are
 * InvalidInputError (exit 2) naming the flag, before anything is sent.
 */
import { closeSync, constants as fsc, fstatSync, openSync, readSync, promises as fsp } from 'node:fs';
import { InvalidInputError } from '../errors.js';
import { formatBytes } from './http.js';

/** Size limits for files given on the command line, in bytes (documented in README). */
export const FILE_LIMITS = {
  /** `--body file.json`. */
  body: 256 * 1024 * 1024,
  /** Each `--image` / `--video` file (sent base64-encoded, streamed). */
  media: 1024 * 1024 * 1024,
  /** Credentials and config: identity files, known_hosts, kubeconfig, manifests. */
  config: 4 * 1024 * 1024,
} as const;

function describe(st: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** The error for a file that cannot be opened; its `cause` is the system error (with `code`, e.g. ENOENT). */
function openError(e: unknown, path: string, flag: string): InvalidInputError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new InvalidInputError(flag, `file not found: ${path}`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM') return new InvalidInputError(flag, `cannot read ${path}: permission denied`, { cause: e });
  if (code === 'EISDIR') return new InvalidInputError(flag, `${path} is a directory, not a file`, { cause: e });
  return new InvalidInputError(flag, `cannot read ${path}: ${(e as Error).message}`, { cause: e });
}

function checkStat(st: { size: number; isFile(): boolean } & Parameters<typeof describe>[0], path: string, flag: string, maxBytes: number): number {
  if (!st.isFile()) throw new InvalidInputError(flag, `${path} is ${describe(st)}; ${flag} takes a regular file`, { hint: 'Pass the path of a regular file.' });
  if (st.size > maxBytes)
    throw new InvalidInputError(flag, `${path} is ${formatBytes(st.size)}, more than the ${formatBytes(maxBytes)} ${flag} accepts`, {
      hint: 'Pass a smaller file, or serve it over http(s) and pass the URL.',
    });
  return st.size;
}

/** An open, checked regular file: its handle and size. The caller closes it. */
export async function openRegularFile(path: string, flag: string, maxBytes: number): Promise<{ fh: fsp.FileHandle; size: number }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (e) {
    throw openError(e, path, flag);
  }
  try {
    return { fh, size: checkStat(await fh.stat(), path, flag, maxBytes) };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Open `path` (O_NONBLOCK), check it on the descriptor, run `use(fd, size)`, close. */
function withCheckedFdSync<T>(path: string, flag: string, maxBytes: number, use: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (e) {
    throw openError(e, path, flag);
  }
  try {
    return use(fd, checkStat(fstatSync(fd), path, flag, maxBytes));
  } finally {
    closeSync(fd);
  }
}

/** Synchronous variant of checkRegularFile, for validation in prompts. */
export function checkRegularFileSync(path: string, flag: string, maxBytes: number): number {
  return withCheckedFdSync(path, flag, maxBytes, (_fd, size) => size);
}

/**
 * Read a whole regular file of at most `maxBytes`, asynchronously.
 * @throws InvalidInputError (missing, unreadable, not a regular file, too large, grew while read)
 */
export async function readRegularFile(path: string, flag: string, maxBytes: number): Promise<Buffer> {
  const { fh, size } = await openRegularFile(path, flag, maxBytes);
  try {
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, size - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    if (off !== size) throw new InvalidInputError(flag, `${path} changed size while it was read`);
    return buf;
  } finally {
    await fh.close();
  }
}

/**
 * Read a small regular file synchronously (credentials and config files of a few KiB, read while building
 * a connection): same checks as readRegularFile, bounded by `maxBytes` (default 4 MiB).
 * @throws InvalidInputError
 */
export function readRegularFileSync(path: string, flag: string, maxBytes: number = FILE_LIMITS.config): Buffer {
  return withCheckedFdSync(path, flag, maxBytes, (fd, size) => {
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  });
}

/** Length of the base64 text of `size` bytes. */
export function base64Length(size: number): number {
  return Math.ceil(size / 3) * 4;
}

/**
 * The base64 text of a regular file, produced chunk by chunk (about 256 KiB at a time) so memory stays
 * small whatever the file size.
 * @throws InvalidInputError when the file is no longer a regular file of `expectedSize` bytes
 */
export async function* base64FileChunks(path: string, flag: string, expectedSize: number): AsyncGenerator<Buffer> {
  const { fh, size } = await openRegularFile(path, flag, Number.MAX_SAFE_INTEGER);
  try {
    if (size !== expectedSize) throw new InvalidInputError(flag, `${path} changed size since it was checked (${expectedSize} → ${size} bytes)`);
    const buf = Buffer.alloc(3 * 64 * 1024);
    let pos = 0;
    let carry = Buffer.alloc(0);
    while (pos < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) throw new InvalidInputError(flag, `${path} shrank while it was read`);
      pos += bytesRead;
      const data = carry.length ? Buffer.concat([carry, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
      const whole = data.length - (data.length % 3);
      if (whole) yield Buffer.from(data.subarray(0, whole).toString('base64'), 'latin1');
      carry = Buffer.from(data.subarray(whole));
    }
    if (carry.length) yield Buffer.from(carry.toString('base64'), 'latin1');
  } finally {
    await fh.close();
  }
}
