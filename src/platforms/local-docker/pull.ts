/**
 * Image pull as its own step of `docker run` (local-docker): the first start on a fresh GPU host pulls a
 * 10-30 GB TAO image, so the user sees layers done / total, bytes and rate instead of minutes of silence.
 *
 * - Present already: local-docker's `docker run --pull never` finds it and nothing is pulled. Only when docker
 *   answers "No such image" (creating nothing) is it pulled here, and the run repeated.
 * - Pull through the Engine API `POST /images/create?fromImage=...&tag=...` (docker-modem, which reads DOCKER_HOST,
 *   DOCKER_TLS_VERIFY and DOCKER_CERT_PATH of this process): the daemon streams JSON messages `{status, id,
 *   progressDetail: {current, total}}` and ends with `{error, errorDetail}` on failure (moby
 *   api/swagger.yaml "ImageCreate", pkg/jsonmessage). The API does not use the CLI's stored logins, so the
 *   registry credentials are read the way the CLI stores them (docker/cli cli/config/configfile/file.go): the
 *   `credHelpers[<registry>]` or `credsStore` helper (`docker-credential-<name> get`, registry on stdin, JSON
 *   `{Username, Secret}` out — docker/docker-credential-helpers client/client.go), else `auths[<registry>].auth`
 *   (base64 `user:password`) of `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), and sent as
 *   `X-Registry-Auth`.
 * - The registry answers unauthorized and NGC_KEY is set and the image is on the NGC registry (nvcr.io; the
 *   TAO_NGC_REGISTRY env var names another host, for tests): `docker login -u '$oauthtoken' --password-stdin
 *   <registry>` with the key on stdin only (NGC docs "Accessing the NGC container registry"), then one retry.
 *   Otherwise a PlatformError that says what to do.
 */
import { PlatformError } from '../../errors.js';
import { dockerConfig } from '../docker-cli.js';
import { runCapture } from '../../util/run.js';

/** Where users get TAO images from; NGC_KEY logs in here. */
export const NGC_REGISTRY = 'nvcr.io';
const DOCKER_HUB = 'docker.io';
/** Bound on what a docker credential helper prints (a small JSON object). */
const MAX_HELPER_OUTPUT_BYTES = 1024 * 1024;

/** An image reference split the way the docker CLI does (distribution/reference: a first path component with `.` or `:` or `localhost` is a registry). */
export interface ImageRef {
  /** Registry host[:port]; `docker.io` when none is named. */
  registry: string;
  /** `fromImage` for the API: the reference without tag or digest. */
  repository: string;
  /** Tag or `sha256:...` digest; `latest` when none is named. */
  tag: string;
}

/** Parse `[registry/]path[:tag][@digest]`. */
export function parseImageRef(image: string): ImageRef {
  let rest = image;
  let tag = 'latest';
  const at = rest.indexOf('@');
  if (at >= 0) {
    tag = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      tag = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  const first = rest.split('/')[0]!;
  const hasRegistry = rest.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return { registry: hasRegistry ? first : DOCKER_HUB, repository: rest, tag };
}

/** The NGC registry host NGC_KEY logs in to: TAO_NGC_REGISTRY (tests) or nvcr.io. */
export function ngcRegistry(env: NodeJS.ProcessEnv): string {
  return env.TAO_NGC_REGISTRY || NGC_REGISTRY;
}

interface AuthConfig {
  username?: string;
  password?: string;
  identitytoken?: string;
  serveraddress: string;
}

function configKeys(registry: string): string[] {
  return registry === DOCKER_HUB ? ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io'] : [registry, `https://${registry}`, `http://${registry}`];
}

/**
 * Credentials the docker CLI stored for `registry` (see the module comment), or undefined.
 * Never logged; the values only go into the X-Registry-Auth header of the pull.
 */
export async function storedAuth(registry: string, env: NodeJS.ProcessEnv): Promise<AuthConfig | undefined> {
  const cfg = dockerConfig(env);
  if (!cfg) return undefined;
  const keys = configKeys(registry);
  const helper = keys.map((k) => cfg.credHelpers?.[k]).find(Boolean) ?? cfg.credsStore;
  if (helper && /^[A-Za-z0-9_.-]+$/.test(helper)) {
    // Loaded only when a credential helper is configured: the start path never pays for it otherwise.
    const { execa } = await import('execa');
    for (const k of keys) {
      const r = await execa(`docker-credential-${helper}`, ['get'], { input: k, reject: false, env, extendEnv: false, timeout: 30_000, maxBuffer: MAX_HELPER_OUTPUT_BYTES });
      if (r.exitCode !== 0) continue;
      try {
        const c = JSON.parse(String(r.stdout)) as { Username?: string; Secret?: string };
        if (!c.Secret) continue;
        return c.Username === '<token>' ? { identitytoken: c.Secret, serveraddress: registry } : { username: c.Username, password: c.Secret, serveraddress: registry };
      } catch {
        continue;
      }
    }
  }
  for (const k of keys) {
    const a = cfg.auths?.[k];
    if (a?.identitytoken) return { identitytoken: a.identitytoken, serveraddress: registry };
    if (a?.auth) {
      const plain = Buffer.from(a.auth, 'base64').toString('utf8');
      const i = plain.indexOf(':');
      if (i > 0) return { username: plain.slice(0, i), password: plain.slice(i + 1), serveraddress: registry };
    }
  }
  return undefined;
}

/** One Engine API pull message (pkg/jsonmessage JSONMessage). */
export interface PullMessage {
  id?: string;
  status?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { message?: string };
}

/** Human size with decimal units, as docker prints them (go-units HumanSize). */
export function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : v < 10 ? 2 : 1)} ${units[i]}`;
}

/** Statuses the daemon sends per layer (moby distribution/pull_v2.go and xfer/download.go). */
const LAYER_STATUSES = new Set(['Pulling fs layer', 'Waiting', 'Downloading', 'Verifying Checksum', 'Download complete', 'Extracting', 'Pull complete', 'Already exists', 'Retrying']);

/**
 * Pull progress from the daemon's messages: layers done / total, bytes downloaded / known total, rate.
 * `update` returns true when a layer finished (worth a line even when not on a TTY).
 */
export class PullProgress {
  private readonly layers = new Map<string, { current: number; total: number; done: boolean; downloaded: boolean }>();
  private readonly t0: number;
  constructor(
    readonly image: string,
    private readonly now: () => number = Date.now,
  ) {
    this.t0 = now();
  }

  update(m: PullMessage): boolean {
    const id = m.id;
    const s = m.status ?? '';
    // Layer messages only: `{status: "Pulling from <repo>", id: <tag>}` and the digest/status lines are not layers.
    if (!id || !LAYER_STATUSES.has(s)) return false;
    const l = this.layers.get(id) ?? { current: 0, total: 0, done: false, downloaded: false };
    this.layers.set(id, l);
    if (s === 'Downloading') {
      l.current = m.progressDetail?.current ?? l.current;
      l.total = m.progressDetail?.total ?? l.total;
    } else if (s === 'Download complete' || s === 'Verifying Checksum') {
      l.downloaded = true;
      if (l.total) l.current = l.total;
    } else if (s === 'Pull complete' || s === 'Already exists') {
      const was = l.done;
      l.done = true;
      l.downloaded = true;
      if (l.total) l.current = l.total;
      return !was && s === 'Pull complete';
    }
    return false;
  }

  /** Figures so far: bytes are downloaded/known-total bytes of layers that are downloaded here. */
  figures(): { layersDone: number; layers: number; bytes: number; totalBytes: number; rate: number } {
    let done = 0;
    let bytes = 0;
    let total = 0;
    for (const l of this.layers.values()) {
      if (l.done) done++;
      bytes += l.current;
      total += l.total;
    }
    const s = Math.max(0.001, (this.now() - this.t0) / 1000);
    return { layersDone: done, layers: this.layers.size, bytes, totalBytes: total, rate: bytes / s };
  }

  /** `pulling <image>: 3/12 layers, 1.20 GB / 10.5 GB, 85.3 MB/s` */
  line(): string {
    const f = this.figures();
    const size = f.totalBytes ? `${humanBytes(f.bytes)} / ${humanBytes(f.totalBytes)}` : humanBytes(f.bytes);
    return `pulling ${this.image}: ${f.layersDone}/${f.layers} layers, ${size}, ${humanBytes(f.rate)}/s`;
  }
}

export interface PullContext {
  env: NodeJS.ProcessEnv;
  log: (msg: string) => void;
  /** A progress line that replaces the previous one on a TTY (`important`: print it even when not on a TTY). */
  progress?: (line: string, important: boolean) => void;
  signal?: AbortSignal;
  /** Give up when the daemon sends nothing for this long, ms (default PULL_STALL_MS). */
  stallMs?: number;
}

/** A pull that sends no message for 10 minutes is stuck (a big layer still reports its bytes every few seconds). */
export const PULL_STALL_MS = 10 * 60_000;

const UNAUTHORIZED = /unauthorized|authentication required|no basic auth credentials|denied|may require 'docker login'/i;

/** Error text of a failed dial (docker-modem puts the daemon's `{message}` in `json`). */
function dialMessage(e: unknown): string {
  const j = (e as { json?: unknown }).json;
  if (j && typeof j === 'object' && typeof (j as { message?: unknown }).message === 'string') return (j as { message: string }).message;
  if (typeof j === 'string' && j.trim()) return j.trim();
  return (e as Error).message ?? String(e);
}

/**
 * One pull through the Engine API (`POST /images/create`), reporting progress. Resolves with the daemon's error
 * message (or a stall message after `ctx.stallMs` without a message), undefined on success.
 * @throws what the dial throws when `ctx.signal` aborts it
 */
export async function pullOnce(ref: ImageRef, image: string, auth: AuthConfig | undefined, ctx: PullContext): Promise<string | undefined> {
  // Loaded here, on the first pull only: `tao-infer ls` and friends never pay for it.
  const { default: Modem } = await import('docker-modem');
  const modem = new Modem();
  const progress = new PullProgress(image);
  const stallMs = ctx.stallMs ?? PULL_STALL_MS;
  const stall = new AbortController();
  let timer = setTimeout(() => stall.abort(), stallMs);
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stall.signal]) : stall.signal;
  const stalled = () => `no answer from the Docker daemon for ${Math.round(stallMs / 1000)} s while pulling (stopped waiting)`;
  let stream: NodeJS.ReadableStream;
  try {
    stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) => {
      modem.dial(
        {
          path: '/images/create?',
          method: 'POST',
          options: { fromImage: ref.repository, tag: ref.tag },
          ...(auth ? { authconfig: { ...auth } } : {}),
          isStream: true,
          statusCodes: { 200: true, 404: 'image not found', 500: 'server error' },
          abortSignal: signal,
        },
        (err, res) => (err ? reject(err) : resolve(res as NodeJS.ReadableStream)),
      );
    });
  } catch (e) {
    clearTimeout(timer);
    if (ctx.signal?.aborted) throw e;
    return stall.signal.aborted ? stalled() : dialMessage(e);
  }
  let failure: string | undefined;
  let last = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      // The request's abort signal ends the stream; an idle stream is ended here too.
      stall.signal.addEventListener('abort', () => reject(new Error('stalled')), { once: true });
      modem.followProgress(
        stream,
        (err) => (err && !failure ? reject(err) : resolve()),
        (m: PullMessage) => {
          clearTimeout(timer);
          timer = setTimeout(() => stall.abort(), stallMs);
          if (m.error || m.errorDetail?.message) {
            failure = m.errorDetail?.message || m.error;
            return;
          }
          const finished = progress.update(m);
          const t = Date.now();
          if (finished || t - last >= 250) {
            last = t;
            ctx.progress?.(progress.line(), finished);
          }
        },
      );
    });
  } catch (e) {
    if (ctx.signal?.aborted) throw e;
    if (stall.signal.aborted) return stalled();
    throw e;
  } finally {
    clearTimeout(timer);
    (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  }
  if (!failure) ctx.progress?.(progress.line(), true);
  return failure;
}

/**
 * Pull `image` (known to be missing) with progress; on "unauthorized" for the NGC registry with NGC_KEY set, log in
 * and pull once more (see the module comment).
 * @throws PlatformError `image_pull_unauthorized` (no or refused credentials, says what to do), `image_pull_failed`
 */
export async function pullImage(image: string, ctx: PullContext): Promise<void> {
  const ref = parseImageRef(image);
  const ngc = ngcRegistry(ctx.env);
  ctx.log(`pulling ${image} (not on this host yet)`);
  let msg = await pullOnce(ref, image, await storedAuth(ref.registry, ctx.env), ctx);
  if (msg && UNAUTHORIZED.test(msg) && ref.registry === ngc && ctx.env.NGC_KEY) {
    ctx.log(`${ref.registry} refused the pull; logging in with NGC_KEY (docker login -u '$oauthtoken' --password-stdin ${ref.registry})`);
    const login = await runCapture('docker', ['login', '-u', '$oauthtoken', '--password-stdin', ref.registry], { env: ctx.env, input: ctx.env.NGC_KEY, platform: 'local-docker', timeoutMs: 120_000 });
    if (login.exitCode !== 0)
      throw new PlatformError('image_pull_unauthorized', `${ref.registry} refused the login with NGC_KEY: ${login.stderr.trim().split('\n').pop() ?? ''}`, {
        hint: 'NGC_KEY must be an NGC API key (ngc.nvidia.com → Setup → Generate API Key) with access to the image.',
      });
    msg = await pullOnce(ref, image, await storedAuth(ref.registry, ctx.env), ctx);
  }
  if (!msg) return;
  if (UNAUTHORIZED.test(msg)) {
    const hint =
      ref.registry === ngc
        ? ctx.env.NGC_KEY
          ? `NGC_KEY was accepted at login but has no access to ${image}: check the image name and your NGC org/team.`
          : `export NGC_KEY=<your NGC API key> and run start again (tao-infer logs in to ${ref.registry} with it), or run: docker login ${ref.registry} -u '$oauthtoken'`
        : `Log in to ${ref.registry} first: docker login ${ref.registry}`;
    throw new PlatformError('image_pull_unauthorized', `cannot pull ${image}: ${ref.registry} answered: ${msg}`, { hint });
  }
  throw new PlatformError('image_pull_failed', `cannot pull ${image}: ${msg}`, { hint: 'Check the image name and tag (versions.yaml, or your IMAGE_<KEY> override) and the network.' });
}
