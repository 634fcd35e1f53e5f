/**
 * slurm edge cases through the built CLI, against the real servers test/infra/setup.sh runs on loopback
 * (test/helpers/slurm.ts): OpenSSH on 127.0.0.1:2222 (the "login node"), munge, slurmctld + slurmd with 4 fake GPUs,
 * and the Docker engine with the stand-in test image. The platform contract (pending → running → tunnel → ready →
 * request → logs → tunnel restart → stop for both container runtimes, a job that fails at once, interrupted starts,
 * the canary) is in test/contract/ (harnesses/slurm.ts).
 *
 * Checked here: stop of a pending job, authentication through ssh-agent, the tunnel forwarder on its own (exits
 * once the Slurm job has ended), and unknown/changed host keys, wrong user and wrong key giving clear errors.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, parseJson, runCli, type CliResult } from '../helpers/cli.js';
import { isAlive as alive } from '../../src/util/detached.js';
import { CANARY } from '../helpers/canary.js';
import { ensureTestImage } from '../helpers/docker.js';
import { portFree, portOpen } from '../helpers/net.js';
import { entryWithSlurmJob, jobDirOf, KEY, KNOWN, NODE_ADDR, scancel, sh, slurmTestEnv as testEnv, squeue, SSH_FLAGS, submitBlocker } from '../helpers/slurm.js';
import { waitFor } from '../helpers/wait.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');

const slurmJobs: string[] = [];
const forwarders: number[] = [];
/** job_ids whose job directory (on the "cluster", i.e. this machine) the tests created. */
const jobDirs: string[] = [];

beforeAll(async () => {
  ensureTestImage();
  expect(existsSync(KNOWN), `${KNOWN} missing: run test/infra/setup.sh`).toBe(true);
  expect(sh('sinfo', ['-h', '-o', '%P %a']).trim()).toMatch(/debug/);
  // The stand-in listens on node port 8080 of this machine: nothing else may hold it (test files run serially).
  await waitFor('port 8080 on this machine to be free for the node service', async () => (await portFree(8080)) || undefined, 60_000);
}, 240_000);

afterAll(() => {
  scancel(slurmJobs);
  for (const pid of forwarders) if (alive(pid)) process.kill(pid, 'SIGTERM');
  for (const id of jobDirs) rmSync(jobDirOf(id), { recursive: true, force: true });
});

describe('slurm host memory and CPUs (the test cluster schedules and enforces memory: CR_Core_Memory, DefMemPerCPU=256, OverMemoryKill)', () => {
  const startWith = (t: ReturnType<typeof testEnv>, extra: string[]) =>
    runCli(
      ['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...SSH_FLAGS, '--container-runtime', 'none', '--env', 'PATH', '--allow-env-override', '--env', 'STANDIN_LOAD_MB', '--timeout', '120', '--json', ...extra],
      { env: t.env },
    );

  it('a service holding 600 MB of weights runs: the job asks for the arch\'s --mem=64G and --cpus-per-task=8 by default', async () => {
    const t = testEnv({ STANDIN_LOAD_MB: '600' });
    const r = await startWith(t, []);
    const entry = r.exitCode === 0 ? parseJson(r) : undefined;
    if (entry) {
      slurmJobs.push(entry.platform_job_id);
      forwarders.push(entry.forwarder_pid);
      jobDirs.push(entry.job_id);
    }
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const job = sh('scontrol', ['show', 'job', '-o', entry.platform_job_id]);
    expect(job).toMatch(/\bMinMemoryNode=64G\b/);
    expect(job).toMatch(/\bNumCPUs=8\b/);
    const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
  });

  it('the same service given only DefMemPerCPU-sized memory is killed while loading, with Slurm\'s reason in the log tail', async () => {
    const t = testEnv({ STANDIN_LOAD_MB: '600' });
    // What a job without a memory request gets on this cluster: 256 MB per CPU, 1 CPU.
    const r = await startWith(t, ['--sbatch-arg', '--mem-per-cpu=256M', '--cpus-per-task', '1']);
    expect(r.exitCode).not.toBe(0);
    const err = JSON.parse(r.stdout).error;
    const jobId = /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/.exec(err.message)?.[1];
    if (jobId) jobDirs.push(jobId);
    expect(`${err.message}\n${(err.log_tail ?? []).join('\n')}`).toMatch(/exceeded (job )?memory limit/i);
    const reg = existsSync(t.stateFile) ? JSON.parse(readFileSync(t.stateFile, 'utf8')) : {};
    expect(Object.keys(reg).filter((k) => k !== 'latest')).toEqual([]);
  });
});

describe('slurm stop of a pending job', () => {
  it('cancels it, removes its secrets file, and the waiting start fails with the CANCELLED state', async () => {
    const t = testEnv();
    const blocker = submitBlocker(false);
    slurmJobs.push(blocker);
    try {
      const startP = execa(process.execPath, [CLI, 'start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...SSH_FLAGS, '--container-runtime', 'none', '--env', 'PATH', '--allow-env-override', '--json'], {
        reject: false,
        env: { CI: 'true', NO_COLOR: '1', ...t.env },
        stdin: 'ignore',
        timeout: 120_000,
      });
      const e = await waitFor('the Slurm job id in the registry', () => entryWithSlurmJob(t.stateFile), 60_000, 250);
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
      const start = await runCli(['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', ...flags, '--container-runtime', 'none', '--env', 'PATH', '--allow-env-override', '--timeout', '120', '--json'], { env: t.env });
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
    const fwd = execa(process.execPath, [join(ROOT, 'dist/src/platforms/slurm/tunnel.js'), '--job-id', 'tunnel-test', '--slurm-job-id', job, '--user', 'root', '--host', '127.0.0.1', '--port', '2222', '--identity-file', KEY, '--known-hosts', KNOWN, '--node', NODE_ADDR, '--remote-port', '8080', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--watch-interval', '1'], {
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
