/**
 * The port policy (contract §5 port rule), one home for it: the allocation range (8080–8199, or
 * `TAO_INF_PORT_RANGE=lo-hi`), the scopes a port lives in, which entries hold which ports, and the pick,
 * run inside the registry lock.
 *
 * A port lives in a scope: `local` (this machine: a published container port, a local forwarder) or
 * `remote` keyed by the host it is bound on (brev: the instance, whose host ports are its own). An entry
 * holds its `local_port` locally, and its `host_port` in the scope its platform's descriptor declares
 * (`hostPortScope`; `remote` hosts named by the descriptor's `remoteHost`). Entries of unknown platforms
 * (other tools) and stale `starting` entries hold none. In the local scope, ports bound by other programs
 * are skipped too. The rule: the lowest port of the range not held in the scope and not bound.
 */
import { createServer } from 'node:net';
import { InvalidInputError, RegistryError } from '../errors.js';
import type { PortScope, RegistryEntry } from '../types.js';
import { PLATFORMS } from '../platforms/index.js';
import type { PlatformDescriptor } from '../platforms/descriptor.js';
import { PORT_RANGE } from '../archs/inputs.js';
import type { RegistryState } from './state.js';

export type { PortScope };

export interface PortRange {
  min: number;
  max: number;
}

/**
 * The host-port allocation range: `TAO_INF_PORT_RANGE=lo-hi` (inclusive, 1–65535, lo ≤ hi), else the contract's
 * 8080–8199 (§5). Tests set it to a range no user service uses.
 * @throws InvalidInputError (exit 2) naming TAO_INF_PORT_RANGE when it is set but malformed
 */
export function portRange(env: NodeJS.ProcessEnv = process.env): PortRange {
  const raw = env.TAO_INF_PORT_RANGE?.trim();
  if (!raw) return { min: PORT_RANGE.min, max: PORT_RANGE.max };
  const m = /^(\d{1,5})\s*-\s*(\d{1,5})$/.exec(raw);
  const min = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2]) : NaN;
  if (!m || min < 1 || max > 65535 || min > max)
    throw new InvalidInputError('TAO_INF_PORT_RANGE', `TAO_INF_PORT_RANGE='${raw}' is not a port range lo-hi within 1–65535`, {
      hint: `Example: TAO_INF_PORT_RANGE=18080-18199, or unset it for the default ${PORT_RANGE.min}-${PORT_RANGE.max}.`,
    });
  return { min, max };
}

/**
 * True when `port` can be bound on `address` right now (probe listen + close). For a loopback or
 * wildcard address the IPv6 loopback must be free too, because host_url says `localhost`, which may
 * resolve to ::1 first. On Linux one probe of the dual-stack wildcard (`::`, no host) answers both: Linux
 * refuses it while any address, IPv4 or IPv6, listens on the port (so it also skips ports other addresses
 * hold). Elsewhere the wildcard has other rules (BSD lets a wildcard share a port with a specific address,
 * and macOS may ask the user to allow a program that listens on every interface), so the address and ::1
 * are probed one by one.
 */
export async function isPortFree(port: number, address = '127.0.0.1'): Promise<boolean> {
  const loopbackOrAny = address === '127.0.0.1' || address === '0.0.0.0';
  if (loopbackOrAny && process.platform === 'linux') return probeListen(port, undefined);
  if (!(await probeListen(port, address))) return false;
  if (loopbackOrAny) return probeListen(port, '::1', true);
  return true;
}

/** Listen on `port` of `address` (no address: the dual-stack wildcard, IPv4 only without IPv6) and close. */
function probeListen(port: number, address: string | undefined, unavailableIsFree = false): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(unavailableIsFree && (e.code === 'EADDRNOTAVAIL' || e.code === 'EAFNOSUPPORT')));
    srv.listen({ port, ...(address === undefined ? {} : { host: address }), exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** True when process `pid` exists on this machine (EPERM: it exists but is not ours). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An entry left `starting` by a start that was killed (SIGKILL, crash, reboot): still `starting` after its launch
 * deadline and the process that wrote it (`starter_pid`) is gone. It is shown as stale by `ls` and its port is
 * handed out again. Entries without `starter_pid` (other tools) are never judged stale.
 */
export function isStaleStarting(e: RegistryEntry, now = Date.now()): boolean {
  if (e.state !== 'starting' || typeof e.starter_pid !== 'number') return false;
  const deadline = Date.parse(String(e.launch_deadline ?? e.started_at));
  return Number.isFinite(deadline) && now > deadline && !pidAlive(e.starter_pid);
}

export interface PickPortOptions {
  holds: (e: RegistryEntry) => boolean;
  /** Probe the host for ports bound by other programs. */
  checkBound: boolean;
  bindAddress: string;
  /** An explicit port (--port): refused when held or bound. */
  explicit?: number;
  /** Allocation range; default `portRange(process.env)`. */
  range?: PortRange;
  /** Ports not to hand out (e.g. one a launch just found taken). */
  exclude?: Set<number>;
}

/**
 * Pick a port following the rule, with the entries that count given as a predicate (both their ports count).
 * The policy's own entry point is `reservePort`. Call inside `Registry.mutate`.
 * @throws InvalidInputError when an explicit port is taken; RegistryError when the whole range is used.
 */
export async function pickPort(state: RegistryState, opts: PickPortOptions): Promise<number> {
  const owners = new Map<number, RegistryEntry>();
  const now = Date.now();
  for (const e of Object.values(state.entries)) {
    if (!opts.holds(e) || isStaleStarting(e, now)) continue;
    for (const p of [e.host_port, e.local_port]) if (typeof p === 'number' && !owners.has(p)) owners.set(p, e);
  }
  return choosePort(owners, opts);
}

/** The descriptor of a platform name; undefined for a platform we do not know (an entry of another tool). */
function descriptorFor(platform: string): PlatformDescriptor | undefined {
  return PLATFORMS.find((d) => d.name === platform) as PlatformDescriptor | undefined;
}

/**
 * The ports `entry` holds, each with its scope: `local_port` on this machine, `host_port` where its platform's
 * descriptor says (`hostPortScope`, `remoteHost`). Unknown platforms (entries of other tools) hold none.
 */
export function entryPorts(entry: RegistryEntry): Array<{ port: number; scope: PortScope }> {
  const d = descriptorFor(entry.platform);
  if (!d) return [];
  const out: Array<{ port: number; scope: PortScope }> = [];
  if (typeof entry.local_port === 'number') out.push({ port: entry.local_port, scope: { kind: 'local' } });
  if (typeof entry.host_port === 'number') {
    if (d.hostPortScope === 'local') out.push({ port: entry.host_port, scope: { kind: 'local' } });
    const host = d.hostPortScope === 'remote' ? d.remoteHost?.(entry) : undefined;
    if (host !== undefined) out.push({ port: entry.host_port, scope: { kind: 'remote', host } });
  }
  return out;
}

const sameScope = (a: PortScope, b: PortScope) => a.kind === b.kind && (a.kind === 'local' || a.host === (b as { host: string }).host);

/** True when `entry` holds a port on this machine (its `local_port`, or a `host_port` its platform binds locally). */
export function holdsLocalPort(entry: RegistryEntry): boolean {
  return entryPorts(entry).some((p) => p.scope.kind === 'local');
}

/**
 * The registry field a port of `scope` is recorded in for a service of `platform`: a remote port, or a local one
 * of a platform whose host ports are local, is its `host_port`; a local port of a platform whose host ports are
 * remote is the local side, `local_port`.
 */
export function portField(platform: string, scope: PortScope): 'host_port' | 'local_port' {
  if (scope.kind === 'remote') return 'host_port';
  return descriptorFor(platform)?.hostPortScope === 'remote' ? 'local_port' : 'host_port';
}

export interface PortRequest {
  scope: PortScope;
  /** The service asking: its own entry's ports never count as taken. */
  job_id?: string;
  /** An explicit port (--port): refused when held in the scope or (locally) bound. */
  explicit?: number;
  /** Local scope: the address the port will be bound on, probed for other programs. Default 127.0.0.1. */
  bindAddress?: string;
  range: PortRange;
  /** Ports not to hand out (e.g. one a launch just found taken). */
  exclude?: Set<number>;
  /** Local scope: bind probes made a moment before, outside the lock (`probeCandidates`), port → free. */
  probed?: ReadonlyMap<number, boolean>;
}

/** The ports of `req.scope` other entries hold (stale `starting` entries hold none), each with its holder. */
function heldPorts(state: RegistryState, req: PortRequest): Map<number, RegistryEntry> {
  const owners = new Map<number, RegistryEntry>();
  const now = Date.now();
  for (const e of Object.values(state.entries)) {
    if (e.job_id === req.job_id || isStaleStarting(e, now)) continue;
    for (const p of entryPorts(e)) if (sameScope(p.scope, req.scope) && !owners.has(p.port)) owners.set(p.port, e);
  }
  return owners;
}

/**
 * Probe for other programs, before taking the lock, the first `n` ports a local `reservePort` on `state` would
 * consider; pass the result as `req.probed` so the pick under the lock need not wait for those probes (the lock
 * is held shorter). Other programs are not coordinated by the lock, so a probe made a moment earlier is as good
 * as one made under it: a port bound in between is found by docker at launch and replaced once (start/steps.ts).
 * Returns port → free; an empty map for a remote scope or an explicit port.
 */
export async function probeCandidates(state: RegistryState, req: PortRequest, n = 2): Promise<Map<number, boolean>> {
  const out = new Map<number, boolean>();
  if (req.scope.kind !== 'local' || req.explicit !== undefined) return out;
  const held = heldPorts(state, req);
  for (let p = req.range.min; p <= req.range.max && out.size < n; p++) {
    if (held.has(p) || req.exclude?.has(p)) continue;
    out.set(p, await isPortFree(p, req.bindAddress ?? '127.0.0.1'));
  }
  return out;
}

/**
 * The policy's pick: the lowest port of `range` not held in `req.scope` by another entry (stale `starting`
 * entries hold none) and, locally, not bound on `bindAddress`; or `explicit` when it is free. Call inside
 * `Registry.mutate` so the pick and its recording are one step (the lock makes concurrent starts distinct).
 * @throws InvalidInputError (exit 2) when an explicit port is taken; RegistryError (exit 6) when the range is used up.
 */
export async function reservePort(state: RegistryState, req: PortRequest): Promise<number> {
  return choosePort(heldPorts(state, req), {
    checkBound: req.scope.kind === 'local',
    bindAddress: req.bindAddress ?? '127.0.0.1',
    explicit: req.explicit,
    range: req.range,
    exclude: req.exclude,
    probed: req.probed,
  });
}

async function choosePort(owners: Map<number, RegistryEntry>, opts: Omit<PickPortOptions, 'holds'> & { probed?: ReadonlyMap<number, boolean> }): Promise<number> {
  if (opts.explicit !== undefined) {
    const owner = owners.get(opts.explicit);
    if (owner)
      throw new InvalidInputError('--port', `port ${opts.explicit} is already used by service ${owner.job_id} (${owner.network_arch})`, {
        hint: 'Omit --port to take the lowest free port, or stop that service first.',
      });
    if (opts.checkBound && !(await isPortFree(opts.explicit, opts.bindAddress)))
      throw new InvalidInputError('--port', `port ${opts.explicit} is already bound on ${opts.bindAddress} by another program`, {
        hint: 'Omit --port to take the lowest free port, or free that port.',
      });
    return opts.explicit;
  }
  const range = opts.range ?? portRange();
  for (let p = range.min; p <= range.max; p++) {
    if (owners.has(p) || opts.exclude?.has(p)) continue;
    if (opts.checkBound && !(opts.probed?.get(p) ?? (await isPortFree(p, opts.bindAddress)))) continue;
    return p;
  }
  throw new RegistryError('no_free_port', `no free port left in ${range.min}–${range.max}`, {
    hint: "Stop services you no longer need ('tao-infer ls', 'tao-infer stop <job_id>'), or widen TAO_INF_PORT_RANGE.",
  });
}
