// Brev end to end through the library (src/lifecycle.ts) with the fake `brev` CLI (test/fakes/brev), whose
// `exec` runs on this machine against the real Docker engine, and the real OpenSSH server of test/infra
// (127.0.0.1:2222) standing in for the instance's sshd (secret upload on stdin, the -L forward). The platform
// contract (lifecycle with the instance's container, forward and argv checks, a crash while loading, interrupted
// starts, the canary) is in test/contract/ (harnesses/brev.ts); this file keeps brev's own cases.
import { execa } from 'execa';
import { join, resolve } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError, LaunchFailedError, PlatformUnavailableError } from '../../src/errors.js';
import { prepareRequest, sendRequest, startService, type StartInput } from '../../src/lifecycle.js';
import { stopService } from '../../src/manage.js';
import { deleteInstance, listInstances } from '../../src/platforms/brev/adapter.js';
import { Registry } from '../../src/registry/store.js';
import { isAlive, killPid } from '../../src/util/detached.js';
import { loadAdapter } from '../../src/platforms/index.js';
import { createFakeBrev, type FakeBrev } from '../fakes/brev/helpers.js';
import { parseJson, runCli, tempState } from '../helpers/cli.js';
import { CANARY } from '../helpers/canary.js';
import { dockerTestEnv } from '../helpers/docker.js';
import { RANGE } from '../helpers/ports.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const IMAGE = 'tao-infer-test/standin:latest';
const IMAGE_URL = 'https://example.com/cat.jpg';

let fake: FakeBrev;
let registry: Registry;
let stateFile: string;
let env: NodeJS.ProcessEnv;
const logs: string[] = [];
const deps = (over: Partial<{ env: NodeJS.ProcessEnv }> = {}) => ({
  registry,
  env: over.env ?? env,
  reporter: { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(m) },
});
// The fake instance shares this machine's loopback with local-docker services (127.0.0.1:8080...), so its
// containers publish on 127.0.0.2 (--bind): the forward then targets that address on "the instance".
const input = (over: Partial<StartInput> = {}): StartInput => ({
  network_arch: 'cosmos-rl',
  model_path: 'hf_model://nvidia/Cosmos-Reason1-7B',
  platform: 'brev',
  num_gpus: 0,
  bind_address: '127.0.0.2',
  options: { instance: 'gpu-box', probeTimeout: 60 },
  timeout_s: 90,
  ...over,
});

async function docker(args: string[]) {
  return execa('docker', args, { reject: false });
}

beforeAll(async () => {
  await execa('bash', [join(ROOT, 'test', 'fixtures', 'build-test-image.sh')], { stdio: 'inherit' });
  fake = createFakeBrev([{ name: 'gpu-box', unreachable_execs: 2, gpu: 'A100' }, { name: 'other-box' }]);
  ({ stateFile } = tempState());
  registry = new Registry(stateFile);
  env = { ...process.env, ...fake.env, HF_TOKEN: CANARY, IMAGE_COSMOS_RL: IMAGE, STANDIN_LOAD_MS: '300' };
}, 300_000);

afterEach(async () => {
  for (const id of Object.keys((await registry.read()).entries)) await stopService(id, deps()).catch(() => undefined);
});

describe('brev', () => {
  it('two services on one instance get distinct instance ports and local ports', async () => {
    const settled = await Promise.allSettled([startService(input(), deps()), startService(input(), deps())]);
    const [a, b] = settled.map((x) => {
      if (x.status === 'rejected') throw x.reason;
      return x.value;
    });
    expect(a!.ready && b!.ready).toBe(true);
    const ea = a!.entry!;
    const eb = b!.entry!;
    expect(new Set([ea.host_port, eb.host_port]).size).toBe(2);
    expect(new Set([ea.local_port, eb.local_port]).size).toBe(2);
    expect([ea.host_port, eb.host_port].sort()).toEqual([RANGE.min, RANGE.min + 1]);
    for (const e of [ea, eb]) {
      const p = await prepareRequest({ job_id: e.job_id, prompt: 'hi', images: [IMAGE_URL] }, {}, deps());
      expect((await sendRequest(p, {}, deps())).choices[0]!.message.content).toContain('cosmos-rl saw');
    }
    await stopService(ea.job_id, deps());
    await stopService(eb.job_id, deps());
  });

  it('a docker run that fails on the instance is a LaunchFailedError with docker’s message', async () => {
    const e2 = { ...env, IMAGE_COSMOS_RL: 'tao-infer-test/no-such-image:latest' };
    const err = await startService(input(), deps({ env: e2 })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LaunchFailedError);
    expect((err as LaunchFailedError).reason).toBe('docker_run_failed');
    expect((err as Error).message).toMatch(/no-such-image/);
    expect(Object.keys((await registry.read()).entries)).toHaveLength(0);
  });

  it('refuses when logged out, or for an unknown instance, before launching anything', async () => {
    const n = fake.argvLog().filter((a) => a[0] === 'exec').length;
    fake.logout();
    try {
      const err = await startService(input(), deps()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(PlatformUnavailableError);
      expect((err as PlatformUnavailableError).hint).toContain('brev login');
    } finally {
      fake.login();
    }
    await expect(startService(input({ options: { instance: 'nope' } }), deps())).rejects.toBeInstanceOf(InvalidInputError);
    await expect(startService(input({ options: { instance: 'bad;name' } }), deps())).rejects.toBeInstanceOf(InvalidInputError);
    expect(fake.argvLog().filter((a) => a[0] === 'exec').length).toBe(n);
    expect(Object.keys((await registry.read()).entries)).toHaveLength(0);
  });

  it('--dry-run shows the brev and ssh commands with secret names only and runs nothing', async () => {
    const n = fake.argvLog().length;
    const r = await startService(input({ dry_run: true }), deps());
    const text = JSON.stringify(r.dry_run!.plan);
    expect(text).not.toContain(CANARY);
    expect(text).toContain('brev');
    expect(text).toContain('exec');
    expect(text).toContain('-e HF_TOKEN');
    expect(text).toContain('<host_port>');
    expect(fake.argvLog().length).toBe(n);
  });

  it('lists instances for the --instance prompt, and deletes an instance for stop --delete-instance', async () => {
    expect((await listInstances(env)).map((w) => w.name)).toEqual(['gpu-box', 'other-box']);
    await deleteInstance('other-box', { env, log: () => undefined });
    expect(fake.instances().map((w) => w.name)).toEqual(['gpu-box']);
    await deleteInstance('other-box', { env, log: () => undefined }); // already gone: fine
  });
});

describe('brev through the CLI', () => {
  it('without --instance in CI: exit 2 naming the flag, nothing launched', async () => {
    const t = dockerTestEnv();
    const fb = createFakeBrev([{ name: 'cli-box' }]);
    const r = await runCli(['start', '--platform', 'brev', '--arch', 'cosmos-rl', '--model', 'hf_model://a/b', '--num-gpus', '0'], { env: { ...t.env, ...fb.env, BREV_INSTANCE: '' } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--instance');
    expect(fb.argvLog()).toEqual([]);
  });

  it('--dry-run prints the brev commands with secrets by name only', async () => {
    const t = dockerTestEnv();
    const fb = createFakeBrev([{ name: 'cli-box' }]);
    const r = await runCli(['start', '--platform', 'brev', '--instance', 'cli-box', '--arch', 'cosmos-rl', '--model', 'hf_model://a/b', '--dry-run'], { env: { ...t.env, ...fb.env } });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('brev exec cli-box');
    expect(r.stdout).toContain('HF_TOKEN');
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    expect(fb.argvLog()).toEqual([]);
  });
});

describe('brev forward, follow logs, gone instance', () => {
  it('tunnel restarts a dead forward on the same local port; logs -f follows until aborted; stop of a deleted instance resolves', async () => {
    const fb = createFakeBrev([{ name: 'box-t' }]);
    const e2 = { ...env, ...fb.env };
    const r = await startService(input({ options: { instance: 'box-t', probeTimeout: 60 } }), deps({ env: e2 }));
    const entry = r.entry!;
    const adapter = await loadAdapter('brev');
    const ectx = { env: e2, log: (m: string) => logs.push(m), warn: (m: string) => logs.push(m) };

    await killPid(entry.forwarder_pid);
    const st = await adapter.status(entry, ectx);
    expect(st.state).toBe('running');
    expect(st.reason).toMatch(/ssh forward .* is not running/);
    const t = await runCli(['tunnel', entry.job_id, '--json'], { env: { ...fb.env, TAO_INF_STATE_FILE: stateFile } });
    expect(t.exitCode, t.stderr).toBe(0);
    const updated = parseJson(t);
    expect(updated.forwarder_pid).not.toBe(entry.forwarder_pid);
    expect(updated.host_url).toBe(entry.host_url);
    expect((await fetch(`${entry.host_url}/api/v1/health/readiness`)).status).toBe(200);

    const ac = new AbortController();
    let followed = '';
    const reading = (async () => {
      for await (const c of adapter.logs(entry, { follow: true, signal: ac.signal }, ectx)) {
        followed += c;
        if (followed.includes('model loaded')) ac.abort();
      }
    })();
    await reading;
    expect(followed).toContain('model loaded');

    // The instance is deleted behind our back: stop still succeeds (nothing left to stop there).
    await docker(['rm', '-f', entry.job_id]);
    await deleteInstance('box-t', { env: e2, log: () => undefined });
    await stopService(entry.job_id, deps({ env: e2 }));
    expect(isAlive(updated.forwarder_pid)).toBe(false);
    expect(await registry.get(entry.job_id)).toBeUndefined();
  });
});
