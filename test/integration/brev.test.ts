// Brev end to end through the library (src/lifecycle.ts) with the fake `brev` CLI (test/fakes/brev), whose
// `exec` runs on this machine against the real Docker engine, and the real OpenSSH server of test/infra
// (127.0.0.1:2222) standing in for the instance's sshd (secret upload on stdin, the -L forward).
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError, LaunchFailedError, PlatformUnavailableError, ServiceFailedError } from '../../src/errors.js';
import { prepareRequest, sendRequest, startService, type StartInput } from '../../src/lifecycle.js';
import { listServices, serviceLogs, stopService } from '../../src/manage.js';
import { deleteInstance, listInstances } from '../../src/platforms/brev/adapter.js';
import { Registry } from '../../src/registry/store.js';
import { isAlive, killPid } from '../../src/util/detached.js';
import { loadAdapter } from '../../src/platforms/index.js';
import { createFakeBrev, type FakeBrev } from '../fakes/brev/helpers.js';
import { parseJson, runCli, tempState } from '../helpers/cli.js';
import { CANARY as SHARED_CANARY, dockerTestEnv, recordedArgv } from '../helpers/docker.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const IMAGE = 'tao-infer-test/standin:latest';
const CANARY = SHARED_CANARY;
const PNG = join(ROOT, 'test/fixtures/media/cat.png');
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
  it('start → ready → request → stop; the canary never leaves the secret channel', async () => {
    const r = await startService(input(), deps());
    expect(r.ready).toBe(true);
    const entry = r.entry!;
    expect(entry.platform).toBe('brev');
    expect(entry.platform_data).toMatchObject({ instance: 'gpu-box', network: 'tao_default' });
    expect(entry.host_port).toBe(8080);
    expect(entry.local_port).toBeGreaterThanOrEqual(8080);
    expect(entry.local_port).toBeLessThanOrEqual(8199);
    expect(entry.host_url).toBe(`http://localhost:${entry.local_port}`);
    expect(entry.docker_url).toBe(`http://${entry.job_id}:8080`);
    expect(isAlive(entry.forwarder_pid)).toBe(true);
    // probe progress was shown while the instance did not answer yet
    expect(logs.some((l) => /waiting for Brev instance gpu-box to answer/.test(l))).toBe(true);

    // the container on "the instance": same docker invocation as local-docker
    const insp = JSON.parse((await docker(['inspect', entry.job_id])).stdout)[0];
    expect(insp.State.Status).toBe('running');
    expect(insp.HostConfig.PortBindings['8080/tcp']).toEqual([{ HostIp: '127.0.0.2', HostPort: '8080' }]);
    expect(insp.Config.Labels['tao-infer.job_id']).toBe(entry.job_id);
    expect(insp.HostConfig.NetworkMode).toBe('tao_default');
    // the secret env file was removed after docker read it
    expect(existsSync(join(homedir(), '.tao-infer', `${entry.job_id}.env`))).toBe(false);

    const p = await prepareRequest({ job_id: entry.job_id, prompt: 'describe', images: [IMAGE_URL] }, {}, deps());
    const out = await sendRequest(p, {}, deps());
    expect(out.choices[0]!.message.content).toContain('cosmos-rl saw 1 image(s)');
    const echo = (out as { tao_standin?: { secrets_present: string[]; backend: string } }).tao_standin!;
    expect(echo.secrets_present).toContain('HF_TOKEN');
    expect(echo.backend).toBe('local-docker');

    const listed = await listServices(deps());
    expect(listed.services.find((s) => s.job_id === entry.job_id)?.live).toMatchObject({ state: 'running', native: 'running' });
    let text = '';
    for await (const c of serviceLogs(entry.job_id, { tail: 20 }, deps())) text += c;
    expect(text).toContain('[standin]');
    expect(text).not.toContain('__tao_infer_rc');
    expect(text).not.toMatch(/^gpu-box$/m);

    const fwdCmdline = readFileSync(`/proc/${entry.forwarder_pid}/cmdline`, 'utf8');
    expect(fwdCmdline).not.toContain(CANARY);

    const forwardLog = entry.platform_data!.forward_log as string;
    expect(existsSync(forwardLog)).toBe(true);
    await stopService(entry.job_id, deps());
    expect((await docker(['inspect', entry.job_id])).exitCode).not.toBe(0);
    expect(isAlive(entry.forwarder_pid)).toBe(false);
    expect(existsSync(forwardLog)).toBe(false);
    expect(await registry.get(entry.job_id)).toBeUndefined();

    // every brev argv, the registry and all output are free of the secret
    const argv = JSON.stringify(fake.argvLog());
    expect(argv).toContain('docker run -d --name');
    expect(argv).toContain('-e HF_TOKEN');
    expect(argv).not.toContain(CANARY);
    expect(readFileSync(stateFile, 'utf8')).not.toContain(CANARY);
    expect(logs.join('\n')).not.toContain(CANARY);
    expect(JSON.stringify(entry)).not.toContain(CANARY);
  });

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
    expect([ea.host_port, eb.host_port].sort()).toEqual([8080, 8081]);
    for (const e of [ea, eb]) {
      const p = await prepareRequest({ job_id: e.job_id, prompt: 'hi', images: [IMAGE_URL] }, {}, deps());
      expect((await sendRequest(p, {}, deps())).choices[0]!.message.content).toContain('cosmos-rl saw');
    }
    await stopService(ea.job_id, deps());
    await stopService(eb.job_id, deps());
  });

  it('a service that crashes while loading is reported with exit code and log tail, and removed', async () => {
    const e2 = { ...env, STANDIN_CRASH_AT_START: '1' };
    const err = await startService(input({ env_names: ['STANDIN_CRASH_AT_START'] }), deps({ env: e2 })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ServiceFailedError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/exit code 3/);
    expect(msg).toContain('CUDA error');
    // the failed container was removed from the instance
    expect((await docker(['inspect', (err as ServiceFailedError).job_id])).exitCode).not.toBe(0);
    expect(Object.keys((await registry.read()).entries)).toHaveLength(0);
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
  it('start → ready → request → ls → logs → stop; canary absent from every argv (brev, docker on the instance), registry and output', async () => {
    const t = dockerTestEnv();
    const fb = createFakeBrev([{ name: 'cli-box', unreachable_execs: 1 }]);
    const cliEnv = { ...t.env, ...fb.env, PATH: `${fb.env.PATH.split(':')[0]}:${t.env.PATH}`, STANDIN_LOAD_MS: '300' };
    const outputs: string[] = [];
    const start = await runCli(['start', '--platform', 'brev', '--instance', 'cli-box', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', '--num-gpus', '0', '--bind', '127.0.0.2', '--timeout', '120', '--json'], { env: cliEnv });
    outputs.push(start.stdout, start.stderr);
    expect(start.exitCode, start.stderr).toBe(0);
    const entry = parseJson(start);
    expect(entry).toMatchObject({ platform: 'brev', network_arch: 'cosmos-rl', state: 'started', host_port: 8080 });
    expect(entry.host_url).toBe(`http://localhost:${entry.local_port}`);
    expect(entry.platform_data.instance).toBe('cli-box');
    expect(start.stderr).toMatch(/waiting for Brev instance cli-box to answer/);

    const req = await runCli(['request', '--json', '--job', entry.job_id, '--prompt', 'What is in the picture?', '--image', PNG], { env: cliEnv });
    outputs.push(req.stdout, req.stderr);
    expect(req.exitCode, req.stderr).toBe(0);
    const completion = parseJson(req);
    expect(completion.tao_standin.secrets_present).toContain('HF_TOKEN');
    expect(completion.tao_standin.media.map((m: { mime: string }) => m.mime)).toEqual(['image/png']);

    const ls = await runCli(['ls', '--json'], { env: cliEnv });
    outputs.push(ls.stdout, ls.stderr);
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(JSON.stringify(parseJson(ls))).toContain(entry.job_id);

    const lg = await runCli(['logs', entry.job_id, '--tail', '5'], { env: cliEnv });
    outputs.push(lg.stdout, lg.stderr);
    expect(lg.exitCode, lg.stderr).toBe(0);
    expect(lg.stdout).toContain('[standin]');

    const stop = await runCli(['stop', entry.job_id, '--delete-instance', '--json'], { env: cliEnv });
    outputs.push(stop.stdout, stop.stderr);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(parseJson(stop)).toEqual({ stopped: [entry.job_id], failed: [], already_gone: false, already_gone_ids: [], deleted_instances: ['cli-box'] });
    expect((await listInstances(cliEnv)).map((w) => w.name)).not.toContain('cli-box');
    expect((await docker(['inspect', entry.job_id])).exitCode).not.toBe(0);
    expect(isAlive(entry.forwarder_pid)).toBe(false);

    const dockerArgv = recordedArgv(t.argvLog);
    expect(dockerArgv.some((a) => a[0] === 'run' && a.includes('HF_TOKEN'))).toBe(true);
    for (const a of dockerArgv) expect(a.join(' ')).not.toContain(CANARY);
    for (const a of fb.argvLog()) expect(a.join(' ')).not.toContain(CANARY);
    expect(readFileSync(t.stateFile, 'utf8')).not.toContain(CANARY);
    for (const o of outputs) expect(o).not.toContain(CANARY);
  });

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
