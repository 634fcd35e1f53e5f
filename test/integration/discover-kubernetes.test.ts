/**
 * `discover` on kubernetes (issue 10 point 1) against the fake API server (test/fakes/k8s-api-server.ts),
 * which honours `labelSelector` on list calls as the API server does; tao-infer lists with client-node's
 * `BatchV1Api.listNamespacedJob({ namespace, labelSelector: 'app.kubernetes.io/managed-by=tao-infer' })`
 * (node_modules/@kubernetes/client-node/dist/gen/apis/BatchV1Api.d.ts).
 *
 * Checked: two services (LoadBalancer and port-forward) are started, the registry is deleted and the
 * port-forward process killed; `discover --platform kubernetes` restores both from the Jobs' labels and
 * annotations (job_id, network_arch, model_path, started_at), starts a new port-forward, and `request`
 * works through both host_urls; the list call carried the label selector. A Job deleted behind the tool's
 * back shows `gone` and `stop` of it exits 0 with `already_gone: true`.
 */
import { BatchV1Api, KubeConfig } from '@kubernetes/client-node';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ROOT, parseJson, runCli, tempState } from '../helpers/cli.js';
import { isAlive } from '../../src/util/detached.js';
import { FakeK8sApiServer } from '../fakes/k8s-api-server.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
let fake: FakeK8sApiServer;
const { dir, stateFile } = tempState();
const forwarders: number[] = [];

beforeAll(async () => {
  fake = new FakeK8sApiServer();
  await fake.start();
  fake.setNodes([{ name: 'gpu-node-a', gpus: 4 }]);
  fake.seedSecret('default', 'ngc-pull', 'kubernetes.io/dockerconfigjson', FakeK8sApiServer.dockerConfigFor('nvcr.io'));
});
afterAll(async () => {
  for (const pid of forwarders) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kubernetes/port-forward.js')) process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('discover restores kubernetes services by label; a deleted Job is gone and stops with exit 0', async () => {
  const kubeconfig = fake.writeKubeconfig(dir);
  const env = { TAO_INF_STATE_FILE: stateFile, HOME: dir };
  const start = (model: string, extra: string[]) =>
    runCli(['start', '--platform', 'kubernetes', '--kubeconfig', kubeconfig, '--arch', 'cosmos-rl', '--model', model, '--num-gpus', '1', '--timeout', '90', '--image-pull-secret', 'ngc-pull', '--json', ...extra], { env });
  const a = await start('/models/lb', []);
  expect(a.exitCode, a.stderr).toBe(0);
  const b = await start('hf_model://nvidia/Cosmos-Reason1-7B', ['--expose', 'port-forward']);
  expect(b.exitCode, b.stderr).toBe(0);
  const ea = parseJson(a);
  const eb = parseJson(b);
  forwarders.push(eb.forwarder_pid);

  rmSync(stateFile);
  process.kill(eb.forwarder_pid, 'SIGTERM');
  const before = fake.requests.length;
  const d = await runCli(['discover', '--platform', 'kubernetes', '--kubeconfig', kubeconfig, '--json'], { env });
  expect(d.exitCode, d.stderr).toBe(0);
  const r = parseJson(d);
  for (const x of r.added) if (x.forwarder_pid) forwarders.push(x.forwarder_pid);
  expect(r.not_reachable).toEqual([]);
  expect(r.added).toHaveLength(2);
  const fa = r.added.find((x: any) => x.job_id === ea.job_id);
  const fb = r.added.find((x: any) => x.job_id === eb.job_id);
  expect(fa).toMatchObject({ platform: 'kubernetes', platform_job_id: ea.platform_job_id, network_arch: 'cosmos-rl', model_path: '/models/lb', host_url: ea.host_url, started_at: ea.started_at, live: { state: 'running' } });
  expect(fb).toMatchObject({ platform_job_id: eb.platform_job_id, model_path: 'hf_model://nvidia/Cosmos-Reason1-7B', started_at: eb.started_at, platform_data: { expose: 'port-forward' } });
  expect(fb.host_url).toBe(`http://localhost:${fb.host_port}`);
  expect(isAlive(fb.forwarder_pid)).toBe(true);
  const list = fake.requests.slice(before).find((q) => q.method === 'GET' && q.path === '/apis/batch/v1/namespaces/default/jobs');
  expect(list?.query.labelSelector).toBe('app.kubernetes.io/managed-by=tao-infer');

  for (const id of [ea.job_id, eb.job_id]) {
    const q = await runCli(['request', '--job', id, '--prompt', 'hi', '--image', PNG, '--json'], { env });
    expect(q.exitCode, q.stderr).toBe(0);
    expect(parseJson(q).tao_standin.job_id).toBe(id);
  }

  // Behind the tool's back: the Job is deleted.
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  await kc.makeApiClient(BatchV1Api).deleteNamespacedJob({ name: ea.platform_job_id, namespace: 'default', propagationPolicy: 'Foreground' });
  const ls = parseJson(await runCli(['ls', '--json'], { env }));
  expect(ls.find((x: any) => x.job_id === ea.job_id).live).toMatchObject({ state: 'gone', native: 'NotFound' });
  const st = await runCli(['stop', ea.job_id, '--json'], { env });
  expect(st.exitCode, st.stderr).toBe(0);
  expect(parseJson(st)).toMatchObject({ stopped: [ea.job_id], already_gone: true });
  const st2 = await runCli(['stop', eb.job_id, '--json'], { env });
  expect(st2.exitCode, st2.stderr).toBe(0);
  expect(parseJson(st2)).toMatchObject({ stopped: [eb.job_id], already_gone: false });
  expect(isAlive(fb.forwarder_pid)).toBe(false);
}, 240_000);
