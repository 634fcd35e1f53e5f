/**
 * Host port allocation (contract §5 port rule), run inside the registry lock: the lowest port of the
 * allocation range (8080–8199, or `TAO_INF_PORT_RANGE=lo-hi`) not held by a registry entry of the same
 * platform (brev: the same instance) and, for ports on this host, not bound by anything else.
 */
import { createServer } from 'node:net';
import { InvalidInputError, RegistryError } from '../errors.js';
import type { RegistryEntry } from '../types.js';
import { PORT_RANGE } from '../archs/inputs.js';
import type { RegistryState } from './store.js';

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
 * wildcard address the IPv6 loopback is probed too, because host_url says `localhost`, which may
 * resolve to ::1 first.
 */
export async function isPortFree(port: number, address = '127.0.0.1'): Promise<boolean> {
  if (!(await probeListen(port, address))) return false;
  if (address === '127.0.0.1' || address === '0.0.0.0') return probeListen(port, '::1', true);
  return true;
}

function probeListen(port: number, address: string, unavailableIsFree = false): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(unavailableIsFree && (e.code === 'EADDRNOTAVAIL' || e.code === 'EAFNOSUPPORT')));
    srv.listen({ port, host: address, exclusive: true }, () => srv.close(() => resolve(true)));
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

/** Ports held by entries matching `holds` (host_port and local_port both count); stale `starting` entries hold none. */
export function heldPorts(state: RegistryState, holds: (e: RegistryEntry) => boolean): Set<number> {
  const used = new Set<number>();
  const now = Date.now();
  for (const e of Object.values(state.entries)) {
    if (!holds(e) || isStaleStarting(e, now)) continue;
    if (typeof e.host_port === 'number') used.add(e.host_port);
    if (typeof e.local_port === 'number') used.add(e.local_port);
  }
  return used;
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
 * Pick a port following the rule. Call inside `Registry.mutate`.
 * @throws InvalidInputError when an explicit port is taken; RegistryError when the whole range is used.
 */
export async function pickPort(state: RegistryState, opts: PickPortOptions): Promise<number> {
  const used = heldPorts(state, opts.holds);
  if (opts.explicit !== undefined) {
    const owner = Object.values(state.entries).find((e) => opts.holds(e) && !isStaleStarting(e) && (e.host_port === opts.explicit || e.local_port === opts.explicit));
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
    if (used.has(p) || opts.exclude?.has(p)) continue;
    if (opts.checkBound && !(await isPortFree(p, opts.bindAddress))) continue;
    return p;
  }
  throw new RegistryError('no_free_port', `no free port left in ${range.min}–${range.max}`, {
    hint: "Stop services you no longer need ('tao-infer ls', 'tao-infer stop <job_id>'), or widen TAO_INF_PORT_RANGE.",
  });
}
