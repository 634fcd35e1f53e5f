// The fake Kubernetes API server keeps to the documented API rules it claims (see the header of
// test/fakes/k8s-api-server.ts and its sources): authentication, Status errors, validation, defaulting, the Job
// controller, scheduler, kubelet, Services and the portforward WebSocket protocol. Plain HTTPS calls here, not
// @kubernetes/client-node, so the fake is checked on its own.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { parse } from 'yaml';
import { FakeK8sApiServer } from '../fakes/k8s-api-server.js';
import { waitFor } from '../helpers/wait.js';

let fake: FakeK8sApiServer;
let ca = '';
let dir = '';

beforeAll(async () => {
  fake = new FakeK8sApiServer({ lbDelayMs: 100, graceMs: 1000 });
  await fake.start();
  dir = mkdtempSync(join(tmpdir(), 'k8s-fake-test-'));
  const kc = parse(readFileSync(fake.writeKubeconfig(dir), 'utf8'));
  ca = Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64').toString('utf8');
});
afterAll(async () => {
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => fake.reset());

/** One HTTPS call to the fake; resolves status and parsed JSON (or text) body. */
function call(method: string, path: string, body?: unknown, token = fake.token): Promise<{ status: number; body: any; text: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, fake.url);
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = https.request(u, { method, ca, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let parsed: any = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          /* text */
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, text });
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

const JOBS = '/apis/batch/v1/namespaces/default/jobs';

function job(name: string, command: string, over: Record<string, any> = {}): Record<string, any> {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name },
    spec: {
      backoffLimit: 0,
      template: {
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'main', image: 'busybox:1', command: ['/bin/sh', '-c', command], ...over.container }],
          ...over.pod,
        },
      },
      ...over.spec,
    },
  };
}

/** A TCP port free on all addresses right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '0.0.0.0', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const podsOf = (jobName: string) => fake.objects('pods', 'default').filter((p) => p.metadata.labels?.['job-name'] === jobName);

describe('fake Kubernetes API: HTTP, errors, validation', () => {
  it('401 Status without the bearer token; 404 Status for an unknown namespace; 405 for a verb it does not serve', async () => {
    const r = await call('GET', '/api/v1/nodes', undefined, 'wrong');
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Unauthorized', code: 401 });
    const ns = await call('GET', '/api/v1/namespaces/nope');
    expect(ns.status).toBe(404);
    expect(ns.body).toMatchObject({ kind: 'Status', reason: 'NotFound', message: 'namespaces "nope" not found' });
    expect((await call('GET', '/api/v1/namespaces/default')).body.status.phase).toBe('Active');
    expect((await call('PUT', `${JOBS}/x`, {})).status).toBe(405);
    expect(fake.requests.at(-1)).toMatchObject({ method: 'PUT', path: `${JOBS}/x` });
  });

  it('nodes: a NodeList with allocatable nvidia.com/gpu, InternalIP addresses and taints; 403 while listing is forbidden', async () => {
    const r = await call('GET', '/api/v1/nodes');
    expect(r.body.kind).toBe('NodeList');
    const gpu = r.body.items.find((n: any) => n.metadata.name === 'gpu-node-a');
    expect(gpu.status.allocatable['nvidia.com/gpu']).toBe('2');
    expect(gpu.spec.taints).toEqual([{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }]);
    expect(gpu.status.addresses[0]).toMatchObject({ type: 'InternalIP', address: expect.stringMatching(/^127\./) });
    fake.forbidNodeList = true;
    const f = await call('GET', '/api/v1/nodes');
    expect(f.status).toBe(403);
    expect(f.body.message).toMatch(/nodes is forbidden: User "fake-user" cannot list resource "nodes"/);
  });

  it('422 Invalid in the API server message format, with details.causes', async () => {
    const bad = job('x'.repeat(64), 'true', { pod: { restartPolicy: 'Always' } });
    const r = await call('POST', JOBS, bad);
    expect(r.status).toBe(422);
    expect(r.body.reason).toBe('Invalid');
    expect(r.body.message).toMatch(/^Job\.batch "x{64}" is invalid: \[/);
    expect(r.body.message).toContain('spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"');
    expect(r.body.details.causes.map((c: any) => c.field)).toEqual(expect.arrayContaining(['spec.template.labels', 'spec.template.spec.restartPolicy']));
    const svc = await call('POST', '/api/v1/namespaces/default/services', { metadata: { name: '1bad' }, spec: { ports: [{ port: 80 }] } });
    expect(svc.status).toBe(422);
    expect(svc.body.message).toMatch(/^Service "1bad" is invalid: metadata\.name: Invalid value: "1bad": a DNS-1035 label/);
    const gpu = await call('POST', JOBS, job('gpu-mismatch', 'true', { container: { resources: { limits: { 'nvidia.com/gpu': '1' }, requests: { 'nvidia.com/gpu': '2' } } } }));
    expect(gpu.status).toBe(422);
    expect(gpu.body.message).toContain('must be equal to nvidia.com/gpu limit of 1');
  });

  it('Secrets: invalid base64 is 400, stringData is merged into data, a second create is 409 AlreadyExists', async () => {
    const path = '/api/v1/namespaces/default/secrets';
    const b64 = await call('POST', path, { metadata: { name: 's1' }, data: { A: 'not base64!' } });
    expect(b64.status).toBe(400);
    expect(b64.body.message).toContain('illegal base64 data');
    const ok = await call('POST', path, { metadata: { name: 's1' }, stringData: { A: 'x' } });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ kind: 'Secret', type: 'Opaque', data: { A: Buffer.from('x').toString('base64') } });
    expect(ok.body.stringData).toBeUndefined();
    expect(ok.body.metadata).toMatchObject({ namespace: 'default', uid: expect.any(String), resourceVersion: expect.any(String) });
    const again = await call('POST', path, { metadata: { name: 's1' }, data: {} });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ reason: 'AlreadyExists', message: 'secrets "s1" already exists' });
    const mismatch = await call('POST', path, { metadata: { name: 's2', namespace: 'tao' } });
    expect(mismatch.status).toBe(400);
  });

  it('labelSelector: =, !=, in (...), exists; a selector it cannot parse is 400', async () => {
    const path = '/api/v1/namespaces/default/secrets';
    await call('POST', path, { metadata: { name: 'a', labels: { app: 'x', tier: 'one' } } });
    await call('POST', path, { metadata: { name: 'b', labels: { app: 'y' } } });
    const names = async (sel: string) => (await call('GET', `${path}?labelSelector=${encodeURIComponent(sel)}`)).body.items.map((o: any) => o.metadata.name).sort();
    expect(await names('app=x')).toEqual(['a']);
    expect(await names('app!=x')).toEqual(['b']);
    expect(await names('app in (x,y)')).toEqual(['a', 'b']);
    expect(await names('tier')).toEqual(['a']);
    expect(await names('!tier')).toEqual(['b']);
    expect((await call('GET', `${path}?labelSelector=${encodeURIComponent('a b c')}`)).status).toBe(400);
    expect((await call('GET', path)).body.kind).toBe('SecretList');
  });
});

describe('fake Kubernetes API: Job controller, scheduler, kubelet', () => {
  it('defaults a Job like the API server and runs one pod that really runs its command; a failure past backoffLimit fails the Job', async () => {
    const created = await call('POST', JOBS, job('fails', 'echo line-one; echo line-two; exit 3', { pod: { tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] } }));
    expect(created.status).toBe(201);
    const uid = created.body.metadata.uid;
    expect(created.body.spec.selector).toEqual({ matchLabels: { 'batch.kubernetes.io/controller-uid': uid } });
    expect(created.body.spec.template.metadata.labels).toMatchObject({ 'controller-uid': uid, 'job-name': 'fails', 'batch.kubernetes.io/job-name': 'fails' });
    const failed = await waitFor('the Job to fail', async () => {
      const j = (await call('GET', `${JOBS}/fails`)).body;
      return j.status.conditions?.some((c: any) => c.type === 'Failed') ? j : undefined;
    }, 15_000);
    expect(failed.status.conditions.map((c: any) => `${c.type}/${c.reason}`)).toEqual(['FailureTarget/BackoffLimitExceeded', 'Failed/BackoffLimitExceeded']);
    expect(failed.status.failed).toBe(1);
    const [pod] = podsOf('fails');
    expect(pod!.metadata.name).toMatch(/^fails-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    expect(pod!.metadata.ownerReferences[0]).toMatchObject({ kind: 'Job', name: 'fails', uid, controller: true });
    expect(pod!.status.phase).toBe('Failed');
    expect(pod!.status.containerStatuses[0].state.terminated).toMatchObject({ exitCode: 3, reason: 'Error' });
    const log = await call('GET', `/api/v1/namespaces/default/pods/${pod!.metadata.name}/log?tailLines=1`);
    expect(log.text).toBe('line-two\n');
  });

  it('a pod no node can take stays Pending with the scheduler message; an nvcr.io image without a pull secret fails to pull', async () => {
    await call('POST', JOBS, job('big', 'sleep 30', { container: { resources: { limits: { 'nvidia.com/gpu': '3' } } } }));
    const msg = await waitFor('the scheduler verdict', () => podsOf('big')[0]?.status.conditions?.find((c: any) => c.type === 'PodScheduled' && c.status === 'False')?.message, 10_000);
    expect(msg).toMatch(/^0\/2 nodes are available: 1 Insufficient nvidia\.com\/gpu, 1 node\(s\) had untolerated taint \{nvidia\.com\/gpu: present\}\./);

    await call('POST', JOBS, job('pull', 'true', { container: { image: 'nvcr.io/nvidia/tao/x:1' } }));
    const waiting = await waitFor('ImagePullBackOff', () => {
      const w = podsOf('pull')[0]?.status.containerStatuses?.[0]?.state?.waiting;
      return w?.reason === 'ImagePullBackOff' ? w : undefined;
    }, 10_000);
    expect(waiting.message).toBe('Back-off pulling image "nvcr.io/nvidia/tao/x:1"');
    const logs = await call('GET', `/api/v1/namespaces/default/pods/${podsOf('pull')[0]!.metadata.name}/log`);
    expect(logs.status).toBe(400);
    expect(logs.body.message).toContain('is waiting to start: trying and failing to pull image');
  });

  it('Foreground deletion keeps the Job (deletionTimestamp, finalizer) until its pods are gone; the default orphans them', async () => {
    await call('POST', JOBS, job('fg', 'sleep 60'));
    await waitFor('the pod to run', () => podsOf('fg')[0]?.status.phase === 'Running', 10_000);
    const del = await call('DELETE', `${JOBS}/fg?propagationPolicy=Foreground`);
    expect(del.status).toBe(200);
    expect(del.body.metadata).toMatchObject({ deletionTimestamp: expect.any(String), finalizers: ['foregroundDeletion'] });
    expect((await call('GET', `${JOBS}/fg`)).status).toBe(200);
    await waitFor('the Job to go with its pods', async () => (await call('GET', `${JOBS}/fg`)).status === 404 && podsOf('fg').length === 0, 10_000);
    expect(fake.anyPodProcessAlive()).toBe(false);

    await call('POST', JOBS, job('orphan', 'sleep 60'));
    await waitFor('the pod to run', () => podsOf('orphan')[0]?.status.phase === 'Running', 10_000);
    expect((await call('DELETE', `${JOBS}/orphan`)).status).toBe(200);
    expect((await call('GET', `${JOBS}/orphan`)).status).toBe(404);
    expect(podsOf('orphan')[0]!.metadata.ownerReferences).toEqual([]);
    const bad = await call('DELETE', `/api/v1/namespaces/default/pods/${podsOf('orphan')[0]!.metadata.name}?propagationPolicy=Sometimes`);
    expect(bad.status).toBe(422);
  });
});

describe('fake Kubernetes API: Services and port-forward', () => {
  const server = `require('http').createServer((q,s)=>s.end('pod says hi')).listen(process.env.STANDIN_PORT, process.env.STANDIN_HOST)`;
  const serving = (name: string) =>
    job(name, `exec node -e "${server}"`, {
      pod: { tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists' }] },
      container: { ports: [{ name: 'http', containerPort: 8080 }], readinessProbe: { httpGet: { path: '/', port: 8080 } } },
    });

  it('a LoadBalancer gets an ingress IP and carries traffic to the ready pod; withheld, it never gets one', async () => {
    // The LB listens on <its own loopback IP>:<port>: a port nothing on this shared machine holds on 0.0.0.0.
    const lbPort = await freePort();
    await call('POST', JOBS, serving('web'));
    const svc = await call('POST', '/api/v1/namespaces/default/services', { metadata: { name: 'web' }, spec: { type: 'LoadBalancer', selector: { 'job-name': 'web' }, ports: [{ port: lbPort, targetPort: 8080 }] } });
    expect(svc.status).toBe(201);
    expect(svc.body.spec.ports[0].nodePort).toBeGreaterThanOrEqual(30000);
    expect(svc.body.spec.ports[0].nodePort).toBeLessThanOrEqual(32767);
    const ip = await waitFor('the ingress', async () => (await call('GET', '/api/v1/namespaces/default/services/web')).body.status.loadBalancer.ingress?.[0]?.ip, 10_000);
    const text = await waitFor('the pod to be ready behind the LB', async () => {
      try {
        const r = await fetch(`http://${ip}:${lbPort}/`);
        return await r.text();
      } catch {
        return undefined;
      }
    }, 20_000, 250);
    expect(text).toBe('pod says hi');

    fake.withholdIngress = true;
    await call('POST', '/api/v1/namespaces/default/services', { metadata: { name: 'held' }, spec: { type: 'LoadBalancer', selector: { 'job-name': 'web' }, ports: [{ port: await freePort(), targetPort: 'http' }] } });
    await new Promise((r) => setTimeout(r, 500));
    expect((await call('GET', '/api/v1/namespaces/default/services/held')).body.status.loadBalancer).toEqual({});
  });

  it('portforward speaks v4.channel.k8s.io: per port a data and an error channel, the first frame on each carries the port', async () => {
    await call('POST', JOBS, serving('pf'));
    const pod = await waitFor('the pod to be ready', () => {
      const p = podsOf('pf')[0];
      return p?.status.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
    }, 20_000, 250);
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${fake.url.replace('https', 'wss')}/api/v1/namespaces/default/pods/${pod.metadata.name}/portforward?ports=8080`, ['v4.channel.k8s.io'], { ca, headers: { authorization: 'Bearer wrong' } });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    expect(refused).toBe(401);
    const frames: Buffer[] = [];
    const ws = new WebSocket(`${fake.url.replace('https', 'wss')}/api/v1/namespaces/default/pods/${pod.metadata.name}/portforward?ports=8080`, ['v4.channel.k8s.io'], { ca, headers: { authorization: `Bearer ${fake.token}` } });
    ws.on('message', (d: Buffer) => frames.push(Buffer.from(d)));
    await new Promise((r) => ws.once('open', r));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('GET / HTTP/1.0\r\nHost: x\r\n\r\n')]));
    await waitFor('the answer on the data channel', () => frames.some((f) => f[0] === 0 && f.subarray(1).toString().includes('pod says hi')), 10_000);
    const port = Buffer.alloc(2);
    port.writeUInt16LE(8080, 0);
    expect(frames[0]).toEqual(Buffer.concat([Buffer.from([0]), port]));
    expect(frames[1]).toEqual(Buffer.concat([Buffer.from([1]), port]));
    ws.close();
    expect(fake.requests.some((q) => q.method === 'UPGRADE' && q.path.endsWith('/portforward') && q.query.ports === '8080')).toBe(true);
  });
});
