/**
 * Sending a chat completion and handling the response per the contract (§7, spec §6.3):
 * 200 → `choices[0].message.content`; 202 and 503 `model_not_ready` → retried with back-off within a
 * bounded wait; 503 `initialization_error`/`model_load_error` → ServiceFailedError; 400 → rejected
 * (fix the request); 500 → rejected (check the container logs). Client timeout ≥ 300 s.
 */
import { Readable } from 'node:stream';
import { RequestRejectedError, ServiceFailedError, ServiceNotReadyError, TaoInferError } from '../errors.js';
import type { RequestYaml } from '../references.js';
import type { ChatBody, MediaFiles } from './request-body.js';
import type { SavedVideo, VideoWriter } from './video-output.js';
import { errorOf } from './readiness.js';
import { BODY_CAPS, BodyTooLargeError, formatBytes, sendStreaming, textCapped } from '../util/http.js';

export interface ChatCompletion {
  id?: string;
  object?: string;
  model?: string;
  choices: Array<{ index?: number; message: { role: string; content: string }; finish_reason?: string }>;
  [k: string]: unknown;
}

/** Default cap on a reply: large enough for a cosmos-predict2.5 video as base64 JSON. */
export const DEFAULT_MAX_REPLY_BYTES = 512 * 1024 * 1024;

export interface SendOptions {
  job_id: string;
  host_url: string;
  request: RequestYaml;
  headers?: Record<string, string>;
  /** Total seconds to keep retrying 202 / model_not_ready (default 120). */
  retryWindowS?: number;
  /** Per-attempt client timeout, seconds (≥ 300 per contract). */
  timeoutS?: number;
  onRetry?: (status: number, errorType: string, elapsedS: number) => void;
  signal?: AbortSignal;
  /** Local media files referenced by tokens in the body (streamed base64 at send time). */
  files?: MediaFiles;
  /** Largest reply accepted, bytes (default 512 MiB); more → RequestRejectedError `reply_too_large`. */
  maxReplyBytes?: number;
  /**
   * A video answer (`data:video/...;base64,` in choices[0].message.content) is decoded into the writer this
   * returns as it arrives, instead of being kept in memory; the content is then replaced by a short note.
   */
  videoWriter?: (mime: string) => VideoWriter;
}

/** The chat.completion plus the video file it carried, when one was written. */
export type ChatResult = ChatCompletion & { saved_video?: SavedVideo };

const CONTENT_PATH = ['choices', 0, 'message', 'content'] as const;
const VIDEO_PREFIX = /^data:(video\/[a-z0-9.+-]+);base64,/i;

/** A network failure while reading the reply (kept apart from JSON syntax errors). */
class ReplyReadError extends Error {
  constructor(override readonly cause: unknown) {
    super('reply read failed');
  }
}

/**
 * Read a 200 reply as a stream of JSON tokens (stream-json), at most `maxBytes`. Ordinary values are
 * assembled; a `data:video/...;base64,` content string goes through a streaming base64 decoder into the
 * video writer, so memory stays small whatever the video size.
 * @throws BodyTooLargeError, SyntaxError-like errors from the parser (not JSON)
 */
async function readReply(res: Response, maxBytes: number, videoWriter?: (mime: string) => VideoWriter): Promise<{ value: unknown; video?: SavedVideo }> {
  if (!res.body) return { value: undefined };
  const { default: parserStream } = await import('stream-json');
  const reader = res.body.getReader();
  let size = 0;
  const source = Readable.from(
    (async function* () {
      try {
        for (;;) {
          let r: Awaited<ReturnType<typeof reader.read>>;
          try {
            r = await reader.read();
          } catch (e) {
            throw new ReplyReadError(e);
          }
          const { done, value } = r;
          if (done) return;
          size += value.byteLength;
          if (size > maxBytes) throw new BodyTooLargeError(maxBytes);
          yield Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        }
      } finally {
        await reader.cancel().catch(() => undefined);
      }
    })(),
  );
  const tokens = parserStream({ packKeys: true, streamKeys: false, packStrings: false, streamStrings: true, packNumbers: true, streamNumbers: false });
  source.on('error', (e) => tokens.destroy(e));
  source.pipe(tokens);

  type Frame = { container: Record<string, unknown> | unknown[]; key?: string | number };
  const stack: Frame[] = [];
  let root: unknown;
  const path = () => stack.map((f) => f.key);
  const put = (v: unknown) => {
    const top = stack[stack.length - 1];
    if (!top) root = v;
    else if (Array.isArray(top.container)) top.container.push(v);
    else top.container[top.key as string] = v;
  };
  const atContent = () => {
    const p = path();
    return p.length === CONTENT_PATH.length && p.every((k, i) => k === CONTENT_PATH[i]);
  };
  let str: string[] | undefined;
  let strHead = '';
  let writer: VideoWriter | undefined;
  let pending: string[] = [];
  let pendingLen = 0;
  let video: SavedVideo | undefined;
  /** Decode the gathered base64 (whole 4-character groups unless `last`) into the video writer. */
  const flushVideo = async (last: boolean) => {
    const b64 = pending.join('');
    const whole = last ? b64.length : b64.length - (b64.length % 4);
    pending = whole < b64.length ? [b64.slice(whole)] : [];
    pendingLen = b64.length - whole;
    if (whole) await writer!.write(Buffer.from(b64.slice(0, whole), 'base64'));
  };
  try {
    for await (const t of tokens as AsyncIterable<{ name: string; value?: unknown }>) {
      const top = stack[stack.length - 1];
      if (top && Array.isArray(top.container) && ['startObject', 'startArray', 'startString', 'numberValue', 'nullValue', 'trueValue', 'falseValue'].includes(t.name))
        top.key = top.container.length;
      switch (t.name) {
        case 'startObject':
        case 'startArray': {
          const c = t.name === 'startObject' ? (Object.create(null) as Record<string, unknown>) : [];
          put(c);
          stack.push({ container: c });
          break;
        }
        case 'endObject':
        case 'endArray': {
          const done = stack.pop()!;
          if (!Array.isArray(done.container)) Object.setPrototypeOf(done.container, Object.prototype);
          break;
        }
        case 'keyValue':
          stack[stack.length - 1]!.key = t.value as string;
          break;
        case 'startString':
          str = [];
          strHead = '';
          writer = undefined;
          pending = [];
          pendingLen = 0;
          break;
        case 'stringChunk': {
          const chunk = t.value as string;
          if (writer) {
            // stream-json cuts strings into pieces of at most 256 characters: gather about 1 MiB before decoding and writing.
            pending.push(chunk);
            pendingLen += chunk.length;
            if (pendingLen >= 1024 * 1024) await flushVideo(false);
            break;
          }
          str!.push(chunk);
          if (videoWriter && strHead.length < 128 && atContent()) {
            strHead += chunk;
            const m = VIDEO_PREFIX.exec(strHead);
            if (m) {
              writer = videoWriter(m[1]!.toLowerCase());
              const rest = str!.join('').slice(m[0].length);
              str = undefined;
              pending.push(rest);
              pendingLen += rest.length;
            }
          }
          break;
        }
        case 'endString':
          if (writer) {
            await flushVideo(true);
            video = await writer.finish();
            writer = undefined;
            put(`[${video.mime} video, ${video.bytes} bytes, saved to ${video.path}]`);
          } else put(str!.join(''));
          str = undefined;
          break;
        case 'numberValue':
          put(Number(t.value));
          break;
        case 'nullValue':
        case 'trueValue':
        case 'falseValue':
          put(t.value);
          break;
      }
    }
  } catch (e) {
    await writer?.abort();
    if (e instanceof ReplyReadError) throw e.cause;
    if (e instanceof BodyTooLargeError || e instanceof TaoInferError) throw e;
    if ((e as Error).name === 'AbortError' || (e as Error).name === 'TimeoutError') throw e;
    throw new RequestRejectedError(200, 'bad_response', `the service answered 200 with a body that is not JSON (${(e as Error).message})`);
  }
  if (stack.length) throw new RequestRejectedError(200, 'bad_response', 'the service answered 200 with a JSON body that ended early');
  return { value: root, ...(video ? { video } : {}) };
}

/** The request body: plain JSON text, or a stream that inlines the base64 of local media files. */
function requestBody(body: ChatBody, files: MediaFiles | undefined): { body: string | AsyncIterable<Uint8Array>; length: number } {
  const text = JSON.stringify(body);
  if (!files?.size) return { body: text, length: Buffer.byteLength(text) };
  return { body: files.stream(text), length: files.streamLength(text) };
}

/**
 * POST the body and return the parsed chat.completion. Local media files are streamed base64 into the body;
 * the reply is read at most `maxReplyBytes`, and a video answer is written through `videoWriter` as it arrives.
 * @throws RequestRejectedError (400/500/other; `reply_too_large` past the cap), ServiceFailedError (503 fatal),
 *         ServiceNotReadyError (still loading after the retry window, or unreachable), InvalidInputError (a media file changed)
 */
export async function sendChatCompletion(body: ChatBody, o: SendOptions): Promise<ChatResult> {
  const url = `${o.host_url}${o.request.endpoint.path}`;
  const t0 = Date.now();
  const windowMs = (o.retryWindowS ?? 120) * 1000;
  const timeoutMs = Math.max(o.request.endpoint.client_timeout_seconds, o.timeoutS ?? 0) * 1000;
  const maxReply = o.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
  let delay = 1000;
  for (;;) {
    let res: { status: number; text: string; value?: unknown; video?: SavedVideo };
    try {
      const b = requestBody(body, o.files);
      res = await sendStreaming(
        url,
        { method: 'POST', headers: { 'content-type': o.request.endpoint.content_type, 'content-length': String(b.length), ...o.headers }, body: b.body },
        timeoutMs,
        o.signal,
        async (r) => {
          if (r.status === 200) {
            const { value, video } = await readReply(r, maxReply, o.videoWriter);
            return { status: 200, text: '', value, ...(video ? { video } : {}) };
          }
          return { status: r.status, text: await textCapped(r, BODY_CAPS.errorBody) };
        },
      );
    } catch (e) {
      if (e instanceof BodyTooLargeError)
        throw new RequestRejectedError(200, 'reply_too_large', `the reply of ${o.job_id} is larger than ${formatBytes(e.limit)}; reading stopped there`, {
          hint: 'Raise the cap with --max-reply-mb if the reply is expected to be that large.',
        });
      if (e instanceof TaoInferError) throw e;
      const code = (e as { cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code ?? (e as Error).name;
      throw new ServiceNotReadyError('service_unreachable', `cannot reach ${url} (${code})`, {
        hint: `Check the service with 'tao-infer ls' and 'tao-infer logs ${o.job_id}'.`,
      });
    }
    if (res.status === 200) {
      const c = res.value as ChatCompletion;
      if (!c || !Array.isArray(c.choices) || !c.choices[0]?.message)
        throw new RequestRejectedError(200, 'bad_response', 'the service answered 200 without choices[0].message');
      return res.video ? { ...c, saved_video: res.video } : c;
    }
    const text = res.text;
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* keep text */
    }
    const err = errorOf(parsed);
    const retryable = res.status === 202 || (res.status === 503 && o.request.readiness.retry_types.includes(err.type));
    if (retryable) {
      const elapsed = Date.now() - t0;
      if (elapsed + delay > windowMs)
        throw new ServiceNotReadyError('still_loading', `service ${o.job_id} is still loading (${err.type}) after ${Math.round(elapsed / 1000)}s`, {
          hint: 'Wait for readiness (tao-infer ls shows it) and send again.',
        });
      o.onRetry?.(res.status, err.type, elapsed / 1000);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(10_000, delay * 2);
      continue;
    }
    if (res.status === 503) throw new ServiceFailedError(o.job_id, `${err.type}: ${err.message}`, err.type);
    const hint =
      res.status === 400 ? 'Fix the request (body, media, sampling parameters) and send again.' : res.status >= 500 ? `The service failed on this request: see 'tao-infer logs ${o.job_id}'.` : undefined;
    throw new RequestRejectedError(res.status, err.type, err.message || String(text).slice(0, 300), { hint });
  }
}
