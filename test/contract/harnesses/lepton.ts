/**
 * lepton against the fake DGX Cloud Lepton API (test/fakes/lepton-api-server.ts), whose replicas run the stand-in
 * microservice on this machine behind a token-checking endpoint proxy. The lifecycle also checks the deployment
 * body (command, port, shape, the env referencing the per-job secret, the endpoint token), that the endpoint refuses
 * anonymous calls, that stop removes the deployment and the secret and is idempotent on the platform, and that the
 * canary is in the secret creation body only (and neither the workspace token nor the endpoint token in any output).
 */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { loadAdapter } from '../../../src/platforms/index.js';
import { FakeLeptonApi } from '../../fakes/lepton-api-server.js';
import { CANARY } from '../../helpers/canary.js';
import { ROOT, tempState } from '../../helpers/cli.js';
import { withTmp, type ContractEnv, type Harness } from '../harness.js';

const PNG = `${ROOT}/test/fixtures/media/cat.png`;
/** The endpoint token the user created in the Lepton console, in a variable the user names. */
const EP_TOKEN = `ep-${Math.random().toString(36).slice(2, 12)}`;
let fake: FakeLeptonApi;

const isSecretCreation = (q: { method: string; path: string }) => q.method === 'POST' && q.path === '/usersecrets';

export const lepton: Harness = {
  label: 'lepton (fake Lepton API)',
  platform: 'lepton',
  async setup() {
    // A DGXC workspace: the API wants the `origin` header the SDK sends (fake.env sets LEPTON_WORKSPACE_ORIGIN_URL).
    fake = await FakeLeptonApi.start({ standinEnv: { STANDIN_LOAD_MS: '400' }, origin: 'https://dgxc-workspace.example' });
  },
  async teardown() {
    await fake?.close();
  },
  newEnv() {
    const { dir, stateFile } = tempState();
    return withTmp({ dir, stateFile, env: { ...fake.env, HF_TOKEN: CANARY, LEPTON_RESOURCE_SHAPE: '', TAO_ENDPOINT_TOKEN: EP_TOKEN } });
  },
  startFlags: () => ['--platform', 'lepton', '--resource-shape', 'gpu.1xh100', '--endpoint-token-env', 'TAO_ENDPOINT_TOKEN', '--ingress-timeout', '900'],
  cases: [
    {
      arch: 'cosmos-rl',
      model: 'hf_model://nvidia/Cosmos-Reason1-7B',
      request: (_run, entry) => ['--job', entry.job_id, '--prompt', 'What is in the picture?', '--image', PNG],
    },
  ],
  beforeStart(run) {
    run.state.n0 = fake.requests.length;
  },
  async afterStart(entry) {
    expect(entry).toMatchObject({ platform: 'lepton', state: 'started', auth_env: 'TAO_ENDPOINT_TOKEN' });
    expect(entry.platform_job_id).toMatch(/^tao-[a-z0-9]{12}$/);
    const dep = fake.deployments.get(entry.platform_job_id)!;
    expect(dep).toBeDefined();
    expect(entry.host_url).toBe(`http://127.0.0.1:${dep.proxyPort}`);
    expect(entry.platform_data).toMatchObject({ deployment: entry.platform_job_id, workspace_url: fake.url });

    // The deployment: /bin/bash -c <inner>, port 8080, the shape, an env referencing the per-job secret.
    expect(dep.spec.container.command.slice(0, 2)).toEqual(['/bin/bash', '-c']);
    expect(dep.spec.container.command[2]).toMatch(/^umask 0 && cosmos-rl-inference-microservice --job '/);
    expect(dep.spec.container.command[2]).toContain('"TAO_EXECUTION_BACKEND":"lepton"');
    expect(dep.spec.container.ports).toEqual([{ container_port: 8080 }]);
    expect(dep.spec.resource_requirement).toMatchObject({ resource_shape: 'gpu.1xh100', min_replicas: 1, max_replicas: 1, shared_memory_size: 16384 });
    expect(dep.spec.ingress_timeout_seconds).toBe(900);
    const secretRef = dep.spec.envs.find((e: { name: string }) => e.name === 'HF_TOKEN');
    expect(secretRef).toEqual({ name: 'HF_TOKEN', value_from: { secret_name_ref: `${entry.platform_job_id}-hf-token` } });
    expect(dep.spec.api_tokens).toEqual([{ value: EP_TOKEN }]);
    expect(fake.secrets.get(`${entry.platform_job_id}-hf-token`)).toBe(CANARY);

    // The endpoint is guarded: no token → 401 (the CLI sends Bearer $TAO_ENDPOINT_TOKEN).
    const anon = await fetch(`${entry.host_url}/api/v1/health/readiness`);
    expect(anon.status).toBe(401);
  },
  afterList(listed, entry) {
    expect(JSON.stringify(listed)).toContain(entry.platform_job_id);
  },
  afterRequest(completion) {
    expect(completion.choices[0].message.content).toContain('cosmos-rl saw 1 image(s)');
    expect(completion.tao_standin.backend).toBe('lepton');
  },
  async afterStop(entry, run) {
    expect(fake.deployments.has(entry.platform_job_id)).toBe(false);
    expect(fake.secrets.size).toBe(0);
    // stop is idempotent on the platform
    const adapter = await loadAdapter('lepton');
    await adapter.stop(entry, { env: { ...process.env, ...run.t.env }, log: () => undefined, warn: () => undefined });

    // The canary: in the secret creation body only; never in other bodies, the registry or the output.
    const mine = fake.requests.slice(run.state.n0);
    const secretCalls = mine.filter(isSecretCreation);
    expect(secretCalls).toHaveLength(1);
    expect(secretCalls[0]!.body).toContain(CANARY);
    for (const q of mine) if (q !== secretCalls[0]) expect(q.body).not.toContain(CANARY);
    expect(readFileSync(run.t.stateFile, 'utf8')).not.toContain(fake.token);
    expect(readFileSync(run.t.stateFile, 'utf8')).not.toContain(EP_TOKEN);
    for (const o of run.outputs) {
      expect(o).not.toContain(fake.token);
      expect(o).not.toContain(EP_TOKEN);
    }
  },
  crash: {
    arm: () => fake.failNext('crash'),
    exitCodes: [3, 4],
    check(err) {
      expect(err.message).toMatch(/exit 3|exit code 3/);
      expect(err.message).toContain('CUDA error');
      expect(['service_failed', 'launch_failed']).toContain(err.code);
    },
  },
  hang: { env: { STANDIN_READY_FILE: '/never-created' }, args: ['--env', 'STANDIN_READY_FILE'] }, // in the replica: the model never finishes loading
  async launched(jobId, t: ContractEnv) {
    let reg: Record<string, any> = {};
    try {
      reg = JSON.parse(readFileSync(t.stateFile, 'utf8'));
    } catch {
      return false;
    }
    const dep = reg[jobId]?.platform_job_id;
    return Boolean(dep && fake.deployments.has(dep));
  },
  async leftovers() {
    return [...[...fake.deployments.keys()].map((d) => `deployment ${d}`), ...[...fake.secrets.keys()].map((s) => `secret ${s}`)];
  },
  secretPlaces: () => fake.requests.filter((q) => !isSecretCreation(q)).map((q): [string, string] => [`${q.method} ${q.path}`, q.body]),
  track() {
    /* every service lives in the fake, which teardown closes */
  },
};
