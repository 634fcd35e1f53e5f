/**
 * slurm on clusters as they are (issue 11 point 5), through the built CLI against the real servers
 * test/infra/setup.sh runs on loopback (test/helpers/slurm.ts): OpenSSH on 127.0.0.1:2222 (the "login node"),
 * slurmctld + slurmd and the Docker engine with the stand-in test image.
 *
 * The test cluster is set up like real ones where it matters here: its node is named tao-node-x, a name that does
 * not resolve (NodeAddr=127.0.0.1; every start here tunnels to the NodeAddr), and its GPUs are typed
 * (Gres=gpu:h100:4, gres.conf Type=h100).
 *
 * Checked: --gpu-type h100 is scheduled as --gres=gpu:h100:1 and a type the cluster lacks is refused with Slurm's
 * own message; --container-runtime apptainer on a node with only `singularity` (a recording stand-in on PATH) uses
 * it and hands it the nvcr.io pull login from NGC_KEY in the environment; --container-runtime docker runs two
 * services on the one node at once on node ports Docker picked, and a container whose batch script was SIGKILLed
 * (so its EXIT trap never ran) is removed by `stop` through its Slurm job id label.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive as alive } from '../../src/util/detached.js';
import { CANARY } from '../helpers/canary.js';
import { ROOT, parseJson, runCli } from '../helpers/cli.js';
import { docker, ensureTestImage } from '../helpers/docker.js';
import { portFree } from '../helpers/net.js';
import { jobDirOf, KNOWN, NODE, NODE_ADDR, scancel, sh, slurmTestEnv as testEnv, squeue, SSH_FLAGS, STANDIN_BIN } from '../helpers/slurm.js';
import { waitFor } from '../helpers/wait.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const FAKE_CT_BIN = join(ROOT, 'test/fixtures/fake-apptainer');
const MODEL = ['--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B'];

const slurmJobs: string[] = [];
const forwarders: number[] = [];
const jobDirs: string[] = [];
const slurmIdsWithContainers: string[] = [];

/** Containers carrying the Slurm job id label the docker runtime sets. */
const containersOf = (slurmId: string): string[] => docker(['ps', '-aq', '--filter', `label=tao-infer.slurm_job_id=${slurmId}`]).out.split('\n').filter(Boolean);

function track(entry: { platform_job_id: string; job_id: string; forwarder_pid?: number }): void {
  slurmJobs.push(entry.platform_job_id);
  jobDirs.push(entry.job_id);
  if (entry.forwarder_pid) forwarders.push(entry.forwarder_pid);
}

beforeAll(async () => {
  ensureTestImage();
  expect(existsSync(KNOWN), `${KNOWN} missing: run test/infra/setup.sh`).toBe(true);
  expect(NODE_ADDR).toBe('127.0.0.1');
  // The node name is Slurm's only: nothing resolves it, so a tunnel to it could not work.
  expect(() => sh('getent', ['hosts', NODE]), `${NODE} resolves: re-run test/infra/setup.sh`).toThrow();
  expect(sh('sinfo', ['-h', '-N', '-o', '%G']).trim()).toBe('gpu:h100:4');
  // Runtimes none and apptainer use the node's host network: the stand-in listens on port 8080 of this machine.
  await waitFor('port 8080 on this machine to be free for the node service', async () => (await portFree(8080)) || undefined, 60_000, 250);
}, 240_000);

afterAll(() => {
  scancel(slurmJobs);
  for (const pid of forwarders) if (alive(pid)) process.kill(pid, 'SIGTERM');
  for (const id of slurmIdsWithContainers) {
    const left = containersOf(id);
    if (left.length) docker(['rm', '-f', ...left]);
  }
  for (const id of jobDirs) rmSync(jobDirOf(id), { recursive: true, force: true });
});

describe('slurm typed GRES (the test cluster declares Gres=gpu:h100:4)', () => {
  it('--gpu-type h100 is scheduled as gpu:h100; a type the cluster lacks is refused with Slurm\'s message and no entry', async () => {
    const t = testEnv();
    const flags = ['start', '--platform', 'slurm', ...MODEL, ...SSH_FLAGS, '--container-runtime', 'none', '--env', 'PATH', '--allow-env-override', '--num-gpus', '1', '--timeout', '120', '--json'];
    const ok = await runCli([...flags, '--gpu-type', 'h100'], { env: t.env });
    const entry = ok.exitCode === 0 ? parseJson(ok) : undefined;
    if (entry) track(entry);
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    expect(readFileSync(join(jobDirOf(entry.job_id), 'job.sbatch'), 'utf8')).toMatch(/^#SBATCH --gres=gpu:h100:1$/m);
    expect(sh('scontrol', ['show', 'job', '-o', entry.platform_job_id])).toMatch(/\bTresPerNode=gres:gpu:h100:1\b/);
    const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);

    const t2 = testEnv();
    const bad = await runCli([...flags, '--gpu-type', 'a100'], { env: t2.env });
    expect(bad.exitCode).toBe(3);
    const err = JSON.parse(bad.stdout).error;
    expect(err.message).toMatch(/Requested node configuration is not available/); // sbatch's own words
    expect(err.hint).toMatch(/--gres=gpu:a100:1 .*sinfo -p debug -o '%G %c %m'.*--gpu-type/);
    const reg = existsSync(t2.stateFile) ? JSON.parse(readFileSync(t2.stateFile, 'utf8')) : {};
    const jobId = Object.keys(reg).find((k) => k !== 'latest');
    if (jobId) jobDirs.push(jobId);
    expect(jobId).toBeUndefined();
  });
});

describe('slurm apptainer runtime on a node that only has singularity', () => {
  it('runs singularity with the nvcr.io login from NGC_KEY in its environment; the key is on no command line, in no file but secrets.env', async () => {
    const ngcKey = `${CANARY}-ngc`;
    const dir = mkdtempSync(join(tmpdir(), 'tao-infer-fake-ct-'));
    const record = join(dir, 'ct-record.txt');
    const t = testEnv({
      NGC_KEY: ngcKey,
      FAKE_CT_RECORD: record,
      IMAGE_COSMOS_RL: 'nvcr.io/nvidia/tao/tao-toolkit:6.25.11-pyt',
      PATH: `${FAKE_CT_BIN}:${STANDIN_BIN}:${process.env.PATH}`,
    });
    const start = await runCli(['start', '--platform', 'slurm', ...MODEL, ...SSH_FLAGS, '--container-runtime', 'apptainer', '--env', 'PATH', '--allow-env-override', '--env', 'FAKE_CT_RECORD', '--num-gpus', '1', '--timeout', '120', '--json'], { env: t.env });
    const entry = start.exitCode === 0 ? parseJson(start) : undefined;
    if (entry) track(entry);
    expect(start.exitCode, start.stdout + start.stderr).toBe(0);
    const req = await runCli(['request', '--job', entry.job_id, '--prompt', 'hi', '--image', PNG, '--json'], { env: t.env });
    expect(req.exitCode, req.stderr).toBe(0);

    const rec = readFileSync(record, 'utf8');
    const sha = createHash('sha256').update(ngcKey).digest('hex');
    expect(rec).toContain('tool=singularity');
    expect(rec).toMatch(/^args=exec --nv docker:\/\/nvcr\.io\/nvidia\/tao\/tao-toolkit:6\.25\.11-pyt \/bin\/sh -c /m);
    expect(rec).toContain('APPTAINER_DOCKER_USERNAME=$oauthtoken');
    expect(rec).toContain('SINGULARITY_DOCKER_USERNAME=$oauthtoken');
    expect(rec).toContain(`APPTAINER_DOCKER_PASSWORD.sha256=${sha}`);
    expect(rec).toContain(`SINGULARITY_DOCKER_PASSWORD.sha256=${sha}`);
    expect(rec).toContain('NGC_KEY=unset'); // not passed on to the service: it only logs the pull in
    const jobDir = jobDirOf(entry.job_id);
    expect(readFileSync(join(jobDir, 'secrets.env'), 'utf8')).toContain(ngcKey); // arrived on SSH stdin
    expect(sh('ps', ['-eo', 'args'])).not.toContain(ngcKey);

    const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(existsSync(join(jobDir, 'secrets.env'))).toBe(false);
    for (const f of ['job.sbatch', 'job.log']) expect(readFileSync(join(jobDir, f), 'utf8')).not.toContain(ngcKey);
    expect(start.stdout + start.stderr + req.stdout + stop.stdout + stop.stderr).not.toContain(ngcKey);
    expect(readFileSync(t.stateFile, 'utf8')).not.toContain(ngcKey);
    for (const d of [dir, t.dir]) rmSync(d, { recursive: true, force: true });
  });
});

describe('slurm docker runtime', () => {
  it('two services share the node on ports Docker picked; a SIGKILLed batch script leaves its container, which stop removes', async () => {
    const startOne = async () => {
      const t = testEnv();
      const r = await runCli(['start', '--platform', 'slurm', ...MODEL, ...SSH_FLAGS, '--container-runtime', 'docker', '--num-gpus', '0', '--timeout', '180', '--json'], { env: t.env });
      const entry = r.exitCode === 0 ? parseJson(r) : undefined;
      if (entry) {
        track(entry);
        slurmIdsWithContainers.push(entry.platform_job_id);
      }
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      return { t, entry };
    };
    const a = await startOne();
    const b = await startOne();
    expect(a.entry.platform_data.service_port).not.toBe(b.entry.platform_data.service_port);
    expect(squeue(a.entry.platform_job_id)).toBe(`RUNNING|${NODE}`);
    expect(squeue(b.entry.platform_job_id)).toBe(`RUNNING|${NODE}`);
    for (const s of [a, b]) {
      const req = await runCli(['request', '--job', s.entry.job_id, '--prompt', 'hi', '--image', PNG, '--json'], { env: s.t.env });
      expect(req.exitCode, req.stderr).toBe(0);
      expect(containersOf(s.entry.platform_job_id)).toHaveLength(1);
    }

    // SIGKILL of the batch script: its EXIT trap cannot run, the job ends, the container (a child of dockerd) stays.
    sh('scancel', ['--batch', '--signal=KILL', a.entry.platform_job_id]);
    await waitFor('the killed job to end', () => squeue(a.entry.platform_job_id) === '' || undefined, 60_000, 250);
    expect(containersOf(a.entry.platform_job_id)).toHaveLength(1);
    const stopA = await runCli(['stop', a.entry.job_id, '--json'], { env: a.t.env });
    expect(stopA.exitCode, stopA.stderr).toBe(0);
    expect(containersOf(a.entry.platform_job_id)).toEqual([]);

    // the other service still answers, and its normal stop leaves nothing either
    const again = await runCli(['request', '--job', b.entry.job_id, '--prompt', 'still there?', '--image', PNG, '--json'], { env: b.t.env });
    expect(again.exitCode, again.stderr).toBe(0);
    const stopB = await runCli(['stop', b.entry.job_id, '--json'], { env: b.t.env });
    expect(stopB.exitCode, stopB.stderr).toBe(0);
    expect(containersOf(b.entry.platform_job_id)).toEqual([]);
    for (const s of [a, b]) rmSync(s.t.dir, { recursive: true, force: true });
  });
});
