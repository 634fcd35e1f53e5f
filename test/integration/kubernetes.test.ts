/**
 * kubernetes end to end through the built CLI, with the real @kubernetes/client-node talking (via a real
 * kubeconfig file) to the fake API server of test/fakes/k8s-api-server.ts. The fake's kubelet runs each pod's
 * `/bin/sh -c <inner command>` on this host with the contract-faithful stand-in microservice on its own
 * loopback "pod IP", and routes LoadBalancer/NodePort/port-forward traffic to it, so requests reach a real
 * HTTP service exactly the way they would in a cluster. The platform contract (LoadBalancer lifecycle with the
 * Secret/Job/Service bodies, a crashing container, interrupted starts, the canary) is in test/contract/
 * (harnesses/kubernetes.ts); this file keeps kubernetes' own cases.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, parseJson, runCli, type CliResult } from '../helpers/cli.js';
import { CANARY, CANARY_B64 } from '../helpers/canary.js';
import {
  defaultNodes,
  endForwarders,
  expectNoSecretLeak as expectNoSecretLeakOf,
  k8sEnv as k8sEnvOf,
  ourObjects as ourObjectsOf,
  posts as postsOf,
  seedPullSecrets,
  type K8sEnv,
} from '../helpers/k8s.js';
import { waitFor as poll } from '../helpers/wait.js';
import { isAlive as alive } from '../../src/util/detached.js';
import { FakeK8sApiServer } from '../fakes/k8s-api-server.js';
import { RANGE } from '../helpers/ports.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const LOAD_RECORDER = join(ROOT, 'test/fakes/k8s-load-recorder.cjs');
let fake: FakeK8sApiServer;
const forwarders: number[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  fake = new FakeK8sApiServer();
  await fake.start();
  seedPullSecrets(fake);
});
afterAll(async () => {
  await fake?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
afterEach(() => {
  endForwarders(forwarders);
  fake.reset();
  defaultNodes(fake);
});

type Env = K8sEnv;

function k8sEnv(extra: Record<string, string> = {}): Env {
  const t = k8sEnvOf(fake, extra);
  dirs.push(t.dir);
  return t;
}

function start(t: Env, extra: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(
    ['start', '--platform', 'kubernetes', '--kubeconfig', t.kubeconfig, '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', '--num-gpus', '1', '--timeout', '90', '--json', ...extra],
    { env: { ...t.env, ...env } },
  );
}

const ourObjects = () => ourObjectsOf(fake);
const posts = (resource: string) => postsOf(fake, resource);
const expectNoSecretLeak = (outputs: string[], stateFile: string) => expectNoSecretLeakOf(fake, outputs, stateFile);
const waitFor = (cond: () => boolean, ms = 15_000) => poll('the condition', cond, ms);

describe('kubernetes: port-forward and nodeport exposure', () => {
  it('port-forward: a detached forwarder on a registry-allocated local port that survives the CLI, restartable with tunnel', async () => {
    const t = k8sEnv();
    const outputs: string[] = [];
    const s = await start(t, ['--expose', 'port-forward', '--image-pull-secret', 'ngc-pull'], { HF_TOKEN: CANARY });
    outputs.push(s.stdout, s.stderr);
    expect(s.exitCode, s.stderr).toBe(0);
    const entry = parseJson(s);
    forwarders.push(entry.forwarder_pid);
    expect(entry.host_port).toBeGreaterThanOrEqual(RANGE.min);
    expect(entry.host_port).toBeLessThanOrEqual(RANGE.max);
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
    expect(parseJson(stop)).toEqual({ stopped: [entry.job_id], failed: [], already_gone: true, already_gone_ids: [entry.job_id] });
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
      const r = await runCli(args, { env: { ...t.env, NODE_OPTIONS: `--require=${LOAD_RECORDER}`, TAO_TEST_LOAD_LOG: log } });
      expect(r.exitCode, r.stderr).toBe(0);
      return readFileSync(log, 'utf8').split('\n').filter(Boolean);
    };
    const help = await loaded(['--help']);
    expect(help).toContain('node:child_process'); // the recorder works: the bundle's require()s are seen
    expect(help.filter((u) => u.includes('@kubernetes/client-node'))).toEqual([]);
    const startHelp = await loaded(['start', '--help']);
    expect(startHelp.filter((u) => u.includes('@kubernetes/client-node'))).toEqual([]);

    // A registry with a service of another platform.
    writeFileSync(
      t.stateFile,
      JSON.stringify({ 'skill-entry': { job_id: 'skill-entry', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:8199', started_at: '2025-01-01T00:00:00Z' } }),
      { mode: 0o600 },
    );
    const ls = await loaded(['ls', '--json']);
    expect(ls.filter((u) => u.includes('@kubernetes/client-node'))).toEqual([]);

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
