// The fake Lepton API keeps to the documented rules (see its header comment).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeLeptonApi } from '../fakes/lepton-api-server.js';

let f: FakeLeptonApi;
beforeAll(async () => {
  f = await FakeLeptonApi.start({ standinEnv: { STANDIN_LOAD_MS: '200' } });
});
afterAll(async () => {
  await f.close();
});

const call = (method: string, path: string, body?: unknown, token = f.token) =>
  fetch(`${f.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });

const json = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

const deployment = (name: string, over: Record<string, unknown> = {}) => ({
  metadata: { name },
  spec: {
    container: { image: 'img:1', command: ['/bin/bash', '-c', 'node -e "require(\'http\').createServer((q,s)=>s.end(\'ok\')).listen(process.env.STANDIN_PORT)"'], ports: [{ container_port: 8080 }] },
    resource_requirement: { resource_shape: 'gpu.1xh100', min_replicas: 1, max_replicas: 1 },
    envs: [],
    api_tokens: [{ value: 'ep-token' }],
    ...over,
  },
});

describe('fake Lepton API', () => {
  it('401 without the workspace token, 404 for another workspace', async () => {
    expect((await call('GET', '/shapes', undefined, 'nope')).status).toBe(401);
    const other = await fetch(f.url.replace(/workspaces\/[^/]+/, 'workspaces/other') + '/shapes', { headers: { authorization: `Bearer ${f.token}` } });
    expect(other.status).toBe(404);
    const body = await json(call('GET', '/shapes', undefined, 'nope'));
    expect(Object.keys(body).sort()).toEqual(['code', 'message']);
  });

  it('shapes filtered by purpose; node groups', async () => {
    const shapes = await json(call('GET', '/shapes?purpose=deployment'));
    expect(shapes[1]).toEqual({ metadata: { id: 'gpu.1xh100', name: 'gpu.1xh100' }, spec: { name: 'gpu.1xh100', listable_in: ['pod', 'deployment', 'job'], accelerator_type: 'H100', accelerator_num: 1 } });
    expect(await json(call('GET', '/dedicated-node-groups'))).toEqual([{ metadata: { id: 'ng-7f3a9c', name: 'h100-pool' }, spec: {}, status: {} }]);
  });

  it('secrets: write-only values, 409 on duplicates, 404 on a missing delete', async () => {
    expect((await call('POST', '/usersecrets', [{ name: 's1', value: 'v' }])).status).toBe(200);
    expect((await call('POST', '/usersecrets', [{ name: 's1', value: 'v' }])).status).toBe(409);
    expect((await call('POST', '/usersecrets', { name: 's2' })).status).toBe(400);
    expect(await json(call('GET', '/usersecrets'))).toEqual([{ name: 's1' }]);
    expect((await call('DELETE', '/usersecrets/s1')).status).toBe(200);
    expect((await call('DELETE', '/usersecrets/s1')).status).toBe(404);
  });

  it('deployments: 400 on invalid fields, 409 on duplicates, 404 when missing', async () => {
    expect((await call('POST', '/deployments', deployment('Bad_Name'))).status).toBe(400);
    expect((await call('POST', '/deployments', { ...deployment('ok1'), spec: { ...deployment('ok1').spec, resource_requirement: { resource_shape: 'gpu.99x' } } })).status).toBe(400);
    expect((await call('POST', '/deployments', deployment('ok1', { envs: [{ name: 'X', value_from: { secret_name_ref: 'missing' } }] }))).status).toBe(400);
    expect((await call('POST', '/deployments', deployment('ok1', { api_tokens: [{ value_from: { token_name_ref: 'OTHER' } }] }))).status).toBe(400);
    expect((await call('POST', '/deployments', 'not json')).status).toBe(400);
    // the SDK sends lowercase shapes; ingress_timeout_seconds is 300-6000
    expect((await call('POST', '/deployments', { ...deployment('ok1'), spec: { ...deployment('ok1').spec, resource_requirement: { resource_shape: 'GPU.1xH100' } } })).status).toBe(400);
    expect((await call('POST', '/deployments', deployment('ok1', { ingress_timeout_seconds: 299 }))).status).toBe(400);
    expect((await call('POST', '/deployments', deployment('ok1', { ingress_timeout_seconds: 6001 }))).status).toBe(400);
    expect((await call('GET', '/deployments/nope')).status).toBe(404);
    expect((await call('DELETE', '/deployments/nope')).status).toBe(404);
  });

  it('a deployment goes Starting → Ready, guards its endpoint with its token, and is deleted', async () => {
    const r = await call('POST', '/deployments', deployment('web1'));
    expect(r.status).toBe(200);
    expect((await call('POST', '/deployments', deployment('web1'))).status).toBe(409);
    const d = await json(call('GET', '/deployments/web1'));
    expect(d.status.state).toBe('Starting');
    const ext = d.status.endpoint.external_endpoint as string;
    expect(ext).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // the tiny server answers 200 on every path, so readiness flips to Ready
    let state = '';
    for (let i = 0; i < 50 && state !== 'Ready'; i++) {
      state = (await json(call('GET', '/deployments/web1'))).status.state;
      if (state !== 'Ready') await new Promise((res) => setTimeout(res, 100));
    }
    expect(state).toBe('Ready');
    expect(await json(call('GET', '/deployments/web1/readiness'))).toEqual({ [f.deployments.get('web1')!.replicaId]: [expect.objectContaining({ reason: 'Ready' })] });
    expect((await fetch(ext)).status).toBe(401);
    expect(await (await fetch(ext, { headers: { authorization: 'Bearer ep-token' } })).text()).toBe('ok');
    const reps = await json(call('GET', '/deployments/web1/replicas'));
    expect(reps).toHaveLength(1);
    expect((await call('DELETE', '/deployments/web1')).status).toBe(200);
    await expect(fetch(ext)).rejects.toThrow();
  });

  it('the workspace token reference guards nothing reachable (no longer accessible); an expired token is refused', async () => {
    const r = await call('POST', '/deployments', deployment('web2', { api_tokens: [{ value_from: { token_name_ref: 'WORKSPACE_TOKEN' } }, { value: 'ep-2' }] }));
    expect(r.status).toBe(200);
    const ext = (await json(r)).status.endpoint.external_endpoint as string;
    // 401 is the gateway's answer, before the replica is asked: no need to wait for Ready.
    expect((await fetch(ext, { headers: { authorization: `Bearer ${f.token}` } })).status).toBe(401);
    f.expireEndpointToken('ep-2');
    expect((await fetch(ext, { headers: { authorization: 'Bearer ep-2' } })).status).toBe(401);
    expect((await call('DELETE', '/deployments/web2')).status).toBe(200);
  });

  it('a DGXC workspace refuses API calls without its origin header', async () => {
    const g = await FakeLeptonApi.start({ origin: 'https://dgxc.example' });
    try {
      expect((await fetch(`${g.url}/shapes`, { headers: { authorization: `Bearer ${g.token}` } })).status).toBe(401);
      expect((await fetch(`${g.url}/shapes`, { headers: { authorization: `Bearer ${g.token}`, origin: 'https://dgxc.example' } })).status).toBe(200);
    } finally {
      await g.close();
    }
  });

  it('records every request body', () => {
    expect(f.requests.some((q) => q.method === 'POST' && q.path === '/usersecrets' && q.body.includes('"s1"'))).toBe(true);
  });
});
