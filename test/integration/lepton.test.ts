// DGX Cloud Lepton end to end through the library (src/lifecycle.ts) against the fake Lepton API
// (test/fakes/lepton-api-server.ts), whose replicas run the stand-in microservice on this machine.
import { readFileSync, existsSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError, LaunchFailedError, MissingInputError, PlatformUnavailableError, ServiceFailedError } from '../../src/errors.js';
import { prepareRequest, sendRequest, startService, type StartInput } from '../../src/lifecycle.js';
import { listServices, serviceLogs, stopService } from '../../src/manage.js';
import { Registry } from '../../src/registry/store.js';
import { loadAdapter } from '../../src/platforms/index.js';
import { listResourceShapes } from '../../src/platforms/lepton/adapter.js';
import { FakeLeptonApi } from '../fakes/lepton-api-server.js';
import { ROOT, parseJson, runCli, tempState } from '../helpers/cli.js';

const CANARY = `tao-canary-${Math.random().toString(36).slice(2, 10)}`;
const IMAGE_URL = 'https://example.com/cat.jpg';
const PNG = `${ROOT}/test/fixtures/media/cat.png`;

let fake: FakeLeptonApi;
let registry: Registry;
let stateFile: string;
let env: NodeJS.ProcessEnv;
const logs: string[] = [];
const deps = () => ({ registry, env, reporter: { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(m) } });

const input = (over: Partial<StartInput> = {}): StartInput => ({
  network_arch: 'cosmos-rl',
  model_path: 'hf_model://nvidia/Cosmos-Reason1-7B',
  platform: 'lepton',
  options: { resourceShape: 'gpu.1xh100' },
  timeout_s: 60,
  ...over,
});

beforeAll(async () => {
  fake = await FakeLeptonApi.start({ standinEnv: { STANDIN_LOAD_MS: '400' } });
  ({ stateFile } = tempState());
  registry = new Registry(stateFile);
  env = { ...process.env, ...fake.env, HF_TOKEN: CANARY };
  delete env.LEPTON_ENDPOINT_TOKEN;
});

afterEach(async () => {
  // A failed test must not leave services behind for the next one.
  for (const id of Object.keys((await registry.read()).entries)) await stopService(id, deps()).catch(() => undefined);
});

afterAll(async () => {
  await fake?.close();
});

function bodiesExceptSecretCreation(): string[] {
  return fake.requests.filter((r) => !(r.method === 'POST' && r.path === '/usersecrets')).map((r) => `${r.method} ${r.path} ${r.body}`);
}

describe('lepton', () => {
  it('start → ready → request → stop, secrets only in the secret creation call', async () => {
    const r = await startService(input(), deps());
    expect(r.ready).toBe(true);
    const entry = r.entry!;
    const dep = fake.deployments.get(entry.platform_job_id!)!;
    expect(dep).toBeDefined();
    expect(entry.host_url).toBe(`http://127.0.0.1:${dep.proxyPort}`);
    expect(entry.auth_env).toBe('LEPTON_WORKSPACE_TOKEN');
    expect(entry.platform_data).toMatchObject({ deployment: entry.platform_job_id, workspace_url: fake.url });

    // The deployment: /bin/bash -c <inner>, port 8080, the shape, an env referencing the per-job secret.
    expect(dep.spec.container.command.slice(0, 2)).toEqual(['/bin/bash', '-c']);
    expect(dep.spec.container.command[2]).toMatch(/^umask 0 && cosmos-rl-inference-microservice --job '/);
    expect(dep.spec.container.command[2]).toContain('"TAO_EXECUTION_BACKEND":"lepton"');
    expect(dep.spec.container.ports).toEqual([{ container_port: 8080 }]);
    expect(dep.spec.resource_requirement).toMatchObject({ resource_shape: 'gpu.1xh100', min_replicas: 1, max_replicas: 1, shared_memory_size: 16384 });
    const secretRef = dep.spec.envs.find((e: { name: string }) => e.name === 'HF_TOKEN');
    expect(secretRef).toEqual({ name: 'HF_TOKEN', value_from: { secret_name_ref: `${entry.platform_job_id}-hf-token` } });
    expect(dep.spec.api_tokens).toEqual([{ value_from: { token_name_ref: 'WORKSPACE_TOKEN' } }]);
    expect(fake.secrets.get(`${entry.platform_job_id}-hf-token`)).toBe(CANARY);

    // The endpoint is guarded: no token → 401; the library sends Bearer $LEPTON_WORKSPACE_TOKEN.
    const anon = await fetch(`${entry.host_url}/api/v1/health/readiness`);
    expect(anon.status).toBe(401);
    const p = await prepareRequest({ job_id: entry.job_id, prompt: 'what is in the picture?', images: [IMAGE_URL] }, {}, deps());
    const out = await sendRequest(p, {}, deps());
    expect(out.choices[0]!.message.content).toContain('cosmos-rl saw 1 image(s)');
    const echo = (out as { tao_standin?: { secrets_present: string[]; backend: string } }).tao_standin!;
    expect(echo.secrets_present).toContain('HF_TOKEN');
    expect(echo.backend).toBe('lepton');

    // ls and logs through the adapter.
    // Lepton's own state lags the service's readiness a little: poll it.
    let live = '';
    for (let i = 0; i < 50 && live !== 'running'; i++) {
      const listed = await listServices(deps());
      live = listed.services.find((s) => s.job_id === entry.job_id)?.live.state ?? 'missing';
      if (live !== 'running') await new Promise((res) => setTimeout(res, 200));
    }
    expect(live).toBe('running');
    let text = '';
    for await (const c of serviceLogs(entry.job_id, { tail: 50 }, deps())) text += c;
    expect(text).toContain('[standin]');
    expect(text).not.toContain(CANARY);

    await stopService(entry.job_id, deps());
    expect(fake.deployments.has(entry.platform_job_id!)).toBe(false);
    expect(fake.secrets.size).toBe(0);
    expect(await registry.get(entry.job_id)).toBeUndefined();
    // stop is idempotent on the platform
    const adapter = await loadAdapter('lepton');
    await adapter.stop(entry, { env, log: () => undefined, warn: () => undefined });

    // The canary: in the secret creation body only; never in other bodies, the registry or the output.
    const secretCalls = fake.requests.filter((q) => q.method === 'POST' && q.path === '/usersecrets');
    expect(secretCalls).toHaveLength(1);
    expect(secretCalls[0]!.body).toContain(CANARY);
    for (const b of bodiesExceptSecretCreation()) expect(b).not.toContain(CANARY);
    expect(existsSync(stateFile) ? readFileSync(stateFile, 'utf8') : '').not.toContain(CANARY);
    expect(logs.join('\n')).not.toContain(CANARY);
    expect(JSON.stringify(entry)).not.toContain(CANARY);
  });

  it('a deployment whose image cannot be pulled is reported with its reason, and cleaned up', async () => {
    fake.failNext('image_pull');
    const before = fake.deployments.size;
    const err = await startService(input(), deps()).then(
      () => undefined,
      (e: unknown) => e,
    );
    // Lepton assigns the endpoint URL at creation, so the failure shows up while waiting for readiness
    // (ServiceFailedError from the status check) or, if already visible, at launch (LaunchFailedError).
    expect(err instanceof ServiceFailedError || err instanceof LaunchFailedError).toBe(true);
    expect((err as Error).message).toMatch(/ConfigError: Back-off pulling image "[^"]+": ErrImagePull/);
    expect(fake.deployments.size).toBe(before);
    expect(fake.secrets.size).toBe(0);
    expect(Object.keys((await registry.read()).entries)).toHaveLength(0);
  });

  it('a replica that crashes while loading fails the start with exit code and log tail', async () => {
    fake.failNext('crash');
    const err = await startService(input(), deps()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toMatch(/exit 3|exit code 3/);
    expect(msg).toContain('CUDA error');
    expect(err instanceof ServiceFailedError || err instanceof LaunchFailedError).toBe(true);
    expect(fake.deployments.size).toBe(0);
  });

  it('--endpoint-token-env guards the endpoint with that token; auth_env names it', async () => {
    const myEnv = { ...env, MY_EP_TOKEN: `ep-${Math.random().toString(36).slice(2)}` };
    const d = { ...deps(), env: myEnv };
    const r = await startService(input({ options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'MY_EP_TOKEN' } }), d);
    const entry = r.entry!;
    expect(entry.auth_env).toBe('MY_EP_TOKEN');
    expect(JSON.stringify(await registry.read())).not.toContain(myEnv.MY_EP_TOKEN);
    const withWs = await fetch(`${entry.host_url}/api/v1/health/readiness`, { headers: { authorization: `Bearer ${fake.token}` } });
    expect(withWs.status).toBe(401);
    const ok = await fetch(`${entry.host_url}/api/v1/health/readiness`, { headers: { authorization: `Bearer ${myEnv.MY_EP_TOKEN}` } });
    expect(ok.status).toBe(200);
    await stopService(entry.job_id, d);
    expect(fake.deployments.size).toBe(0);
  });

  it('--node-group by name becomes the node group id in the affinity', async () => {
    const r = await startService(input({ options: { resourceShape: 'gpu.1xh100', nodeGroup: 'h100-pool', imagePullSecret: 'ngc-pull' } }), deps());
    const dep = fake.deployments.get(r.entry!.platform_job_id!)!;
    expect(dep.spec.resource_requirement.affinity).toEqual({ allowed_dedicated_node_groups: ['ng-7f3a9c'] });
    expect(dep.spec.image_pull_secrets).toEqual(['ngc-pull']);
    await stopService(r.entry!.job_id, deps());
  });

  it('bad input and credentials fail before anything is created', async () => {
    const posts = () => fake.requests.filter((q) => q.method !== 'GET').length;
    const n = posts();
    await expect(startService(input({ options: {} }), deps())).rejects.toBeInstanceOf(MissingInputError);
    await expect(startService(input({ options: { resourceShape: 'gpu.9xb300' } }), deps())).rejects.toThrow(/not available.*Available|gpu.9xb300/);
    await expect(startService(input({ options: { resourceShape: 'gpu.1xh100', nodeGroup: 'nope' } }), deps())).rejects.toBeInstanceOf(InvalidInputError);
    const badTok = { ...deps(), env: { ...env, LEPTON_WORKSPACE_TOKEN: 'wrong' } };
    await expect(startService(input(), badTok)).rejects.toBeInstanceOf(PlatformUnavailableError);
    const noTok = { ...deps(), env: { ...env, LEPTON_WORKSPACE_TOKEN: '' } };
    await expect(startService(input(), noTok)).rejects.toThrow(/LEPTON_WORKSPACE_TOKEN is not set/);
    // Another credential (named in service.yaml) must never become the endpoint token sent in the deployment body.
    for (const name of ['NGC_KEY', 'BREV_API_TOKEN', 'TAO_API_KEY']) {
      const other = { ...deps(), env: { ...env, [name]: CANARY } };
      await expect(startService(input({ options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: name } }), other)).rejects.toThrow(/holds another credential/);
    }
    expect(posts()).toBe(n);
    expect(Object.keys((await registry.read()).entries)).toHaveLength(0);
  });

  it('--dry-run shows the HTTP calls with secrets by name only and changes nothing', async () => {
    const n = fake.requests.length;
    const r = await startService(input({ dry_run: true }), deps());
    const plan = r.dry_run!.plan;
    const text = JSON.stringify(plan);
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain(fake.token);
    const secretStep = plan.steps.find((s) => s.http?.url.endsWith('/usersecrets'))!;
    expect(secretStep.http!.body).toEqual([{ name: expect.stringMatching(/^tao-[a-z0-9]+-hf-token$/), value: '<value of $HF_TOKEN>' }]);
    const create = plan.steps.find((s) => s.http?.method === 'POST' && s.http.url.endsWith('/deployments'))!;
    expect(JSON.stringify(create.http!.body)).toContain('WORKSPACE_TOKEN');
    expect(fake.requests.length).toBe(n);
  });

  it('lists resource shapes for the --resource-shape prompt', async () => {
    expect(await listResourceShapes(env)).toEqual(['cpu.small', 'gpu.1xh100', 'gpu.2xh100', 'gpu.8xh100-sxm']);
  });
});

describe('lepton through the CLI', () => {
  it('start → ready → request → ls → logs → stop; canary only in the secret creation body', async () => {
    const { stateFile: sf } = tempState();
    const n0 = fake.requests.length;
    const cliEnv = { ...fake.env, TAO_INF_STATE_FILE: sf, HF_TOKEN: CANARY, LEPTON_RESOURCE_SHAPE: '' };
    const outputs: string[] = [];
    const start = await runCli(['start', '--platform', 'lepton', '--resource-shape', 'gpu.1xh100', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', '--timeout', '120', '--max-duration', '3h', '--json'], { env: cliEnv });
    outputs.push(start.stdout, start.stderr);
    expect(start.exitCode, start.stderr).toBe(0);
    const entry = parseJson(start);
    // --max-duration: Lepton has no run-time limit; the deployment carries the expiry the entry records.
    const created = fake.requests.find((r) => r.method === 'POST' && r.path.startsWith('/deployments') && r.body.includes(entry.platform_job_id))!;
    expect(JSON.parse(created.body).spec.envs).toContainEqual({ name: 'TAO_INFER_EXPIRES_AT', value: entry.expires_at });
    expect(entry).toMatchObject({ platform: 'lepton', state: 'running', auth_env: 'LEPTON_WORKSPACE_TOKEN' });
    expect(entry.platform_job_id).toMatch(/^tao-[a-z0-9]{12}$/);
    expect(entry.host_url).toBe(`http://127.0.0.1:${fake.deployments.get(entry.platform_job_id)!.proxyPort}`);

    const req = await runCli(['request', '--json', '--job', entry.job_id, '--prompt', 'What is in the picture?', '--image', PNG], { env: cliEnv });
    outputs.push(req.stdout, req.stderr);
    expect(req.exitCode, req.stderr).toBe(0);
    expect(parseJson(req).tao_standin.secrets_present).toContain('HF_TOKEN');

    const ls = await runCli(['ls', '--json'], { env: cliEnv });
    outputs.push(ls.stdout, ls.stderr);
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(JSON.stringify(parseJson(ls))).toContain(entry.platform_job_id);

    const lg = await runCli(['logs', entry.job_id, '--tail', '5'], { env: cliEnv });
    outputs.push(lg.stdout, lg.stderr);
    expect(lg.exitCode, lg.stderr).toBe(0);
    expect(lg.stdout).toContain('[standin]');

    const stop = await runCli(['stop', entry.job_id, '--json'], { env: cliEnv });
    outputs.push(stop.stdout, stop.stderr);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(fake.deployments.has(entry.platform_job_id)).toBe(false);
    expect(fake.secrets.size).toBe(0);

    const mine = fake.requests.slice(n0);
    const secretCalls = mine.filter((q) => q.method === 'POST' && q.path === '/usersecrets');
    expect(secretCalls).toHaveLength(1);
    expect(secretCalls[0]!.body).toContain(CANARY);
    for (const q of mine) if (q !== secretCalls[0]) expect(q.body).not.toContain(CANARY);
    expect(readFileSync(sf, 'utf8')).not.toContain(CANARY);
    expect(readFileSync(sf, 'utf8')).not.toContain(fake.token);
    for (const o of outputs) {
      expect(o).not.toContain(CANARY);
      expect(o).not.toContain(fake.token);
    }
  });

  it('without --resource-shape in CI: exit 2 naming the flag, no API call', async () => {
    const { stateFile: sf } = tempState();
    const n0 = fake.requests.length;
    const r = await runCli(['start', '--platform', 'lepton', '--arch', 'cosmos-rl', '--model', 'hf_model://a/b'], { env: { ...fake.env, TAO_INF_STATE_FILE: sf, LEPTON_RESOURCE_SHAPE: '' } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--resource-shape');
    expect(fake.requests.length).toBe(n0);
  });

  it('a failing deployment: non-zero exit with the platform reason, nothing left behind', async () => {
    const { stateFile: sf } = tempState();
    fake.failNext('image_pull');
    const r = await runCli(['start', '--platform', 'lepton', '--resource-shape', 'gpu.1xh100', '--arch', 'cosmos-rl', '--model', 'hf_model://a/b', '--timeout', '60'], {
      env: { ...fake.env, TAO_INF_STATE_FILE: sf, HF_TOKEN: CANARY },
    });
    expect([3, 4]).toContain(r.exitCode);
    expect(r.stderr).toMatch(/ErrImagePull/);
    expect(r.stderr).not.toContain(CANARY);
    expect(fake.deployments.size).toBe(0);
    expect(fake.secrets.size).toBe(0);
  });
});
