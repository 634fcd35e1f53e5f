/**
 * slurm end to end through the built CLI, against the real servers test/infra/setup.sh runs on
 * loopback: OpenSSH on 127.0.0.1:2222 (the "login node"), munge, slurmctld + slurmd with 4 fake GPUs
 * (the one node, named after this machine's short hostname as test/infra/setup.sh configures it), and the Docker engine with the stand-in test image.
 *
 * Checked: start → pending (a blocker job holds all GPUs) → running → tunnel → ready → request → logs
 * → tunnel restart → stop, for `--container-runtime none` (stand-in executables on PATH of the node)
 * and `--container-runtime docker` (the test image); after stop the Slurm job is gone, node port 8080
 * is closed, the forwarder process no longer exists and its local port is free. A job that fails at
 * once is reported with its exit state and log tail. Unknown/changed host keys, wrong user and wrong
 * key give clear errors. The canary secret never shows in any argv on either side (process table
 * sampled during the whole start), the job script, the registry, the tunnel log or any output; the
 * secrets file is mode 600 while the job runs and gone after stop.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { homedir, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, parseJson, runCli, type CliResult } from '../helpers/cli.js';
import { isAlive as alive } from '../../src/util/detached.js';
import { docker, ensureTestImage, TEST_IMAGE } from '../helpers/docker.js';

const INFRA = '/tmp/tao-infer-infra/ssh';
/** The Slurm node: setup.sh names it after this machine's short hostname. */
const NODE = hostname().split('.')[0]!;
const KEY = join(INFRA, 'client_key');
const KNOWN = join(INFRA, 'known_hosts');
const CANARY = `slurm-canary-${randomBytes(8).toString('hex')}`;
const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const STANDIN_BIN = join(ROOT, 'test/fixtures/standin/bin');
const SSH_FLAGS = ['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', KEY, '--known-hosts', KNOWN, '--partition', 'debug'];

const slurmJobs: string[] = [];
const forwarders: number[] = [];
const containers: string[] = [];
/** job_ids whose job directory (on the "cluster", i.e. this machine) the tests created. */
const jobDirs: string[] = [];
const jobDirOf = (jobId: string) => join(homedir(), '.tao-infer', 'jobs', jobId);

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function testEnv(extra: Record<string, string> = {}): { env: Record<string, string>; stateFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tao-infer-slurm-'));
  const stateFile = join(dir, 'state.json');
  return {
    stateFile,
    env: {
      TAO_INF_STATE_FILE: stateFile,
      SLURM_USER: 'root',
      HF_TOKEN: CANARY,
      PATH: `${STANDIN_BIN}:${process.env.PATH}`,
      STANDIN_LOAD_MS: '1500',
      IMAGE_COSMOS_RL: TEST_IMAGE,
      ...extra,
    },
  };
}

function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** squeue line for a job (`STATE|NODE`), '' once Slurm no longer lists it as pending/running. */
function squeue(id: string): string {
  try {
    return sh('squeue', ['-j', id, '-h', '-o', '%T|%N']).trim();
  } catch {
    return '';
  }
}

/** Samples every process's argv (this machine is both the client and the cluster) until stopped. */
function sampleArgv(): { stop: () => Promise<string[]> } {
  const seen = new Set<string>();
  let on = true;
  const loop = (async () => {
    while (on) {
      for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        try {
          seen.add(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '));
        } catch {
          /* gone */
        }
      }
      await sleep(100);
    }
  })();
  return {
    stop: async () => {
      on = false;
      await loop;
      return [...seen];
    },
  };
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

beforeAll(async () => {
  ensureTestImage();
  expect(existsSync(KNOWN), `${KNOWN} missing: run test/infra/setup.sh`).toBe(true);
  expect(sh('sinfo', ['-h', '-o', '%P %a']).trim()).toMatch(/debug/);
  // The stand-in listens on node port 8080 of this machine: nothing else may hold it (test files run serially).
  await waitFor('port 8080 on this machine to be free for the node service', async () => (await portFree(8080)) || undefined, 60_000);
}, 240_000);

afterAll(() => {
  for (const id of slurmJobs) {
    try {
      sh('scancel', [id]);
    } catch {
      /* already gone */
    }
  }
  for (const pid of forwarders) if (alive(pid)) process.kill(pid, 'SIGTERM');
  if (containers.length) docker(['rm', '-f', ...containers]);
  for (const id of jobDirs) rmSync(jobDirOf(id), { recursive: true, force: true });
});

/** Assert the canary shows nowhere: outputs, argv samples, registry, files given. */
function noCanary(outputs: string[], argv: string[], files: string[]): void {
  for (const o of outputs) expect(o).not.toContain(CANARY);
  for (const a of argv) expect(a).not.toContain(CANARY);
  for (const f of files) if (existsSync(f)) expect(readFileSync(f, 'utf8'), f).not.toContain(CANARY);
}

async function lifecycle(runtime: 'none' | 'docker'): Promise<void> {
  const t = testEnv();
  const outputs: string[] = [];
  const keep = (r: CliResult) => (outputs.push(r.stdout, r.stderr), r);
  // runtime none also bounds the job with --max-duration (→ the Slurm time limit); docker keeps the default --time.
  const extra = runtime === 'none' ? ['--env', 'PATH', '--num-gpus', '1', '--max-duration', '30m'] : ['--num-gpus', '0'];

  // Hold all 4 GPUs so the service job has to wait in PENDING first.
  const blocker = sh('sbatch', ['--parsable', '--job-name=tao-infer-test-blocker', '--partition=debug', '--exclusive', '--gres=gpu:4', '--output=/dev/null', '--wrap=sleep 300']).trim();
  slurmJobs.push(blocker);
  const sampler = sampleArgv();
  const startP = execa(process.execPath, [CLI, 'start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...SSH_FLAGS, '--container-runtime', runtime, '--timeout', '150', '--json', ...extra], {
    reject: false,
    env: { CI: 'true', NO_COLOR: '1', ...t.env },
    stdin: 'ignore',
    timeout: 200_000,
  });

  // pending: the registry entry has a Slurm job id and `ls` reports pending while the blocker runs.
  const jobId = await waitFor('the Slurm job id in the registry', () => {
    if (!existsSync(t.stateFile)) return undefined;
    const reg = JSON.parse(readFileSync(t.stateFile, 'utf8'));
    const e = Object.values(reg).find((v): v is { platform_job_id: string; job_id: string } => typeof v === 'object' && v !== null && 'platform_job_id' in v);
    return e;
  });
  slurmJobs.push(jobId.platform_job_id);
  jobDirs.push(jobId.job_id);
  expect(squeue(jobId.platform_job_id)).toMatch(/^PENDING\|/);
  const lsPending = keep(await runCli(['ls', '--json'], { env: t.env }));
  expect(lsPending.exitCode, lsPending.stderr).toBe(0);
  expect(parseJson(lsPending)).toEqual([expect.objectContaining({ job_id: jobId.job_id, live: expect.objectContaining({ state: 'pending', native: 'PENDING' }) })]);
  if (runtime === 'docker') containers.push(jobId.job_id);

  // running: release the GPUs.
  sh('scancel', [blocker]);
  const start = keep(await startP as unknown as CliResult);
  const argvDuringStart = await sampler.stop();
  expect(start.exitCode, `${start.stdout}\n${start.stderr}`).toBe(0);
  const entry = parseJson(start);
  forwarders.push(entry.forwarder_pid);
  expect(entry).toMatchObject({ platform: 'slurm', platform_job_id: jobId.platform_job_id, slurm_node: NODE, ready: true });
  expect(entry.host_url).toBe(`http://localhost:${entry.host_port}`);
  expect(entry.host_port).toBeGreaterThanOrEqual(8080);
  expect(entry.host_port).toBeLessThanOrEqual(8199);
  expect(start.stderr).toMatch(/PENDING/);
  expect(start.stderr).toMatch(/RUNNING/);
  expect(squeue(entry.platform_job_id)).toBe(`RUNNING|${NODE}`);
  expect(alive(entry.forwarder_pid)).toBe(true);
  expect(entry.platform_data).toMatchObject({ ssh_user: 'root', ssh_host: '127.0.0.1', ssh_port: 2222, container_runtime: runtime });
  // Lifetime: the time limit Slurm enforces, and the expiry recorded from it (RUNNING + limit); state in the ls vocabulary.
  expect(entry.state).toBe('running');
  const limitS = runtime === 'none' ? 30 * 60 : 4 * 3600;
  expect(sh('squeue', ['-h', '-j', entry.platform_job_id, '-o', '%l']).trim()).toBe(runtime === 'none' ? '30:00' : '4:00:00');
  const left = (Date.parse(entry.expires_at) - Date.now()) / 1000;
  expect(left).toBeGreaterThan(limitS - 180);
  expect(left).toBeLessThanOrEqual(limitS);

  // the secrets file on the cluster: mode 600 while the job runs; the job script holds no value.
  const jobDir = jobDirOf(entry.job_id);
  const secrets = join(jobDir, 'secrets.env');
  expect(statSync(secrets).mode & 0o777).toBe(0o600);
  expect(readFileSync(secrets, 'utf8')).toContain(CANARY); // the value did arrive, through stdin
  const script = readFileSync(join(jobDir, 'job.sbatch'), 'utf8');
  expect(script).toContain(`#SBATCH --job-name=${entry.job_id}`);
  expect(script).toMatch(runtime === 'none' ? /^#SBATCH --time=0-00:30:00$/m : /^#SBATCH --time=04:00:00$/m);
  if (runtime === 'docker') {
    expect(script).toContain(`docker run --rm --name ${entry.job_id} -p 8080:8080`);
    expect(docker(['ps', '--filter', `name=${entry.job_id}`, '--format', '{{.Image}}']).out.trim()).toBe(TEST_IMAGE);
  } else expect(script).toMatch(/^#SBATCH --gres=gpu:1$/m);
  // Both sides, while the job runs: the process table holds no secret value.
  const psNow = sh('ps', ['-eo', 'args']);
  expect(psNow).toContain('cosmos-rl');
  expect(psNow).not.toContain(CANARY);

  // request through the tunnel; the service saw HF_TOKEN (by name).
  const req = keep(await runCli(['request', '--job', entry.job_id, '--prompt', 'What is in the picture?', '--image', PNG, '--json'], { env: t.env }));
  expect(req.exitCode, req.stderr).toBe(0);
  const completion = parseJson(req);
  expect(completion.routed_to.job_id).toBe(entry.job_id);
  expect(completion.tao_standin.backend).toBe('slurm');
  expect(completion.tao_standin.secrets_present).toContain('HF_TOKEN');
  expect(req.stderr).toContain(`url=${entry.host_url}/v1/chat/completions`);

  // logs over SSH, asked by a short id.
  const logs = keep(await runCli(['logs', entry.job_id.slice(0, 8), '--tail', '50'], { env: t.env }));
  expect(logs.exitCode, logs.stderr).toBe(0);
  expect(logs.stdout).toMatch(/\[standin\] .*ready to serve|listening/);

  // tunnel: kill the forwarder, the URL goes dead; `tunnel` brings it back on the same port.
  process.kill(entry.forwarder_pid, 'SIGKILL');
  await waitFor('the forwarder to die', () => !alive(entry.forwarder_pid) || undefined);
  expect(await portOpen(entry.host_port)).toBe(false);
  const lsDown = keep(await runCli(['ls', '--json'], { env: t.env }));
  expect(lsDown.stdout + lsDown.stderr).toMatch(/tunnel/);
  const tun = keep(await runCli(['tunnel', entry.job_id, '--json'], { env: t.env }));
  expect(tun.exitCode, tun.stderr).toBe(0);
  const after = parseJson(tun);
  forwarders.push(after.forwarder_pid);
  expect(after.forwarder_pid).not.toBe(entry.forwarder_pid);
  expect(after.host_url).toBe(entry.host_url);
  expect(alive(after.forwarder_pid)).toBe(true);
  const again = keep(await runCli(['request', '--job', entry.job_id, '--prompt', 'again', '--image', PNG, '--json'], { env: t.env }));
  expect(again.exitCode, again.stderr).toBe(0);
  const tunnelAgain = keep(await runCli(['tunnel', entry.job_id], { env: t.env }));
  expect(tunnelAgain.exitCode, tunnelAgain.stderr).toBe(0);
  expect(tunnelAgain.stdout).toMatch(/already running/);

  // logs -f interrupted by the user: the remote tail/watch loop goes away with it.
  const early = execa(process.execPath, [CLI, 'logs', entry.job_id, '-f'], { reject: false, env: { CI: 'true', ...t.env }, stdin: 'ignore', timeout: 60_000 });
  let earlyOut = '';
  early.stdout!.on('data', (d: Buffer) => (earlyOut += d.toString()));
  await waitFor('logs -f to print', () => earlyOut.includes('[standin]') || undefined);
  const remoteTail = () => sh('ps', ['-eo', 'args']).split('\n').filter((l) => l.startsWith('tail -F') && l.includes(entry.job_id));
  expect(remoteTail().length).toBe(1);
  early.kill('SIGINT');
  await early;
  await waitFor('the remote tail -F to end', () => remoteTail().length === 0 || undefined, 15_000);
  outputs.push(earlyOut);

  // logs -f follows until the job ends (stop below ends it).
  const follow = execa(process.execPath, [CLI, 'logs', entry.job_id, '-f', '--tail', '3'], { reject: false, env: { CI: 'true', ...t.env }, stdin: 'ignore', timeout: 120_000 });
  let followed = '';
  follow.stdout!.on('data', (d: Buffer) => (followed += d.toString()));
  await waitFor('logs -f to print the tail', () => followed.includes('[standin]') || undefined);
  expect(followed).not.toMatch(/stop signal received/);

  // the forwarder's log holds no secret; stop removes it.
  const tunnelLog = readFileSync(entry.platform_data.tunnel_log, 'utf8');
  expect(tunnelLog).toContain(`listening on 127.0.0.1:${entry.host_port} -> ${NODE}:8080`);
  expect(tunnelLog).not.toContain(CANARY);

  // stop.
  const stop = keep(await runCli(['stop', entry.job_id, '--json'], { env: t.env }));
  expect(stop.exitCode, stop.stderr).toBe(0);
  expect(squeue(entry.platform_job_id)).toBe('');
  expect(sh('squeue', ['-j', entry.platform_job_id, '-h', '-t', 'all', '-o', '%T']).trim()).toMatch(/^(CANCELLED|COMPLETED|)$/);
  expect(await portOpen(8080)).toBe(false); // the service port on the node is closed
  expect(alive(after.forwarder_pid)).toBe(false);
  expect(await portFree(entry.host_port)).toBe(true);
  expect(existsSync(secrets)).toBe(false);
  expect(existsSync(entry.platform_data.tunnel_log)).toBe(false);
  if (runtime === 'docker') expect(docker(['ps', '-a', '--filter', `name=${entry.job_id}`, '--format', '{{.ID}}']).out.trim()).toBe('');
  const reg = existsSync(t.stateFile) ? JSON.parse(readFileSync(t.stateFile, 'utf8')) : {};
  expect(reg[entry.job_id]).toBeUndefined();

  // logs -f saw the lines written after it started, and ended by itself with the job.
  const fr = (await follow) as unknown as CliResult;
  outputs.push(followed, fr.stderr);
  expect(fr.exitCode, fr.stderr).toBe(0);
  expect(followed).toMatch(/stop signal received|CANCELLED/);

  noCanary(outputs, argvDuringStart, [t.stateFile, join(jobDir, 'job.sbatch'), join(jobDir, 'job.log')]);
}

describe('slurm end to end', () => {
  it('--container-runtime none: pending → running → tunnel → ready → request → tunnel restart → stop', async () => {
    await lifecycle('none');
  });

  it('--container-runtime docker: the test image on the real Docker engine', async () => {
    await lifecycle('docker');
  });

  it('a job that fails at once is reported with its exit state and log tail, and cleaned up', async () => {
    const t = testEnv({ STANDIN_CRASH_AT_START: '1' });
    const r = await runCli(
      ['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...SSH_FLAGS, '--container-runtime', 'none', '--env', 'PATH', '--env', 'STANDIN_CRASH_AT_START', '--timeout', '120', '--json'],
      { env: t.env },
    );
    expect(r.exitCode).not.toBe(0);
    const err = JSON.parse(r.stdout).error;
    expect(err.code).toBe('launch_failed');
    expect(err.message).toMatch(/ended FAILED with exit code [1-9]\d* before the service was reachable/);
    expect(err.log_tail.join('\n')).toMatch(/\[standin\]/);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    const reg = existsSync(t.stateFile) ? JSON.parse(readFileSync(t.stateFile, 'utf8')) : {};
    expect(Object.keys(reg).filter((k) => k !== 'latest')).toEqual([]);
    // the job directory keeps its log (with the crash) but not the secrets
    const jobId = /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/.exec(err.message)![1]!;
    const jobDir = jobDirOf(jobId);
    jobDirs.push(jobId);
    expect(readFileSync(join(jobDir, 'job.log'), 'utf8')).toMatch(/\[standin\]/);
    expect(existsSync(join(jobDir, 'secrets.env'))).toBe(false);
    expect(readFileSync(join(jobDir, 'job.log'), 'utf8')).not.toContain(CANARY);
  });
});

describe('slurm stop of a pending job', () => {
  it('cancels it, removes its secrets file, and the waiting start fails with the CANCELLED state', async () => {
    const t = testEnv();
    const blocker = sh('sbatch', ['--parsable', '--job-name=tao-infer-test-blocker', '--partition=debug', '--exclusive', '--output=/dev/null', '--wrap=sleep 300']).trim();
    slurmJobs.push(blocker);
    try {
      const startP = execa(process.execPath, [CLI, 'start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...SSH_FLAGS, '--container-runtime', 'none', '--env', 'PATH', '--json'], {
        reject: false,
        env: { CI: 'true', NO_COLOR: '1', ...t.env },
        stdin: 'ignore',
        timeout: 120_000,
      });
      const e = await waitFor('the Slurm job id in the registry', () => {
        if (!existsSync(t.stateFile)) return undefined;
        const reg = JSON.parse(readFileSync(t.stateFile, 'utf8'));
        return Object.values(reg).find((v): v is { platform_job_id: string; job_id: string } => typeof v === 'object' && v !== null && 'platform_job_id' in v);
      });
      slurmJobs.push(e.platform_job_id);
      jobDirs.push(e.job_id);
      const secrets = join(homedir(), '.tao-infer', 'jobs', e.job_id, 'secrets.env');
      await waitFor('the secrets file', () => existsSync(secrets) || undefined);
      expect(squeue(e.platform_job_id)).toMatch(/^PENDING\|/);
      const stop = await runCli(['stop', e.job_id, '--json'], { env: t.env });
      expect(stop.exitCode, stop.stderr).toBe(0);
      expect(squeue(e.platform_job_id)).toBe('');
      expect(existsSync(secrets)).toBe(false);
      const start = (await startP) as unknown as CliResult;
      expect(start.exitCode).toBe(3);
      const err = JSON.parse(start.stdout).error;
      expect(err.code).toBe('launch_failed');
      expect(err.message).toMatch(/ended CANCELLED before the service was reachable/);
      expect(err.hint).toMatch(/left no log/);
      expect(start.stdout + start.stderr + stop.stdout + stop.stderr).not.toContain(CANARY);
    } finally {
      sh('scancel', [blocker]);
    }
  });
});

describe('slurm through ssh-agent', () => {
  it('authenticates with the key held by ssh-agent (no --identity-file, no ~/.ssh keys), tunnel included', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tao-infer-agent-'));
    const sock = join(dir, 'agent.sock');
    const out = sh('ssh-agent', ['-s', '-a', sock]);
    const agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(out)![1]);
    try {
      execFileSync('ssh-add', ['-q', KEY], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      // HOME without ~/.ssh: only the agent can authenticate.
      const t = testEnv({ SSH_AUTH_SOCK: sock, HOME: dir });
      const flags = ['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--known-hosts', KNOWN, '--partition', 'debug'];
      const start = await runCli(['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...flags, '--container-runtime', 'none', '--env', 'PATH', '--timeout', '120', '--json'], { env: t.env });
      expect(start.exitCode, start.stderr).toBe(0);
      const entry = parseJson(start);
      slurmJobs.push(entry.platform_job_id);
      jobDirs.push(entry.job_id);
      forwarders.push(entry.forwarder_pid);
      expect(entry.platform_data.identity_file).toBeUndefined();
      const req = await runCli(['request', '--job', entry.job_id, '--prompt', 'hi', '--image', PNG, '--json'], { env: t.env });
      expect(req.exitCode, req.stderr).toBe(0);
      const stop = await runCli(['stop', entry.job_id], { env: t.env });
      expect(stop.exitCode, stop.stderr).toBe(0);
      expect(alive(entry.forwarder_pid)).toBe(false);

      // the same run without the agent fails clearly
      const noAgent = await runCli(['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...flags, '--container-runtime', 'none', '--json'], { env: { ...t.env, SSH_AUTH_SOCK: '' } });
      expect(noAgent.exitCode).toBe(3);
      expect(JSON.parse(noAgent.stdout).error.message).toMatch(/no SSH key available/);
    } finally {
      process.kill(agentPid, 'SIGTERM');
    }
  });
});

describe('slurm tunnel forwarder', () => {
  it('forwards to node:8080 through the login node and exits by itself once the Slurm job has ended', async () => {
    const job = sh('sbatch', ['--parsable', '--job-name=tao-infer-test-tunnel', '--partition=debug', '--output=/dev/null', '--wrap=sleep 300']).trim();
    slurmJobs.push(job);
    await waitFor('the job to run', () => squeue(job).startsWith('RUNNING') || undefined);
    // a stand-in for the service on the node
    const svc = createServer((c) => c.end('hello from the node\n'));
    await new Promise<void>((resolve, reject) => {
      svc.once('error', reject);
      svc.listen(8080, '0.0.0.0', () => resolve());
    });
    const port = await waitFor('a free local port', async () => {
      for (let p = 8150; p < 8200; p++) if (await portFree(p)) return p;
      return undefined;
    });
    const fwd = execa(process.execPath, [join(ROOT, 'dist/src/platforms/slurm/tunnel.js'), '--job-id', 'tunnel-test', '--slurm-job-id', job, '--user', 'root', '--host', '127.0.0.1', '--port', '2222', '--identity-file', KEY, '--known-hosts', KNOWN, '--node', NODE, '--remote-port', '8080', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--watch-interval', '1'], {
      reject: false,
      env: { PATH: process.env.PATH ?? '' },
      stdin: 'ignore',
      timeout: 60_000,
    });
    try {
      await waitFor('the forwarder to listen', async () => (await portOpen(port)) || undefined, 20_000);
      const got = await new Promise<string>((resolve, reject) => {
        let buf = '';
        const c = createConnection({ host: '127.0.0.1', port });
        c.on('data', (d) => (buf += d.toString()));
        c.on('end', () => resolve(buf));
        c.on('error', reject);
      });
      expect(got).toBe('hello from the node\n');
      sh('scancel', [job]);
      const r = await fwd;
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`Slurm job ${job} has ended`));
      expect(await portFree(port)).toBe(true);
    } finally {
      fwd.kill();
      await new Promise((r) => svc.close(r));
    }
  });
});

describe('slurm SSH refusals', () => {
  const start = (flags: string[], env = testEnv().env) =>
    runCli(['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', '--container-runtime', 'none', '--json', ...flags], { env });

  it('refuses an unknown host key and says how to trust it', async () => {
    const empty = join(mkdtempSync(join(tmpdir(), 'tao-infer-kh-')), 'known_hosts');
    writeFileSync(empty, '');
    const r = await start(['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', KEY, '--known-hosts', empty, '--partition', 'debug']);
    expect(r.exitCode).toBe(3);
    const err = JSON.parse(r.stdout).error;
    expect(err.message).toMatch(/host key of \[127\.0\.0\.1\]:2222 \(ssh-ed25519 SHA256:[A-Za-z0-9+/]+\) is not in/);
    expect(err.hint).toMatch(/ssh-keyscan -p 2222 127\.0\.0\.1 >> /);
  });

  it('refuses a changed host key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tao-infer-kh-'));
    sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'other')]);
    const kh = join(dir, 'known_hosts');
    writeFileSync(kh, `[127.0.0.1]:2222 ${readFileSync(join(dir, 'other.pub'), 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
    const r = await start(['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', KEY, '--known-hosts', kh, '--partition', 'debug']);
    expect(r.exitCode).toBe(3);
    const err = JSON.parse(r.stdout).error;
    expect(err.message).toMatch(/has CHANGED/);
    expect(err.hint).toMatch(/ssh-keygen -R/);
  });

  it('a wrong user or a wrong key is a clear authentication error, never a password prompt', async () => {
    const wrongUser = await start(SSH_FLAGS, testEnv({ SLURM_USER: 'nosuchuser' }).env);
    expect(wrongUser.exitCode).toBe(3);
    expect(JSON.parse(wrongUser.stdout).error.message).toMatch(/SSH authentication as nosuchuser@127\.0\.0\.1:2222 failed/);

    const dir = mkdtempSync(join(tmpdir(), 'tao-infer-key-'));
    sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'stranger')]);
    const wrongKey = await start(['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', join(dir, 'stranger'), '--known-hosts', KNOWN, '--partition', 'debug'], testEnv({ SSH_AUTH_SOCK: '' }).env);
    expect(wrongKey.exitCode).toBe(3);
    const err = JSON.parse(wrongKey.stdout).error;
    expect(err.message).toMatch(/SSH authentication as root@127\.0\.0\.1:2222 failed/);
    expect(err.hint).toMatch(/authorized_keys/);

    const noFile = await start(['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', join(dir, 'missing'), '--known-hosts', KNOWN, '--partition', 'debug']);
    expect(noFile.exitCode).toBe(3);
    expect(JSON.parse(noFile.stdout).error.message).toMatch(/cannot read identity file/);
  });

  it('an unknown partition is refused before anything is submitted', async () => {
    const t = testEnv();
    const r = await start(['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', KEY, '--known-hosts', KNOWN, '--partition', 'nosuchpart'], t.env);
    expect(r.exitCode).toBe(3);
    expect(JSON.parse(r.stdout).error.message).toMatch(/partition nosuchpart does not exist/);
  });
});
