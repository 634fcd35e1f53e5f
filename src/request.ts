/**
 * request: route to a service (contract §7 routing rules), build and check the body, send it and read the
 * reply. Never prompts itself: interactive questions come in as hooks.
 */
import { InvalidInputError } from './errors.js';
import { authHeaders, ctxParts, type Deps } from './deps.js';
import { sendChatCompletion, type ChatResult } from './service/chat.js';
import type { VideoWriter } from './service/video-output.js';
import { MediaFiles, buildBody, constraintsFor, readBodyFile, resolveSampling, type ChatBody, type Sampling } from './service/request-body.js';
import { expiryWarning } from './service/lifetime.js';
import { resolveTarget, type ChooseService } from './service/routing.js';
import type { RegistryEntry } from './types.js';

export interface RequestInput {
  job_id?: string;
  network_arch?: string;
  prompt?: string;
  system?: string;
  images?: string[];
  videos?: string[];
  /** Path of a JSON body file. */
  body_file?: string;
  /** Sampling values given by flag (text or number); missing ones take the arch default. */
  sampling?: Record<string, string | number | undefined>;
  /** Seconds to keep retrying while the service still loads (default 120). */
  retry_window_s?: number;
}

export interface PreparedRequest {
  entry: RegistryEntry;
  body: ChatBody;
  sampling: Sampling;
  defaulted: string[];
  /** Local media files whose base64 text is streamed into the body at send time. */
  files?: MediaFiles;
  /** For people and --json: e.g. the service is past or near its expires_at (src/service/lifetime.ts). */
  warnings: string[];
}

/** Questions prepareRequest asks a person (the CLI passes them only when interactive). */
export interface RequestHooks {
  /** Several services match: pick one (never chosen silently). */
  choose?: ChooseService;
  /**
   * After routing, when no --body file is given: the prompt is missing (`need.prompt`) and/or the arch needs
   * media and none was given (`need.media`, request.yaml `requires_media`). Returns what the person gave.
   */
  askContent?: (entry: RegistryEntry, need: { prompt: boolean; media: boolean }) => Promise<{ prompt?: string; images?: string[]; videos?: string[] }>;
  /** Sampling parameters not given by flag or body: the values the person chose (text or number). */
  askSampling?: (entry: RegistryEntry, missing: string[]) => Promise<Record<string, string | number | undefined>>;
}

/**
 * Route and build a request without sending: target entry (routing rules, contract §7), checked body,
 * sampling parameters actually used. The hooks (interactive only) are asked in the order a person expects:
 * which service, then the prompt and media, then each sampling parameter not given by flag.
 * @throws UserError subclasses (no such service, several and no `choose`, bad media, missing media or prompt)
 */
export async function prepareRequest(
  input: RequestInput,
  hooks: RequestHooks = {},
  deps: Deps = {},
): Promise<PreparedRequest> {
  const { registry, ...parts } = ctxParts(deps);
  const refs = parts.refs();
  const state = await registry.read();
  const entry = await resolveTarget(state, { job_id: input.job_id, network_arch: input.network_arch }, hooks.choose);
  if (entry.state === 'starting' || !entry.host_url)
    throw new InvalidInputError('--job', `service ${entry.job_id} is still starting and has no host_url yet`, { hint: 'Wait for start to finish (tao-infer ls).' });
  const fileBody = input.body_file ? await readBodyFile(input.body_file) : undefined;
  if (hooks.askContent && !fileBody) {
    const need = {
      prompt: !input.prompt,
      media: constraintsFor(refs, entry.network_arch).requires_media && !input.images?.length && !input.videos?.length,
    };
    if (need.prompt || need.media) {
      const a = await hooks.askContent(entry, need);
      input = { ...input, prompt: input.prompt || a.prompt, images: [...(input.images ?? []), ...(a.images ?? [])], videos: [...(input.videos ?? []), ...(a.videos ?? [])] };
    }
  }
  const given: Record<string, string | number | undefined> = {};
  const fields = Object.keys(constraintsFor(refs, entry.network_arch).sampling_fields);
  if (fileBody) for (const f of fields) if (typeof fileBody[f] === 'number' || typeof fileBody[f] === 'string') given[f] = fileBody[f] as string | number;
  for (const [k, v] of Object.entries(input.sampling ?? {})) if (v !== undefined) given[k] = v;
  // Fields of another arch given by flag are rejected by resolveSampling / crossCheck.
  const missing = fields.filter((f) => given[f] === undefined);
  if (hooks.askSampling && missing.length) Object.assign(given, await hooks.askSampling(entry, missing));
  const { values, defaulted } = resolveSampling(refs, entry.network_arch, given);
  const files = new MediaFiles();
  const body = buildBody(refs, {
    network_arch: entry.network_arch,
    prompt: input.prompt,
    system: input.system,
    images: input.images,
    videos: input.videos,
    sampling: values,
    body: fileBody,
  }, files);
  const expiry = expiryWarning(entry);
  return { entry, body, sampling: values, defaulted, files, warnings: expiry ? [expiry] : [] };
}

/**
 * Send a prepared request (contract §7 response handling). Local media are streamed base64 into the body;
 * the reply is read at most `max_reply_bytes` (default 512 MiB); with `video_writer`, a video answer is
 * decoded to disk as it arrives and reported in `saved_video`.
 * @throws RequestRejectedError (also `reply_too_large`), ServiceNotReadyError
 */
export async function sendRequest(
  p: PreparedRequest,
  opts: {
    retry_window_s?: number;
    /** Per-attempt client timeout, seconds; never below request.yaml's client_timeout_seconds (300). */
    timeout_s?: number;
    onRetry?: (status: number, type: string, elapsedS: number) => void;
    max_reply_bytes?: number;
    video_writer?: (mime: string) => VideoWriter;
  } = {},
  deps: Deps = {},
): Promise<ChatResult> {
  const { env, refs } = ctxParts(deps);
  return sendChatCompletion(p.body, {
    job_id: p.entry.job_id,
    host_url: p.entry.host_url,
    request: refs().request,
    headers: authHeaders(p.entry, env),
    retryWindowS: opts.retry_window_s,
    ...(opts.timeout_s !== undefined ? { timeoutS: opts.timeout_s } : {}),
    onRetry: opts.onRetry,
    signal: deps.signal,
    files: p.files,
    maxReplyBytes: opts.max_reply_bytes,
    videoWriter: opts.video_writer,
  });
}
