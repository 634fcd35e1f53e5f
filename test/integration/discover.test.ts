/**
 * discover / gone / prune / idempotent stop (issue 10 points 1-4) through the built CLI, against the real
 * Docker engine and the real one-node Slurm that test/infra/setup.sh runs on loopback (sshd 127.0.0.1:2222).
 *
 * local-docker: two services are started, the registry file deleted (a reboot, /tmp cleaning); `discover`
 * restores both from the container labels (job_id, arch, model_path, started_at; host_port from the port
 * binding) and `request` works through the restored host_urls; a second discover reports them as already
 * known and changes nothing. One container is removed behind the tool's back: `ls` shows `gone`; `stop`
 * of it exits 0 with `already_gone: true`; `prune --dry-run` lists exactly it; `prune` without --yes is
 * refused in CI (exit 2); `prune --yes` removes exactly it and keeps the running one; two concurrent
 * `stop`s of that one both exit 0; `stop --all` and `stop --yes` on the empty registry exit 0 and say so.
 *
 * slurm: a service (runtime none) is started, the registry deleted and its tunnel killed; `discover` finds
 * the job by its `--comment` marker, allocates a local port and restarts the tunnel, and `request` works
 * through it. The job is scancel'led behind the tool's back: `ls` shows it ended (`canceled` while Slurm
 * still lists it, `gone` once purged), `prune --yes` drops exactly it, and `stop` of it exits 0.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ROOT, parseJson, runCli } from '../helpers/cli.js';
import { docker, ensureTestImage, TEST_IMAGE } from '../helpers/docker.js';
import { isAlive } from '../../src/util/detached.js';

const INFRA = '/tmp/tao-infer-infra/ssh';
const SSH_FLAGS = ['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', join(INFRA, 'client_key'), '--known-hosts', join(INFRA, 'known_hosts')];
const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const dir = mkdtempSync(join(tmpdir(), 'tao-infer-discover-'));
const stateFile = join(dir, 'state.json');
const env: Record<string, string> = {
  TAO_INF_STATE_FILE: stateFile,
  SLURM_USER: 'root',
  IMAGE_COSMOS_RL: TEST_IMAGE,
  IMAGE_TAO_DATASERVICES: TEST_IMAGE,
  DOCKER_NETWORK: 'tao_infer_test',
  STANDIN_LOAD_MS: '500',
  PATH: `${join(ROOT, 'test/fixtures/standin/bin')}:${process.env.PATH}`,
};

const containers: string[] = [];
const slurmJobs: string[] = [];
const jobDirs: string[] = [];
const forwarders = new Set<number>();

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return '';
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 60_000): Promise<T> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const registry = (): Record<string, any> => (existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, 'utf8')) : {});

beforeAll(() => {
  ensureTestImage();
  expect(existsSync(join(INFRA, 'known_hosts')), 'run test/infra/setup.sh').toBe(true);
}, 240_000);

afterAll(() => {
  for (const id of slurmJobs) sh('scancel', [id]);
  for (const pid of forwarders) if (isAlive(pid)) process.kill(pid, 'SIGTERM');
  if (containers.length) docker(['rm', '-f', ...containers]);
  for (const id of jobDirs) rmSync(join(homedir(), '.tao-infer', 'jobs', id), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

it('local-docker: discover restores lost services; a removed container is gone, pruned, and stops with exit 0', async () => {
  const env1 = { ...env, TAO_INF_STATE_FILE: join(dir, 'docker.json') };
  const stateFile = env1.TAO_INF_STATE_FILE;
  const registry = (): Record<string, any> => (existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, 'utf8')) : {});
  const startDocker = async (model: string) => {
    const r = await runCli(['start', '--arch', 'tao-dataservices', '--model', model, '--num-gpus', '0', '--timeout', '120', '--json'], { env: env1 });
    const e = parseJson(r);
    if (e.job_id) containers.push(e.job_id);
    expect(r.exitCode, r.stderr).toBe(0);
    return e;
  };
  const de = await startDocker('/models/discover-me');
  const ke = await startDocker('/models/keep');

  rmSync(stateFile);
  expect(parseJson(await runCli(['ls', '--json'], { env: env1 }))).toEqual([]);
  const disc = await runCli(['discover', '--platform', 'local-docker', '--json'], { env: env1, timeoutMs: 120_000 });
  expect(disc.exitCode, disc.stderr).toBe(0);
  const found = parseJson(disc);
  expect(found.not_reachable).toEqual([]);
  for (const e of [de, ke]) {
    expect(found.added.find((a: any) => a.job_id === e.job_id)).toMatchObject({
      platform: 'local-docker',
      network_arch: 'tao-dataservices',
      model_path: e.job_id === de.job_id ? '/models/discover-me' : '/models/keep',
      host_port: e.host_port,
      host_url: e.host_url,
      started_at: e.started_at,
      image: TEST_IMAGE,
      live: { state: 'running' },
    });
    const rq = await runCli(['request', '--job', e.job_id, '--prompt', 'hello', '--json'], { env: env1 });
    expect(rq.exitCode, rq.stderr).toBe(0);
  }
  const before = readFileSync(stateFile, 'utf8');
  const again = parseJson(await runCli(['discover', '--platform', 'local-docker', '--json'], { env: env1 }));
  expect(again.added).toEqual([]);
  expect(again.already_known).toEqual(expect.arrayContaining([{ job_id: de.job_id, platform: 'local-docker' }, { job_id: ke.job_id, platform: 'local-docker' }]));
  expect(readFileSync(stateFile, 'utf8')).toBe(before);
  // Keep only this test's services (discover may have found tao-infer leftovers of other runs on this engine).
  const reg = registry();
  for (const k of Object.keys(reg)) if (![de.job_id, ke.job_id, 'latest'].includes(k)) delete reg[k];
  reg.latest = ke.job_id;
  writeFileSync(stateFile, JSON.stringify(reg));

  // Behind the tool's back: one container removed.
  expect(docker(['rm', '-f', de.job_id]).code).toBe(0);
  const ls = parseJson(await runCli(['ls', '--json'], { env: env1 }));
  const live = Object.fromEntries(ls.map((x: any) => [x.job_id, x.live]));
  expect(live[de.job_id]).toMatchObject({ state: 'gone', reason: 'the container no longer exists' });
  expect(live[ke.job_id]).toMatchObject({ state: 'running' });

  // stop of the gone one exits 0 and says so (entry removed); the registry is restored for prune.
  const saved = readFileSync(stateFile, 'utf8');
  const stopGone = await runCli(['stop', de.job_id, '--json'], { env: env1 });
  expect(stopGone.exitCode, stopGone.stderr).toBe(0);
  expect(parseJson(stopGone)).toMatchObject({ stopped: [de.job_id], failed: [], already_gone: true });
  expect(registry()[de.job_id]).toBeUndefined();
  writeFileSync(stateFile, saved);

  const dry = await runCli(['prune', '--dry-run', '--json'], { env: env1 });
  expect(dry.exitCode, dry.stderr).toBe(0);
  expect(parseJson(dry)).toMatchObject({ removed: [{ job_id: de.job_id, state: 'gone' }], kept: [{ job_id: ke.job_id, state: 'running' }], dry_run: true });
  expect(readFileSync(stateFile, 'utf8')).toBe(saved);
  const noYes = await runCli(['prune', '--json'], { env: env1 });
  expect(noYes.exitCode).toBe(2);
  expect(readFileSync(stateFile, 'utf8')).toBe(saved);
  const pr = await runCli(['prune', '--yes', '--json'], { env: env1 });
  expect(pr.exitCode, pr.stderr).toBe(0);
  expect(parseJson(pr)).toMatchObject({ removed: [{ job_id: de.job_id }], kept: [{ job_id: ke.job_id, state: 'running' }], failed: [], dry_run: false });
  expect(Object.keys(registry()).filter((x) => x !== 'latest')).toEqual([ke.job_id]);
  const nothing = await runCli(['prune', '--yes'], { env: env1 });
  expect(nothing.exitCode).toBe(0);
  expect(nothing.stdout).toMatch(/nothing to prune/);

  // Two concurrent stops of one job both exit 0.
  const [a, b] = await Promise.all([runCli(['stop', ke.job_id, '--json'], { env: env1 }), runCli(['stop', ke.job_id, '--json'], { env: env1 })]);
  expect([a.exitCode, b.exitCode], `${a.stderr}\n${b.stderr}`).toEqual([0, 0]);
  expect(docker(['ps', '-a', '--filter', `name=${ke.job_id}`, '-q']).out.trim()).toBe('');

  // Nothing left to stop: exit 0 and say so.
  for (const args of [['stop', '--all'], ['stop', '--yes']]) {
    const r = await runCli(args, { env: env1 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/nothing to stop/);
    const j = await runCli([...args, '--json'], { env: env1 });
    expect(j.exitCode).toBe(0);
    expect(parseJson(j)).toMatchObject({ stopped: [], failed: [] });
  }
}, 300_000);

it('slurm: discover finds the job by its --comment marker and restarts the tunnel; a cancelled job is pruned and stops with exit 0', async () => {
  // The stand-in on the node (this machine) listens on port 8080: wait until nothing else holds it.
  await waitFor('port 8080 on this machine to be free for the node service', async () => (await portFree(8080)) || undefined, 180_000);
  const s = await runCli(['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...SSH_FLAGS, '--partition', 'debug', '--container-runtime', 'none', '--env', 'PATH', '--allow-env-override', '--num-gpus', '1', '--timeout', '150', '--json'], { env, timeoutMs: 200_000 });
  const se = parseJson(s);
  if (se.platform_job_id) slurmJobs.push(se.platform_job_id);
  if (se.job_id) jobDirs.push(se.job_id);
  if (se.forwarder_pid) forwarders.add(se.forwarder_pid);
  expect(s.exitCode, s.stderr).toBe(0);
  expect(sh('squeue', ['-j', se.platform_job_id, '-h', '-o', '%k']).trim()).toMatch(new RegExp(`^tao-infer:${se.job_id}:cosmos-rl:none:`));

  // The registry is lost and the tunnel with it (reboot, /tmp cleaning).
  rmSync(stateFile);
  process.kill(se.forwarder_pid, 'SIGTERM');
  await waitFor('the old tunnel to end', () => !isAlive(se.forwarder_pid) || undefined, 10_000);
  const disc = await runCli(['discover', '--platform', 'slurm', ...SSH_FLAGS, '--json'], { env, timeoutMs: 120_000 });
  expect(disc.exitCode, disc.stderr).toBe(0);
  const found = parseJson(disc);
  for (const a of found.added) if (a.forwarder_pid) forwarders.add(a.forwarder_pid);
  expect(found.not_reachable).toEqual([]);
  const addedS = found.added.find((a: any) => a.job_id === se.job_id);
  expect(addedS).toMatchObject({ platform: 'slurm', platform_job_id: se.platform_job_id, network_arch: 'cosmos-rl', model_path: 'hf_model://nvidia/Cosmos-Reason1-7B', slurm_node: se.slurm_node, live: { state: 'running' } });
  expect(addedS.platform_data).toMatchObject({ ssh_user: 'root', ssh_host: '127.0.0.1', ssh_port: 2222, partition: 'debug', container_runtime: 'none', job_dir: join(homedir(), '.tao-infer', 'jobs', se.job_id) });
  expect(addedS.host_url).toBe(`http://localhost:${addedS.host_port}`);
  expect(isAlive(addedS.forwarder_pid)).toBe(true);
  expect(registry()[se.job_id]).toMatchObject({ forwarder_pid: addedS.forwarder_pid, host_port: addedS.host_port });
  const rs = await runCli(['request', '--job', se.job_id, '--prompt', 'What is in the picture?', '--image', PNG, '--json'], { env });
  expect(rs.exitCode, rs.stderr).toBe(0);
  const again = parseJson(await runCli(['discover', '--platform', 'slurm', ...SSH_FLAGS, '--json'], { env }));
  expect(again.already_known).toEqual(expect.arrayContaining([{ job_id: se.job_id, platform: 'slurm' }]));
  // Keep only this test's service.
  const reg = registry();
  for (const [k, v] of Object.entries(reg)) {
    if (k === 'latest' || k === se.job_id) continue;
    if (typeof (v as any)?.forwarder_pid === 'number') forwarders.add((v as any).forwarder_pid);
    delete reg[k];
  }
  reg.latest = se.job_id;
  writeFileSync(stateFile, JSON.stringify(reg));

  // Behind the tool's back: scancel.
  sh('scancel', [se.platform_job_id]);
  await waitFor('the Slurm job to end', () => (!/^(RUNNING|COMPLETING|PENDING)/.test(sh('squeue', ['-j', se.platform_job_id, '-h', '-o', '%T']).trim()) ? true : undefined), 90_000);
  const ls = parseJson(await runCli(['ls', '--json'], { env }));
  expect(['canceled', 'gone']).toContain(ls[0].live.state);
  const saved = readFileSync(stateFile, 'utf8');
  const pr = await runCli(['prune', '--yes', '--json'], { env, timeoutMs: 150_000 });
  expect(pr.exitCode, pr.stderr).toBe(0);
  expect(parseJson(pr).removed.map((x: any) => x.job_id)).toEqual([se.job_id]);
  expect(Object.keys(registry()).filter((x) => x !== 'latest')).toEqual([]);
  expect(isAlive(addedS.forwarder_pid)).toBe(false);
  writeFileSync(stateFile, saved);
  const st = await runCli(['stop', se.job_id, '--json'], { env, timeoutMs: 150_000 });
  expect(st.exitCode, st.stderr).toBe(0);
  expect(parseJson(st)).toMatchObject({ stopped: [se.job_id], failed: [] });
}, 600_000);
