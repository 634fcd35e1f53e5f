/**
 * A fake Kubernetes API server for tests (no real API server can run on this machine).
 *
 * It speaks the documented REST API (https://kubernetes.io/docs/reference/kubernetes-api/) over HTTPS on
 * 127.0.0.1 (a throw-away self-signed certificate made with the openssl CLI; the kubeconfig carries it as
 * certificate-authority-data, like a real cluster's) so that the real `@kubernetes/client-node`, configured by a
 * real kubeconfig file (`writeKubeconfig`), talks to it exactly as to a cluster. Everything runs on loopback.
 *
 * Documented behaviours it reproduces
 * - Paths and verbs: GET /api/v1/nodes[/{name}], GET /api/v1/namespaces/{ns};
 *   GET(list)/POST /api/v1/namespaces/{ns}/{secrets|services|pods}, GET/DELETE .../{name};
 *   GET(list)/POST /apis/batch/v1/namespaces/{ns}/jobs, GET/DELETE .../jobs/{name};
 *   GET /api/v1/namespaces/{ns}/pods/{name}/log (container, tailLines, follow);
 *   WebSocket /api/v1/namespaces/{ns}/pods/{name}/portforward?ports=P (subprotocol v4.channel.k8s.io: per port a
 *   data channel 2i and an error channel 2i+1, the first frame on each carries the port as 2 bytes little-endian;
 *   client frames are <channel byte><data>).
 * - Bearer-token authentication (401 Unauthorized Status), and an optional 403 Forbidden on listing nodes (RBAC).
 * - Objects get metadata.uid, resourceVersion, creationTimestamp (and generateName expansion); lists carry
 *   kind `<Kind>List` and honour labelSelector (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`).
 * - Errors are `kind: Status` objects: 404 NotFound (`jobs.batch "x" not found`, `namespaces "x" not found`),
 *   409 AlreadyExists, 422 Invalid with details.causes and the API server's message format
 *   (`Job.batch "x" is invalid: [field: Reason: detail, ...]`), 400 BadRequest (namespace mismatch, invalid base64 in
 *   Secret data, logs of a waiting container), 405 MethodNotAllowed for verbs it does not serve.
 * - Validation: metadata.name required and formatted (Secret/Job: DNS-1123 subdomain; Service: DNS-1035 label;
 *   a Job name must also be a valid label value, i.e. at most 63 characters, because the controller labels its pods
 *   with it), label keys/values, Job `spec.template.spec.restartPolicy` must be Never/OnFailure, containers (name
 *   DNS-1123 label, image required, ports 1-65535), env names, envFrom secretRef name, volumes/volumeMounts
 *   (names, mountPath, mounts must reference a volume), extended resources (`nvidia.com/gpu`) whole numbers with
 *   requests == limits, Service ports/type/targetPort, Secret data keys and base64 values (stringData merged into data).
 * - Job defaulting like the API server: spec.selector = controller-uid, pod template labels `controller-uid`,
 *   `batch.kubernetes.io/controller-uid`, `job-name`, `batch.kubernetes.io/job-name`; backoffLimit default 6.
 * - Job controller: one pod per attempt (name `<job>-xxxxx`, ownerReferences to the Job); a failed pod is replaced
 *   until `status.failed > backoffLimit`, then conditions FailureTarget + Failed/BackoffLimitExceeded
 *   ("Job has reached the specified backoff limit"); success → SuccessCriteriaMet + Complete; status.active/ready.
 * - Scheduler: a pod needs a node whose allocatable `nvidia.com/gpu` minus the GPUs of its running pods covers the
 *   request and whose NoSchedule taints it tolerates; otherwise PodScheduled=False/Unschedulable with the message
 *   "0/N nodes are available: k Insufficient nvidia.com/gpu, ...". Pending pods are retried.
 * - Kubelet: image pull (images on registries listed in `privateRegistries` need an imagePullSecret of type
 *   kubernetes.io/dockerconfigjson with credentials for that registry, else ErrImagePull "... 401 Unauthorized" then
 *   ImagePullBackOff), envFrom of a missing Secret → CreateContainerConfigError `secret "x" not found`, the
 *   container command really runs on this host (`/bin/sh -c ...` with PATH led by the stand-in's bin/, env = the
 *   container's env + the decoded Secret, nothing inherited from the test process), STANDIN_HOST = the pod IP (a
 *   unique 127.x.y.z address; the container port is privately translated with STANDIN_PORT, standing in for the
 *   pod's network namespace, so a host program on 0.0.0.0:8080 cannot collide with pods), readiness probe httpGet (200-399 = ready) every second, container state
 *   running/terminated (Completed, Error + exit code, OOMKilled 137), pod phase Pending/Running/Succeeded/Failed,
 *   pod logs from the process's stdout+stderr (tailLines, follow until the container ends).
 * - Services: clusterIP, nodePorts (30000-32767) for NodePort/LoadBalancer, a LoadBalancer gets
 *   status.loadBalancer.ingress[0].ip (its own loopback address) unless ingress is withheld; traffic to
 *   <ingress ip>:<port> and <node InternalIP>:<nodePort> is proxied to ready pods matching the selector
 *   (no ready endpoint → connection refused, like kube-proxy's REJECT rule).
 * - Deletion: DELETE honours propagationPolicy (query or DeleteOptions body). Jobs default to orphaning their pods
 *   (batch/v1's legacy default); Foreground keeps the Job (deletionTimestamp, finalizer foregroundDeletion) until
 *   its pods are gone; Background removes the Job at once and its pods afterwards. Deleting a pod ends its process
 *   (SIGTERM, SIGKILL after the grace period).
 * Not reproduced: watch, PATCH/PUT, field selectors, admission webhooks, quotas, TLS, SPDY.
 *
 * Test controls: `setNodes`, `nextPod({...})` (image pull failure, extra env such as STANDIN_CRASH_AT_START, OOM kill),
 * `withholdIngress`, `forbidNodeList`, `hangRequests`, `seedSecret`, `reset()`, `requests` (every request received,
 * raw body), `objects()`/`allObjects()`, `podEnvNames()`, `podLog()`.
 */
import { portForwardForbidden } from './k8s-rbac.js';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';

const ROOT = resolve(import.meta.dirname, '..', '..');
export const STANDIN_BIN = join(ROOT, 'test', 'fixtures', 'standin', 'bin');

type Obj = Record<string, any>;

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

interface PodRuntime {
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
interface ProxyListener {
  ip: string;
  port: number;
  ns: string;
  svcName: string;
  svcPort: Obj;
  server?: net.Server;
}

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Obj,
  ) {
    super(message);
  }
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;
const POD_SUFFIX_CHARS = 'bcdfghjklmnpqrstvwxz2456789';

interface Kind {
  kind: string;
  resource: string;
  group: string;
  apiVersion: string;
  /** `jobs.batch` / `secrets` as used in NotFound/AlreadyExists messages. */
  qualified: string;
  /** `Job.batch` / `Secret` as used in Invalid messages. */
  kindQualified: string;
}
const KINDS: Record<string, Kind> = {
  secrets: { kind: 'Secret', resource: 'secrets', group: '', apiVersion: 'v1', qualified: 'secrets', kindQualified: 'Secret' },
  services: { kind: 'Service', resource: 'services', group: '', apiVersion: 'v1', qualified: 'services', kindQualified: 'Service' },
  pods: { kind: 'Pod', resource: 'pods', group: '', apiVersion: 'v1', qualified: 'pods', kindQualified: 'Pod' },
  jobs: { kind: 'Job', resource: 'jobs', group: 'batch', apiVersion: 'batch/v1', qualified: 'jobs.batch', kindQualified: 'Job.batch' },
};

function statusBody(code: number, reason: string, message: string, details?: Obj): Obj {
  const b: Obj = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  if (details) b.details = details;
  return b;
}

/** Field error collector producing the API server's Invalid message format. */
class FieldErrors {
  readonly causes: Array<{ reason: string; message: string; field: string }> = [];
  required(field: string, detail = '') {
    this.causes.push({ reason: 'FieldValueRequired', message: `Required value${detail ? `: ${detail}` : ''}`, field });
  }
  invalid(field: string, value: unknown, detail: string) {
    this.causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(value)}: ${detail}`, field });
  }
  unsupported(field: string, value: unknown, supported: string[]) {
    this.causes.push({
      reason: 'FieldValueNotSupported',
      message: `Unsupported value: ${JSON.stringify(value)}: supported values: ${supported.map((s) => JSON.stringify(s)).join(', ')}`,
      field,
    });
  }
  notFound(field: string, value: unknown) {
    this.causes.push({ reason: 'FieldValueNotFound', message: `Not found: ${JSON.stringify(value)}`, field });
  }
  duplicate(field: string, value: unknown) {
    this.causes.push({ reason: 'FieldValueDuplicate', message: `Duplicate value: ${JSON.stringify(value)}`, field });
  }
  throwIfAny(k: Kind, name: string) {
    if (!this.causes.length) return;
    const parts = this.causes.map((c) => `${c.field}: ${c.message}`);
    const msg = `${k.kindQualified} "${name}" is invalid: ${parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`}`;
    throw new ApiError(422, 'Invalid', msg, { name, group: k.group || undefined, kind: k.kind, causes: this.causes });
  }
}

function dnsSubdomainMsg(): string {
  return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
}
function dns1123LabelMsg(): string {
  return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
}
function dns1035LabelMsg(): string {
  return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
}

function validateLabels(fe: FieldErrors, field: string, labels: unknown, isAnnotations = false) {
  if (labels === undefined || labels === null) return;
  if (typeof labels !== 'object' || Array.isArray(labels)) return fe.invalid(field, labels, 'must be a map of strings');
  for (const [k, v] of Object.entries(labels as Obj)) {
    const slash = k.lastIndexOf('/');
    const prefix = slash >= 0 ? k.slice(0, slash) : '';
    const name = slash >= 0 ? k.slice(slash + 1) : k;
    if ((slash >= 0 && !(prefix.length <= 253 && DNS1123_SUBDOMAIN.test(prefix))) || !(name.length <= 63 && QUALIFIED_NAME.test(name))) {
      fe.invalid(`${field}`, k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
    }
    if (typeof v !== 'string') fe.invalid(`${field}`, v, 'must be a string');
    else if (!isAnnotations) {
      if (v.length > 63) fe.invalid(`${field}`, v, 'must be no more than 63 characters');
      else if (!LABEL_VALUE.test(v)) fe.invalid(`${field}`, v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
    }
  }
}

/** Parses a labelSelector string into a predicate. @throws ApiError 400 on syntax it does not understand. */
function parseSelector(sel: string | undefined): (labels: Obj | undefined) => boolean {
  if (!sel) return () => true;
  const reqs: Array<(l: Obj) => boolean> = [];
  // split on commas that are not inside parentheses
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of sel) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  for (const raw of parts) {
    const p = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([^!=\s]+)\s*!=\s*(\S*)$/.exec(p))) {
      const [, k, v] = m;
      reqs.push((l) => l[k!] !== v);
    } else if ((m = /^([^!=\s]+)\s*==?\s*(\S*)$/.exec(p))) {
      const [, k, v] = m;
      reqs.push((l) => l[k!] === v);
    } else if ((m = /^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p))) {
      const [, k, op, list] = m;
      const vals = list!.split(',').map((s) => s.trim());
      reqs.push(op === 'in' ? (l) => vals.includes(l[k!]) : (l) => !vals.includes(l[k!]));
    } else if ((m = /^!(\S+)$/.exec(p))) {
      const k = m[1]!;
      reqs.push((l) => !(k in l));
    } else if ((m = /^(\S+)$/.exec(p))) {
      const k = m[1]!;
      reqs.push((l) => k in l);
    } else {
      throw new ApiError(400, 'BadRequest', `unable to parse requirement: ${JSON.stringify(p)}`);
    }
  }
  return (labels) => reqs.every((r) => r(labels ?? {}));
}

function isDockerTrue(v: unknown): boolean {
  return v === true || v === 'true';
}

export interface FakeK8sOptions {
  nodes?: FakeNode[];
  namespaces?: string[];
  /** Bearer token the kubeconfig must present. */
  token?: string;
  /** Registries whose images need pull credentials (default ['nvcr.io']). */
  privateRegistries?: string[];
  /** Seconds a LoadBalancer takes to get its ingress (default 0.3). */
  lbDelayMs?: number;
  /** Termination grace cap in ms for pod processes (default 5000). */
  graceMs?: number;
}

export class FakeK8sApiServer {
  readonly token: string;
  /** Every request received, in order (raw body text). */
  readonly requests: RecordedRequest[] = [];
  /** LoadBalancer Services get no ingress while true. */
  withholdIngress = false;
  /** Listing nodes answers 403 Forbidden while true. */
  forbidNodeList = false;
  /** While true, requests are accepted and never answered (a blackholed API server). */
  hangRequests = false;
  url = '';

  private server?: https.Server;
  private tlsDir = '';
  private caPem = '';
  private wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => (protocols.has('v4.channel.k8s.io') ? 'v4.channel.k8s.io' : false) });
  private store = new Map<string, Obj>();
  private nodes: FakeNode[];
  private nodeIPs = new Map<string, string>();
  private namespaces: Set<string>;
  private runtimes = new Map<string, PodRuntime>();
  private nextBehaviours: NextPodBehaviour[] = [];
  private rv = 1000;
  private ipBase: [number, number];
  private ipNext = 10;
  private timer?: NodeJS.Timeout;
  private proxies = new Map<string, ProxyListener[]>();
  private usedNodePorts = new Set<number>();
  private lbIPs = new Map<string, string>();
  private readonly privateRegistries: string[];
  private readonly lbDelayMs: number;
  private readonly graceMs: number;
  private sockets = new Set<Duplex>();

  constructor(opts: FakeK8sOptions = {}) {
    this.token = opts.token ?? `fake-${randomBytes(8).toString('hex')}`;
    this.nodes = opts.nodes ?? [
      { name: 'gpu-node-a', gpus: 2, taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }] },
      { name: 'cpu-node-b', gpus: 0 },
    ];
    this.namespaces = new Set(opts.namespaces ?? ['default', 'kube-system', 'tao']);
    this.privateRegistries = opts.privateRegistries ?? ['nvcr.io'];
    this.lbDelayMs = opts.lbDelayMs ?? 300;
    this.graceMs = opts.graceMs ?? 5000;
    this.ipBase = [20 + Math.floor(Math.random() * 200), Math.floor(Math.random() * 250)];
    for (const n of this.nodes) this.nodeIPs.set(n.name, this.allocIP());
  }

  /** Start listening on 127.0.0.1:<random port>. */
  async start(): Promise<void> {
    this.tlsDir = mkdtempSync(join(tmpdir(), 'fake-k8s-tls-'));
    const key = join(this.tlsDir, 'apiserver.key');
    const cert = join(this.tlsDir, 'apiserver.crt');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      { stdio: 'ignore' },
    );
    this.caPem = readFileSync(cert, 'utf8');
    this.server = https.createServer({ key: readFileSync(key), cert: this.caPem }, (req, res) => void this.handle(req, res));
    this.server.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket as net.Socket, head));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    const addr = this.server.address() as net.AddressInfo;
    this.url = `https://127.0.0.1:${addr.port}`;
    this.timer = setInterval(() => this.reconcile(), 100);
  }

  /** Stop everything: pod processes (process groups), proxies, the HTTP server. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const [, rt] of this.runtimes) this.killProc(rt, 'SIGKILL');
    for (const [, rt] of this.runtimes) {
      if (rt.probeTimer) clearInterval(rt.probeTimer);
      for (const f of rt.followers) f.end();
      if (rt.workdir) rmSync(rt.workdir, { recursive: true, force: true });
    }
    for (const [key] of this.proxies) this.closeProxies(key);
    for (const c of this.wss.clients) c.terminate();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    if (this.tlsDir) rmSync(this.tlsDir, { recursive: true, force: true });
  }

  /** Write a kubeconfig pointing at this server (context `fake`, token user) and return its path. */
  writeKubeconfig(dir: string, opts: { context?: string; namespace?: string; token?: string } = {}): string {
    const ctx = opts.context ?? 'fake';
    const text = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: fake-cluster`,
      `  cluster:`,
      `    server: ${this.url}`,
      `    certificate-authority-data: ${Buffer.from(this.caPem).toString('base64')}`,
      'users:',
      `- name: fake-user`,
      `  user:`,
      `    token: ${opts.token ?? this.token}`,
      'contexts:',
      `- name: ${ctx}`,
      `  context:`,
      `    cluster: fake-cluster`,
      `    user: fake-user`,
      `    namespace: ${opts.namespace ?? 'default'}`,
      `current-context: ${ctx}`,
      '',
    ].join('\n');
    const file = join(dir, 'kubeconfig');
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  }

  // ------------------------------------------------------------------ test controls

  setNodes(nodes: FakeNode[]): void {
    this.nodes = nodes;
    for (const n of nodes) if (!this.nodeIPs.has(n.name)) this.nodeIPs.set(n.name, this.allocIP());
  }

  /**
   * Forget every object except seeded ones (`seedSecret`), killing pod processes at once; clears queued pod
   * behaviours and the ingress/forbid switches. Recorded requests are kept.
   */
  reset(): void {
    for (const [key, rt] of this.runtimes) {
      this.killProc(rt, 'SIGKILL');
      if (rt.probeTimer) clearInterval(rt.probeTimer);
      for (const f of rt.followers) f.end();
      if (rt.workdir) rmSync(rt.workdir, { recursive: true, force: true });
      this.runtimes.delete(key);
    }
    for (const [key, obj] of this.store) {
      if (obj.metadata?.annotations?.['fake.k8s/seeded'] === 'true') continue;
      this.store.delete(key);
    }
    for (const [key] of this.proxies) this.closeProxies(key);
    this.usedNodePorts.clear();
    this.nextBehaviours = [];
    this.withholdIngress = false;
    this.forbidNodeList = false;
    this.hangRequests = false;
  }

  /** Queue a behaviour for the next pod created by the Job controller. */
  nextPod(b: NextPodBehaviour): void {
    this.nextBehaviours.push(b);
  }

  /** Create a Secret directly (e.g. an image pull secret the cluster admin made). */
  seedSecret(namespace: string, name: string, type: string, data: Record<string, string>): void {
    const body: Obj = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace, annotations: { 'fake.k8s/seeded': 'true' } },
      type,
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    };
    this.createObject(KINDS.secrets!, namespace, body);
  }

  /** A docker-registry pull secret's data for `registry`. */
  static dockerConfigFor(registry: string): Record<string, string> {
    return {
      '.dockerconfigjson': JSON.stringify({ auths: { [registry]: { username: '$oauthtoken', password: 'not-a-real-key', auth: Buffer.from('$oauthtoken:not-a-real-key').toString('base64') } } }),
    };
  }

  /** Stored objects of a resource (`jobs`, `services`, `secrets`, `pods`), optionally in one namespace. */
  objects(resource: keyof typeof KINDS | string, namespace?: string): Obj[] {
    const out: Obj[] = [];
    for (const [key, obj] of this.store) {
      const [r, ns] = key.split('/');
      if (r === resource && (namespace === undefined || ns === namespace)) out.push(structuredClone(obj));
    }
    return out;
  }

  /** All stored objects of all kinds (for leak checks). */
  allObjects(): Obj[] {
    return [...this.store.values()].map((o) => structuredClone(o));
  }

  /** Names of the environment variables a pod's container process got (values are not exposed). */
  podEnvNames(namespace: string, pod: string): string[] {
    return this.podEnv.get(`${namespace}/${pod}`) ?? [];
  }
  private podEnv = new Map<string, string[]>();

  /** The raw log text of a pod's container (everything the process wrote). */
  podLog(namespace: string, pod: string): string {
    return this.runtimes.get(`${namespace}/${pod}`)?.logs ?? '';
  }

  /** True while any pod process is alive. */
  anyPodProcessAlive(): boolean {
    for (const rt of this.runtimes.values()) if (rt.proc && rt.proc.exitCode === null && rt.proc.signalCode === null) return true;
    return false;
  }

  // ------------------------------------------------------------------ HTTP

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://fake');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const query = Object.fromEntries(u.searchParams.entries());
    this.requests.push({ method: req.method ?? 'GET', path: u.pathname, query, body });
    if (this.hangRequests) return;
    try {
      if (!this.authorized(req)) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
      await this.route(req.method ?? 'GET', u.pathname, query, body, res);
    } catch (e) {
      if (res.headersSent) {
        res.end();
        return;
      }
      if (e instanceof ApiError) this.send(res, e.code, statusBody(e.code, e.reason, e.message, e.details));
      else this.send(res, 500, statusBody(500, 'InternalError', `Internal error occurred: ${(e as Error).message}`));
    }
  }

  private authorized(req: IncomingMessage): boolean {
    return req.headers.authorization === `Bearer ${this.token}`;
  }

  private send(res: ServerResponse, code: number, obj: unknown): void {
    const text = JSON.stringify(obj);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async route(method: string, path: string, query: Record<string, string>, body: string, res: ServerResponse): Promise<void> {
    const seg = path.split('/').filter(Boolean);
    if (query.watch === 'true' || query.watch === '1') throw new ApiError(400, 'BadRequest', 'watch is not supported by this fake API server');
    // /api/v1/nodes[/{name}]
    if (seg[0] === 'api' && seg[1] === 'v1' && seg[2] === 'nodes') {
      if (method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      if (seg.length === 3) {
        if (this.forbidNodeList)
          throw new ApiError(403, 'Forbidden', 'nodes is forbidden: User "fake-user" cannot list resource "nodes" in API group "" at the cluster scope', { kind: 'nodes' });
        return this.send(res, 200, { kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items: this.nodes.map((n) => this.nodeObject(n)) });
      }
      const n = this.nodes.find((x) => x.name === seg[3]);
      if (!n || seg.length > 4) throw new ApiError(404, 'NotFound', `nodes "${seg[3]}" not found`, { name: seg[3], kind: 'nodes' });
      return this.send(res, 200, { kind: 'Node', apiVersion: 'v1', ...this.nodeObject(n) });
    }
    let k: Kind | undefined;
    let ns: string | undefined;
    let rest: string[] = [];
    if (seg[0] === 'api' && seg[1] === 'v1' && seg[2] === 'namespaces' && seg[3]) {
      ns = seg[3];
      if (seg.length === 4) {
        if (method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
        if (!this.namespaces.has(ns)) throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
        return this.send(res, 200, { kind: 'Namespace', apiVersion: 'v1', metadata: { name: ns, uid: 'ns-' + ns }, status: { phase: 'Active' } });
      }
      k = KINDS[seg[4]!];
      if (k && k.group !== '') k = undefined;
      rest = seg.slice(5);
    } else if (seg[0] === 'apis' && seg[1] === 'batch' && seg[2] === 'v1' && seg[3] === 'namespaces' && seg[4]) {
      ns = seg[4];
      k = seg[5] === 'jobs' ? KINDS.jobs : undefined;
      rest = seg.slice(6);
    }
    if (!k || !ns) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');

    if (rest.length === 0) {
      if (method === 'GET') {
        const match = parseSelector(query.labelSelector);
        const items = this.objects(k.resource, ns).filter((o) => match(o.metadata?.labels));
        return this.send(res, 200, { kind: `${k.kind}List`, apiVersion: k.apiVersion, metadata: { resourceVersion: String(this.rv) }, items });
      }
      if (method === 'POST') {
        if (!this.namespaces.has(ns)) throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
        let obj: Obj;
        try {
          obj = JSON.parse(body);
        } catch (e) {
          throw new ApiError(400, 'BadRequest', `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (${(e as Error).message})`);
        }
        if (k.resource === 'pods') throw new ApiError(405, 'MethodNotAllowed', 'this fake creates pods only through the Job controller');
        const created = this.createObject(k, ns, obj);
        return this.send(res, 201, created);
      }
      throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
    const name = rest[0]!;
    const key = `${k.resource}/${ns}/${name}`;
    if (rest.length === 2 && k.resource === 'pods' && rest[1] === 'log' && method === 'GET') return this.podLogs(ns, name, query, res);
    if (rest.length > 1) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const existing = this.store.get(key);
    if (method === 'GET') {
      if (!existing) throw new ApiError(404, 'NotFound', `${k.qualified} "${name}" not found`, { name, group: k.group || undefined, kind: k.resource });
      return this.send(res, 200, existing);
    }
    if (method === 'DELETE') {
      if (!existing) throw new ApiError(404, 'NotFound', `${k.qualified} "${name}" not found`, { name, group: k.group || undefined, kind: k.resource });
      let opts: Obj = {};
      if (body.trim()) {
        try {
          opts = JSON.parse(body);
        } catch {
          throw new ApiError(400, 'BadRequest', 'invalid DeleteOptions');
        }
      }
      const policy: string | undefined = query.propagationPolicy ?? opts.propagationPolicy ?? (isDockerTrue(query.orphanDependents ?? opts.orphanDependents) ? 'Orphan' : undefined);
      if (policy !== undefined && !['Orphan', 'Background', 'Foreground'].includes(policy)) {
        throw new ApiError(422, 'Invalid', `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${policy}": supported values: "Foreground", "Background", "Orphan", "nil"`);
      }
      return this.send(res, 200, this.deleteObject(k, ns, name, policy));
    }
    throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
  }

  private nodeObject(n: FakeNode): Obj {
    const ip = this.nodeIPs.get(n.name)!;
    return {
      metadata: {
        name: n.name,
        uid: `node-${n.name}`,
        labels: { 'kubernetes.io/hostname': n.name, ...(n.gpus > 0 ? { 'nvidia.com/gpu.present': 'true', 'nvidia.com/gpu.count': String(n.gpus) } : {}) },
        creationTimestamp: new Date(0).toISOString(),
      },
      spec: { ...(n.taints?.length ? { taints: n.taints } : {}), ...(n.unschedulable ? { unschedulable: true } : {}) },
      status: {
        capacity: { cpu: '32', memory: '263978956Ki', pods: '110', ...(n.gpus > 0 ? { 'nvidia.com/gpu': String(n.gpus) } : {}) },
        allocatable: { cpu: '31850m', memory: '261779916Ki', pods: '110', ...(n.gpus > 0 ? { 'nvidia.com/gpu': String(n.gpus) } : {}) },
        addresses: [
          { type: 'InternalIP', address: ip },
          { type: 'Hostname', address: n.name },
        ],
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }],
        nodeInfo: { kubeletVersion: 'v1.31.0', containerRuntimeVersion: 'containerd://1.7.20', operatingSystem: 'linux', architecture: 'amd64' },
      },
    };
  }

  // ------------------------------------------------------------------ create / validate

  private meta(k: Kind, ns: string, obj: Obj, fe: FieldErrors): string {
    if (obj.kind !== undefined && obj.kind !== k.kind) {
      throw new ApiError(400, 'BadRequest', `the API version in the data (${obj.apiVersion}) does not match the expected API version (${k.apiVersion})`);
    }
    if (obj.apiVersion !== undefined && obj.apiVersion !== k.apiVersion) {
      throw new ApiError(400, 'BadRequest', `the API version in the data (${obj.apiVersion}) does not match the expected API version (${k.apiVersion})`);
    }
    const m: Obj = (obj.metadata ??= {});
    if (m.namespace !== undefined && m.namespace !== '' && m.namespace !== ns) {
      throw new ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
    }
    if (!m.name && m.generateName) m.name = `${m.generateName}${Array.from({ length: 5 }, () => POD_SUFFIX_CHARS[Math.floor(Math.random() * POD_SUFFIX_CHARS.length)]).join('')}`;
    const name: string = m.name ?? '';
    if (!name) fe.required('metadata.name', 'name or generateName is required');
    else if (k.kind === 'Service') {
      if (name.length > 63) fe.invalid('metadata.name', name, 'must be no more than 63 characters');
      else if (!DNS1035_LABEL.test(name)) fe.invalid('metadata.name', name, dns1035LabelMsg());
    } else if (!(name.length <= 253 && DNS1123_SUBDOMAIN.test(name))) fe.invalid('metadata.name', name, dnsSubdomainMsg());
    validateLabels(fe, 'metadata.labels', m.labels);
    validateLabels(fe, 'metadata.annotations', m.annotations, true);
    return name;
  }

  private stamp(obj: Obj, ns: string): void {
    const m = obj.metadata;
    m.namespace = ns;
    m.uid = randomUUID();
    m.resourceVersion = String(++this.rv);
    m.creationTimestamp = new Date().toISOString();
    m.generation = 1;
  }

  private createObject(k: Kind, ns: string, obj: Obj): Obj {
    const fe = new FieldErrors();
    const name = this.meta(k, ns, obj, fe);
    if (k.kind === 'Secret') this.validateSecret(obj, fe);
    if (k.kind === 'Job') this.validateJob(obj, fe, name);
    if (k.kind === 'Service') this.validateService(obj, fe);
    fe.throwIfAny(k, name);
    const key = `${k.resource}/${ns}/${name}`;
    if (this.store.has(key)) throw new ApiError(409, 'AlreadyExists', `${k.qualified} "${name}" already exists`, { name, group: k.group || undefined, kind: k.resource });
    obj.apiVersion = k.apiVersion;
    obj.kind = k.kind;
    this.stamp(obj, ns);
    if (k.kind === 'Job') this.defaultJob(obj);
    if (k.kind === 'Service') this.setUpService(obj, ns);
    this.store.set(key, obj);
    return structuredClone(obj);
  }

  private validateSecret(obj: Obj, fe: FieldErrors): void {
    obj.type ??= 'Opaque';
    const data: Obj = obj.data ?? {};
    const decodedSize = { n: 0 };
    for (const [key, v] of Object.entries(data)) {
      if (!SECRET_KEY.test(key)) fe.invalid(`data[${key}]`, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) {
        throw new ApiError(400, 'BadRequest', `Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0`);
      }
      decodedSize.n += Buffer.from(v, 'base64').length;
    }
    for (const [key, v] of Object.entries((obj.stringData ?? {}) as Obj)) {
      if (!SECRET_KEY.test(key)) fe.invalid(`stringData[${key}]`, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
      data[key] = Buffer.from(String(v)).toString('base64');
      decodedSize.n += Buffer.byteLength(String(v));
    }
    delete obj.stringData;
    if (Object.keys(data).length) obj.data = data;
    if (decodedSize.n > 1024 * 1024) fe.invalid('data', '<secret data>', 'Too long: must have at most 1048576 bytes');
    if (obj.type === 'kubernetes.io/dockerconfigjson' && !data['.dockerconfigjson']) fe.required('data[.dockerconfigjson]');
  }

  private validateContainer(c: Obj, path: string, fe: FieldErrors, volumeNames: Set<string>): void {
    if (!c.name) fe.required(`${path}.name`);
    else if (!(c.name.length <= 63 && DNS1123_LABEL.test(c.name))) fe.invalid(`${path}.name`, c.name, dns1123LabelMsg());
    if (!c.image || !String(c.image).trim()) fe.required(`${path}.image`);
    if (c.command !== undefined && (!Array.isArray(c.command) || c.command.some((x: unknown) => typeof x !== 'string'))) fe.invalid(`${path}.command`, c.command, 'must be a list of strings');
    const portNames = new Set<string>();
    (c.ports ?? []).forEach((p: Obj, i: number) => {
      if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535) fe.invalid(`${path}.ports[${i}].containerPort`, p.containerPort, 'must be between 1 and 65535, inclusive');
      if (p.name !== undefined) {
        if (!/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(p.name) || !/[a-z]/.test(p.name)) fe.invalid(`${path}.ports[${i}].name`, p.name, 'must be an IANA_SVC_NAME');
        if (portNames.has(p.name)) fe.duplicate(`${path}.ports[${i}].name`, p.name);
        portNames.add(p.name);
      }
      if (p.protocol !== undefined && !['TCP', 'UDP', 'SCTP'].includes(p.protocol)) fe.unsupported(`${path}.ports[${i}].protocol`, p.protocol, ['SCTP', 'TCP', 'UDP']);
    });
    (c.env ?? []).forEach((e: Obj, i: number) => {
      if (!e.name) fe.required(`${path}.env[${i}].name`);
      else if (!ENV_NAME.test(e.name)) fe.invalid(`${path}.env[${i}].name`, e.name, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit");
      if (e.value !== undefined && typeof e.value !== 'string') fe.invalid(`${path}.env[${i}].value`, e.value, 'must be a string');
    });
    (c.envFrom ?? []).forEach((e: Obj, i: number) => {
      const ref = e.secretRef ?? e.configMapRef;
      if (!ref) fe.required(`${path}.envFrom[${i}]`, 'must specify one of: `configMapRef` or `secretRef`');
      else if (!ref.name) fe.required(`${path}.envFrom[${i}].${e.secretRef ? 'secretRef' : 'configMapRef'}.name`);
      else if (!DNS1123_SUBDOMAIN.test(ref.name)) fe.invalid(`${path}.envFrom[${i}].secretRef.name`, ref.name, dnsSubdomainMsg());
    });
    const limits: Obj = c.resources?.limits ?? {};
    const requests: Obj = c.resources?.requests ?? {};
    for (const [r, q] of Object.entries({ ...limits, ...requests })) {
      if (!QUANTITY.test(String(q))) fe.invalid(`${path}.resources`, q, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
      void r;
    }
    for (const r of new Set([...Object.keys(limits), ...Object.keys(requests)])) {
      if (!r.includes('/') || r.startsWith('kubernetes.io/')) continue; // native resources
      const lim = limits[r];
      const req = requests[r];
      if (req !== undefined && lim === undefined) fe.required(`${path}.resources.limits`, `Limit must be set for non overcommitable resources`);
      else if (req !== undefined && String(req) !== String(lim)) fe.invalid(`${path}.resources.requests`, req, `must be equal to ${r} limit of ${lim}`);
      if (lim !== undefined && !/^\d+$/.test(String(lim))) fe.invalid(`${path}.resources.limits[${r}]`, lim, 'must be an integer');
    }
    const probe = c.readinessProbe;
    if (probe?.httpGet) {
      const port = probe.httpGet.port;
      if (typeof port === 'number') {
        if (port < 1 || port > 65535) fe.invalid(`${path}.readinessProbe.httpGet.port`, port, 'must be between 1 and 65535, inclusive');
      } else if (typeof port === 'string') {
        if (!portNames.has(port) && !/^\d+$/.test(port)) fe.invalid(`${path}.readinessProbe.httpGet.port`, port, 'must contain at least one letter or number (a-z, 0-9)');
      } else fe.required(`${path}.readinessProbe.httpGet.port`);
      for (const f of ['periodSeconds', 'timeoutSeconds', 'failureThreshold'])
        if (probe[f] !== undefined && (!Number.isInteger(probe[f]) || probe[f] < 0)) fe.invalid(`${path}.readinessProbe.${f}`, probe[f], 'must be greater than or equal to 0');
    }
    (c.volumeMounts ?? []).forEach((vm: Obj, i: number) => {
      if (!vm.name) fe.required(`${path}.volumeMounts[${i}].name`);
      else if (!volumeNames.has(vm.name)) fe.notFound(`${path}.volumeMounts[${i}].name`, vm.name);
      if (!vm.mountPath) fe.required(`${path}.volumeMounts[${i}].mountPath`);
    });
  }

  private validateJob(obj: Obj, fe: FieldErrors, name: string): void {
    const spec: Obj | undefined = obj.spec;
    if (!spec) return fe.required('spec');
    if (spec.backoffLimit !== undefined && (!Number.isInteger(spec.backoffLimit) || spec.backoffLimit < 0)) fe.invalid('spec.backoffLimit', spec.backoffLimit, 'must be greater than or equal to 0');
    const tpl: Obj | undefined = spec.template;
    if (!tpl?.spec) return fe.required('spec.template.spec');
    validateLabels(fe, 'spec.template.metadata.labels', tpl.metadata?.labels);
    // The controller labels pods with the Job name: it must be a valid label value.
    if (name && name.length > 63) fe.invalid('spec.template.labels', name, 'must be no more than 63 characters');
    const ps: Obj = tpl.spec;
    if (ps.restartPolicy === undefined) fe.required('spec.template.spec.restartPolicy', 'valid values: "OnFailure", "Never"');
    else if (!['OnFailure', 'Never'].includes(ps.restartPolicy)) fe.unsupported('spec.template.spec.restartPolicy', ps.restartPolicy, ['OnFailure', 'Never']);
    const volumeNames = new Set<string>();
    (ps.volumes ?? []).forEach((v: Obj, i: number) => {
      if (!v.name) fe.required(`spec.template.spec.volumes[${i}].name`);
      else if (!DNS1123_LABEL.test(v.name)) fe.invalid(`spec.template.spec.volumes[${i}].name`, v.name, dns1123LabelMsg());
      else if (volumeNames.has(v.name)) fe.duplicate(`spec.template.spec.volumes[${i}].name`, v.name);
      volumeNames.add(v.name);
      if (v.emptyDir?.sizeLimit !== undefined && !QUANTITY.test(String(v.emptyDir.sizeLimit))) fe.invalid(`spec.template.spec.volumes[${i}].emptyDir.sizeLimit`, v.emptyDir.sizeLimit, 'quantities must match the regular expression');
      if (v.emptyDir?.medium !== undefined && !['', 'Memory', 'HugePages'].includes(v.emptyDir.medium)) fe.unsupported(`spec.template.spec.volumes[${i}].emptyDir.medium`, v.emptyDir.medium, ['', 'Memory', 'HugePages']);
    });
    const containers: Obj[] = ps.containers ?? [];
    if (!containers.length) fe.required('spec.template.spec.containers');
    const names = new Set<string>();
    containers.forEach((c, i) => {
      this.validateContainer(c, `spec.template.spec.containers[${i}]`, fe, volumeNames);
      if (c.name && names.has(c.name)) fe.duplicate(`spec.template.spec.containers[${i}].name`, c.name);
      names.add(c.name);
    });
    (ps.imagePullSecrets ?? []).forEach((s: Obj, i: number) => {
      if (!s.name) fe.required(`spec.template.spec.imagePullSecrets[${i}].name`);
    });
    (ps.tolerations ?? []).forEach((t: Obj, i: number) => {
      if (t.operator !== undefined && !['Exists', 'Equal'].includes(t.operator)) fe.unsupported(`spec.template.spec.tolerations[${i}].operator`, t.operator, ['Equal', 'Exists']);
      if (t.effect !== undefined && !['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(t.effect)) fe.unsupported(`spec.template.spec.tolerations[${i}].effect`, t.effect, ['NoSchedule', 'PreferNoSchedule', 'NoExecute']);
    });
  }

  private defaultJob(job: Obj): void {
    const uid = job.metadata.uid;
    const name = job.metadata.name;
    job.spec.backoffLimit ??= 6;
    job.spec.completions ??= 1;
    job.spec.parallelism ??= 1;
    job.spec.completionMode ??= 'NonIndexed';
    job.spec.suspend ??= false;
    job.spec.selector = { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
    const tm: Obj = (job.spec.template.metadata ??= {});
    tm.labels = { ...(tm.labels ?? {}), 'controller-uid': uid, 'batch.kubernetes.io/controller-uid': uid, 'job-name': name, 'batch.kubernetes.io/job-name': name };
    job.metadata.labels ??= { 'controller-uid': uid, 'job-name': name };
    job.status = { active: 0, ready: 0, failed: 0, succeeded: 0, startTime: new Date().toISOString(), uncountedTerminatedPods: {} };
  }

  private validateService(obj: Obj, fe: FieldErrors): void {
    const spec: Obj = (obj.spec ??= {});
    spec.type ??= 'ClusterIP';
    if (!['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'].includes(spec.type)) fe.unsupported('spec.type', spec.type, ['ClusterIP', 'ExternalName', 'LoadBalancer', 'NodePort']);
    const ports: Obj[] = spec.ports ?? [];
    if (!ports.length && spec.type !== 'ExternalName') fe.required('spec.ports');
    const seen = new Set<string>();
    ports.forEach((p, i) => {
      if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) fe.invalid(`spec.ports[${i}].port`, p.port, 'must be between 1 and 65535, inclusive');
      if (ports.length > 1 && !p.name) fe.required(`spec.ports[${i}].name`);
      if (p.name) {
        if (seen.has(p.name)) fe.duplicate(`spec.ports[${i}].name`, p.name);
        seen.add(p.name);
      }
      p.protocol ??= 'TCP';
      if (!['TCP', 'UDP', 'SCTP'].includes(p.protocol)) fe.unsupported(`spec.ports[${i}].protocol`, p.protocol, ['SCTP', 'TCP', 'UDP']);
      if (p.targetPort === undefined) p.targetPort = p.port;
      else if (typeof p.targetPort === 'number' && (p.targetPort < 1 || p.targetPort > 65535)) fe.invalid(`spec.ports[${i}].targetPort`, p.targetPort, 'must be between 1 and 65535, inclusive');
      if (p.nodePort !== undefined) {
        if (spec.type === 'ClusterIP') fe.invalid(`spec.ports[${i}].nodePort`, p.nodePort, 'may not be used when `type` is \'ClusterIP\'');
        else if (p.nodePort < 30000 || p.nodePort > 32767) fe.invalid(`spec.ports[${i}].nodePort`, p.nodePort, 'provided port is not in the valid range. The range of valid ports is 30000-32767');
        else if (this.usedNodePorts.has(p.nodePort)) fe.invalid(`spec.ports[${i}].nodePort`, p.nodePort, 'provided port is already allocated');
      }
    });
    validateLabels(fe, 'spec.selector', spec.selector);
  }

  // ------------------------------------------------------------------ services (routing to pods)

  private setUpService(svc: Obj, ns: string): void {
    const spec = svc.spec;
    spec.clusterIP = `10.96.${Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
    spec.clusterIPs = [spec.clusterIP];
    spec.sessionAffinity ??= 'None';
    svc.status = { loadBalancer: {} };
    const key = `${ns}/${svc.metadata.name}`;
    if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') {
      for (const p of spec.ports) {
        if (p.nodePort === undefined) {
          let np: number;
          do np = 30000 + Math.floor(Math.random() * 2768);
          while (this.usedNodePorts.has(np));
          p.nodePort = np;
        }
        this.usedNodePorts.add(p.nodePort);
        for (const ip of this.nodeIPs.values()) this.listenProxy(key, ip, p.nodePort, ns, svc.metadata.name, p);
      }
      spec.externalTrafficPolicy ??= 'Cluster';
    }
    if (spec.type === 'LoadBalancer') {
      const lbIP = this.allocIP();
      this.lbIPs.set(key, lbIP);
      for (const p of spec.ports) this.listenProxy(key, lbIP, p.port, ns, svc.metadata.name, p);
      // The address must be usable: on Linux a program holding 0.0.0.0:<port> blocks every 127.x.y.z:<port>, and
      // traffic to the ingress would reach that program instead. Then the "cloud" never provisions the LB.
      let usable = true;
      for (const p of spec.ports) {
        const probe = net.createServer();
        probe.once('error', (e: NodeJS.ErrnoException) => {
          usable = false;
          console.warn(`fake k8s: LoadBalancer ${ns}/${svc.metadata.name} gets no ingress: ${lbIP}:${p.port} is unusable (${e.code}); another program holds 0.0.0.0:${p.port}?`);
        });
        probe.listen(p.port, lbIP, () => probe.close());
      }
      // The cloud load balancer gets its address after a short provisioning delay (never, while withheld).
      setTimeout(() => {
        const stored = this.store.get(`services/${ns}/${svc.metadata.name}`);
        if (!stored || stored.metadata.uid !== svc.metadata.uid || this.withholdIngress || !usable) return;
        stored.status.loadBalancer = { ingress: [{ ip: lbIP, ipMode: 'VIP' }] };
        this.touch(stored);
      }, this.lbDelayMs);
    }
  }

  private listenProxy(key: string, ip: string, port: number, ns: string, svcName: string, svcPort: Obj): void {
    const list = this.proxies.get(key) ?? [];
    list.push({ ip, port, ns, svcName, svcPort });
    this.proxies.set(key, list);
    this.syncProxies();
  }

  /**
   * kube-proxy semantics: a Service address with no ready endpoint rejects connections (ECONNREFUSED, like the
   * REJECT rule kube-proxy installs), so its listener is open only while the Service has a ready pod.
   */
  private syncProxies(): void {
    for (const list of this.proxies.values()) {
      for (const l of list) {
        const svc = this.store.get(`services/${l.ns}/${l.svcName}`);
        const has = !!svc && !!this.endpointFor(l.ns, svc, l.svcPort);
        if (has && !l.server) {
          const srv = net.createServer((client) => {
            client.on('error', () => client.destroy());
            const cur = this.store.get(`services/${l.ns}/${l.svcName}`);
            const ep = cur ? this.endpointFor(l.ns, cur, l.svcPort) : undefined;
            if (!ep) {
              client.destroy();
              return;
            }
            const up = net.connect({ host: ep.ip, port: ep.port });
            up.on('error', () => client.destroy());
            client.on('close', () => up.destroy());
            up.on('close', () => client.destroy());
            client.pipe(up);
            up.pipe(client);
          });
          srv.on('error', (e: NodeJS.ErrnoException) => {
            // e.g. another program holds 0.0.0.0:<port>, which on Linux blocks every 127.x.y.z:<port>.
            console.warn(`fake k8s: cannot listen on ${l.ip}:${l.port} for Service ${l.ns}/${l.svcName}: ${e.code ?? e.message}`);
          });
          srv.listen(l.port, l.ip);
          l.server = srv;
        } else if (!has && l.server) {
          l.server.close();
          delete l.server;
        }
      }
    }
  }

  private closeProxies(key: string): void {
    for (const l of this.proxies.get(key) ?? []) l.server?.close();
    this.proxies.delete(key);
  }

  private rr = 0;
  /** A ready, non-terminating pod selected by the Service, and the port to reach on it. */
  private endpointFor(ns: string, svc: Obj, svcPort: Obj): { ip: string; port: number } | undefined {
    const sel: Obj = svc.spec.selector ?? {};
    if (!Object.keys(sel).length) return undefined;
    const ready = this.objects('pods', ns).filter(
      (p) =>
        Object.entries(sel).every(([k, v]) => p.metadata.labels?.[k] === v) &&
        !p.metadata.deletionTimestamp &&
        p.status?.phase === 'Running' &&
        p.status?.conditions?.some((c: Obj) => c.type === 'Ready' && c.status === 'True'),
    );
    if (!ready.length) return undefined;
    const pod = ready[this.rr++ % ready.length]!;
    let port = svcPort.targetPort;
    if (typeof port === 'string') {
      const named = pod.spec.containers.flatMap((c: Obj) => c.ports ?? []).find((p: Obj) => p.name === port);
      if (!named) return undefined;
      port = named.containerPort;
    }
    return { ip: pod.status.podIP, port: this.podPort(ns, pod.metadata.name, port) };
  }

  // ------------------------------------------------------------------ delete

  private deleteObject(k: Kind, ns: string, name: string, policy: string | undefined): Obj {
    const key = `${k.resource}/${ns}/${name}`;
    const obj = this.store.get(key)!;
    if (k.kind === 'Service') {
      this.store.delete(key);
      this.closeProxies(`${ns}/${name}`);
      for (const p of obj.spec.ports ?? []) if (p.nodePort) this.usedNodePorts.delete(p.nodePort);
      return structuredClone(obj);
    }
    if (k.kind === 'Secret') {
      this.store.delete(key);
      return structuredClone(obj);
    }
    if (k.kind === 'Pod') {
      this.terminatePod(ns, name);
      return structuredClone(this.store.get(key) ?? obj);
    }
    // Job: batch/v1 defaults to orphaning its pods when no policy is given.
    const pods = this.objects('pods', ns).filter((p) => p.metadata.ownerReferences?.some((o: Obj) => o.uid === obj.metadata.uid));
    const effective = policy ?? 'Orphan';
    if (effective === 'Orphan') {
      for (const p of pods) {
        const stored = this.store.get(`pods/${ns}/${p.metadata.name}`);
        if (stored) stored.metadata.ownerReferences = [];
      }
      this.store.delete(key);
      return structuredClone(obj);
    }
    if (effective === 'Background' || pods.length === 0) {
      this.store.delete(key);
      for (const p of pods) this.terminatePod(ns, p.metadata.name);
      return structuredClone(obj);
    }
    // Foreground: the Job stays (deletionTimestamp + finalizer) until its pods are gone.
    obj.metadata.deletionTimestamp = new Date().toISOString();
    obj.metadata.deletionGracePeriodSeconds = 0;
    obj.metadata.finalizers = ['foregroundDeletion'];
    obj.metadata.resourceVersion = String(++this.rv);
    for (const p of pods) this.terminatePod(ns, p.metadata.name);
    return structuredClone(obj);
  }

  /** Graceful pod deletion: deletionTimestamp, SIGTERM to the process group, SIGKILL after the grace period, then removal. */
  private terminatePod(ns: string, name: string): void {
    const key = `pods/${ns}/${name}`;
    const pod = this.store.get(key);
    const rt = this.runtimes.get(`${ns}/${name}`);
    if (!pod) return;
    if (!pod.metadata.deletionTimestamp) {
      pod.metadata.deletionTimestamp = new Date().toISOString();
      pod.metadata.deletionGracePeriodSeconds = 30;
      pod.metadata.resourceVersion = String(++this.rv);
    }
    const remove = () => {
      this.store.delete(key);
      if (rt) {
        if (rt.probeTimer) clearInterval(rt.probeTimer);
        for (const f of rt.followers) f.end();
        rt.followers.clear();
        if (rt.workdir) rmSync(rt.workdir, { recursive: true, force: true });
      }
    };
    if (!rt || !rt.proc || rt.proc.exitCode !== null || rt.proc.signalCode !== null) {
      setTimeout(remove, 50);
      return;
    }
    if (rt.deleting) return;
    rt.deleting = true;
    this.killProc(rt, 'SIGTERM');
    const t = setTimeout(() => this.killProc(rt, 'SIGKILL'), this.graceMs);
    rt.proc.once('exit', () => {
      clearTimeout(t);
      setTimeout(remove, 50);
    });
  }

  private killProc(rt: PodRuntime, sig: NodeJS.Signals): void {
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

  // ------------------------------------------------------------------ controllers (Job, scheduler, kubelet)

  private reconcile(): void {
    // Job controller
    for (const job of this.objects('jobs')) {
      const ns = job.metadata.namespace;
      const stored = this.store.get(`jobs/${ns}/${job.metadata.name}`);
      if (!stored) continue;
      const pods = this.objects('pods', ns).filter((p) => p.metadata.ownerReferences?.some((o: Obj) => o.uid === job.metadata.uid));
      if (stored.metadata.deletionTimestamp) {
        if (pods.length === 0) this.store.delete(`jobs/${ns}/${job.metadata.name}`);
        continue;
      }
      const conds: Obj[] = (stored.status.conditions ??= []);
      const done = conds.some((c) => (c.type === 'Failed' || c.type === 'Complete') && c.status === 'True');
      const failed = pods.filter((p) => p.status?.phase === 'Failed').length;
      const succeeded = pods.filter((p) => p.status?.phase === 'Succeeded').length;
      const active = pods.filter((p) => !['Failed', 'Succeeded'].includes(p.status?.phase) && !p.metadata.deletionTimestamp);
      const ready = active.filter((p) => p.status?.conditions?.some((c: Obj) => c.type === 'Ready' && c.status === 'True')).length;
      const changed = stored.status.failed !== failed || stored.status.succeeded !== succeeded || stored.status.active !== active.length || stored.status.ready !== ready;
      Object.assign(stored.status, { failed, succeeded, active: active.length, ready });
      if (!done) {
        const now = new Date().toISOString();
        if (succeeded >= (stored.spec.completions ?? 1)) {
          conds.push({ type: 'SuccessCriteriaMet', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods', lastProbeTime: now, lastTransitionTime: now });
          conds.push({ type: 'Complete', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods', lastProbeTime: now, lastTransitionTime: now });
          stored.status.completionTime = now;
        } else if (failed > stored.spec.backoffLimit) {
          conds.push({ type: 'FailureTarget', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastProbeTime: now, lastTransitionTime: now });
          conds.push({ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastProbeTime: now, lastTransitionTime: now });
        } else if (active.length === 0 && !stored.spec.suspend) {
          this.createPod(stored);
        }
      }
      if (changed || !done) stored.metadata.resourceVersion = String(++this.rv);
    }
    // scheduler + kubelet
    for (const pod of this.store.values()) {
      if (pod.kind !== 'Pod') continue;
      this.stepPod(pod);
    }
    this.syncProxies();
  }

  private createPod(job: Obj): void {
    const ns = job.metadata.namespace;
    const suffix = Array.from({ length: 5 }, () => POD_SUFFIX_CHARS[Math.floor(Math.random() * POD_SUFFIX_CHARS.length)]).join('');
    const name = `${job.metadata.name}-${suffix}`;
    const tpl = structuredClone(job.spec.template);
    const pod: Obj = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        ...(tpl.metadata ?? {}),
        name,
        generateName: `${job.metadata.name}-`,
        ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name, uid: job.metadata.uid, controller: true, blockOwnerDeletion: true }],
      },
      spec: { ...tpl.spec, schedulerName: 'default-scheduler', terminationGracePeriodSeconds: tpl.spec.terminationGracePeriodSeconds ?? 30 },
      status: { phase: 'Pending', qosClass: 'BestEffort' },
    };
    this.stamp(pod, ns);
    const gpus = (pod.spec.containers as Obj[]).reduce((n, c) => n + Number(c.resources?.limits?.['nvidia.com/gpu'] ?? c.resources?.requests?.['nvidia.com/gpu'] ?? 0), 0);
    this.store.set(`pods/${ns}/${name}`, pod);
    this.runtimes.set(`${ns}/${name}`, { stage: 'unscheduled', since: Date.now(), behaviour: this.nextBehaviours.shift() ?? {}, logs: '', followers: new Set(), gpus, portMap: new Map() });
  }

  private usedGpus(node: string): number {
    let n = 0;
    for (const [key, rt] of this.runtimes) {
      const pod = this.store.get(`pods/${key}`);
      if (!pod || pod.spec.nodeName !== node) continue;
      if (['Succeeded', 'Failed'].includes(pod.status.phase)) continue;
      n += rt.gpus;
    }
    return n;
  }

  private setCondition(pod: Obj, type: string, status: 'True' | 'False', reason?: string, message?: string): void {
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

  private containerStatus(pod: Obj, state: Obj, ready = false): void {
    const c = pod.spec.containers[0];
    pod.status.containerStatuses = [
      { name: c.name, image: c.image, imageID: state.running || state.terminated ? `${c.image}@sha256:${'0'.repeat(64)}` : '', ready, restartCount: 0, started: !!state.running, state },
    ];
  }

  private touch(pod: Obj): void {
    pod.metadata.resourceVersion = String(++this.rv);
  }

  private stepPod(pod: Obj): void {
    const ns = pod.metadata.namespace;
    const rt = this.runtimes.get(`${ns}/${pod.metadata.name}`);
    if (!rt || pod.metadata.deletionTimestamp) return;
    const now = Date.now();
    switch (rt.stage) {
      case 'unscheduled': {
        const reasons = new Map<string, number>();
        let chosen: FakeNode | undefined;
        for (const n of this.nodes) {
          if (n.unschedulable) {
            reasons.set('node(s) were unschedulable', (reasons.get('node(s) were unschedulable') ?? 0) + 1);
            continue;
          }
          const untolerated = (n.taints ?? []).find(
            (t) =>
              (t.effect === 'NoSchedule' || t.effect === 'NoExecute') &&
              !(pod.spec.tolerations ?? []).some(
                (tol: Obj) => (tol.operator === 'Exists' ? !tol.key || tol.key === t.key : tol.key === t.key && (tol.value ?? '') === (t.value ?? '')) && (!tol.effect || tol.effect === t.effect),
              ),
          );
          if (untolerated) {
            const r = `node(s) had untolerated taint {${untolerated.key}: ${untolerated.value ?? ''}}`;
            reasons.set(r, (reasons.get(r) ?? 0) + 1);
            continue;
          }
          if (n.gpus - this.usedGpus(n.name) < rt.gpus) {
            reasons.set('Insufficient nvidia.com/gpu', (reasons.get('Insufficient nvidia.com/gpu') ?? 0) + 1);
            continue;
          }
          chosen = n;
          break;
        }
        if (!chosen) {
          const parts = [...reasons.entries()].map(([r, c]) => `${c} ${r}`).sort();
          const msg = `0/${this.nodes.length} nodes are available: ${parts.join(', ')}. preemption: 0/${this.nodes.length} nodes are available: ${this.nodes.length} No preemption victims found for incoming pod.`;
          const before = JSON.stringify(pod.status.conditions);
          this.setCondition(pod, 'PodScheduled', 'False', 'Unschedulable', msg);
          if (JSON.stringify(pod.status.conditions) !== before) this.touch(pod);
          return;
        }
        pod.spec.nodeName = chosen.name;
        pod.status.hostIP = this.nodeIPs.get(chosen.name);
        pod.status.hostIPs = [{ ip: pod.status.hostIP }];
        pod.status.podIP = this.allocIP();
        pod.status.podIPs = [{ ip: pod.status.podIP }];
        pod.status.startTime = new Date().toISOString();
        this.setCondition(pod, 'PodScheduled', 'True');
        this.setCondition(pod, 'Initialized', 'True');
        this.setCondition(pod, 'Ready', 'False', 'ContainersNotReady', `containers with unready status: [${pod.spec.containers[0].name}]`);
        this.setCondition(pod, 'ContainersReady', 'False', 'ContainersNotReady', `containers with unready status: [${pod.spec.containers[0].name}]`);
        this.containerStatus(pod, { waiting: { reason: 'ContainerCreating' } });
        rt.stage = 'creating';
        rt.since = now;
        this.touch(pod);
        return;
      }
      case 'creating': {
        if (now - rt.since < 300) return;
        const pullError = this.pullError(pod, rt);
        if (pullError) {
          this.containerStatus(pod, { waiting: { reason: 'ErrImagePull', message: pullError } });
          rt.stage = 'pullFailed';
          rt.since = now;
          this.touch(pod);
          return;
        }
        rt.stage = 'configError';
        rt.since = now;
        return this.stepPod(pod);
      }
      case 'pullFailed': {
        const st = pod.status.containerStatuses[0].state.waiting;
        const period = st.reason === 'ErrImagePull' ? 800 : 3000;
        if (now - rt.since < period) return;
        const image = pod.spec.containers[0].image;
        if (st.reason === 'ErrImagePull') this.containerStatus(pod, { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}"` } });
        else this.containerStatus(pod, { waiting: { reason: 'ErrImagePull', message: this.pullError(pod, rt) ?? 'pull failed' } });
        rt.since = now;
        this.touch(pod);
        return;
      }
      case 'configError': {
        const missing = this.missingSecret(pod);
        if (missing) {
          const cur = pod.status.containerStatuses?.[0]?.state?.waiting;
          if (cur?.reason !== 'CreateContainerConfigError') {
            this.containerStatus(pod, { waiting: { reason: 'CreateContainerConfigError', message: `secret "${missing}" not found` } });
            this.touch(pod);
          }
          return;
        }
        this.startContainer(pod, rt);
        return;
      }
      default:
        return;
    }
  }

  private pullError(pod: Obj, rt: PodRuntime): string | undefined {
    const image: string = pod.spec.containers[0].image;
    if (rt.behaviour.imagePullError) return rt.behaviour.imagePullError;
    const registry = image.includes('/') && /[.:]/.test(image.split('/')[0]!) ? image.split('/')[0]! : 'docker.io';
    if (!this.privateRegistries.includes(registry)) return undefined;
    const ns = pod.metadata.namespace;
    for (const ref of pod.spec.imagePullSecrets ?? []) {
      const s = this.store.get(`secrets/${ns}/${ref.name}`);
      if (!s || s.type !== 'kubernetes.io/dockerconfigjson') continue;
      try {
        const cfg = JSON.parse(Buffer.from(s.data['.dockerconfigjson'], 'base64').toString('utf8'));
        if (cfg.auths?.[registry]) return undefined;
      } catch {
        /* unusable */
      }
    }
    return `failed to pull and unpack image "${image}": failed to resolve reference "${image}": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://${registry}/proxy_auth?scope=repository%3A${image.split('/').slice(1).join('/').split(':')[0]}%3Apull: 401 Unauthorized`;
  }

  private missingSecret(pod: Obj): string | undefined {
    const ns = pod.metadata.namespace;
    for (const c of pod.spec.containers as Obj[]) {
      for (const ef of c.envFrom ?? []) {
        if (ef.secretRef && !ef.secretRef.optional && !this.store.has(`secrets/${ns}/${ef.secretRef.name}`)) return ef.secretRef.name;
      }
    }
    return undefined;
  }

  private startContainer(pod: Obj, rt: PodRuntime): void {
    const ns = pod.metadata.namespace;
    const c: Obj = pod.spec.containers[0];
    const env: Record<string, string> = {
      PATH: `${STANDIN_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOSTNAME: pod.metadata.name,
      KUBERNETES_SERVICE_HOST: '10.96.0.1',
      KUBERNETES_SERVICE_PORT: '443',
    };
    for (const ef of c.envFrom ?? []) {
      const s = ef.secretRef ? this.store.get(`secrets/${ns}/${ef.secretRef.name}`) : undefined;
      for (const [k, v] of Object.entries((s?.data ?? {}) as Record<string, string>)) env[`${ef.prefix ?? ''}${k}`] = Buffer.from(v, 'base64').toString('utf8');
    }
    for (const e of c.env ?? []) if (typeof e.value === 'string') env[e.name] = e.value;
    Object.assign(env, rt.behaviour.env ?? {});
    env.STANDIN_HOST = pod.status.podIP;
    const port = c.ports?.[0]?.containerPort;
    if (port) {
      const hostPort = 20000 + Math.floor(Math.random() * 10000);
      rt.portMap.set(port, hostPort);
      env.STANDIN_PORT = String(hostPort);
    }
    this.podEnv.set(`${ns}/${pod.metadata.name}`, Object.keys(env).sort());
    rt.workdir = mkdtempSync(join(tmpdir(), 'fake-k8s-pod-'));
    env.HOME = rt.workdir;
    const argv: string[] = [...(c.command ?? []), ...(c.args ?? [])];
    if (!argv.length) {
      this.containerStatus(pod, { waiting: { reason: 'RunContainerError', message: 'the fake needs an explicit command' } });
      return;
    }
    const proc = spawn(argv[0]!, argv.slice(1), { env, cwd: rt.workdir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    rt.proc = proc;
    rt.stage = 'running';
    const onData = (b: Buffer) => {
      const s = b.toString('utf8');
      rt.logs += s;
      for (const f of rt.followers) f.write(s);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    const startedAt = new Date().toISOString();
    pod.status.phase = 'Running';
    this.containerStatus(pod, { running: { startedAt } });
    this.touch(pod);
    if (rt.behaviour.oomKillAfterMs !== undefined) {
      setTimeout(() => {
        rt.oomKilled = true;
        this.killProc(rt, 'SIGKILL');
      }, rt.behaviour.oomKillAfterMs);
    }
    const probe = c.readinessProbe?.httpGet;
    if (probe) {
      const probePort = typeof probe.port === 'number' ? probe.port : Number(c.ports?.find((p: Obj) => p.name === probe.port)?.containerPort ?? probe.port);
      rt.probeTimer = setInterval(() => {
        const req = http.get({ host: pod.status.podIP, port: rt.portMap.get(probePort) ?? probePort, path: probe.path ?? '/', timeout: 1000 }, (res) => {
          res.resume();
          this.setReady(pod, rt, (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
        });
        req.on('timeout', () => req.destroy());
        req.on('error', () => this.setReady(pod, rt, false));
      }, 1000);
    } else this.setReady(pod, rt, true);
    proc.on('close', (code, signal) => {
      if (rt.probeTimer) clearInterval(rt.probeTimer);
      rt.stage = 'terminated';
      const finishedAt = new Date().toISOString();
      let exitCode = code ?? (signal ? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 1) : 1);
      let reason = exitCode === 0 ? 'Completed' : 'Error';
      if (rt.oomKilled) {
        reason = 'OOMKilled';
        exitCode = 137;
      }
      pod.status.phase = exitCode === 0 ? 'Succeeded' : 'Failed';
      this.containerStatus(pod, { terminated: { exitCode, reason, startedAt, finishedAt, containerID: `containerd://${randomBytes(32).toString('hex')}` } });
      this.setCondition(pod, 'Ready', 'False', 'PodCompleted');
      this.setCondition(pod, 'ContainersReady', 'False', 'PodCompleted');
      this.touch(pod);
      setTimeout(() => {
        for (const f of rt.followers) f.end();
        rt.followers.clear();
      }, 50);
    });
  }

  private setReady(pod: Obj, rt: PodRuntime, ready: boolean): void {
    if (rt.stage !== 'running' || pod.metadata.deletionTimestamp) return;
    const cs = pod.status.containerStatuses?.[0];
    if (!cs || cs.ready === ready) return;
    cs.ready = ready;
    this.setCondition(pod, 'Ready', ready ? 'True' : 'False', ready ? undefined : 'ContainersNotReady');
    this.setCondition(pod, 'ContainersReady', ready ? 'True' : 'False', ready ? undefined : 'ContainersNotReady');
    this.touch(pod);
  }

  /** Where a container port of a pod really listens (see PodRuntime.portMap). */
  private podPort(ns: string, name: string, port: number): number {
    return this.runtimes.get(`${ns}/${name}`)?.portMap.get(port) ?? port;
  }

  private allocIP(): string {
    const n = this.ipNext++;
    return `127.${this.ipBase[0]}.${this.ipBase[1]}.${n}`;
  }

  // ------------------------------------------------------------------ logs and port-forward

  private podLogs(ns: string, name: string, query: Record<string, string>, res: ServerResponse): void {
    const pod = this.store.get(`pods/${ns}/${name}`);
    if (!pod) throw new ApiError(404, 'NotFound', `pods "${name}" not found`, { name, kind: 'pods' });
    const containers: string[] = pod.spec.containers.map((c: Obj) => c.name);
    const container = query.container || (containers.length === 1 ? containers[0] : undefined);
    if (!container) throw new ApiError(400, 'BadRequest', `a container name must be specified for pod ${name}, choose one of: [${containers.join(' ')}]`);
    if (!containers.includes(container)) throw new ApiError(400, 'BadRequest', `container ${container} is not valid for pod ${name}`);
    const rt = this.runtimes.get(`${ns}/${name}`);
    if (!rt || !rt.proc) {
      const waiting = pod.status.containerStatuses?.[0]?.state?.waiting;
      const why =
        waiting?.reason === 'ImagePullBackOff' || waiting?.reason === 'ErrImagePull'
          ? 'trying and failing to pull image'
          : waiting?.reason === 'CreateContainerConfigError'
            ? 'CreateContainerConfigError'
            : 'ContainerCreating';
      throw new ApiError(400, 'BadRequest', `container "${container}" in pod "${name}" is waiting to start: ${why}`);
    }
    let text = rt.logs;
    if (query.tailLines !== undefined) {
      const n = Number(query.tailLines);
      if (!Number.isInteger(n) || n < 0) throw new ApiError(422, 'Invalid', `PodLogOptions "${name}" is invalid: tailLines: Invalid value: ${query.tailLines}: must be greater than or equal to 0`);
      const lines = text.split('\n');
      const trailing = lines[lines.length - 1] === '' ? lines.pop() : undefined;
      text = lines.slice(Math.max(0, lines.length - n)).join('\n') + (trailing !== undefined && lines.length ? '\n' : '');
      if (n === 0) text = '';
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
    res.write(text);
    const running = rt.proc.exitCode === null && rt.proc.signalCode === null;
    if ((query.follow === 'true' || query.follow === '1') && running) {
      rt.followers.add(res);
      res.on('close', () => rt.followers.delete(res));
    } else res.end();
  }

  private handleUpgrade(req: IncomingMessage, socket: net.Socket, head: Buffer): void {
    const u = new URL(req.url ?? '/', 'http://fake');
    this.requests.push({ method: 'UPGRADE', path: u.pathname, query: Object.fromEntries(u.searchParams.entries()), body: '' });
    const reject = (code: number, reason: string, message: string) => {
      const text = JSON.stringify(statusBody(code, reason, message));
      socket.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
    };
    if (!this.authorized(req)) return reject(401, 'Unauthorized', 'Unauthorized');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/.exec(u.pathname);
    if (!m) return reject(404, 'NotFound', 'the server could not find the requested resource');
    const [, ns, name] = m;
    const forbidden = portForwardForbidden(req, ns!, name!); if (forbidden) return reject(403, 'Forbidden', forbidden); // RBAC: ./k8s-rbac.ts
    const pod = this.store.get(`pods/${ns}/${name}`);
    if (!pod) return reject(404, 'NotFound', `pods "${name}" not found`);
    if (pod.status.phase !== 'Running') return reject(400, 'BadRequest', `unable to upgrade connection: pod ${name} is not running`);
    const ports = u.searchParams.getAll('ports').flatMap((p) => p.split(',')).map(Number);
    if (!ports.length || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) return reject(400, 'BadRequest', 'query parameter "ports" is required and must be valid ports');
    const proto = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim());
    if (!proto.includes('v4.channel.k8s.io')) return reject(400, 'BadRequest', 'unable to upgrade connection: requested protocols not supported (need v4.channel.k8s.io)');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.portForward(ws, pod, ports));
  }

  private portForward(ws: WebSocket, pod: Obj, ports: number[]): void {
    const ip: string = pod.status.podIP;
    const conns: net.Socket[] = [];
    ports.forEach((port, i) => {
      const portBytes = Buffer.alloc(2);
      portBytes.writeUInt16LE(port, 0);
      ws.send(Buffer.concat([Buffer.from([2 * i]), portBytes]));
      ws.send(Buffer.concat([Buffer.from([2 * i + 1]), portBytes]));
      const up = net.connect({ host: ip, port: this.podPort(pod.metadata.namespace, pod.metadata.name, port) });
      conns[i] = up;
      up.on('data', (d) => ws.send(Buffer.concat([Buffer.from([2 * i]), d])));
      up.on('error', (e) => {
        const msg = `error forwarding port ${port} to pod ${pod.metadata.uid}, uid : failed to execute portforward in network namespace: failed to connect to localhost:${port} inside namespace, IPv4: ${e.message}`;
        if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([2 * i + 1]), Buffer.from(msg)]));
        ws.close();
      });
      up.on('close', () => {
        if (ws.readyState === ws.OPEN) ws.close();
      });
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const buf = isBinary ? data : Buffer.from(String(data));
      if (buf.length < 1) return;
      const ch = buf[0]!;
      if (ch % 2 !== 0) return;
      const up = conns[ch / 2];
      if (up && buf.length > 1) up.write(buf.subarray(1));
    });
    ws.on('close', () => {
      for (const c of conns) c?.end();
    });
  }
}
