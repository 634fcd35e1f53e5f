/**
 * Shared state of the fake Kubernetes API server (see ../k8s-api-server.ts for what it reproduces and the sources):
 * the object store, nodes, pod runtimes, Service proxies and the test switches, plus the small helpers every part
 * (router, controller, kubelet, network) uses on it.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type net from 'node:net';

export type Obj = Record<string, any>;

export interface FakeNode {
  name: string;
  gpus: number;
  taints?: Array<{ key: string; value?: string; effect: string }>;
  unschedulable?: boolean;
}

/** What the next pod the Job controller creates does (consumed once). */
export interface NextPodBehaviour {
  /** Fail the image pull with this registry message (ErrImagePull, then ImagePullBackOff). */
  imagePullError?: string;
  /** Extra environment for the container process (e.g. STANDIN_CRASH_AT_START=1 makes the stand-in exit 3). */
  env?: Record<string, string>;
  /** SIGKILL the container this many ms after it started and report OOMKilled (exit 137), like the kernel OOM killer. */
  oomKillAfterMs?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: string;
}

export interface PodRuntime {
  stage: 'unscheduled' | 'creating' | 'pullFailed' | 'configError' | 'running' | 'terminated';
  since: number;
  behaviour: NextPodBehaviour;
  proc?: ChildProcess;
  logs: string;
  followers: Set<ServerResponse>;
  oomKilled?: boolean;
  deleting?: boolean;
  probeTimer?: NodeJS.Timeout;
  workdir?: string;
  gpus: number;
  /**
   * The pod's "network namespace": container port → the port the process really listens on at the pod IP.
   * All pods share this host, and a program holding 0.0.0.0:8080 would block every 127.x.y.z:8080 on Linux, so
   * the container port is translated (STANDIN_PORT) the way a pod network would keep it private.
   */
  portMap: Map<number, number>;
}

/** A Service address (LB ingress:port or node:nodePort) that forwards to the Service's ready pods. */
export interface ProxyListener {
  ip: string;
  port: number;
  ns: string;
  svcName: string;
  svcPort: Obj;
  server?: net.Server;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Obj,
  ) {
    super(message);
  }
}

export interface Kind {
  kind: string;
  resource: string;
  group: string;
  apiVersion: string;
  /** `jobs.batch` / `secrets` as used in NotFound/AlreadyExists messages. */
  qualified: string;
  /** `Job.batch` / `Secret` as used in Invalid messages. */
  kindQualified: string;
}
export const KINDS: Record<string, Kind> = {
  secrets: { kind: 'Secret', resource: 'secrets', group: '', apiVersion: 'v1', qualified: 'secrets', kindQualified: 'Secret' },
  services: { kind: 'Service', resource: 'services', group: '', apiVersion: 'v1', qualified: 'services', kindQualified: 'Service' },
  pods: { kind: 'Pod', resource: 'pods', group: '', apiVersion: 'v1', qualified: 'pods', kindQualified: 'Pod' },
  jobs: { kind: 'Job', resource: 'jobs', group: 'batch', apiVersion: 'batch/v1', qualified: 'jobs.batch', kindQualified: 'Job.batch' },
};

/** A `kind: Status` failure body as the API server sends it. */
export function statusBody(code: number, reason: string, message: string, details?: Obj): Obj {
  const b: Obj = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  if (details) b.details = details;
  return b;
}

const POD_SUFFIX_CHARS = 'bcdfghjklmnpqrstvwxz2456789';
/** Five random characters from the alphabet the API server uses for generated name suffixes. */
export function nameSuffix(): string {
  return Array.from({ length: 5 }, () => POD_SUFFIX_CHARS[Math.floor(Math.random() * POD_SUFFIX_CHARS.length)]).join('');
}

export interface ClusterOptions {
  token: string;
  nodes: FakeNode[];
  namespaces: string[];
  privateRegistries: string[];
  lbDelayMs: number;
  graceMs: number;
}

/** Everything the parts of the fake share. */
export class ClusterState {
  readonly token: string;
  /** Every request received, in order (raw body text). */
  readonly requests: RecordedRequest[] = [];
  withholdIngress = false;
  forbidNodeList = false;
  hangRequests = false;
  readonly store = new Map<string, Obj>();
  nodes: FakeNode[];
  readonly nodeIPs = new Map<string, string>();
  readonly namespaces: Set<string>;
  readonly runtimes = new Map<string, PodRuntime>();
  nextBehaviours: NextPodBehaviour[] = [];
  readonly podEnv = new Map<string, string[]>();
  rv = 1000;
  private ipBase: [number, number];
  private ipNext = 10;
  readonly proxies = new Map<string, ProxyListener[]>();
  readonly usedNodePorts = new Set<number>();
  readonly lbIPs = new Map<string, string>();
  readonly privateRegistries: string[];
  readonly lbDelayMs: number;
  readonly graceMs: number;

  constructor(o: ClusterOptions) {
    this.token = o.token;
    this.nodes = o.nodes;
    this.namespaces = new Set(o.namespaces);
    this.privateRegistries = o.privateRegistries;
    this.lbDelayMs = o.lbDelayMs;
    this.graceMs = o.graceMs;
    this.ipBase = [20 + Math.floor(Math.random() * 200), Math.floor(Math.random() * 250)];
    for (const n of this.nodes) this.nodeIPs.set(n.name, this.allocIP());
  }

  /** Stored objects of a resource (`jobs`, `services`, `secrets`, `pods`), optionally in one namespace (copies). */
  objects(resource: string, namespace?: string): Obj[] {
    const out: Obj[] = [];
    for (const [key, obj] of this.store) {
      const [r, ns] = key.split('/');
      if (r === resource && (namespace === undefined || ns === namespace)) out.push(structuredClone(obj));
    }
    return out;
  }

  /** Server-set metadata of a new object: namespace, uid, resourceVersion, creationTimestamp, generation. */
  stamp(obj: Obj, ns: string): void {
    const m = obj.metadata;
    m.namespace = ns;
    m.uid = randomUUID();
    m.resourceVersion = String(++this.rv);
    m.creationTimestamp = new Date().toISOString();
    m.generation = 1;
  }

  /** A new resourceVersion for a changed object. */
  touch(pod: Obj): void {
    pod.metadata.resourceVersion = String(++this.rv);
  }

  /** The next unused loopback address (127.a.b.n) for a node, pod or load balancer. */
  allocIP(): string {
    const n = this.ipNext++;
    return `127.${this.ipBase[0]}.${this.ipBase[1]}.${n}`;
  }

  /** Where a container port of a pod really listens (see PodRuntime.portMap). */
  podPort(ns: string, name: string, port: number): number {
    return this.runtimes.get(`${ns}/${name}`)?.portMap.get(port) ?? port;
  }

  /** Signal a pod's process group (the process alone if the group is gone); no-op once it has exited. */
  killProc(rt: PodRuntime, sig: NodeJS.Signals): void {
    const pid = rt.proc?.pid;
    if (!pid || rt.proc!.exitCode !== null || rt.proc!.signalCode !== null) return;
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* gone */
      }
    }
  }

  /** Set a pod condition, keeping lastTransitionTime when the status does not change. */
  setCondition(pod: Obj, type: string, status: 'True' | 'False', reason?: string, message?: string): void {
    const conds: Obj[] = (pod.status.conditions ??= []);
    const now = new Date().toISOString();
    const i = conds.findIndex((x) => x.type === type);
    const next: Obj = { type, status, lastProbeTime: null, lastTransitionTime: now, ...(reason ? { reason } : {}), ...(message ? { message } : {}) };
    if (i < 0) conds.push(next);
    else {
      const c = conds[i]!;
      if (c.status === status && c.reason === reason && c.message === message) return;
      if (c.status === status) next.lastTransitionTime = c.lastTransitionTime;
      conds[i] = next;
    }
  }

  /** Replace the first container's status with `state` (waiting/running/terminated). */
  containerStatus(pod: Obj, state: Obj, ready = false): void {
    const c = pod.spec.containers[0];
    pod.status.containerStatuses = [
      { name: c.name, image: c.image, imageID: state.running || state.terminated ? `${c.image}@sha256:${'0'.repeat(64)}` : '', ready, restartCount: 0, started: !!state.running, state },
    ];
  }
}
