/**
 * `discover` on DGX Cloud Lepton (issue 10 point 1) against the fake API (test/fakes/lepton-api-server.ts),
 * which lists deployments with `GET /deployments` returning each one's `spec` as created, like the leptonai
 * api/v2 `deployment.list_all`. tao-infer marks its deployments by the `tao-` name prefix and plain envs
 * (`TAO_INFER_MANAGED_BY`, `TAO_INFER_JOB_ID`, `TAO_INFER_NETWORK_ARCH`, `TAO_INFER_MODEL_PATH`,
 * `TAO_INFER_STARTED_AT`, `TAO_INFER_AUTH_ENV`); a deployment without them is left alone.
 *
 * Checked: after the registry is lost, discover restores the entry (job_id, arch, model_path, started_at,
 * host_url, auth_env, secrets to delete on stop) and a request works through it; a second discover reports
 * it as already known; a deployment deleted behind the tool's back is `gone` and its stop says `already_gone`.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { prepareRequest, sendRequest, startService } from '../../src/lifecycle.js';
import { discoverServices, listServices, stopService } from '../../src/manage.js';
import { LeptonApi, leptonConfig } from '../../src/platforms/lepton/api.js';
import { Registry } from '../../src/registry/store.js';
import { FakeLeptonApi } from '../fakes/lepton-api-server.js';
import { tempState } from '../helpers/cli.js';

let fake: FakeLeptonApi;
const { dir, stateFile } = tempState();
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  fake = await FakeLeptonApi.start({ standinEnv: { STANDIN_LOAD_MS: '300' } });
  env = { ...process.env, ...fake.env, HF_TOKEN: 'hf-discover-test', TAO_ENDPOINT_TOKEN: 'ep-discover-test' };
  delete env.LEPTON_ENDPOINT_TOKEN;
});
afterAll(async () => {
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('discover restores a lepton endpoint from its markers; a deleted one is gone and stops with already_gone', async () => {
  const registry = new Registry(stateFile);
  const deps = { registry, env };
  const r = await startService({ network_arch: 'cosmos-rl', model_path: 'hf_model://nvidia/Cosmos-Reason1-7B', platform: 'lepton', options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'TAO_ENDPOINT_TOKEN' }, timeout_s: 60 }, deps);
  const started = r.entry!;

  rmSync(stateFile);
  const found = await discoverServices({ platforms: ['lepton'] }, deps);
  expect(found.not_reachable).toEqual([]);
  expect(found.added).toHaveLength(1);
  const e = found.added[0]!;
  expect(e).toMatchObject({
    job_id: started.job_id,
    platform: 'lepton',
    platform_job_id: started.platform_job_id,
    network_arch: 'cosmos-rl',
    model_path: 'hf_model://nvidia/Cosmos-Reason1-7B',
    started_at: started.started_at,
    host_url: started.host_url,
    auth_env: 'TAO_ENDPOINT_TOKEN',
    live: { state: 'running' },
  });
  expect(e.platform_data).toMatchObject({ deployment: started.platform_job_id, secrets: (started.platform_data as any).secrets });
  const p = await prepareRequest({ job_id: started.job_id, prompt: 'what is in the picture?', images: ['https://example.com/cat.jpg'] }, {}, deps);
  const out = await sendRequest(p, {}, deps);
  expect(JSON.stringify(out)).toContain(started.job_id);
  const again = await discoverServices({ platforms: ['lepton'] }, deps);
  expect(again).toMatchObject({ added: [], already_known: [{ job_id: started.job_id, platform: 'lepton' }] });

  // Behind the tool's back: the endpoint is deleted.
  await new LeptonApi(leptonConfig(env)).deleteDeployment(started.platform_job_id!);
  const { services } = await listServices(deps);
  expect(services[0]!.live).toMatchObject({ state: 'gone' });
  const stopped = await stopService(started.job_id, deps);
  expect(stopped.already_gone).toBe(true);
  expect((await registry.read()).entries).toEqual({});
}, 120_000);
