/**
 * kubernetes with the real @kubernetes/client-node talking (via a real kubeconfig file) to the fake API server of
 * test/fakes/k8s-api-server.ts, whose kubelet runs each pod's `/bin/sh -c <inner command>` on this host with the
 * stand-in microservice on its own loopback "pod IP" and routes LoadBalancer traffic to it. The lifecycle uses the
 * default exposure (LoadBalancer) and checks the Secret, Job and Service bodies as documented in the issue, that
 * the capacity check runs before anything is created, that secrets reach the pod by envFrom only, and that stop
 * deletes with propagationPolicy Foreground and is idempotent.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { CANARY } from '../../helpers/canary.js';
import { parseJson, ROOT, runCli } from '../../helpers/cli.js';
import { defaultNodes, endForwarders, expectNoSecretLeak, k8sEnv, ourObjects, posts, seedPullSecrets, WANDB_CANARY } from '../../helpers/k8s.js';
import { FakeK8sApiServer } from '../../fakes/k8s-api-server.js';
import { withTmp, type ContractEnv, type Harness } from '../harness.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
let fake: FakeK8sApiServer;
const dirs: string[] = [];
const forwarders: number[] = [];

export const kubernetes: Harness = {
  label: 'kubernetes (fake API server, real client-node)',
  platform: 'kubernetes',
  async setup() {
    fake = new FakeK8sApiServer();
    await fake.start();
    seedPullSecrets(fake);
  },
  async teardown() {
    await fake?.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  },
  afterEach() {
    endForwarders(forwarders);
    fake.reset();
    defaultNodes(fake);
  },
  newEnv() {
    const k = k8sEnv(fake, { HF_TOKEN: CANARY, WANDB_API_KEY: WANDB_CANARY, WANDB_PROJECT: 'tao-demo' });
    dirs.push(k.dir);
    return withTmp(k);
  },
  startFlags: (t) => ['--platform', 'kubernetes', '--kubeconfig', join(t.dir, 'kubeconfig'), '--num-gpus', '1', '--image-pull-secret', 'ngc-pull', '--env', 'WANDB_PROJECT'],
  live: { node: 'gpu-node-a' },
  cases: [
    {
      arch: 'cosmos-rl',
      model: 'hf_model://nvidia/Cosmos-Reason1-7B',
      request: (_run, entry) => ['--job', entry.job_id, '--prompt', 'What is in the picture?', '--image', PNG],
    },
  ],
  beforeStart(run) {
    run.state.before = fake.requests.length;
  },
  afterStart(entry, run) {
    const job = `tao-${entry.job_id}`;
    run.state.job = job;
    expect(entry).toMatchObject({ platform: 'kubernetes', network_arch: 'cosmos-rl', platform_job_id: job, ready: true, state: 'running' });
    expect(entry.host_url).toMatch(/^http:\/\/127\.\d+\.\d+\.\d+:8080$/);
    expect(entry.platform_data).toMatchObject({ namespace: 'default', context: 'fake', job_name: job, service_name: job, secret_name: `${job}-env`, expose: 'loadbalancer', kubeconfig: join(run.t.dir, 'kubeconfig') });
    expect(entry.forwarder_pid).toBeUndefined();

    // The capacity check ran before anything was created.
    const mine = fake.requests.slice(run.state.before);
    const firstPost = mine.findIndex((r) => r.method === 'POST');
    expect(mine.findIndex((r) => r.method === 'GET' && r.path === '/api/v1/nodes')).toBeLessThan(firstPost);

    // The Secret holds exactly the secret env vars that are set; nothing else.
    const secret = posts(fake, 'secrets').find((b) => b.metadata.name === `${job}-env`)!;
    expect(Object.keys(secret.data).sort()).toEqual(['HF_TOKEN', 'WANDB_API_KEY']);
    expect(secret.type).toBe('Opaque');

    // The Job as documented in the issue.
    const jobBody = posts(fake, 'jobs').find((b) => b.metadata.name === job)!;
    expect(jobBody.metadata.annotations['tao-infer.nvidia.com/job-id']).toBe(entry.job_id);
    expect(jobBody.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'tao-infer', 'tao-infer.nvidia.com/network-arch': 'cosmos-rl' });
    expect(jobBody.spec.backoffLimit).toBe(0);
    const pod = jobBody.spec.template.spec;
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.imagePullSecrets).toEqual([{ name: 'ngc-pull' }]);
    const c = pod.containers[0];
    expect(c.image).toMatch(/^nvcr\.io\//);
    expect(c.command.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    expect(c.command[2]).toMatch(/^umask 0 && cosmos-rl-inference-microservice --job '\{"job_id":/);
    expect(c.command[2]).toContain('"TAO_EXECUTION_BACKEND":"local-k8s"');
    expect(c.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    expect(c.resources).toEqual({ limits: { 'nvidia.com/gpu': '1' } });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/api/v1/health/readiness', port: 8080 });
    expect(c.envFrom).toEqual([{ secretRef: { name: `${job}-env` } }]);
    expect(c.env).toEqual([{ name: 'WANDB_PROJECT', value: 'tao-demo' }]);
    expect(c.volumeMounts).toEqual([{ name: 'dshm', mountPath: '/dev/shm' }]);
    expect(pod.volumes).toEqual([{ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: '16Gi' } }]);
    const svc = posts(fake, 'services').find((b) => b.metadata.name === job)!;
    expect(svc.spec).toMatchObject({ type: 'LoadBalancer', ports: [{ name: 'http', protocol: 'TCP', port: 8080, targetPort: 8080 }] });
  },
  afterRequest(completion, entry, run) {
    expect(completion.tao_standin.job_id).toBe(entry.job_id);
    expect(completion.tao_standin.execution_backend ?? 'local-k8s').toBe('local-k8s');
    // The secret reached the container through envFrom (by environment, as in a cluster).
    expect(completion.tao_standin.secrets_present).toEqual(expect.arrayContaining(['HF_TOKEN', 'WANDB_API_KEY']));
    const podName = fake.objects('pods', 'default').find((p) => p.metadata.labels['job-name'] === run.state.job)!.metadata.name;
    expect(fake.podEnvNames('default', podName)).toEqual(expect.arrayContaining(['HF_TOKEN', 'WANDB_API_KEY', 'WANDB_PROJECT']));
  },
  afterLogs(stdout) {
    expect(stdout).toContain('secrets present (names only): HF_TOKEN');
  },
  async afterStop(entry, run) {
    expect(ourObjects(fake)).toEqual([]);
    expect(fake.anyPodProcessAlive()).toBe(false);
    const del = fake.requests.find((r) => r.method === 'DELETE' && r.path.endsWith(`/jobs/${run.state.job}`))!;
    expect(del.query.propagationPolicy).toBe('Foreground');
    expectNoSecretLeak(fake, run.outputs, run.t.stateFile);

    // stop is idempotent: an entry whose objects are already gone stops cleanly.
    writeFileSync(run.t.stateFile, JSON.stringify({ [entry.job_id]: { ...entry, ready: undefined } }), { mode: 0o600 });
    const again = run.keep(await runCli(['stop', entry.job_id, '--json'], { env: run.t.env }));
    expect(again.exitCode, again.stderr).toBe(0);
    expect(parseJson(again)).toMatchObject({ stopped: [entry.job_id], failed: [] });
  },
  crash: {
    arm: () => fake.nextPod({ env: { STANDIN_CRASH_AT_START: '1' } }),
    exitCodes: [3, 4],
    check(_err, s) {
      expect(s.stderr).toMatch(/exit code 3/);
      expect(s.stderr).toContain('CUDA error: no CUDA-capable device is detected');
      expect(fake.anyPodProcessAlive()).toBe(false);
    },
  },
  hang: { env: { STANDIN_READY_FILE: '/never-created' }, args: ['--env', 'STANDIN_READY_FILE'] }, // in the pod: the model never finishes loading
  async launched(jobId) {
    return fake.objects('pods', 'default').some((p) => p.metadata.labels?.['job-name'] === `tao-${jobId}` && p.status?.phase === 'Running');
  },
  async leftovers() {
    const left = ourObjects(fake).map((o) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`);
    if (fake.anyPodProcessAlive()) left.push('a pod process');
    return left;
  },
  processMarkers: (t: ContractEnv) => [join(t.dir, 'kubeconfig')],
  secretPlaces: () => [
    ...fake.requests.map((r): [string, string] => [`${r.method} ${r.path}`, r.body]),
    ...fake.allObjects().filter((o) => o.kind !== 'Secret').map((o): [string, string] => [`${o.kind} ${o.metadata.name}`, JSON.stringify(o)]),
  ],
  secrets: [WANDB_CANARY],
  track(_jobId, entry) {
    if (entry?.forwarder_pid) forwarders.push(entry.forwarder_pid);
  },
};
