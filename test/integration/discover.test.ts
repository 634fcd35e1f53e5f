/**
 * discover / gone / prune / idempotent stop (issue 10 points 1-4) through the built CLI, against the real
 * Docker engine and the real one-node Slurm that test/infra/setup.sh runs on loopback (sshd 127.0.0.1:2222).
 *
 * Checked: a Slurm service (runtime none) and a local-docker service are started; the registry file is
 * deleted and the slurm tunnel killed (as a reboot or a /tmp cleanup would); `discover` restores both
 * entries from the container labels and the Slurm `--comment` marker (job_id, arch, model_path, host
 * port), restarts the slurm tunnel, and `request` works through both restored host_urls; a second
 * discover reports both as already known and changes nothing. Then the container is removed and the
 * Slurm job scancel'led behind the tool's back: `ls` shows `gone` for the container and an ended state
 * for the job (`canceled` while Slurm still lists it, `gone` once purged); `stop` of the gone one exits 0
 * with `already_gone: true`; `prune --dry-run` lists exactly those two and removes nothing; `prune --yes`
 * removes exactly those two and keeps a running third service; two concurrent `stop`s of that one both
 * exit 0; `stop --all` and `stop --yes` on the empty registry exit 0 and say so.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ROOT, parseJson, runCli } from '../helpers/cli.js';
import { docker, ensureTestImage, realDocker, TEST_IMAGE } from '../helpers/docker.js';
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

beforeAll(async () => {
  ensureTestImage();
  expect(existsSync(join(INFRA, 'known_hosts')), 'run test/infra/setup.sh').toBe(true);
  await waitFor('port 8080 on this machine to be free for the node service', async () => (await portFree(8080)) || undefined, 60_000);
}, 240_000);

afterAll(() => {
  for (const id of slurmJobs) sh('scancel', [id]);
  for (const pid of forwarders) if (isAlive(pid)) process.kill(pid, 'SIGTERM');
  if (containers.length) docker(['rm', '-f', ...containers]);
  for (const id of jobDirs) rmSync(join(homedir(), '.tao-infer', 'jobs', id), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

it('discover restores lost services, gone/ended ones are pruned, stop is idempotent', async () => {
  // --- two services on two platforms (slurm first: its node service needs port 8080 of this machine)
  const s = await runCli(['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...SSH_FLAGS, '--partition', 'debug', '--container-runtime', 'none', '--env', 'PATH', '--num-gpus', '1', '--timeout', '150', '--json'], { env, timeoutMs: 200_000 });
  const se = parseJson(s);
  if (se.platform_job_id) slurmJobs.push(se.platform_job_id);
  if (se.job_id) jobDirs.push(se.job_id);
  if (se.forwarder_pid) forwarders.add(se.forwarder_pid);
  expect(s.exitCode, s.stderr).toBe(0);
  const d = await runCli(['start', '--arch', 'tao-dataservices', '--model', '/models/discover-me', '--num-gpus', '0', '--timeout', '120', '--json'], { env });
  const de = parseJson(d);
  if (de.job_id) containers.push(de.job_id);
  expect(d.exitCode, d.stderr).toBe(0);
  expect(sh('squeue', ['-j', se.platform_job_id, '-h', '-o', '%k']).trim()).toMatch(new RegExp(`^tao-infer:${se.job_id}:cosmos-rl:none:`));

  // --- the registry is lost and the tunnel with it (reboot, /tmp cleaning)
  rmSync(stateFile);
  process.kill(se.forwarder_pid, 'SIGTERM');
  await waitFor('the old tunnel to end', () => !isAlive(se.forwarder_pid) || undefined, 10_000);
  const lsEmpty = await runCli(['ls', '--json'], { env });
  expect(parseJson(lsEmpty)).toEqual([]);

  const disc = await runCli(['discover', '--platform', 'local-docker', '--platform', 'slurm', ...SSH_FLAGS, '--json'], { env, timeoutMs: 120_000 });
  expect(disc.exitCode, disc.stderr).toBe(0);
  const found = parseJson(disc);
  for (const a of found.added) if (a.forwarder_pid) forwarders.add(a.forwarder_pid);
  expect(found.not_reachable.filter((n: any) => [se.job_id, de.job_id].includes(n.job_id) || !n.job_id)).toEqual([]);
  const addedS = found.added.find((a: any) => a.job_id === se.job_id);
  const addedD = found.added.find((a: any) => a.job_id === de.job_id);
  expect(addedD).toMatchObject({ platform: 'local-docker', network_arch: 'tao-dataservices', model_path: '/models/discover-me', host_port: de.host_port, host_url: de.host_url, started_at: de.started_at, image: TEST_IMAGE, live: { state: 'running' } });
  expect(addedS).toMatchObject({ platform: 'slurm', platform_job_id: se.platform_job_id, network_arch: 'cosmos-rl', model_path: 'hf_model://nvidia/Cosmos-Reason1-7B', slurm_node: se.slurm_node, live: { state: 'running' } });
  expect(addedS.platform_data).toMatchObject({ ssh_user: 'root', ssh_host: '127.0.0.1', ssh_port: 2222, partition: 'debug', container_runtime: 'none' });
  expect(addedS.host_url).toBe(`http://localhost:${addedS.host_port}`);
  expect(isAlive(addedS.forwarder_pid)).toBe(true);
  // The registry holds them as found (other leftovers of this machine may be found too; they are dropped below).
  expect(registry()[se.job_id]).toMatchObject({ forwarder_pid: addedS.forwarder_pid, host_port: addedS.host_port });

  // --- requests work through the restored host_urls (the slurm one through the restarted tunnel)
  const rs = await runCli(['request', '--job', se.job_id, '--prompt', 'What is in the picture?', '--image', PNG, '--json'], { env });
  expect(rs.exitCode, rs.stderr).toBe(0);
  const rd = await runCli(['request', '--job', de.job_id, '--prompt', 'hello', '--json'], { env });
  expect(rd.exitCode, rd.stderr).toBe(0);

  // --- a second discover finds both again, adds nothing for them and keeps the entries as they are
  const before = readFileSync(stateFile, 'utf8');
  const again = parseJson(await runCli(['discover', '--platform', 'local-docker', '--platform', 'slurm', ...SSH_FLAGS, '--json'], { env, timeoutMs: 120_000 }));
  expect(again.added).toEqual([]);
  expect(again.already_known).toEqual(expect.arrayContaining([{ job_id: se.job_id, platform: 'slurm' }, { job_id: de.job_id, platform: 'local-docker' }]));
  expect(readFileSync(stateFile, 'utf8')).toBe(before);

  // Keep only this test's services in its registry (discover may have found other tao-infer leftovers here).
  const reg = registry();
  for (const [k, v] of Object.entries(reg)) {
    if (k === 'latest' || k === se.job_id || k === de.job_id) continue;
    if (typeof (v as any)?.forwarder_pid === 'number') forwarders.add((v as any).forwarder_pid);
    delete reg[k];
  }
  reg.latest = de.job_id;
  writeFileSync(stateFile, JSON.stringify(reg));

  // --- a third service that keeps running
  const k = await runCli(['start', '--arch', 'tao-dataservices', '--model', '/models/keep', '--num-gpus', '0', '--timeout', '120', '--json'], { env });
  const ke = parseJson(k);
  if (ke.job_id) containers.push(ke.job_id);
  expect(k.exitCode, k.stderr).toBe(0);

  // --- behind the tool's back: container removed, Slurm job cancelled
  expect(docker(['rm', '-f', de.job_id]).code).toBe(0);
  sh('scancel', [se.platform_job_id]);
  await waitFor('the Slurm job to end', () => (!/^(RUNNING|COMPLETING|PENDING)/.test(sh('squeue', ['-j', se.platform_job_id, '-h', '-o', '%T']).trim()) ? true : undefined), 90_000);
  const ls = parseJson(await runCli(['ls', '--json'], { env }));
  const live = Object.fromEntries(ls.map((x: any) => [x.job_id, x.live]));
  expect(live[de.job_id]).toMatchObject({ state: 'gone' });
  expect(['canceled', 'gone']).toContain(live[se.job_id].state);
  expect(live[ke.job_id]).toMatchObject({ state: 'running' });

  // --- stop of a gone service exits 0 and says so (entry removed); the registry is then restored for prune
  const saved = readFileSync(stateFile, 'utf8');
  const stopGone = await runCli(['stop', de.job_id, '--json'], { env });
  expect(stopGone.exitCode, stopGone.stderr).toBe(0);
  expect(parseJson(stopGone)).toMatchObject({ stopped: [de.job_id], failed: [], already_gone: true });
  expect(registry()[de.job_id]).toBeUndefined();
  writeFileSync(stateFile, saved);

  // --- prune: dry run lists exactly the two, changes nothing; then removes exactly the two
  const dry = await runCli(['prune', '--dry-run', '--json'], { env });
  expect(dry.exitCode, dry.stderr).toBe(0);
  expect(parseJson(dry).removed.map((x: any) => x.job_id).sort()).toEqual([de.job_id, se.job_id].sort());
  expect(readFileSync(stateFile, 'utf8')).toBe(saved);
  const noYes = await runCli(['prune', '--json'], { env });
  expect(noYes.exitCode).toBe(2);
  const pr = await runCli(['prune', '--yes', '--json'], { env, timeoutMs: 150_000 });
  expect(pr.exitCode, pr.stderr).toBe(0);
  const pruned = parseJson(pr);
  expect(pruned.removed.map((x: any) => x.job_id).sort()).toEqual([de.job_id, se.job_id].sort());
  expect(pruned.kept).toEqual([{ job_id: ke.job_id, state: 'running' }]);
  expect(Object.keys(registry()).filter((x) => x !== 'latest')).toEqual([ke.job_id]);
  expect(isAlive(addedS.forwarder_pid)).toBe(false);
  const nothing = await runCli(['prune', '--yes', '--json'], { env });
  expect(nothing.exitCode).toBe(0);
  expect(parseJson(nothing).removed).toEqual([]);

  // --- two concurrent stops of one job both exit 0
  const [a, b] = await Promise.all([runCli(['stop', ke.job_id, '--json'], { env }), runCli(['stop', ke.job_id, '--json'], { env })]);
  expect([a.exitCode, b.exitCode], `${a.stderr}\n${b.stderr}`).toEqual([0, 0]);
  expect(docker(['ps', '-a', '--filter', `name=${ke.job_id}`, '-q']).out.trim()).toBe('');
  expect(realDocker()).toBeTruthy();

  // --- nothing left to stop: exit 0 and say so
  for (const args of [['stop', '--all'], ['stop', '--yes']]) {
    const r = await runCli(args, { env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/nothing to stop/);
    const j = await runCli([...args, '--json'], { env });
    expect(parseJson(j)).toMatchObject({ stopped: [], failed: [] });
  }
}, 600_000);
