/**
 * Writing a generated video (cosmos-predict2.5 answers `data:video/mp4;base64,...`, contract §7) to disk as it
 * arrives (issue 8.4): the target is checked before the request is sent; bytes go to a temporary file beside
 * the target that is renamed over it at the end; a symlink target is refused unless `--force`; and a video
 * that was received is never lost: when writing or renaming fails, it is saved under the default name (in the
 * current directory, else the temp directory) and the result says where and why.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { InvalidInputError } from '../errors.js';

/**
 * Check that `output` can take the video before anything is sent: its directory exists and is writable; it is
 * not a directory, device or other special file; a symlink is refused unless `force`.
 * @returns the absolute path
 * @throws InvalidInputError (exit 2) naming --output
 */
export async function checkOutputPath(output: string, force = false): Promise<string> {
  const path = resolve(output);
  const st = await fsp.lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw new InvalidInputError('--output', `cannot use ${path}: ${e.message}`);
  });
  if (st?.isSymbolicLink() && !force)
    throw new InvalidInputError('--output', `${path} is a symbolic link; refusing to write through it`, { hint: 'Pass another path, or --force to replace the link with the video.' });
  if (st?.isDirectory()) throw new InvalidInputError('--output', `${path} is a directory`, { hint: `Pass a file name, e.g. ${join(path, 'video.mp4')}.` });
  if (st && !st.isFile() && !st.isSymbolicLink())
    throw new InvalidInputError('--output', `${path} is not a regular file (a device, pipe or socket); the video is written to a temporary file and renamed, which needs a regular path`);
  const dir = dirname(path);
  const dst = await fsp.stat(dir).catch(() => undefined);
  if (!dst?.isDirectory()) throw new InvalidInputError('--output', `the directory ${dir} does not exist`, { hint: `Create it first (mkdir -p ${dir}) or pass another path.` });
  try {
    await fsp.access(dir, fsc.W_OK);
  } catch {
    throw new InvalidInputError('--output', `the directory ${dir} is not writable`, { hint: 'Pass a path in a directory you can write to.' });
  }
  return path;
}

/** Where a video ended up. `fallback_reason` is set when it is not at the requested path. */
export interface SavedVideo {
  path: string;
  bytes: number;
  mime: string;
  fallback_reason?: string;
}

/**
 * Receives the decoded bytes of one video. `write` never throws for a failing target: it moves to the
 * fallback (default name in the current directory, else the temp directory) with the bytes so far.
 */
export class VideoWriter {
  private fh: fsp.FileHandle | undefined;
  private tmp = '';
  private bytes = 0;
  private fallbackReason: string | undefined;
  private final: string;

  /**
   * @param target absolute path the video should end at (checked with checkOutputPath)
   * @param defaultName file name used for the fallback (`<job_id>-<time>.mp4`)
   * @param mime the data URI's mime type
   */
  constructor(
    target: string,
    private readonly defaultName: string,
    readonly mime: string,
  ) {
    this.final = target;
  }

  private async openTmp(dir: string, name: string): Promise<void> {
    this.tmp = join(dir, `.${name}.${randomBytes(4).toString('hex')}.part`);
    this.fh = await fsp.open(this.tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
  }

  /** Move what was written to a fallback place (copy of the temp file), and keep writing there. */
  private async fallback(reason: string): Promise<void> {
    const old = { fh: this.fh, tmp: this.tmp };
    await old.fh?.close().catch(() => undefined);
    this.fh = undefined;
    this.fallbackReason ??= reason;
    for (const dir of [process.cwd(), tmpdir()]) {
      const target = join(dir, this.defaultName);
      if (target === this.final) continue;
      try {
        await this.openTmp(dir, this.defaultName);
        if (old.tmp && this.bytes) {
          const prev = await fsp.open(old.tmp, 'r');
          try {
            const buf = Buffer.alloc(1024 * 1024);
            for (let pos = 0; pos < this.bytes; ) {
              const { bytesRead } = await prev.read(buf, 0, Math.min(buf.length, this.bytes - pos), pos);
              if (!bytesRead) throw new Error(`lost bytes after ${pos}`);
              await this.fh!.write(buf.subarray(0, bytesRead));
              pos += bytesRead;
            }
          } finally {
            await prev.close();
          }
        }
        if (old.tmp) await fsp.rm(old.tmp, { force: true });
        this.final = target;
        return;
      } catch {
        await (this.fh as fsp.FileHandle | undefined)?.close().catch(() => undefined);
        this.fh = undefined;
        if (this.tmp) await fsp.rm(this.tmp, { force: true });
      }
    }
    throw new InvalidInputError('--output', `the video could not be written anywhere: not beside the target, not in ${process.cwd()}, not in ${tmpdir()} (${reason})`, {
      hint: 'Free disk space or pass --output in a writable directory, and send the request again.',
    });
  }

  /** Open the temporary file beside the target on first use (or the fallback when that fails). */
  private async ensureOpen(): Promise<void> {
    if (this.fh) return;
    try {
      await this.openTmp(dirname(this.final), basename(this.final));
    } catch (e) {
      await this.fallback(`cannot create a file beside ${this.final}: ${(e as Error).message}`);
    }
  }

  /** Append decoded bytes. */
  async write(chunk: Buffer): Promise<void> {
    if (!chunk.length) return;
    await this.ensureOpen();
    try {
      await this.fh!.write(chunk);
    } catch (e) {
      await this.fallback(`writing ${this.final} failed: ${(e as Error).message}`);
      await this.fh!.write(chunk);
    }
    this.bytes += chunk.length;
  }

  /** Sync, close and rename into place (or into the fallback place). */
  async finish(): Promise<SavedVideo> {
    await this.ensureOpen();
    try {
      await this.fh!.sync();
      await this.fh!.close();
      this.fh = undefined;
      await fsp.rename(this.tmp, this.final);
    } catch (e) {
      await this.fallback(`saving ${this.final} failed: ${(e as Error).message}`);
      await this.fh!.sync();
      await this.fh!.close();
      this.fh = undefined;
      await fsp.rename(this.tmp, this.final);
    }
    return { path: this.final, bytes: this.bytes, mime: this.mime, ...(this.fallbackReason ? { fallback_reason: this.fallbackReason } : {}) };
  }

  /** Remove the temporary file (the reply was not a complete video). */
  async abort(): Promise<void> {
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
    if (this.tmp) await fsp.rm(this.tmp, { force: true });
  }
}
