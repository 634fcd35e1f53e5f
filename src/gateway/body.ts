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
const readFailed = () => new GatewayHttpError(400, 'invalid_request_error', 'body_read_failed', 'the request body could not be read to its end');
const budgetFull = (b: ByteBudget) => retryLater(`the gateway holds ${b.inUse} bytes of request bodies (limit ${b.limit}); retry shortly`);

/** Bodies declared (content-length) at most this large are read in one go with plain stream events: the chat hot path. */
const SMALL = 64 * 1024;

/**
 * The parsed document of a body that was read: `text` is the whole body or its skeleton. `dispose` runs before
 * a 400 is thrown.
 * @throws GatewayHttpError 400 (not JSON, not an object, empty)
 */
async function documentOf(text: string, size: number, dispose: () => Promise<void>): Promise<Record<string, unknown>> {
  let doc: unknown;
  try {
    doc = size ? JSON.parse(text) : undefined;
  } catch {
    await dispose();
    throw badRequest('the request body is not valid JSON');
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    await dispose();
    throw badRequest(size ? 'the request body must be a JSON object' : 'missing or empty request body');
  }
  return doc as Record<string, unknown>;
}

/** The ReadBody of a body read completely (memory or spool): replayable, `model` and `stream` from its document. */
function readBodyOf(size: number, doc: Record<string, unknown>, skeleton: boolean, open: () => Buffer | Readable, dispose: () => Promise<void>): ReadBody {
  return { size, replayable: true, doc, skeleton, model: typeof doc.model === 'string' ? doc.model : undefined, stream: doc.stream === true, open, dispose };
}

/** All of a request's body as one Buffer, read with 'data'/'end' events; rejects when it ends early or fails. */
function collect(req: IncomingMessage): Promise<Buffer> {
  if (req.destroyed) return Promise.reject(new Error('the request was closed'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const onData = (c: Buffer) => chunks.push(c);
    const done = (e?: Error) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', done);
      req.off('close', onClose);
      if (e) reject(e);
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onEnd = () => done();
    const onClose = () => done(new Error('the request was closed before its end'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', done);
    req.on('close', onClose);
  });
}

/** A small body (declared size within SMALL, parseLimit and spoolAbove): taken from the budget, read into memory, parsed. */
async function readSmallBody(req: IncomingMessage, declared: number, limits: BodyLimits): Promise<ReadBody> {
  if (!limits.budget.tryTake(declared)) throw budgetFull(limits.budget);
  let taken = declared;
  const dispose = async () => {
    limits.budget.release(taken);
    taken = 0;
  };
  let data: Buffer;
  try {
    data = await collect(req);
  } catch {
    await dispose();
    throw readFailed();
  }
  // Declared more than sent: give back the difference.
  if (taken > data.length) {
    limits.budget.release(taken - data.length);
    taken = data.length;
  }
  const doc = await documentOf(data.toString('utf8'), data.length, dispose);
  return readBodyOf(data.length, doc, false, () => data, dispose);
}

/**
 * Read the whole body of `req` within `limits`.
 * @throws GatewayHttpError 413 (too large), 503 (byte budget exhausted), 400 (not a JSON object)
 */
export async function readBody(req: IncomingMessage, limits: BodyLimits): Promise<ReadBody> {
  const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
  if (declared !== undefined && declared > limits.maxBytes) throw tooLarge(limits.maxBytes);
  if (declared !== undefined && declared >= 0 && declared <= SMALL && declared <= limits.parseLimit && declared <= limits.spoolAbove)
    return readSmallBody(req, declared, limits);
  let taken = 0;
  const take = (n: number) => {
    if (!limits.budget.tryTake(n)) throw budgetFull(limits.budget);
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
    throw readFailed();
  }
  // Declared more than sent: give back the difference.
  if (taken > size) {
    limits.budget.release(taken - size);
    taken = size;
  }
  if (skeleton?.overflow) {
    await dispose();
    throw new GatewayHttpError(413, 'invalid_request_error', 'request_too_complex', 'the structure of this body (outside its strings) exceeds 1 MiB; send media as data URIs or URLs in few items');
  }
  const memory = spool ? undefined : Buffer.concat(chunks);
  const doc = await documentOf(skeleton ? skeleton.text() : (memory?.toString('utf8') ?? ''), size, dispose);
  const spoolPath = spool?.path;
  return readBodyOf(size, doc, Boolean(skeleton), () => memory ?? createReadStream(spoolPath!), dispose);
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
  if (!limits.budget.tryTake(declared)) throw budgetFull(limits.budget);
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
