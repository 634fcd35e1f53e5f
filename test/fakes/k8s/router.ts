/**
 * The HTTP side of the fake Kubernetes API server (see ../k8s-api-server.ts for the documented paths, verbs, errors
 * and authentication it reproduces): request recording, Bearer-token check, routing of
 * /api/v1/{nodes,namespaces/{ns}/{secrets,services,pods}} and /apis/batch/v1/namespaces/{ns}/jobs to the store,
 * create (validation + defaulting) and delete (propagationPolicy), `kind: Status` errors, and the portforward upgrade.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import http from 'node:http';
import type net from 'node:net';
import { WebSocketServer } from 'ws';
import { portForwardForbidden } from '../k8s-rbac.js';
import type { Kubelet } from './kubelet.js';
import type { Network } from './network.js';
import { ApiError, KINDS, statusBody, type ClusterState, type FakeNode, type Kind, type Obj } from './state.js';
import { defaultJob, FieldErrors, isDockerTrue, parseSelector, validateJob, validateMeta, validateSecret, validateService } from './validation.js';

export class Router {
  private wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => (protocols.has('v4.channel.k8s.io') ? 'v4.channel.k8s.io' : false) });

  constructor(
    private readonly c: ClusterState,
    private readonly kubelet: Kubelet,
    private readonly network: Network,
  ) {}

  /** Close every portforward WebSocket. */
  closeSockets(): void {
    for (const client of this.wss.clients) client.terminate();
  }

  /** Handle one HTTP request (recorded first; never answered while `hangRequests`). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://fake');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const query = Object.fromEntries(u.searchParams.entries());
    this.c.requests.push({ method: req.method ?? 'GET', path: u.pathname, query, body });
    if (this.c.hangRequests) return;
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
    return req.headers.authorization === `Bearer ${this.c.token}`;
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
        if (this.c.forbidNodeList)
          throw new ApiError(403, 'Forbidden', 'nodes is forbidden: User "fake-user" cannot list resource "nodes" in API group "" at the cluster scope', { kind: 'nodes' });
        return this.send(res, 200, { kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion: String(this.c.rv) }, items: this.c.nodes.map((n) => this.nodeObject(n)) });
      }
      const n = this.c.nodes.find((x) => x.name === seg[3]);
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
        if (!this.c.namespaces.has(ns)) throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
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
        const items = this.c.objects(k.resource, ns).filter((o) => match(o.metadata?.labels));
        return this.send(res, 200, { kind: `${k.kind}List`, apiVersion: k.apiVersion, metadata: { resourceVersion: String(this.c.rv) }, items });
      }
      if (method === 'POST') {
        if (!this.c.namespaces.has(ns)) throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
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
    if (rest.length === 2 && k.resource === 'pods' && rest[1] === 'log' && method === 'GET') return this.kubelet.podLogs(ns, name, query, res);
    if (rest.length > 1) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const existing = this.c.store.get(key);
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
    const ip = this.c.nodeIPs.get(n.name)!;
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

  /** Validate, default and store a new object (409 when it exists); Services get their addresses and proxies. */
  createObject(k: Kind, ns: string, obj: Obj): Obj {
    const fe = new FieldErrors();
    const name = validateMeta(k, ns, obj, fe);
    if (k.kind === 'Secret') validateSecret(obj, fe);
    if (k.kind === 'Job') validateJob(obj, fe, name);
    if (k.kind === 'Service') validateService(obj, fe, this.c.usedNodePorts);
    fe.throwIfAny(k, name);
    const key = `${k.resource}/${ns}/${name}`;
    if (this.c.store.has(key)) throw new ApiError(409, 'AlreadyExists', `${k.qualified} "${name}" already exists`, { name, group: k.group || undefined, kind: k.resource });
    obj.apiVersion = k.apiVersion;
    obj.kind = k.kind;
    this.c.stamp(obj, ns);
    if (k.kind === 'Job') defaultJob(obj);
    if (k.kind === 'Service') this.network.setUpService(obj, ns);
    this.c.store.set(key, obj);
    return structuredClone(obj);
  }

  /** DELETE with propagationPolicy: Orphan (batch/v1 default), Background, or Foreground (Job kept until its pods are gone). */
  private deleteObject(k: Kind, ns: string, name: string, policy: string | undefined): Obj {
    const key = `${k.resource}/${ns}/${name}`;
    const obj = this.c.store.get(key)!;
    if (k.kind === 'Service') {
      this.c.store.delete(key);
      this.network.closeProxies(`${ns}/${name}`);
      for (const p of obj.spec.ports ?? []) if (p.nodePort) this.c.usedNodePorts.delete(p.nodePort);
      return structuredClone(obj);
    }
    if (k.kind === 'Secret') {
      this.c.store.delete(key);
      return structuredClone(obj);
    }
    if (k.kind === 'Pod') {
      this.kubelet.terminatePod(ns, name);
      return structuredClone(this.c.store.get(key) ?? obj);
    }
    // Job: batch/v1 defaults to orphaning its pods when no policy is given.
    const pods = this.c.objects('pods', ns).filter((p) => p.metadata.ownerReferences?.some((o: Obj) => o.uid === obj.metadata.uid));
    const effective = policy ?? 'Orphan';
    if (effective === 'Orphan') {
      for (const p of pods) {
        const stored = this.c.store.get(`pods/${ns}/${p.metadata.name}`);
        if (stored) stored.metadata.ownerReferences = [];
      }
      this.c.store.delete(key);
      return structuredClone(obj);
    }
    if (effective === 'Background' || pods.length === 0) {
      this.c.store.delete(key);
      for (const p of pods) this.kubelet.terminatePod(ns, p.metadata.name);
      return structuredClone(obj);
    }
    // Foreground: the Job stays (deletionTimestamp + finalizer) until its pods are gone.
    obj.metadata.deletionTimestamp = new Date().toISOString();
    obj.metadata.deletionGracePeriodSeconds = 0;
    obj.metadata.finalizers = ['foregroundDeletion'];
    obj.metadata.resourceVersion = String(++this.c.rv);
    for (const p of pods) this.kubelet.terminatePod(ns, p.metadata.name);
    return structuredClone(obj);
  }

  /** WebSocket upgrade of .../pods/{name}/portforward (v4.channel.k8s.io). */
  handleUpgrade(req: IncomingMessage, socket: net.Socket, head: Buffer): void {
    const u = new URL(req.url ?? '/', 'http://fake');
    this.c.requests.push({ method: 'UPGRADE', path: u.pathname, query: Object.fromEntries(u.searchParams.entries()), body: '' });
    const reject = (code: number, reason: string, message: string) => {
      const text = JSON.stringify(statusBody(code, reason, message));
      socket.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
    };
    if (!this.authorized(req)) return reject(401, 'Unauthorized', 'Unauthorized');
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/.exec(u.pathname);
    if (!m) return reject(404, 'NotFound', 'the server could not find the requested resource');
    const [, ns, name] = m;
    // RBAC on the upgrade (a WebSocket port-forward is a GET: `get` on pods/portforward; ../k8s-rbac.ts).
    const forbidden = portForwardForbidden(req, ns!, name!);
    if (forbidden) return reject(403, 'Forbidden', forbidden);
    const pod = this.c.store.get(`pods/${ns}/${name}`);
    if (!pod) return reject(404, 'NotFound', `pods "${name}" not found`);
    if (pod.status.phase !== 'Running') return reject(400, 'BadRequest', `unable to upgrade connection: pod ${name} is not running`);
    const ports = u.searchParams.getAll('ports').flatMap((p) => p.split(',')).map(Number);
    if (!ports.length || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) return reject(400, 'BadRequest', 'query parameter "ports" is required and must be valid ports');
    const proto = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim());
    if (!proto.includes('v4.channel.k8s.io')) return reject(400, 'BadRequest', 'unable to upgrade connection: requested protocols not supported (need v4.channel.k8s.io)');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.kubelet.portForward(ws, pod, ports));
  }
}
