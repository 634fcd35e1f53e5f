/**
 * kubernetes end to end through the built CLI, with the real @kubernetes/client-node talking (via a real
 * kubeconfig file) to the fake API server of test/fakes/k8s-api-server.ts. The fake's kubelet runs each pod's
 * `/bin/sh -c <inner command>` on this host with the contract-faithful stand-in microservice on its own
 * loopback "pod IP", and routes LoadBalancer/NodePort/port-forward traffic to it, so requests reach a real
 * HTTP service exactly the way they would in a cluster.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, parseJson, runCli, tempState, type CliResult } from '../helpers/cli.js';
import { isAlive as alive } from '../../src/util/detached.js';
import { FakeK8sApiServer } from '../fakes/k8s-api-server.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const LOAD_RECORDER = join(ROOT, 'test/fakes/k8s-load-recorder.mjs');
const CANARY = `hf_k8sCanary_${randomBytes(12).toString('hex')}`;
const CANARY_B64 = Buffer.from(CANARY).toString('base64');
const WANDB_CANARY = `wandb_k8sCanary_${randomBytes(12).toString('hex')}`;

let fake: FakeK8sApiServer;
const forwarders: number[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  fake = new FakeK8sApiServer();
  await fake.start();
  // What a cluster admin does once: a docker-registry Secret with NGC credentials.
  fake.seedSecret('default', 'ngc-pull', 'kubernetes.io/dockerconfigjson', FakeK8sApiServer.dockerConfigFor('nvcr.io'));
  fake.seedSecret('tao', 'ngc-pull', 'kubernetes.io/dockerconfigjson', FakeK8sApiServer.dockerConfigFor('nvcr.io'));
});
afterAll(async () => {
  await fake?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
afterEach(() => {
  // A failed assertion may skip a test's `stop`: end the forwarders it started (by their recorded PIDs only).
  for (const pid of forwarders.splice(0)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kubernetes/port-forward.js')) process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  fake.reset();
  fake.setNodes([
    { name: 'gpu-node-a', gpus: 2, taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }] },
    { name: 'cpu-node-b', gpus: 0 },
  ]);
});

interface Env {
  dir: string;
  stateFile: string;
  kubeconfig: string;
  env: Record<string, string>;
}

function k8sEnv(extra: Record<string, string> = {}): Env {
  const { dir, stateFile } = tempState();
  dirs.push(dir);
  const kubeconfig = fake.writeKubeconfig(dir);
  return { dir, stateFile, kubeconfig, env: { TAO_INF_STATE_FILE: stateFile, HOME: dir, ...extra } };
}

function start(t: Env, extra: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(
    ['start', '--platform', 'kubernetes', '--kubeconfig', t.kubeconfig, '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', '--num-gpus', '1', '--timeout', '90', '--json', ...extra],
    { env: { ...t.env, ...env } },
  );
}

/** Objects tao-infer created (everything but the seeded pull secrets). */
function ourObjects(): Array<Record<string, any>> {
  return fake.allObjects().filter((o) => !(o.kind === 'Secret' && o.metadata.name === 'ngc-pull'));
}

function posts(resource: string): Array<Record<string, any>> {
  return fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith(`/${resource}`)).map((r) => JSON.parse(r.body));
}

/** The canary secret values appear nowhere but in the data of the per-job Secret, and in no output. */
function expectNoSecretLeak(outputs: string[], stateFile: string): void {
  for (const r of fake.requests) {
    for (const secret of [CANARY, WANDB_CANARY]) expect(r.body, `${r.method} ${r.path}`).not.toContain(secret);
    if (r.body.includes(CANARY_B64)) {
      expect(r.method).toBe('POST');
      expect(r.path).toMatch(/^\/api\/v1\/namespaces\/[^/]+\/secrets$/);
      const body = JSON.parse(r.body);
      expect(body.data.HF_TOKEN).toBe(CANARY_B64);
      const { data: _data, ...rest } = body;
      expect(JSON.stringify(rest)).not.toContain(CANARY_B64);
    }
  }
  for (const o of fake.allObjects()) {
    if (o.kind === 'Secret') continue;
    expect(JSON.stringify(o)).not.toContain(CANARY);
    expect(JSON.stringify(o)).not.toContain(CANARY_B64);
  }
  for (const o of outputs) {
    expect(o).not.toContain(CANARY);
    expect(o).not.toContain(CANARY_B64);
    expect(o).not.toContain(WANDB_CANARY);
  }
  if (existsSync(stateFile)) {
    expect(readFileSync(stateFile, 'utf8')).not.toContain(CANARY);
    expect(readFileSync(stateFile, 'utf8')).not.toContain(CANARY_B64);
  }
}

async function waitFor(cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('kubernetes: start → ready → request → stop', () => {
  it('loadbalancer (default): Secret + Job + Service, request through the load balancer, secrets only in the Secret', async () => {
    const t = k8sEnv();
    const outputs: string[] = [];
    const before = fake.requests.length;
    const s = await start(t, ['--image-pull-secret', 'ngc-pull', '--env', 'WANDB_PROJECT'], { HF_TOKEN: CANARY, WANDB_API_KEY: WANDB_CANARY, WANDB_PROJECT: 'tao-demo' });
    outputs.push(s.stdout, s.stderr);
    expect(s.exitCode, s.stderr).toBe(0);
    const entry = parseJson(s);
    const job = `tao-${entry.job_id}`;
    expect(entry).toMatchObject({ platform: 'kubernetes', network_arch: 'cosmos-rl', platform_job_id: job, ready: true, state: 'started' });
    expect(entry.host_url).toMatch(/^http:\/\/127\.\d+\.\d+\.\d+:8080$/);
    expect(entry.platform_data).toMatchObject({ namespace: 'default', context: 'fake', job_name: job, service_name: job, secret_name: `${job}-env`, expose: 'loadbalancer', kubeconfig: t.kubeconfig });
    expect(entry.forwarder_pid).toBeUndefined();

    // The capacity check ran before anything was created.
    const mine = fake.requests.slice(before);
    const firstPost = mine.findIndex((r) => r.method === 'POST');
    expect(mine.findIndex((r) => r.method === 'GET' && r.path === '/api/v1/nodes')).toBeLessThan(firstPost);

    // The Secret holds exactly the secret env vars that are set; nothing else.
    const secret = posts('secrets').find((b) => b.metadata.name === `${job}-env`)!;
    expect(Object.keys(secret.data).sort()).toEqual(['HF_TOKEN', 'WANDB_API_KEY']);
    expect(secret.type).toBe('Opaque');

    // The Job as documented in the issue.
    const jobBody = posts('jobs').find((b) => b.metadata.name === job)!;
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
    const svc = posts('services').find((b) => b.metadata.name === job)!;
    expect(svc.spec).toMatchObject({ type: 'LoadBalancer', ports: [{ name: 'http', protocol: 'TCP', port: 8080, targetPort: 8080 }] });

    const req = await runCli(['request', '--job', entry.job_id, '--prompt', 'What is in the picture?', '--image', PNG, '--json'], { env: t.env });
    outputs.push(req.stdout, req.stderr);
    expect(req.exitCode, req.stderr).toBe(0);
    const completion = parseJson(req);
    expect(completion.object).toBe('chat.completion');
    expect(completion.tao_standin.job_id).toBe(entry.job_id);
    expect(completion.tao_standin.execution_backend ?? 'local-k8s').toBe('local-k8s');
    // The secret reached the container through envFrom (by environment, as in a cluster).
    expect(completion.tao_standin.secrets_present).toEqual(expect.arrayContaining(['HF_TOKEN', 'WANDB_API_KEY']));
    const podName = fake.objects('pods', 'default').find((p) => p.metadata.labels['job-name'] === job)!.metadata.name;
    expect(fake.podEnvNames('default', podName)).toEqual(expect.arrayContaining(['HF_TOKEN', 'WANDB_API_KEY', 'WANDB_PROJECT']));

    const ls = await runCli(['ls', '--json'], { env: t.env });
    outputs.push(ls.stdout, ls.stderr);
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(parseJson(ls)).toEqual([expect.objectContaining({ job_id: entry.job_id, live: expect.objectContaining({ state: 'running', node: 'gpu-node-a' }) })]);

    const logs = await runCli(['logs', entry.job_id, '--tail', '50'], { env: t.env });
    outputs.push(logs.stdout, logs.stderr);
    expect(logs.exitCode, logs.stderr).toBe(0);
    expect(logs.stdout).toContain('[standin]');
    expect(logs.stdout).toContain('secrets present (names only): HF_TOKEN');

    const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    outputs.push(stop.stdout, stop.stderr);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(parseJson(stop)).toEqual({ stopped: [entry.job_id], failed: [], already_gone: false, already_gone_ids: [] });
    expect(ourObjects()).toEqual([]);
    expect(fake.anyPodProcessAlive()).toBe(false);
    const del = fake.requests.find((r) => r.method === 'DELETE' && r.path.endsWith(`/jobs/${job}`))!;
    expect(del.query.propagationPolicy).toBe('Foreground');
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
    expectNoSecretLeak(outputs, t.stateFile);

    // stop is idempotent: an entry whose objects are already gone stops cleanly.
    writeFileSync(t.stateFile, JSON.stringify({ [entry.job_id]: { ...entry, ready: undefined } }), { mode: 0o600 });
    const again = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(parseJson(again)).toEqual({ stopped: [entry.job_id], failed: [], already_gone: true, already_gone_ids: [entry.job_id] });
  });

  it('port-forward: a detached forwarder on a registry-allocated local port that survives the CLI, restartable with tunnel', async () => {
    const t = k8sEnv();
    const outputs: string[] = [];
    const s = await start(t, ['--expose', 'port-forward', '--image-pull-secret', 'ngc-pull'], { HF_TOKEN: CANARY });
    outputs.push(s.stdout, s.stderr);
    expect(s.exitCode, s.stderr).toBe(0);
    const entry = parseJson(s);
    forwarders.push(entry.forwarder_pid);
    expect(entry.host_port).toBeGreaterThanOrEqual(8080);
    expect(entry.host_port).toBeLessThanOrEqual(8199);
    expect(entry.host_url).toBe(`http://localhost:${entry.host_port}`);
    expect(entry.forwarder_pid).toBeGreaterThan(0);
    expect(alive(entry.forwarder_pid)).toBe(true);
    expect(posts('services').find((b) => b.metadata.name === entry.platform_job_id)!.spec.type).toBe('ClusterIP');
    const reg = JSON.parse(readFileSync(t.stateFile, 'utf8'));
    expect(reg[entry.job_id]).toMatchObject({ host_port: entry.host_port, forwarder_pid: entry.forwarder_pid });

    // The CLI has exited; the forwarder carries traffic through the API server's portforward WebSocket.
    const before = fake.requests.length;
    const req = await runCli(['request', '--job', entry.job_id, '--prompt', 'hi', '--image', PNG, '--json'], { env: t.env });
    outputs.push(req.stdout, req.stderr);
    expect(req.exitCode, req.stderr).toBe(0);
    expect(parseJson(req).tao_standin.job_id).toBe(entry.job_id);
    expect(fake.requests.slice(before).some((r) => r.method === 'UPGRADE' && r.path.endsWith('/portforward') && r.query.ports === '8080')).toBe(true);

    // A dead forwarder is restarted by `tunnel` on the same port (right away, so the port is still free).
    process.kill(entry.forwarder_pid, 'SIGKILL');
    await waitFor(() => !alive(entry.forwarder_pid));
    const tun = await runCli(['tunnel', entry.job_id, '--json'], { env: t.env });
    outputs.push(tun.stdout, tun.stderr);
    expect(tun.exitCode, tun.stderr).toBe(0);
    const updated = parseJson(tun);
    forwarders.push(updated.forwarder_pid);
    expect(updated.forwarder_pid).not.toBe(entry.forwarder_pid);
    expect(updated.host_url).toBe(entry.host_url);
    const req2 = await runCli(['request', '--job', entry.job_id, '--prompt', 'again', '--image', PNG, '--json'], { env: t.env });
    expect(req2.exitCode, req2.stderr).toBe(0);
    const again = await runCli(['tunnel', entry.job_id], { env: t.env });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout + again.stderr).toContain(`forwarder already running: ${entry.host_url}`);

    // A dead forwarder is reported by ls.
    process.kill(updated.forwarder_pid, 'SIGKILL');
    await waitFor(() => !alive(updated.forwarder_pid));
    const ls = await runCli(['ls', '--json'], { env: t.env });
    expect(parseJson(ls)[0].live).toMatchObject({ state: 'running', reason: expect.stringMatching(/port-forward process .* is not running/) });

    const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    outputs.push(stop.stdout, stop.stderr);
    expect(stop.exitCode, stop.stderr).toBe(0);
    await waitFor(() => !alive(updated.forwarder_pid));
    expect(ourObjects()).toEqual([]);
    expectNoSecretLeak(outputs, t.stateFile);
  });

  it('port-forward: the forwarder ends by itself when its pod is deleted behind our back; stop still succeeds', async () => {
    const t = k8sEnv({ TAO_K8S_FORWARDER_CHECK_S: '1' });
    const s = await start(t, ['--expose', 'port-forward', '--image-pull-secret', 'ngc-pull']);
    expect(s.exitCode, s.stderr).toBe(0);
    const entry = parseJson(s);
    forwarders.push(entry.forwarder_pid);
    expect(alive(entry.forwarder_pid)).toBe(true);
    fake.reset(); // like `kubectl delete job --cascade=foreground` by someone else
    await waitFor(() => !alive(entry.forwarder_pid), 20_000);
    const ls = await runCli(['ls', '--json'], { env: t.env });
    expect(parseJson(ls)[0].live).toMatchObject({ state: 'gone', native: 'NotFound' });
    const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(parseJson(stop)).toEqual({ stopped: [entry.job_id], failed: [], already_gone: false, already_gone_ids: [] });
  });

  it('nodeport in the namespace from TAO_K8S_NAMESPACE: host_url is a node address and the nodePort', async () => {
    const t = k8sEnv();
    const s = await start(t, ['--expose', 'nodeport', '--image-pull-secret', 'ngc-pull'], { TAO_K8S_NAMESPACE: 'tao' });
    expect(s.exitCode, s.stderr).toBe(0);
    const entry = parseJson(s);
    const svc = fake.objects('services', 'tao').find((o) => o.metadata.name === entry.platform_job_id)!;
    expect(svc.spec.type).toBe('NodePort');
    const node = fake.objects('pods', 'tao')[0]!.status.hostIP;
    expect(entry.host_url).toBe(`http://${node}:${svc.spec.ports[0].nodePort}`);
    expect(entry.platform_data.namespace).toBe('tao');
    const req = await runCli(['request', '--job', entry.job_id, '--prompt', 'hi', '--image', PNG, '--json'], { env: t.env });
    expect(req.exitCode, req.stderr).toBe(0);

    // logs -f follows the pod log until the container ends (here: stopped).
    let followEnded = false;
    const follow = runCli(['logs', entry.job_id, '-f'], { env: t.env }).then((r) => {
      followEnded = true;
      return r;
    });
    const podName = fake.objects('pods', 'tao')[0]!.metadata.name;
    await waitFor(() => fake.requests.some((r) => r.path.endsWith(`/pods/${podName}/log`) && r.query.follow === 'true'));
    await new Promise((r) => setTimeout(r, 500));
    expect(followEnded).toBe(false);
    const stop = await runCli(['stop', entry.job_id], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
    const followed = await follow;
    expect(followed.exitCode, followed.stderr).toBe(0);
    expect(followed.stdout).toContain('[standin] listening on');
    expect(followed.stdout).toContain('SIGTERM received, shutting down');
    expect(ourObjects()).toEqual([]);
  });
});

describe('kubernetes: refusals and failed starts leave nothing behind', () => {
  it('refuses when summed allocatable nvidia.com/gpu is below --num-gpus, showing both numbers, before creating anything', async () => {
    const t = k8sEnv();
    const before = fake.requests.length;
    const s = await start(t, ['--num-gpus', '3', '--image-pull-secret', 'ngc-pull']);
    expect(s.exitCode).toBe(3);
    expect(s.stderr).toMatch(/2 allocatable nvidia\.com\/gpu in total, fewer than the 3 requested/);
    expect(s.stderr).toContain('--skip-capacity-check');
    expect(fake.requests.slice(before).filter((r) => r.method !== 'GET')).toEqual([]);
    expect(existsSync(t.stateFile) ? JSON.parse(readFileSync(t.stateFile, 'utf8')) : {}).toEqual({});
    const json = await start(t, ['--num-gpus', '3']);
    expect(json.exitCode).toBe(3);
    expect(JSON.parse(json.stdout).error).toMatchObject({ code: 'insufficient_gpu_capacity' });
  });

  it('a pod no node can take fails fast with "Insufficient nvidia.com/gpu"; with --skip-capacity-check it waits until the timeout', async () => {
    fake.setNodes([
      { name: 'gpu-node-1', gpus: 1 },
      { name: 'gpu-node-2', gpus: 1 },
    ]);
    const t = k8sEnv();
    const s = await start(t, ['--num-gpus', '2', '--image-pull-secret', 'ngc-pull']);
    expect(s.exitCode).toBe(3);
    expect(s.stderr).toMatch(/Unschedulable.*0\/2 nodes are available: 2 Insufficient nvidia\.com\/gpu/);
    expect(ourObjects()).toEqual([]);
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});

    fake.setNodes([{ name: 'cpu-only', gpus: 0 }]);
    const w = await start(t, ['--num-gpus', '1', '--skip-capacity-check', '--timeout', '4', '--image-pull-secret', 'ngc-pull']);
    expect(w.exitCode).toBe(3);
    expect(w.stderr).toMatch(/did not start before the start timeout.*Insufficient nvidia\.com\/gpu/s);
    expect(ourObjects()).toEqual([]);
  });

  it('an nvcr.io image without --image-pull-secret: warning, then ErrImagePull/ImagePullBackOff, nothing left', async () => {
    const t = k8sEnv();
    const s = await start(t, [], { HF_TOKEN: CANARY });
    expect(s.exitCode).toBe(3);
    expect(s.stderr).toMatch(/nvcr\.io but no --image-pull-secret/);
    expect(s.stderr).toMatch(/ErrImagePull|ImagePullBackOff/);
    expect(s.stderr).toContain('401 Unauthorized');
    expect(ourObjects()).toEqual([]);
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
    expectNoSecretLeak([s.stdout, s.stderr], t.stateFile);
  });

  it('ImagePullBackOff driven by the fake for a registry that accepts no credentials', async () => {
    const t = k8sEnv();
    fake.nextPod({ imagePullError: 'rpc error: code = NotFound desc = failed to pull and unpack image "nvcr.io/nvidia/tao/nope:1": not found' });
    const s = await start(t, ['--image-pull-secret', 'ngc-pull']);
    expect(s.exitCode).toBe(3);
    expect(s.stderr).toMatch(/ErrImagePull|ImagePullBackOff/);
    expect(ourObjects()).toEqual([]);
  });

  it('a container that exits non-zero is reported with its exit code and log tail, and removed', async () => {
    const t = k8sEnv();
    fake.nextPod({ env: { STANDIN_CRASH_AT_START: '1' } });
    const s = await start(t, ['--image-pull-secret', 'ngc-pull']);
    expect([3, 4]).toContain(s.exitCode);
    expect(s.stderr).toMatch(/exit code 3/);
    expect(s.stderr).toContain('CUDA error: no CUDA-capable device is detected');
    expect(ourObjects()).toEqual([]);
    expect(fake.anyPodProcessAlive()).toBe(false);
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
  });

  it('OOMKilled is named', async () => {
    const t = k8sEnv();
    fake.nextPod({ oomKillAfterMs: 0 });
    const s = await start(t, ['--image-pull-secret', 'ngc-pull']);
    expect([3, 4]).toContain(s.exitCode);
    expect(s.stderr).toContain('OOMKilled');
    expect(ourObjects()).toEqual([]);
  });

  it('a LoadBalancer that never gets an address times out with a hint, and everything is removed', async () => {
    const t = k8sEnv();
    fake.withholdIngress = true;
    const s = await start(t, ['--lb-timeout', '2', '--image-pull-secret', 'ngc-pull']);
    expect(s.exitCode).toBe(3);
    expect(s.stderr).toMatch(/no load balancer address \(status\.loadBalancer\.ingress\) within 2s/);
    expect(s.stderr).toMatch(/--expose nodeport.*--expose port-forward/s);
    await waitFor(() => ourObjects().length === 0);
    expect(fake.anyPodProcessAlive()).toBe(false);
  });

  it('bad options are input errors before any cluster call', async () => {
    const t = k8sEnv();
    const before = fake.requests.length;
    const ctx = await start(t, ['--context', 'nope']);
    expect(ctx.exitCode).toBe(2);
    expect(ctx.stderr).toMatch(/context 'nope' is not in the kubeconfig/);
    expect(ctx.stderr).toContain('Known contexts: fake');
    const ns = await start(t, ['--namespace', 'Bad_NS']);
    expect(ns.exitCode).toBe(2);
    expect(ns.stderr).toContain('--namespace');
    const ids = await start(t, ['--gpu-ids', '0']);
    expect(ids.exitCode).toBe(2);
    expect(fake.requests.length).toBe(before);
    const missing = await start(t, ['--kubeconfig', join(t.dir, 'absent')]);
    expect(missing.exitCode).toBe(3);
    expect(missing.stderr).toMatch(/kubeconfig .*absent does not exist/);
  });

  it('listing nodes forbidden by RBAC: a clear refusal naming --skip-capacity-check', async () => {
    const t = k8sEnv();
    fake.forbidNodeList = true;
    const s = await start(t, ['--image-pull-secret', 'ngc-pull']);
    expect(s.exitCode).toBe(3);
    expect(s.stderr).toMatch(/cannot list nodes to check GPU capacity: nodes is forbidden/);
    expect(s.stderr).toContain('--skip-capacity-check');
    expect(ourObjects()).toEqual([]);
  });

  it('an API server that never answers: ls reports unknown instead of hanging', async () => {
    const t = k8sEnv();
    const s = await start(t, ['--image-pull-secret', 'ngc-pull']);
    expect(s.exitCode, s.stderr).toBe(0);
    const entry = parseJson(s);
    fake.hangRequests = true;
    const ls = await runCli(['ls', '--json'], { env: t.env });
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(parseJson(ls)[0].live).toMatchObject({ state: 'unknown', reason: expect.stringMatching(/did not answer|no answer within/) });
    fake.hangRequests = false;
    const stop = await runCli(['stop', entry.job_id], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(ourObjects()).toEqual([]);
  });

  it('a namespace that does not exist is a clear platform error and leaves nothing', async () => {
    const t = k8sEnv();
    const s = await start(t, ['--namespace', 'missing', '--image-pull-secret', 'ngc-pull']);
    expect(s.exitCode).toBe(3);
    expect(s.stderr).toContain('namespaces "missing" not found');
    expect(ourObjects()).toEqual([]);
  });
});

describe('kubernetes: dry run and lazy loading', () => {
  it('--dry-run prints the manifests as YAML, secrets by name only, and changes nothing', async () => {
    const t = k8sEnv();
    const before = fake.requests.length;
    const s = await runCli(
      ['start', '--platform', 'kubernetes', '--kubeconfig', t.kubeconfig, '--arch', 'cosmos-rl', '--model', '/models/x', '--dry-run', '--expose', 'nodeport'],
      { env: { ...t.env, HF_TOKEN: CANARY } },
    );
    expect(s.exitCode, s.stderr).toBe(0);
    const all = s.stdout + s.stderr;
    expect(all).toContain('kind: Job');
    expect(all).toContain('kind: Service');
    expect(all).toContain('kind: Secret');
    expect(all).toContain('type: NodePort');
    expect(all).toContain('HF_TOKEN: <base64 of $HF_TOKEN>');
    expect(all).toMatch(/nvidia\.com\/gpu: "1"/);
    expect(all).toMatch(/backoffLimit: 0/);
    expect(all).not.toContain(CANARY);
    expect(all).not.toContain(CANARY_B64);
    expect(fake.requests.length).toBe(before);
    expect(existsSync(t.stateFile) ? JSON.parse(readFileSync(t.stateFile, 'utf8')) : {}).toEqual({});
  });

  it('`ls --json` and `--help` do not load @kubernetes/client-node; a kubernetes entry does', async () => {
    const t = k8sEnv();
    const loaded = async (args: string[]): Promise<string[]> => {
      const log = join(t.dir, `loads-${randomBytes(4).toString('hex')}.txt`);
      writeFileSync(log, '');
      const r = await runCli(args, { env: { ...t.env, NODE_OPTIONS: `--import=${LOAD_RECORDER}`, TAO_TEST_LOAD_LOG: log } });
      expect(r.exitCode, r.stderr).toBe(0);
      return readFileSync(log, 'utf8').split('\n').filter(Boolean);
    };
    const help = await loaded(['--help']);
    expect(help.some((u) => u.endsWith('/dist/src/cli/main.js'))).toBe(true); // the recorder works
    expect(help.filter((u) => u.includes('@kubernetes/client-node'))).toEqual([]);
    const startHelp = await loaded(['start', '--help']);
    expect(startHelp.filter((u) => u.includes('@kubernetes/client-node') || u.includes('kubernetes/adapter.js'))).toEqual([]);

    // A registry with a service of another platform.
    writeFileSync(
      t.stateFile,
      JSON.stringify({ 'skill-entry': { job_id: 'skill-entry', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:8199', started_at: '2025-01-01T00:00:00Z' } }),
      { mode: 0o600 },
    );
    const ls = await loaded(['ls', '--json']);
    expect(ls.filter((u) => u.includes('@kubernetes/client-node') || u.includes('kubernetes/adapter.js'))).toEqual([]);

    // Positive control: with a kubernetes entry, ls asks the cluster, so the client is loaded.
    writeFileSync(
      t.stateFile,
      JSON.stringify({
        k: {
          job_id: 'k',
          platform: 'kubernetes',
          platform_job_id: 'tao-k',
          network_arch: 'cosmos-rl',
          host_url: 'http://127.0.0.1:1',
          started_at: '2025-01-01T00:00:00Z',
          platform_data: { namespace: 'default', kubeconfig: t.kubeconfig, context: 'fake', job_name: 'tao-k', service_name: 'tao-k', secret_name: 'tao-k-env', expose: 'loadbalancer' },
        },
      }),
      { mode: 0o600 },
    );
    const lsK = await loaded(['ls', '--json']);
    expect(lsK.some((u) => u.includes('@kubernetes/client-node'))).toBe(true);
  });
});
