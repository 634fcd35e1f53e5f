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
 * Layout: this file is the facade (HTTPS server, kubeconfig, test controls); k8s/state.ts holds the shared state,
 * k8s/router.ts the HTTP routing and create/delete, k8s/validation.ts validation and defaulting, k8s/controller.ts
 * the Job controller and scheduler, k8s/kubelet.ts the pods' processes, logs and port-forward, k8s/network.ts the
 * Services (kube-proxy, load balancer). test/unit/k8s-fake.test.ts is its self-test.
 *
 * Test controls: `setNodes`, `nextPod({...})` (image pull failure, extra env such as STANDIN_CRASH_AT_START, OOM kill),
 * `withholdIngress`, `forbidNodeList`, `hangRequests`, `seedSecret`, `reset()`, `requests` (every request received,
 * raw body), `objects()`/`allObjects()`, `podEnvNames()`, `podLog()`.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { JobController } from './k8s/controller.js';
import { Kubelet } from './k8s/kubelet.js';
import { Network } from './k8s/network.js';
import { Router } from './k8s/router.js';
import { ClusterState, KINDS, type FakeNode, type NextPodBehaviour, type Obj, type RecordedRequest } from './k8s/state.js';

export { STANDIN_BIN } from './k8s/kubelet.js';
export type { FakeNode, NextPodBehaviour, RecordedRequest } from './k8s/state.js';

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

/** The fake API server: HTTPS on 127.0.0.1, a kubeconfig for it, and the test controls (see the header above). */
export class FakeK8sApiServer {
  /** The server URL (https://127.0.0.1:<port>) once started. */
  url = '';
  private readonly c: ClusterState;
  private readonly kubelet: Kubelet;
  private readonly network: Network;
  private readonly controller: JobController;
  private readonly router: Router;
  private server?: https.Server;
  private tlsDir = '';
  private caPem = '';
  private timer?: NodeJS.Timeout;
  private sockets = new Set<Duplex>();

  constructor(opts: FakeK8sOptions = {}) {
    this.c = new ClusterState({
      token: opts.token ?? `fake-${randomBytes(8).toString('hex')}`,
      nodes: opts.nodes ?? [
        { name: 'gpu-node-a', gpus: 2, taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }] },
        { name: 'cpu-node-b', gpus: 0 },
      ],
      namespaces: opts.namespaces ?? ['default', 'kube-system', 'tao'],
      privateRegistries: opts.privateRegistries ?? ['nvcr.io'],
      lbDelayMs: opts.lbDelayMs ?? 300,
      graceMs: opts.graceMs ?? 5000,
    });
    this.kubelet = new Kubelet(this.c);
    this.network = new Network(this.c);
    this.controller = new JobController(this.c, this.kubelet, this.network);
    this.router = new Router(this.c, this.kubelet, this.network);
  }

  /** Bearer token the kubeconfig presents. */
  get token(): string {
    return this.c.token;
  }
  /** Every request received, in order (raw body text; port-forward upgrades as method UPGRADE). */
  get requests(): RecordedRequest[] {
    return this.c.requests;
  }
  /** LoadBalancer Services get no ingress while true. */
  get withholdIngress(): boolean {
    return this.c.withholdIngress;
  }
  set withholdIngress(v: boolean) {
    this.c.withholdIngress = v;
  }
  /** Listing nodes answers 403 Forbidden while true. */
  get forbidNodeList(): boolean {
    return this.c.forbidNodeList;
  }
  set forbidNodeList(v: boolean) {
    this.c.forbidNodeList = v;
  }
  /** Requests are recorded but never answered while true (an API server that hangs). */
  get hangRequests(): boolean {
    return this.c.hangRequests;
  }
  set hangRequests(v: boolean) {
    this.c.hangRequests = v;
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
    this.server = https.createServer({ key: readFileSync(key), cert: this.caPem }, (req, res) => void this.router.handle(req, res));
    this.server.on('upgrade', (req, socket, head) => this.router.handleUpgrade(req, socket as net.Socket, head));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    const addr = this.server.address() as net.AddressInfo;
    this.url = `https://127.0.0.1:${addr.port}`;
    this.timer = setInterval(() => this.controller.reconcile(), 100);
  }

  /** Stop everything: pod processes (process groups), proxies, the HTTP server. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const [, rt] of this.c.runtimes) this.c.killProc(rt, 'SIGKILL');
    for (const [, rt] of this.c.runtimes) {
      if (rt.probeTimer) clearInterval(rt.probeTimer);
      for (const f of rt.followers) f.end();
      if (rt.workdir) rmSync(rt.workdir, { recursive: true, force: true });
    }
    for (const [key] of this.c.proxies) this.network.closeProxies(key);
    this.router.closeSockets();
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
    this.c.nodes = nodes;
    for (const n of nodes) if (!this.c.nodeIPs.has(n.name)) this.c.nodeIPs.set(n.name, this.c.allocIP());
  }

  /**
   * Forget every object except seeded ones (`seedSecret`), killing pod processes at once; clears queued pod
   * behaviours and the ingress/forbid switches. Recorded requests are kept.
   */
  reset(): void {
    for (const [key, rt] of this.c.runtimes) {
      this.c.killProc(rt, 'SIGKILL');
      if (rt.probeTimer) clearInterval(rt.probeTimer);
      for (const f of rt.followers) f.end();
      if (rt.workdir) rmSync(rt.workdir, { recursive: true, force: true });
      this.c.runtimes.delete(key);
    }
    for (const [key, obj] of this.c.store) {
      if (obj.metadata?.annotations?.['fake.k8s/seeded'] === 'true') continue;
      this.c.store.delete(key);
    }
    for (const [key] of this.c.proxies) this.network.closeProxies(key);
    this.c.usedNodePorts.clear();
    this.c.nextBehaviours = [];
    this.c.withholdIngress = false;
    this.c.forbidNodeList = false;
    this.c.hangRequests = false;
  }

  /** Queue a behaviour for the next pod created by the Job controller. */
  nextPod(b: NextPodBehaviour): void {
    this.c.nextBehaviours.push(b);
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
    this.router.createObject(KINDS.secrets!, namespace, body);
  }

  /** A docker-registry pull secret's data for `registry`. */
  static dockerConfigFor(registry: string): Record<string, string> {
    return {
      '.dockerconfigjson': JSON.stringify({ auths: { [registry]: { username: '$oauthtoken', password: 'not-a-real-key', auth: Buffer.from('$oauthtoken:not-a-real-key').toString('base64') } } }),
    };
  }

  /** Stored objects of a resource (`jobs`, `services`, `secrets`, `pods`), optionally in one namespace. */
  objects(resource: keyof typeof KINDS | string, namespace?: string): Obj[] {
    return this.c.objects(resource, namespace);
  }

  /** All stored objects of all kinds (for leak checks). */
  allObjects(): Obj[] {
    return [...this.c.store.values()].map((o) => structuredClone(o));
  }

  /** Names of the environment variables a pod's container process got (values are not exposed). */
  podEnvNames(namespace: string, pod: string): string[] {
    return this.c.podEnv.get(`${namespace}/${pod}`) ?? [];
  }

  /** The raw log text of a pod's container (everything the process wrote). */
  podLog(namespace: string, pod: string): string {
    return this.c.runtimes.get(`${namespace}/${pod}`)?.logs ?? '';
  }

  /** True while any pod process is alive. */
  anyPodProcessAlive(): boolean {
    for (const rt of this.c.runtimes.values()) if (rt.proc && rt.proc.exitCode === null && rt.proc.signalCode === null) return true;
    return false;
  }
}
