/**
 * Reading a request body for the gateway (issue 12, point 5): bounded (413 above `maxBytes`), counted
 * against the global byte budget (503 + Retry-After when it is exhausted), kept in memory up to
 * `spoolAbove` bytes and spooled to a temp file (mode 0600) above that, so a 50 MB base64 video is never
 * held in memory. Bodies up to `parseLimit` (~1 MiB) are `JSON.parse`d; larger ones only through their
 * skeleton (see skeleton.ts). The parsed document (or skeleton) yields the top-level `model` and `stream`
 * and is what the per-arch checks read.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline, Transform, type Readable } from 'node:stream';
import type { ByteBudget } from './budget.js';
import { badRequest, GatewayHttpError } from './http-error.js';
import { JsonSkeleton } from './skeleton.js';

export interface BodyLimits {
  /** 413 above this many bytes. */
  maxBytes: number;
  /** Bodies larger than this are written to a temp file in `spoolDir` instead of being held in memory. */
  spoolAbove: number;
  /** Bodies up to this size are parsed with JSON.parse; larger ones only through their skeleton. */
  parseLimit: number;
  spoolDir: string;
  budget: ByteBudget;
}

/** A request body read by the gateway: its size, its (skeleton) document, and a way to send it (again). */
export interface ReadBody {
  /** Bytes (declared ones for a pass-through body). */
  size: number;
  /** False for a pass-through body: it can be sent once only. */
  replayable: boolean;
  /** Why a pass-through body was cut off (its checks failed); the answer to give the client. */
  failure?: GatewayHttpError;
  /** The parsed body, or the parsed skeleton (long strings cut) of a large one. */
  doc: Record<string, unknown>;
  /** True when `doc` is a skeleton. */
  skeleton: boolean;
  /** The top-level `model` when it is a string. */
  model?: string;
  stream: boolean;
  /** A fresh upstream body for one attempt (a Buffer, or a new stream of the spooled file). */
  open(): Buffer | Readable;
  /** Give back the budget and remove the spool file. Idempotent. */
  dispose(): Promise<void>;
}

const retryLater = (message: string) => new GatewayHttpError(503, 'server_error', 'over_capacity', message, { 'retry-after': '5' });
const tooLarge = (max: number) =>
  new GatewayHttpError(413, 'invalid_request_error', 'request_too_large', `request body is larger than the gateway's limit of ${max} bytes (--max-body-mb)`);

/**
 * Read the whole body of `req` within `limits`.
 * @throws GatewayHttpError 413 (too large), 503 (byte budget exhausted), 400 (not a JSON object)
 */
export async function readBody(req: IncomingMessage, limits: BodyLimits): Promise<ReadBody> {
  const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
  if (declared !== undefined && declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
  let taken = 0;
  const take = (n: number) => {
    if (!limits.budget.tryTake(n)) throw retryLater(`the gateway holds ${limits.budget.inUse} bytes of request bodies (limit ${limits.budget.limit}); retry shortly`);
    taken += n;
  };
  if (declared !== undefined && Number.isFinite(declared)) take(declared);
  let spool: { path: string; fh: fsp.FileHandle } | undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  let skeleton: JsonSkeleton | undefined;
  const dispose = async () => {
    limits.budget.release(taken);
    taken = 0;
    if (spool) {
      await spool.fh.close().catch(() => undefined);
      await fsp.rm(spool.path, { force: true });
    }
  };
  try {
    for await (const c of req) {
      const chunk = c as Buffer;
      size += chunk.length;
      if (size > limits.maxBytes) throw tooLarge(limits.maxBytes);
      if (size > taken) take(size - taken);
      if (!skeleton && size > limits.parseLimit) {
        skeleton = new JsonSkeleton();
        for (const b of chunks) skeleton.push(b);
      }
      skeleton?.push(chunk);
      if (spool) await spool.fh.writeFile(chunk);
      else {
        chunks.push(chunk);
        if (size > limits.spoolAbove) {
          const path = join(limits.spoolDir, `body-${randomBytes(8).toString('hex')}.json`);
          spool = { path, fh: await fsp.open(path, 'wx', 0o600) };
          for (const b of chunks.splice(0)) await spool.fh.writeFile(b);
        }
      }
    }
    if (spool) await spool.fh.close();
  } catch (e) {
    await dispose();
    if (e instanceof GatewayHttpError) throw e;
    throw new GatewayHttpError(400, 'invalid_request_error', 'body_read_failed', 'the request body could not be read to its end');
  }
  // Declared more than sent: give back the difference.
  if (taken > size) {
    limits.budget.release(taken - size);
    taken = size;
  }
  let doc: unknown;
  try {
    if (skeleton) {
      if (skeleton.overflow) {
        await dispose();
        throw new GatewayHttpError(413, 'invalid_request_error', 'request_too_complex', 'the structure of this body (outside its strings) exceeds 1 MiB; send media as data URIs or URLs in few items');
      }
      doc = JSON.parse(skeleton.text());
    } else doc = size ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
  } catch (e) {
    if (e instanceof GatewayHttpError) throw e;
    await dispose();
    throw badRequest('the request body is not valid JSON');
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    await dispose();
    throw badRequest(size ? 'the request body must be a JSON object' : 'missing or empty request body');
  }
  const obj = doc as Record<string, unknown>;
  const memory = spool ? undefined : Buffer.concat(chunks);
  const spoolPath = spool?.path;
  return {
    size,
    replayable: true,
    doc: obj,
    skeleton: Boolean(skeleton),
    model: typeof obj.model === 'string' ? obj.model : undefined,
    stream: obj.stream === true,
    open: () => memory ?? createReadStream(spoolPath!),
    dispose,
  };
}

/**
 * A large body sent upstream while it arrives, for a request whose target is known without it (path or
 * x-tao-job-id header) and whose member is ready: nothing is spooled. The skeleton is built on the way and
 * `check` runs on it before the last chunk is let through, so a body that fails the per-arch checks never
 * reaches the service complete (its `failure` is the answer). Needs a declared content-length within
 * limits (taken from the byte budget at once). Can be sent once only (`replayable: false`).
 * @throws GatewayHttpError 413 / 503 as readBody
 */
export function passThroughBody(req: IncomingMessage, declared: number, limits: BodyLimits, check: (doc: Record<string, unknown>) => void): ReadBody {
  if (declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
  if (!limits.budget.tryTake(declared)) throw retryLater(`the gateway holds ${limits.budget.inUse} bytes of request bodies (limit ${limits.budget.limit}); retry shortly`);
  let taken = declared;
  const skeleton = new JsonSkeleton();
  let seen = 0;
  let held: Buffer | undefined;
  let opened = false;
  const body: ReadBody = {
    size: declared,
    replayable: false,
    doc: {},
    skeleton: true,
    stream: false,
    open() {
      if (opened) throw new Error('a pass-through body can be sent once only');
      opened = true;
      const t = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          seen += chunk.length;
          if (seen > declared) return cb((body.failure = badRequest('the body is longer than its content-length')));
          skeleton.push(chunk);
          const out = held;
          held = chunk;
          cb(null, out);
        },
        flush(cb) {
          try {
            if (skeleton.overflow) throw new GatewayHttpError(413, 'invalid_request_error', 'request_too_complex', 'the structure of this body (outside its strings) exceeds 1 MiB');
            let doc: unknown;
            try {
              doc = JSON.parse(skeleton.text());
            } catch {
              throw badRequest('the request body is not valid JSON');
            }
            if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw badRequest('the request body must be a JSON object');
            const obj = doc as Record<string, unknown>;
            check(obj);
            body.doc = obj;
            body.model = typeof obj.model === 'string' ? obj.model : undefined;
            body.stream = obj.stream === true;
            cb(null, held);
          } catch (e) {
            body.failure = e instanceof GatewayHttpError ? e : badRequest((e as Error).message);
            cb(body.failure);
          }
        },
      });
      pipeline(req, t, () => undefined);
      return t;
    },
    async dispose() {
      limits.budget.release(taken);
      taken = 0;
    },
  };
  return body;
}
