/**
 * kubernetes as the real platform behaves (issue 11 points 3 and 6), through the built CLI and the fake API server.
 *
 * `--expose port-forward` against RBAC as the API server applies it (point 3): the fake API
 * server authorizes the WebSocket port-forward upgrade as `get` on pods/portforward (and, as Kubernetes 1.35,
 * also `create`), see test/fakes/k8s-rbac.ts. A Role with the wrong verbs must fail `start` at once with exit 3
 * naming the missing verb, not after the readiness timeout.
 */
import { readFileSync, rmSync } from 'node:fs';
import { serviceLogs } from '../../src/manage.js';
import { Registry } from '../../src/registry/store.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, runCli, tempState, type CliResult } from '../helpers/cli.js';
import { FakeK8sApiServer } from '../fakes/k8s-api-server.js';
import { setPortForwardRole } from '../fakes/k8s-rbac.js';

let fake: FakeK8sApiServer;
const dirs: string[] = [];
const forwarders: number[] = [];

beforeAll(async () => {
  fake = new FakeK8sApiServer();
  await fake.start();
  fake.seedSecret('default', 'ngc-pull', 'kubernetes.io/dockerconfigjson', FakeK8sApiServer.dockerConfigFor('nvcr.io'));
});
afterEach(() => {
  for (const pid of forwarders.splice(0)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kubernetes/port-forward.js')) process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  setPortForwardRole(fake.token, undefined);
});
afterAll(async () => {
  await fake?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function env(): { stateFile: string; kubeconfig: string; env: Record<string, string> } {
  const { dir, stateFile } = tempState();
  dirs.push(dir);
  return { stateFile, kubeconfig: fake.writeKubeconfig(dir), env: { TAO_INF_STATE_FILE: stateFile, HOME: dir } };
}

function start(t: ReturnType<typeof env>): Promise<CliResult> {
  return runCli(
    ['start', '--platform', 'kubernetes', '--kubeconfig', t.kubeconfig, '--arch', 'cosmos-rl', '--model', '/models/x', '--num-gpus', '1',
      '--timeout', '90', '--json', '--expose', 'port-forward', '--image-pull-secret', 'ngc-pull'],
    { env: t.env },
  );
}

const ours = () => fake.allObjects().filter((o) => !(o.kind === 'Secret' && o.metadata.name === 'ngc-pull'));

describe('kubernetes port-forward RBAC', () => {
  it("a Role with only 'create' on pods/portforward: start fails at once (exit 3) naming 'get'; nothing left behind", async () => {
    setPortForwardRole(fake.token, ['create']);
    const t = env();
    const t0 = Date.now();
    const s = await start(t);
    const out = s.stdout + s.stderr;
    expect(s.exitCode, out).toBe(3);
    expect(out).toMatch(/'get' on pods\/portforward/);
    expect(out).toMatch(/HTTP 403/);
    // well before the 90 s readiness timeout
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(fake.requests.some((r) => r.method === 'UPGRADE' && r.path.endsWith('/portforward'))).toBe(true);
    expect(ours()).toEqual([]);
  });

  it("Kubernetes 1.35: 'get' alone is refused too (the upgrade is also checked as 'create')", async () => {
    setPortForwardRole(fake.token, ['get'], { minor135: true });
    const s = await start(env());
    expect(s.exitCode, s.stderr).toBe(3);
    expect(s.stdout + s.stderr).toMatch(/1\.35\+ also checks 'create'/);
  });

  it("a Role with 'get' on pods/portforward is enough: start is ready, requests go through, stop cleans up", async () => {
    setPortForwardRole(fake.token, ['get']);
    const t = env();
    const s = await start(t);
    expect(s.exitCode, s.stderr).toBe(0);
    const entry = parseJson(s);
    forwarders.push(entry.forwarder_pid);
    expect(entry.host_url).toBe(`http://localhost:${entry.host_port}`);
    const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(ours()).toEqual([]);
  });
});

describe('kubernetes logs', () => {
  it('logs -f --tail 0 streams only new lines (client-node drops a falsy tailLines)', async () => {
    const t = env();
    const s = await runCli(
      ['start', '--platform', 'kubernetes', '--kubeconfig', t.kubeconfig, '--arch', 'cosmos-rl', '--model', '/models/x', '--num-gpus', '1',
        '--timeout', '90', '--json', '--expose', 'nodeport', '--image-pull-secret', 'ngc-pull'],
      { env: t.env },
    );
    expect(s.exitCode, s.stderr).toBe(0);
    const entry = parseJson(s);
    try {
      const all = await runCli(['logs', entry.job_id], { env: t.env });
      const first = all.stdout.split('\n').find((l) => l.trim() !== '')!;
      expect(first).toBeTruthy();
      const none = await runCli(['logs', entry.job_id, '--tail', '0'], { env: t.env });
      expect(none.exitCode, none.stderr).toBe(0);
      expect(none.stdout).toBe('');

      const ac = new AbortController();
      setTimeout(() => ac.abort(), 2_000).unref();
      let text = '';
      for await (const c of serviceLogs(entry.job_id, { follow: true, tail: 0 }, { registry: new Registry(t.stateFile), env: { ...process.env, ...t.env }, signal: ac.signal }))
        text += c;
      expect(text).not.toContain(first);
      expect(fake.requests.some((r) => r.path.endsWith('/log') && r.query.follow === 'true' && r.query.tailLines === '0')).toBe(true);
    } finally {
      await runCli(['stop', entry.job_id], { env: t.env });
    }
  });
});
