/**
 * `discover` on Brev (issue 10 point 1) with the fake brev CLI (test/fakes/brev/brev: `brev ls --json` as
 * brev-cli pkg/cmd/ls prints it; `brev exec` runs the command on this machine against the real Docker engine,
 * as on a Brev VM). A STOPPED instance is never exec'd: brev-cli pkg/cmd/exec/exec.go (runExecCommand) starts a
 * stopped instance and waits for it, which discover must not do.
 *
 * Checked: a service is started on instance gpu-box; the registry is deleted and the ssh forward killed;
 * `discover` execs exactly once on the RUNNING instance and never on the STOPPED one, restores the entry from
 * the container labels (job_id, arch, model_path, started_at, host port and bind address from the binding),
 * starts a new ssh forward on a local port, and a request works through it; after the container is removed
 * behind the tool's back the entry is `gone`.
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { prepareRequest, sendRequest, startService } from '../../src/lifecycle.js';
import { discoverServices, listServices, stopService } from '../../src/manage.js';
import { Registry } from '../../src/registry/store.js';
import { isAlive } from '../../src/util/detached.js';
import { createFakeBrev, type FakeBrev } from '../fakes/brev/helpers.js';
import { ROOT, tempState } from '../helpers/cli.js';
import { rmSync } from 'node:fs';

const IMAGE = 'tao-infer-test/standin:latest';
let fake: FakeBrev;
const { dir, stateFile } = tempState();
let env: NodeJS.ProcessEnv;
const pids = new Set<number>();
const containers: string[] = [];

beforeAll(async () => {
  await execa('bash', [join(ROOT, 'test', 'fixtures', 'build-test-image.sh')]);
  fake = createFakeBrev([{ name: 'gpu-box', gpu: 'A100' }, { name: 'sleepy', status: 'STOPPED' }]);
  env = { ...process.env, ...fake.env, IMAGE_COSMOS_RL: IMAGE, STANDIN_LOAD_MS: '300' };
}, 300_000);
afterAll(async () => {
  for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGTERM');
  for (const f of fake?.forwards() ?? []) if (isAlive(f.pid)) process.kill(f.pid, 'SIGTERM');
  if (containers.length) await execa('docker', ['rm', '-f', ...containers], { reject: false });
  rmSync(dir, { recursive: true, force: true });
});

it('discover execs once per RUNNING instance only, restores the entry and its forward', async () => {
  const registry = new Registry(stateFile);
  const deps = { registry, env };
  // The fake instance shares this machine's loopback: publish on 127.0.0.2 like test/integration/brev.test.ts.
  const r = await startService(
    { network_arch: 'cosmos-rl', model_path: 'hf_model://nvidia/Cosmos-Reason1-7B', platform: 'brev', num_gpus: 0, bind_address: '127.0.0.2', options: { instance: 'gpu-box', probeTimeout: 60 }, timeout_s: 90 },
    deps,
  );
  const started = r.entry!;
  containers.push(started.job_id);
  pids.add(started.forwarder_pid!);
  expect(r.ready).toBe(true);

  rmSync(stateFile);
  process.kill(started.forwarder_pid!, 'SIGTERM');
  const before = fake.argvLog().length;
  const found = await discoverServices({ platforms: ['brev'] }, deps);
  for (const a of found.added) if (a.forwarder_pid) pids.add(a.forwarder_pid);
  const execs = fake.argvLog().slice(before).filter((a) => a[0] === 'exec');
  expect(execs.map((a) => a[1])).toEqual(['gpu-box']);
  const e = found.added.find((x) => x.job_id === started.job_id)!;
  expect(e).toMatchObject({
    platform: 'brev',
    network_arch: 'cosmos-rl',
    model_path: 'hf_model://nvidia/Cosmos-Reason1-7B',
    started_at: started.started_at,
    host_port: started.host_port,
    platform_data: { instance: 'gpu-box', bind_address: '127.0.0.2' },
    live: { state: 'running' },
  });
  expect(e.host_url).toBe(`http://localhost:${e.local_port}`);
  expect(isAlive(e.forwarder_pid!)).toBe(true);
  // Keep only this test's entry (the fake instance is this machine: other tao-infer containers are found too).
  await registry.mutate((s) => {
    for (const k of Object.keys(s.entries)) if (k !== started.job_id) delete s.entries[k];
  });
  const p = await prepareRequest({ job_id: started.job_id, prompt: 'what is in the picture?', images: ['https://example.com/cat.jpg'] }, {}, deps);
  const out = await sendRequest(p, {}, deps);
  expect(JSON.stringify(out)).toContain(started.job_id);

  await execa('docker', ['rm', '-f', started.job_id]);
  const { services } = await listServices(deps);
  expect(services[0]!.live).toMatchObject({ state: 'gone' });
  await stopService(started.job_id, deps);
  expect(isAlive(e.forwarder_pid!)).toBe(false);
}, 300_000);
