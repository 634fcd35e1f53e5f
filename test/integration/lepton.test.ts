// DGX Cloud Lepton end to end through the library (src/lifecycle.ts) against the fake Lepton API
// (test/fakes/lepton-api-server.ts), whose replicas run the stand-in microservice on this machine. The platform
// contract (lifecycle with the deployment body, the guarded endpoint and idempotent stop, a crashing replica,
// interrupted starts, the canary) is in test/contract/ (harnesses/lepton.ts); this file keeps lepton's own cases.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exitCodeFor, InvalidInputError, LaunchFailedError, MissingInputError, PlatformError, PlatformUnavailableError, ServiceFailedError } from '../../src/errors.js';
import { startService, type StartInput } from '../../src/lifecycle.js';
import { stopService } from '../../src/manage.js';
import { Registry } from '../../src/registry/store.js';
import { listResourceShapes } from '../../src/platforms/lepton/adapter.js';
import { FakeLeptonApi } from '../fakes/lepton-api-server.js';
import { CANARY } from '../helpers/canary.js';
import { runCli, tempState } from '../helpers/cli.js';

/** The endpoint token the user created in the Lepton console, in a variable the user names. */
const EP_TOKEN = `ep-${Math.random().toString(36).slice(2, 12)}`;

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
  options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'TAO_ENDPOINT_TOKEN' },
  timeout_s: 60,
  ...over,
});

beforeAll(async () => {
  // A DGXC workspace: the API wants the `origin` header the SDK sends (fake.env sets LEPTON_WORKSPACE_ORIGIN_URL).
  fake = await FakeLeptonApi.start({ standinEnv: { STANDIN_LOAD_MS: '400' }, origin: 'https://dgxc-workspace.example' });
  ({ stateFile } = tempState());
  registry = new Registry(stateFile);
  env = { ...process.env, ...fake.env, HF_TOKEN: CANARY, TAO_ENDPOINT_TOKEN: EP_TOKEN };
  delete env.LEPTON_ENDPOINT_TOKEN;
});

afterEach(async () => {
  // A failed test must not leave services behind for the next one.
  for (const id of Object.keys((await registry.read()).entries)) await stopService(id, deps()).catch(() => undefined);
});

afterAll(async () => {
  await fake?.close();
});

describe('lepton', () => {
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

  it('an endpoint token the gateway refuses fails the start at once with exit 3, not a readiness timeout', async () => {
    const expired = `ep-expired-${Math.random().toString(36).slice(2)}`;
    fake.expireEndpointToken(expired);
    const t0 = Date.now();
    const err = await startService(input({ timeout_s: 30 }), { ...deps(), env: { ...env, TAO_ENDPOINT_TOKEN: expired } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PlatformError);
    expect((err as PlatformError).code).toBe('endpoint_token_refused');
    expect((err as Error).message).toContain('the endpoint token was refused (HTTP 401');
    expect((err as PlatformError).hint).toContain('$TAO_ENDPOINT_TOKEN');
    expect(exitCodeFor(err)).toBe(3);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(fake.deployments.size).toBe(0);
  });

  it('--public is explicit, warned about, and gives an endpoint without api tokens', async () => {
    const warned: string[] = [];
    const d = { ...deps(), reporter: { log: () => undefined, warn: (m: string) => warned.push(m) } };
    const r = await startService(input({ options: { resourceShape: 'gpu.1xh100', public: true } }), d);
    const dep = fake.deployments.get(r.entry!.platform_job_id!)!;
    expect(dep.spec.api_tokens).toEqual([]);
    expect(r.entry!.auth_env).toBeUndefined();
    expect(warned.join('\n')).toMatch(/--public: the Lepton endpoint will answer anyone/);
    expect((await fetch(`${r.entry!.host_url}/api/v1/health/readiness`)).status).toBe(200);
    await stopService(r.entry!.job_id, d);
  });

  it('a resource shape in capitals is sent lowercase, as the SDK sends it; --ingress-timeout is passed on', async () => {
    const r = await startService(input({ options: { resourceShape: 'GPU.1xH100', endpointTokenEnv: 'TAO_ENDPOINT_TOKEN', ingressTimeout: 600 } }), deps());
    const dep = fake.deployments.get(r.entry!.platform_job_id!)!;
    expect(dep.spec.resource_requirement.resource_shape).toBe('gpu.1xh100');
    expect(dep.spec.ingress_timeout_seconds).toBe(600);
    await stopService(r.entry!.job_id, deps());
  });

  it('the origin header is sent to a DGXC workspace (the fake refuses calls without it)', async () => {
    const noOrigin = { ...env, LEPTON_WORKSPACE_ORIGIN_URL: '' };
    await expect(listResourceShapes(noOrigin)).rejects.toBeInstanceOf(PlatformUnavailableError);
    expect(await listResourceShapes(env)).toContain('gpu.1xh100');
  });

  it('--node-group by name becomes the node group id in the affinity', async () => {
    const r = await startService(input({ options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'TAO_ENDPOINT_TOKEN', nodeGroup: 'h100-pool', imagePullSecret: 'ngc-pull' } }), deps());
    const dep = fake.deployments.get(r.entry!.platform_job_id!)!;
    expect(dep.spec.resource_requirement.affinity).toEqual({ allowed_dedicated_node_groups: ['ng-7f3a9c'] });
    expect(dep.spec.image_pull_secrets).toEqual(['ngc-pull']);
    await stopService(r.entry!.job_id, deps());
  });

  it('bad input and credentials fail before anything is created', async () => {
    const posts = () => fake.requests.filter((q) => q.method !== 'GET').length;
    const n = posts();
    await expect(startService(input({ options: {} }), deps())).rejects.toBeInstanceOf(MissingInputError);
    await expect(startService(input({ options: { resourceShape: 'gpu.9xb300', endpointTokenEnv: 'TAO_ENDPOINT_TOKEN' } }), deps())).rejects.toThrow(/not available.*Available|gpu.9xb300/);
    await expect(startService(input({ options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'TAO_ENDPOINT_TOKEN', nodeGroup: 'nope' } }), deps())).rejects.toBeInstanceOf(InvalidInputError);
    // No endpoint token and no explicit --public: the workspace token is no longer a default.
    await expect(startService(input({ options: { resourceShape: 'gpu.1xh100' } }), deps())).rejects.toThrow(/needs a token: --endpoint-token-env/);
    await expect(startService(input({ options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'TAO_ENDPOINT_TOKEN', public: true } }), deps())).rejects.toThrow(/exclude each other/);
    for (const t of [299, 6001])
      await expect(startService(input({ options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'TAO_ENDPOINT_TOKEN', ingressTimeout: t } }), deps())).rejects.toThrow(/--ingress-timeout must be whole seconds from 300 to 6000/);
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
    expect(create.http!.body).toMatchObject({ spec: { api_tokens: [{ value: '<value of $TAO_ENDPOINT_TOKEN>' }] } });
    expect(text).not.toContain(EP_TOKEN);
    expect(fake.requests.length).toBe(n);
  });

  it('lists resource shapes for the --resource-shape prompt', async () => {
    expect(await listResourceShapes(env)).toEqual(['cpu.small', 'gpu.1xh100', 'gpu.2xh100', 'gpu.8xh100-sxm']);
  });
});

describe('lepton through the CLI', () => {
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
    const r = await runCli(['start', '--platform', 'lepton', '--resource-shape', 'gpu.1xh100', '--public', '--arch', 'cosmos-rl', '--model', 'hf_model://a/b', '--timeout', '60'], {
      env: { ...fake.env, TAO_INF_STATE_FILE: sf, HF_TOKEN: CANARY },
    });
    expect([3, 4]).toContain(r.exitCode);
    expect(r.stderr).toMatch(/ErrImagePull/);
    expect(r.stderr).not.toContain(CANARY);
    expect(fake.deployments.size).toBe(0);
    expect(fake.secrets.size).toBe(0);
  });
});
