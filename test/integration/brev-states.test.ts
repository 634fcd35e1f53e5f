// Brev instance states as the real CLI has them (issue 11 points 1 and 7), with the fake `brev`
// (test/fakes/brev/brev, which follows brev-cli pkg/cmd/exec/exec.go runExecCommand: `exec` on a STOPPED
// instance STARTS it, and pkg/cmd/ls/ls.go: a RUNNING instance with health_status UNHEALTHY is listed UNHEALTHY)
// and the fake's ssh config multiplexing like brev's (ControlMaster auto, ControlPersist 10m).
import { execa } from 'execa';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PlatformError } from '../../src/errors.js';
import { startService, type StartInput } from '../../src/lifecycle.js';
import { listServices, serviceLogs, stopService } from '../../src/manage.js';
import { Registry } from '../../src/registry/store.js';
import { isAlive } from '../../src/util/detached.js';
import { createFakeBrev, type FakeBrev } from '../fakes/brev/helpers.js';
import { tempState } from '../helpers/cli.js';
import { CANARY } from '../helpers/docker.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const IMAGE = 'tao-infer-test/standin:latest';

let fake: FakeBrev;
let registry: Registry;
let env: NodeJS.ProcessEnv;
const logs: string[] = [];
const deps = () => ({ registry, env, reporter: { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(m) } });
const input = (instance: string): StartInput => ({
  network_arch: 'cosmos-rl',
  model_path: 'hf_model://nvidia/Cosmos-Reason1-7B',
  platform: 'brev',
  num_gpus: 0,
  bind_address: '127.0.0.2',
  options: { instance, probeTimeout: 60 },
  timeout_s: 90,
});
const BOXES = [
  { name: 'box-a', id: 'inst-a-0001' },
  { name: 'box-b', id: 'inst-b-0002' },
];
const lsCalls = () => fake.argvLog().filter((a) => a[0] === 'ls').length;
const execCalls = () => fake.argvLog().filter((a) => a[0] === 'exec').length;

function accepts(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      res(true);
    });
    s.on('error', () => res(false));
  });
}

beforeAll(async () => {
  await execa('bash', [join(ROOT, 'test', 'fixtures', 'build-test-image.sh')], { stdio: 'inherit' });
  fake = createFakeBrev(BOXES);
  registry = new Registry(tempState().stateFile);
  env = { ...process.env, ...fake.env, HF_TOKEN: CANARY, IMAGE_COSMOS_RL: IMAGE, STANDIN_LOAD_MS: '300' };
}, 300_000);

afterEach(async () => {
  fake.setInstances(BOXES);
  for (const id of Object.keys((await registry.read()).entries)) {
    await stopService(id, deps()).catch(() => undefined);
    await execa('docker', ['rm', '-f', id], { reject: false });
  }
});

afterAll(async () => {
  await fake?.closeMasters();
});

describe('brev instance states', () => {
  it('a STOPPED instance is never woken: ls (one brev ls for all entries), logs and stop leave it stopped', async () => {
    const r = await startService(input('box-a'), deps());
    expect(r.ready).toBe(true);
    const entry = r.entry!;
    // a second service on the same instance, as another start would have recorded it
    await registry.mutate((s) => {
      s.entries['brev-second'] = { ...entry, job_id: 'brev-second', started_at: new Date().toISOString(), forwarder_pid: undefined };
    });
    fake.setInstances([{ ...BOXES[0]!, status: 'STOPPED' }, BOXES[1]!]);
    const [ls0, exec0] = [lsCalls(), execCalls()];

    const listed = await listServices(deps());
    for (const id of [entry.job_id, 'brev-second']) {
      const live = listed.services.find((s) => s.job_id === id)!.live;
      expect(live).toMatchObject({ state: 'unknown', native: 'STOPPED' });
      expect(live.reason).toMatch(/box-a is STOPPED/);
    }
    expect(lsCalls() - ls0).toBe(1);
    expect(execCalls() - exec0).toBe(0);

    await expect(async () => {
      for await (const _ of serviceLogs(entry.job_id, { tail: 5 }, deps())) void _;
    }).rejects.toThrow(PlatformError);

    logs.length = 0;
    await stopService(entry.job_id, deps());
    expect(await registry.get(entry.job_id)).toBeUndefined();
    expect(logs.join('\n')).toMatch(new RegExp(`container ${entry.job_id} stays on it`));
    expect(isAlive(entry.forwarder_pid)).toBe(false);
    // never exec'd: the instance is still STOPPED and brev started nothing
    expect(execCalls() - exec0).toBe(0);
    expect(fake.starts()).toEqual([]);
    expect(fake.instances().find((w) => w.name === 'box-a')!.status).toBe('STOPPED');
    // the container is still there ("on the instance")
    expect((await execa('docker', ['inspect', entry.job_id], { reject: false })).exitCode).toBe(0);
    await execa('docker', ['rm', '-f', entry.job_id], { reject: false });
  }, 180_000);

  it('--instance given as an id runs on the instance name; UNHEALTHY is running-but-unhealthy; the forward does not multiplex', async () => {
    fake.setInstances([BOXES[0]!, { ...BOXES[1]!, health_status: 'UNHEALTHY' }]);
    expect(fake.instances().length).toBe(2);
    logs.length = 0;
    const r = await startService(input('inst-b-0002'), deps());
    expect(r.ready).toBe(true);
    const entry = r.entry!;
    expect(entry.platform_data).toMatchObject({ instance: 'box-b' });
    expect(logs.join('\n')).toMatch(/box-b RUNNING but UNHEALTHY/);
    // the secret upload and the forward went through ssh to the alias box-b (the id is no ssh alias)
    const argv = JSON.stringify(fake.argvLog());
    expect(argv).not.toContain('"exec","inst-b-0002"');

    const live = (await listServices(deps())).services.find((s) => s.job_id === entry.job_id)!.live;
    expect(live.state).toBe('running');
    expect(live.reason).toMatch(/UNHEALTHY/);

    const port = entry.local_port!;
    expect(await accepts(port)).toBe(true);
    await stopService(entry.job_id, deps());
    // the recorded PID owned the forward: once it is ended the port is free, and no ssh master stayed behind
    expect(await accepts(port)).toBe(false);
    expect(readdirSync(fake.state).filter((f) => f.startsWith('cm-'))).toEqual([]);
  }, 180_000);
});
