/**
 * Building and checking the chat-completions body (contract §7, spec §6.1–6.2): messages with text,
 * image_url and video_url items; per-arch sampling parameters with their defaults; media checks
 * (extension, mime, data-URI acceptance, cloud URIs); the cross-check of arch-specific fields.
 */
import { extname } from 'node:path';
import { InvalidInputError } from '../errors.js';
import { FILE_LIMITS, base64FileChunks, base64Length, checkRegularFileSync, readRegularFile, readRegularFileSync } from '../util/input-file.js';
import type { ArchConstraints, References, SamplingFieldSpec } from '../references.js';

export type SamplingValue = number | string;
export type Sampling = Record<string, SamplingValue>;

export interface ContentItem {
  type: 'text' | 'image_url' | 'video_url';
  text?: string;
  image_url?: { url: string };
  video_url?: { url: string };
}

export interface ChatBody {
  messages: Array<{ role: string; content: string | ContentItem[] }>;
  [field: string]: unknown;
}

const TOKEN = /@@tao-infer-media-(\d+)@@/g;

/**
 * Local media files of one request. The body holds a token in place of each file's base64 text; the text is
 * produced from the file while the body is sent (peak memory: one read buffer, whatever the file size).
 */
export class MediaFiles {
  private readonly files: Array<{ path: string; flag: string; size: number }> = [];
  get size(): number {
    return this.files.length;
  }
  /** Register a checked file; returns the token that stands for its base64 text. */
  add(path: string, flag: string, size: number): string {
    this.files.push({ path, flag, size });
    return `@@tao-infer-media-${this.files.length - 1}@@`;
  }
  /** Byte length of `json` once every token is replaced by its file's base64 text. */
  streamLength(json: string): number {
    let n = Buffer.byteLength(json);
    for (const m of json.matchAll(TOKEN)) n += base64Length(this.files[Number(m[1])]!.size) - m[0].length;
    return n;
  }
  /** `json` with every token replaced by its file's base64 text, as a stream of chunks. */
  async *stream(json: string): AsyncGenerator<Uint8Array> {
    let last = 0;
    for (const m of json.matchAll(TOKEN)) {
      yield Buffer.from(json.slice(last, m.index));
      const f = this.files[Number(m[1])]!;
      yield* base64FileChunks(f.path, f.flag, f.size);
      last = m.index! + m[0].length;
    }
    yield Buffer.from(json.slice(last));
  }
}

/** Constraints for an arch (request.yaml network_arch_constraints), or the base fields when none apply. */
export function constraintsFor(refs: References, network_arch: string): ArchConstraints {
  // network_arch may come from the registry file: an own-key lookup only (no Object.prototype members).
  const c = Object.hasOwn(refs.request.network_arch_constraints, network_arch) ? refs.request.network_arch_constraints[network_arch] : undefined;
  if (c) return c;
  return {
    requires_media: false,
    accepts_data_uris: true,
    image_extensions: Object.keys(refs.request.mime_types).filter((k) => refs.request.mime_types[k]!.startsWith('image/')),
    video_extensions: Object.keys(refs.request.mime_types).filter((k) => refs.request.mime_types[k]!.startsWith('video/')),
    sampling_fields: refs.request.chat_completions_request_body.sampling_fields,
  };
}

/** The sampling fields that apply to an arch, in display order, with defaults. */
export function samplingFields(refs: References, network_arch: string): Array<[string, SamplingFieldSpec]> {
  return Object.entries(constraintsFor(refs, network_arch).sampling_fields);
}

/**
 * Parse and range-check one sampling value given as text (flag or prompt answer). Never clamps.
 * @throws InvalidInputError naming the flag
 */
export function parseSamplingValue(name: string, spec: SamplingFieldSpec, raw: string | number): SamplingValue {
  const flag = `--${name.replace(/_/g, '-')}`;
  if (spec.type === 'string') return String(raw);
  const s = String(raw).trim();
  const n = Number(s);
  if (s === '' || !Number.isFinite(n)) throw new InvalidInputError(flag, `${name} must be a number, got '${raw}'`);
  if (spec.type === 'integer' && !Number.isInteger(n)) throw new InvalidInputError(flag, `${name} must be a whole number, got '${raw}'`);
  const range = `${spec.minimum ?? '-∞'}–${spec.maximum ?? '∞'}`;
  if ((spec.minimum !== undefined && n < spec.minimum) || (spec.maximum !== undefined && n > spec.maximum))
    throw new InvalidInputError(flag, `${name} ${n} is out of range ${range}`, { hint: `Pass a value within ${range} (default ${spec.default}).` });
  return n;
}

/**
 * Full sampling parameters for an arch: given values checked, missing ones take the default.
 * Values for fields that do not apply to the arch are an error (never silently dropped).
 * @returns values and which were defaults
 */
export function resolveSampling(refs: References, network_arch: string, given: Record<string, string | number | undefined>): { values: Sampling; defaulted: string[] } {
  const fields = Object.fromEntries(samplingFields(refs, network_arch));
  const values: Sampling = {};
  const defaulted: string[] = [];
  for (const [name, raw] of Object.entries(given)) {
    if (raw === undefined) continue;
    if (!Object.hasOwn(fields, name))
      throw new InvalidInputError(`--${name.replace(/_/g, '-')}`, `${name} does not apply to ${network_arch}`, {
        hint: `Sampling parameters of ${network_arch}: ${Object.keys(fields).join(', ')}`,
      });
  }
  for (const [name, spec] of Object.entries(fields)) {
    const raw = given[name];
    if (raw === undefined) {
      values[name] = spec.default;
      defaulted.push(name);
    } else values[name] = parseSamplingValue(name, spec, raw);
  }
  return { values, defaulted };
}

const CLOUD = /^(s3|gs|az|cs|aws|hf|hf_model):\/\//i;

/**
 * Whether a media argument (local path, http(s) URL or data URI) is an image or a video for `network_arch`:
 * by its data-URI mime type, else by the extension of the path / URL path against the arch's
 * `image_extensions` and `video_extensions` (request.yaml). Undefined when it is neither.
 */
export function mediaKind(refs: References, network_arch: string, value: string): 'image' | 'video' | undefined {
  const data = /^data:(image|video)\//i.exec(value);
  if (data) return data[1]!.toLowerCase() as 'image' | 'video';
  let path = value;
  if (/^https?:\/\//i.test(value)) {
    try {
      path = new URL(value).pathname;
    } catch {
      return undefined;
    }
  }
  const ext = extname(path).toLowerCase();
  const c = constraintsFor(refs, network_arch);
  if (c.image_extensions.includes(ext)) return 'image';
  if (c.video_extensions.includes(ext)) return 'video';
  return undefined;
}

/**
 * Turn a `--image`/`--video` argument (local path or http(s) URL or data URI) into a URL for the body.
 * Local files (regular files of at most 1 GiB) become `data:<mime>;base64,...` when the arch accepts data URIs:
 * with `files`, the base64 text is a token streamed from the file at send time; without, it is read now.
 * @throws InvalidInputError (cloud URI, unknown extension for the arch, missing/special/too large file, data URIs not accepted)
 */
export function mediaUrl(refs: References, network_arch: string, kind: 'image' | 'video', value: string, files?: MediaFiles): string {
  const c = constraintsFor(refs, network_arch);
  const flag = `--${kind}`;
  const allowed = kind === 'image' ? c.image_extensions : c.video_extensions;
  if (CLOUD.test(value))
    throw new InvalidInputError(flag, `${value} is a cloud URI; the inference service cannot read it`, {
      hint: 'Download the file and pass its local path, or give an http(s):// URL.',
    });
  if (/^data:/i.test(value)) {
    const m = /^data:([^;,]+);base64,/i.exec(value);
    if (!m || !m[1]!.toLowerCase().startsWith(`${kind}/`)) throw new InvalidInputError(flag, `data URI for ${flag} must be data:${kind}/<type>;base64,...`);
    if (!c.accepts_data_uris) throw new InvalidInputError(flag, `${network_arch} does not accept data: URIs`, { hint: 'Serve the file over http(s) and pass the URL.' });
    return value;
  }
  if (/^https?:\/\//i.test(value)) {
    let ext = '';
    try {
      ext = extname(new URL(value).pathname).toLowerCase();
    } catch {
      throw new InvalidInputError(flag, `'${value}' is not a valid URL`);
    }
    if (ext && !allowed.includes(ext))
      throw new InvalidInputError(flag, `${network_arch} does not take ${kind}s of type ${ext}`, { hint: `Allowed: ${allowed.join(' ')}` });
    return value;
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) throw new InvalidInputError(flag, `unsupported URL scheme in '${value}'`, { hint: 'Use a local file path or an http(s):// URL.' });
  const ext = extname(value).toLowerCase();
  if (!allowed.includes(ext))
    throw new InvalidInputError(flag, `${network_arch} does not take ${kind}s of type '${ext || '(no extension)'}'`, { hint: `Allowed: ${allowed.join(' ')}` });
  const mime = refs.request.mime_types[ext];
  if (!mime || !mime.startsWith(`${kind}/`)) throw new InvalidInputError(flag, `cannot tell the ${kind} type of '${value}'`);
  const size = checkRegularFileSync(value, flag, FILE_LIMITS.media);
  if (!c.accepts_data_uris)
    throw new InvalidInputError(flag, `${network_arch} does not accept data: URIs, so local files cannot be sent`, { hint: 'Serve the file over http(s) and pass the URL.' });
  if (files) return `data:${mime};base64,${files.add(value, flag, size)}`;
  return `data:${mime};base64,${readRegularFileSync(value, flag, FILE_LIMITS.media).toString('base64')}`;
}

export interface BodyInput {
  network_arch: string;
  prompt?: string;
  system?: string;
  images?: string[];
  videos?: string[];
  sampling: Sampling;
  /** A complete body from --body file.json (messages given); sampling values are merged into it. */
  body?: ChatBody;
}

function mediaCount(body: ChatBody): number {
  const user = body.messages.find((m) => m.role === 'user');
  if (!user || typeof user.content === 'string') return 0;
  return user.content.filter((i) => i.type === 'image_url' || i.type === 'video_url').length;
}

/**
 * Check a body against the arch before sending (spec §6.0 cross-check, §6.2 constraints).
 * @throws InvalidInputError
 */
export function crossCheck(refs: References, network_arch: string, body: ChatBody): void {
  if (!Array.isArray(body.messages) || !body.messages.some((m) => m && m.role === 'user'))
    throw new InvalidInputError('--body', 'the body has no user message', { hint: 'Give --prompt (and media), or a body with messages: [{role: "user", content: ...}].' });
  const c = constraintsFor(refs, network_arch);
  for (const [arch, other] of Object.entries(refs.request.network_arch_constraints)) {
    if (arch === network_arch) continue;
    const foreign = (other.exclusive_fields ?? []).filter((f) => f in body);
    if (foreign.length && !(c.exclusive_fields ?? []).some((f) => foreign.includes(f)))
      throw new InvalidInputError(`--${foreign[0]!.replace(/_/g, '-')}`, `${foreign.join(', ')} belong to ${arch} requests, but the service runs ${network_arch}`, {
        hint: `Send it to a ${arch} service (--arch ${arch}), or drop those fields.`,
      });
  }
  if (c.requires_media && mediaCount(body) === 0)
    throw new InvalidInputError('--image', `${network_arch} needs at least one image or video in every request`, {
      hint: 'Add --image <file|url> or --video <file|url>.',
    });
  for (const m of body.messages) {
    if (typeof m.content === 'string') continue;
    for (const item of m.content ?? []) {
      const url = item.image_url?.url ?? item.video_url?.url;
      if (url && CLOUD.test(url)) throw new InvalidInputError('--body', `${url} is a cloud URI; the inference service cannot read it`);
      if (url && /^data:/i.test(url) && !c.accepts_data_uris) throw new InvalidInputError('--body', `${network_arch} does not accept data: URIs`);
    }
  }
}

/**
 * Build the chat-completions body (OpenAI/vLLM shape): optional system message, one user message
 * with the text first then media items, and the sampling fields. Checks it with crossCheck.
 * @throws InvalidInputError
 */
export function buildBody(refs: References, input: BodyInput, files?: MediaFiles): ChatBody {
  let body: ChatBody;
  if (input.body) {
    if (input.prompt || input.system || input.images?.length || input.videos?.length)
      throw new InvalidInputError('--body', '--body cannot be combined with --prompt, --system, --image or --video', { hint: 'Put everything in the body file, or use the flags alone.' });
    body = { ...input.body, ...input.sampling };
  } else {
    const content: ContentItem[] = [];
    if (input.prompt) content.push({ type: 'text', text: input.prompt });
    for (const i of input.images ?? []) content.push({ type: 'image_url', image_url: { url: mediaUrl(refs, input.network_arch, 'image', i, files) } });
    for (const v of input.videos ?? []) content.push({ type: 'video_url', video_url: { url: mediaUrl(refs, input.network_arch, 'video', v, files) } });
    if (!content.length) throw new InvalidInputError('--prompt', 'nothing to send', { hint: 'Pass --prompt "..." (and --image/--video), or --body file.json.' });
    const messages: ChatBody['messages'] = [];
    if (input.system) messages.push({ role: 'system', content: input.system });
    messages.push({ role: 'user', content });
    body = { messages, ...input.sampling };
  }
  crossCheck(refs, input.network_arch, body);
  return body;
}

/** Read (a regular file of at most 256 MiB, asynchronously) and shape-check a `--body` JSON file. @throws InvalidInputError */
export async function readBodyFile(file: string): Promise<ChatBody> {
  const text = (await readRegularFile(file, '--body', FILE_LIMITS.body)).toString('utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new InvalidInputError('--body', `cannot read ${file} as JSON: ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || !Array.isArray((raw as ChatBody).messages))
    throw new InvalidInputError('--body', `${file} must be a JSON object with a messages array`);
  return raw as ChatBody;
}
