/**
 * Container states straight from the Docker Engine API over the daemon's unix socket, for `ls` (issue 9: one
 * `docker` process costs more than the rest of `ls` together). Used only when the docker CLI would talk to that
 * same socket — `DOCKER_HOST` unset or `unix://...`, no `DOCKER_CONTEXT`, no `currentContext` other than
 * `default` in `$DOCKER_CONFIG/config.json` (docker/cli docs/reference/commandline/context_use.md: the current
 * context applies when DOCKER_HOST and DOCKER_CONTEXT are not set; with both set here the CLI is asked, whose
 * own rule then decides) — and answers undefined otherwise, or when the socket cannot be used, so the caller falls back to the CLI,
 * which then also reports any problem in docker's own words.
 *
 * Engine API (moby api/swagger.yaml): `GET /containers/json?all=1&filters={"name":[...]}` (ContainerList) lists
 * matching containers with `Names` (each with a leading "/") and `State` (created, running, paused, restarting,
 * removing, exited, dead); the name filter is a regular expression matched against the name. A container that
 * is not running or waiting is asked for its full state with `GET /containers/{id}/json` (ContainerInspect,
 * `.State`: Status, ExitCode, OOMKilled, Error — the same object `docker inspect --format '{{json .State}}'` prints).
 */
import { request } from 'node:http';
import { dockerConfig } from '../docker-cli.js';

/** Largest Engine API answer read (a list of a few hundred containers is far below). */
const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Longest one Engine API call may take, ms (the socket is local). */
const CALL_TIMEOUT_MS = 10_000;

/** `docker inspect`'s `.State`, the parts tao-infer reads. */
export interface EngineState {
  Status?: string;
  ExitCode?: number;
  OOMKilled?: boolean;
  Error?: string;
}

/**
 * The unix socket the docker CLI would use with `env`, or undefined when it would use something else (TCP, SSH,
 * a context) or the choice cannot be read. See the module comment for the rules.
 */
export async function engineSocket(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  const host = env.DOCKER_HOST;
  if (host && !host.startsWith('unix://')) return undefined;
  if (env.DOCKER_CONTEXT && env.DOCKER_CONTEXT !== 'default') return undefined;
  if (!host) {
    // A context chosen with `docker context use` is in the CLI config; it wins over the default socket.
    const cfg = dockerConfig(env);
    if (!cfg) return undefined;
    if (cfg.currentContext !== undefined && cfg.currentContext !== '' && cfg.currentContext !== 'default') return undefined;
  }
  return host ? host.slice('unix://'.length) : '/var/run/docker.sock';
}

/** A non-200 answer of the Engine API. */
class EngineHttpError extends Error {
  constructor(
    path: string,
    readonly status: number | undefined,
  ) {
    super(`Engine API ${path}: HTTP ${status}`);
  }
}

/** GET `path` on the Engine API at `socket`; the parsed JSON of a 200 answer. @throws EngineHttpError, Error on any other outcome */
function getJson(socket: string, path: string, signal?: AbortSignal): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // Host: an IPv4 literal (the daemon ignores it): Node checks the Host for a TLS server name with net.isIP, and
    // a name ("docker", "localhost") makes it compile its IPv6 pattern first, ~3 ms of every `ls`.
    const req = request({ socketPath: socket, path, method: 'GET', headers: { host: '127.0.0.1' }, signal, timeout: CALL_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) req.destroy(new Error(`Engine API answer over ${MAX_BODY_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new EngineHttpError(path, res.statusCode));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          reject(e as Error);
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`Engine API ${path}: no answer in ${CALL_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** A regular expression matching exactly `name` (with docker's leading "/"). */
function exactName(name: string): string {
  return `^/${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
}

/**
 * The `.State` of each container named in `names` that exists (missing ones are absent from the map), from the
 * Engine API at `socket`: one list call, plus one inspect per container that has ended or is in an unusual state.
 * @throws Error when the socket cannot be used or answers unexpectedly (the caller falls back to the CLI)
 */
export async function containerStates(socket: string, names: string[], signal?: AbortSignal): Promise<Map<string, EngineState>> {
  const filters = encodeURIComponent(JSON.stringify({ name: names.map(exactName) }));
  const list = (await getJson(socket, `/containers/json?all=1&filters=${filters}`, signal)) as Array<{ Id: string; Names?: string[]; State?: string }>;
  const wanted = new Set(names);
  const states = new Map<string, EngineState>();
  const ended: Array<[string, string]> = [];
  for (const c of list) {
    const name = (c.Names ?? []).map((n) => n.replace(/^\//, '')).find((n) => wanted.has(n));
    if (!name) continue;
    // Running or waiting: the state name is all `ls` shows. Anything else needs the exit code and reason.
    if (c.State === 'running' || c.State === 'created' || c.State === 'paused' || c.State === 'restarting') states.set(name, { Status: c.State });
    else ended.push([name, c.Id]);
  }
  await Promise.all(
    ended.map(async ([name, id]) => {
      try {
        const full = (await getJson(socket, `/containers/${encodeURIComponent(id)}/json`, signal)) as { State?: EngineState };
        states.set(name, full.State ?? {});
      } catch (e) {
        // Removed between the list and this call: it no longer exists.
        if (!(e instanceof EngineHttpError && e.status === 404)) throw e;
      }
    }),
  );
  return states;
}
