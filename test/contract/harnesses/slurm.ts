/**
 * slurm against the real servers test/infra/setup.sh runs on loopback: OpenSSH on 127.0.0.1:2222 (the "login
 * node"), munge, slurmctld + slurmd with 4 fake GPUs, and the Docker engine with the stand-in test image; once with
 * `--container-runtime none` (stand-in executables on PATH of the node) and once with `--container-runtime docker`.
 *
 * Its lifecycle also checks: pending (a blocker job holds all GPUs) → running, `ls` reporting pending, the secrets
 * file (mode 600 while the job runs, gone after stop), the job script, the process table on both sides during the
 * run, the tunnel (kill the forwarder: the URL goes dead, `tunnel` brings it back on the same port), `logs -f`
 * interrupted (the remote tail goes away) and `logs -f` following until the job ends; after stop the Slurm job is
 * gone, the service's node port (8080; docker: the one Docker picked) is closed, the forwarder no longer exists, its local port is free and its log is removed.
 */
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { isAlive as alive } from '../../../src/util/detached.js';
import { CANARY } from '../../helpers/canary.js';
import { CLI, ROOT, parseJson, runCli, type CliResult } from '../../helpers/cli.js';
import { docker, ensureTestImage, TEST_IMAGE } from '../../helpers/docker.js';
import { portFree, portOpen } from '../../helpers/net.js';
import { RANGE } from '../../helpers/ports.js';
import { entryWithSlurmJob, jobDirOf, jobsNamed, KNOWN, NODE, NODE_ADDR, scancel, sh, slurmTestEnv, squeue, SSH_FLAGS, submitBlocker } from '../../helpers/slurm.js';
import { waitFor } from '../../helpers/wait.js';
import { withTmp, type Harness, type Run } from '../harness.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');

function slurmHarness(runtime: 'none' | 'docker'): Harness {
  const slurmJobs: string[] = [];
  const forwarders: number[] = [];
  const containers: string[] = [];
  /** job_ids whose job directory (on the "cluster", i.e. this machine) the tests created. */
  const jobDirs: string[] = [];
  const runtimeFlags = runtime === 'none' ? ['--env', 'PATH', '--allow-env-override', '--num-gpus', '1'] : ['--num-gpus', '0'];

  return {
    label: `slurm --container-runtime ${runtime} (real Slurm + sshd)`,
    platform: 'slurm',
    async setup() {
      ensureTestImage();
      expect(existsSync(KNOWN), `${KNOWN} missing: run test/infra/setup.sh`).toBe(true);
      expect(sh('sinfo', ['-h', '-o', '%P %a']).trim()).toMatch(/debug/);
      // As on real clusters, the node name is Slurm's only: it does not resolve, tunnels must use its NodeAddr.
      expect(() => sh('getent', ['hosts', NODE]), `${NODE} resolves: re-run test/infra/setup.sh`).toThrow();
      // none: the stand-in listens on node port 8080 of this machine, nothing else may hold it (test files run
      // serially); docker publishes it on a free port Docker picks.
      if (runtime !== 'docker') await waitFor('port 8080 on this machine to be free for the node service', async () => (await portFree(8080)) || undefined, 60_000, 250);
    },
    async teardown() {
      scancel(slurmJobs.splice(0));
      for (const pid of forwarders.splice(0)) if (alive(pid)) process.kill(pid, 'SIGTERM');
      if (containers.length) docker(['rm', '-f', ...containers.splice(0)]);
      for (const id of jobDirs) scancel(jobsNamed(id));
      for (const id of jobDirs.splice(0)) rmSync(jobDirOf(id), { recursive: true, force: true });
    },
    newEnv: () => withTmp(slurmTestEnv()),
    startFlags: () => ['--platform', 'slurm', ...SSH_FLAGS, '--container-runtime', runtime, ...runtimeFlags],
    cases: [
      {
        arch: 'cosmos-rl',
        model: 'hf_model://nvidia/Cosmos-Reason1-7B',
        request: (_run, entry) => ['--job', entry.job_id, '--prompt', 'What is in the picture?', '--image', PNG],
      },
    ],

    beforeStart(run) {
      // Hold all 4 GPUs so the service job has to wait in PENDING first.
      run.state.blocker = submitBlocker();
      slurmJobs.push(run.state.blocker);
    },
    async whileStarting(run) {
      const t = run.t;
      // pending: the registry entry has a Slurm job id and `ls` reports pending while the blocker runs.
      const jobId = await waitFor('the Slurm job id in the registry', () => entryWithSlurmJob(t.stateFile), 60_000, 250);
      run.state.jobId = jobId;
      slurmJobs.push(jobId.platform_job_id);
      jobDirs.push(jobId.job_id);
      expect(squeue(jobId.platform_job_id)).toMatch(/^PENDING\|/);
      const lsPending = run.keep(await runCli(['ls', '--json'], { env: t.env }));
      expect(lsPending.exitCode, lsPending.stderr).toBe(0);
      expect(parseJson(lsPending)).toEqual([expect.objectContaining({ job_id: jobId.job_id, live: expect.objectContaining({ state: 'pending', native: 'PENDING' }) })]);
      if (runtime === 'docker') containers.push(jobId.job_id);
      // running: release the GPUs.
      sh('scancel', [run.state.blocker]);
    },
    afterStart(entry, run, start) {
      forwarders.push(entry.forwarder_pid);
      expect(entry).toMatchObject({ platform: 'slurm', platform_job_id: run.state.jobId.platform_job_id, slurm_node: NODE, ready: true });
      expect(entry.host_url).toBe(`http://localhost:${entry.host_port}`);
      expect(entry.host_port).toBeGreaterThanOrEqual(RANGE.min);
      expect(entry.host_port).toBeLessThanOrEqual(RANGE.max);
      expect(start.stderr).toMatch(/PENDING/);
      expect(start.stderr).toMatch(/RUNNING/);
      expect(squeue(entry.platform_job_id)).toBe(`RUNNING|${NODE}`);
      expect(alive(entry.forwarder_pid)).toBe(true);
      expect(entry.platform_data).toMatchObject({ ssh_user: 'root', ssh_host: '127.0.0.1', ssh_port: 2222, container_runtime: runtime, node_addr: NODE_ADDR });

      // the secrets file on the cluster: mode 600 while the job runs; the job script holds no value.
      const jobDir = jobDirOf(entry.job_id);
      const secrets = join(jobDir, 'secrets.env');
      run.state.secrets = secrets;
      expect(statSync(secrets).mode & 0o777).toBe(0o600);
      expect(readFileSync(secrets, 'utf8')).toContain(CANARY); // the value did arrive, through stdin
      const script = readFileSync(join(jobDir, 'job.sbatch'), 'utf8');
      expect(script).toContain(`#SBATCH --job-name=${entry.job_id}`);
      if (runtime === 'docker') {
        // Docker picked a free node port (read back from the job's service_port file); the container carries the Slurm job id.
        expect(script).toContain(`docker run --rm --name ${entry.job_id} -p 8080 `);
        expect(entry.platform_data.service_port).toBe(Number(readFileSync(join(jobDir, 'service_port'), 'utf8').trim()));
        expect(docker(['ps', '--filter', `label=tao-infer.slurm_job_id=${entry.platform_job_id}`, '--format', '{{.Names}}']).out.trim()).toBe(entry.job_id);
        expect(docker(['ps', '--filter', `name=${entry.job_id}`, '--format', '{{.Image}}']).out.trim()).toBe(TEST_IMAGE);
      } else expect(script).toMatch(/^#SBATCH --gres=gpu:1$/m);
      // Both sides, while the job runs: the process table holds no secret value.
      const psNow = sh('ps', ['-eo', 'args']);
      expect(psNow).toContain('cosmos-rl');
      expect(psNow).not.toContain(CANARY);
    },
    afterRequest(completion) {
      expect(completion.tao_standin.backend).toBe('slurm');
    },
    afterLogs(stdout) {
      expect(stdout).toMatch(/\[standin\] .*ready to serve|listening/);
    },
    async beforeStop(entry, run: Run) {
      const t = run.t;
      // tunnel: kill the forwarder, the URL goes dead; `tunnel` brings it back on the same port.
      process.kill(entry.forwarder_pid, 'SIGKILL');
      await waitFor('the forwarder to die', () => !alive(entry.forwarder_pid) || undefined, 60_000, 250);
      expect(await portOpen(entry.host_port)).toBe(false);
      const lsDown = run.keep(await runCli(['ls', '--json'], { env: t.env }));
      expect(lsDown.stdout + lsDown.stderr).toMatch(/tunnel/);
      const tun = run.keep(await runCli(['tunnel', entry.job_id, '--json'], { env: t.env }));
      expect(tun.exitCode, tun.stderr).toBe(0);
      const after = parseJson(tun);
      run.state.after = after;
      forwarders.push(after.forwarder_pid);
      expect(after.forwarder_pid).not.toBe(entry.forwarder_pid);
      expect(after.host_url).toBe(entry.host_url);
      expect(alive(after.forwarder_pid)).toBe(true);
      const again = run.keep(await runCli(['request', '--job', entry.job_id, '--prompt', 'again', '--image', PNG, '--json'], { env: t.env }));
      expect(again.exitCode, again.stderr).toBe(0);
      const tunnelAgain = run.keep(await runCli(['tunnel', entry.job_id], { env: t.env }));
      expect(tunnelAgain.exitCode, tunnelAgain.stderr).toBe(0);
      expect(tunnelAgain.stdout).toMatch(/already running/);

      // logs -f interrupted by the user: the remote tail/watch loop goes away with it.
      const early = execa(process.execPath, [CLI, 'logs', entry.job_id, '-f'], { reject: false, env: { CI: 'true', ...t.env }, stdin: 'ignore', timeout: 60_000 });
      let earlyOut = '';
      early.stdout!.on('data', (d: Buffer) => (earlyOut += d.toString()));
      await waitFor('logs -f to print', () => earlyOut.includes('[standin]') || undefined, 60_000, 250);
      const remoteTail = () => sh('ps', ['-eo', 'args']).split('\n').filter((l) => l.startsWith('tail -F') && l.includes(entry.job_id));
      expect(remoteTail().length).toBe(1);
      early.kill('SIGINT');
      await early;
      await waitFor('the remote tail -F to end', () => remoteTail().length === 0 || undefined, 15_000, 250);
      run.outputs.push(earlyOut);

      // logs -f follows until the job ends (stop ends it).
      const follow = execa(process.execPath, [CLI, 'logs', entry.job_id, '-f', '--tail', '3'], { reject: false, env: { CI: 'true', ...t.env }, stdin: 'ignore', timeout: 120_000 });
      run.state.follow = follow;
      run.state.followed = '';
      follow.stdout!.on('data', (d: Buffer) => (run.state.followed += d.toString()));
      await waitFor('logs -f to print the tail', () => run.state.followed.includes('[standin]') || undefined, 60_000, 250);
      expect(run.state.followed).not.toMatch(/stop signal received/);

      // the forwarder's log holds no secret; stop removes it.
      const tunnelLog = readFileSync(entry.platform_data.tunnel_log, 'utf8');
      // The tunnel connects to the node's NodeAddr: the node name (tao-node-x) does not resolve.
      expect(tunnelLog).toContain(`listening on 127.0.0.1:${entry.host_port} -> ${NODE_ADDR}:${runtime === 'docker' ? entry.platform_data.service_port : 8080}`);
      expect(tunnelLog).not.toContain(CANARY);
    },
    async afterStop(entry, run) {
      expect(squeue(entry.platform_job_id)).toBe('');
      expect(sh('squeue', ['-j', entry.platform_job_id, '-h', '-t', 'all', '-o', '%T']).trim()).toMatch(/^(CANCELLED|COMPLETED|)$/);
      expect(await portOpen(runtime === 'docker' ? entry.platform_data.service_port : 8080)).toBe(false); // the service port on the node is closed
      expect(alive(run.state.after.forwarder_pid)).toBe(false);
      expect(await portFree(entry.host_port)).toBe(true);
      expect(existsSync(run.state.secrets)).toBe(false);
      expect(existsSync(entry.platform_data.tunnel_log)).toBe(false);
      if (runtime === 'docker') expect(docker(['ps', '-a', '--filter', `name=${entry.job_id}`, '--format', '{{.ID}}']).out.trim()).toBe('');

      // logs -f saw the lines written after it started, and ended by itself with the job.
      const fr = (await run.state.follow) as unknown as CliResult;
      run.outputs.push(run.state.followed, fr.stderr);
      expect(fr.exitCode, fr.stderr).toBe(0);
      expect(run.state.followed).toMatch(/stop signal received|CANCELLED/);
    },

    crash: {
      env: { STANDIN_CRASH_AT_START: '1' },
      args: ['--env', 'STANDIN_CRASH_AT_START'],
      exitCodes: [3],
      check(err, r) {
        expect(err.code).toBe('launch_failed');
        expect(err.message).toMatch(/ended FAILED with exit code [1-9]\d* before the service was reachable/);
        expect(err.log_tail.join('\n')).toMatch(/\[standin\]/);
        expect(r.stdout + r.stderr).not.toContain(CANARY);
        // the job directory keeps its log (with the crash) but not the secrets
        const jobId = /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/.exec(err.message)![1]!;
        const jobDir = jobDirOf(jobId);
        jobDirs.push(jobId);
        expect(readFileSync(join(jobDir, 'job.log'), 'utf8')).toMatch(/\[standin\]/);
        expect(existsSync(join(jobDir, 'secrets.env'))).toBe(false);
        expect(readFileSync(join(jobDir, 'job.log'), 'utf8')).not.toContain(CANARY);
      },
    },
    hang: { env: { STANDIN_READY_FILE: '/never-created' }, args: ['--env', 'STANDIN_READY_FILE'] }, // on the node: the model never finishes loading
    async launched(jobId) {
      return jobsNamed(jobId).some((id) => squeue(id).startsWith('RUNNING'));
    },
    async leftovers(jobId) {
      const left = jobsNamed(jobId).map((id) => `slurm job ${id} (${squeue(id)})`);
      if (existsSync(join(jobDirOf(jobId), 'secrets.env'))) left.push(`${jobDirOf(jobId)}/secrets.env`);
      if (runtime === 'docker') {
        const c = docker(['ps', '-a', '--filter', `name=${jobId}`, '--format', '{{.Names}}']).out.trim();
        if (c) left.push(`container ${c}`);
      }
      return left;
    },
    secretPlaces: () => [],
    secretFiles: (jobId) => [join(jobDirOf(jobId), 'job.sbatch'), join(jobDirOf(jobId), 'job.log')],
    track(jobId, entry) {
      if (!jobDirs.includes(jobId)) jobDirs.push(jobId);
      if (runtime === 'docker' && !containers.includes(jobId)) containers.push(jobId);
      if (entry?.platform_job_id && !slurmJobs.includes(entry.platform_job_id)) slurmJobs.push(entry.platform_job_id);
      if (entry?.forwarder_pid) forwarders.push(entry.forwarder_pid);
    },
  };
}

export const slurmNone = slurmHarness('none');
export const slurmDocker = slurmHarness('docker');
