/**
 * The test Slurm cluster that test/infra/setup.sh runs on this machine: OpenSSH on 127.0.0.1:2222 (the "login
 * node"), munge, slurmctld + slurmd with 4 fake h100 GPUs on one node, and partition `debug`. The node's name
 * (tao-node-x) does not resolve; Slurm reaches it at NodeAddr 127.0.0.1, as tao-infer's tunnel must. Shared by test/integration/slurm.test.ts and the slurm harness of the contract suite.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CANARY } from './canary.js';
import { ROOT } from './cli.js';
import { TEST_IMAGE } from './docker.js';

const INFRA = '/tmp/tao-infer-infra/ssh';
/** The Slurm node of partition debug, as the cluster names it (`sinfo`; setup.sh: tao-node-x, which does not resolve). */
export const NODE = ask('sinfo', ['-h', '-N', '-p', 'debug', '-o', '%N']).trim().split('\n')[0] ?? '';
/** Where that node is reached: its NodeAddr (`scontrol show node`), 127.0.0.1 here. */
export const NODE_ADDR = /(?:^|\s)NodeAddr=(\S+)/.exec(NODE ? ask('scontrol', ['show', 'node', '-o', NODE]) : '')?.[1] ?? '';

/** stdout of a Slurm query, '' when the cluster is not running (the suites that need it check it in their setup). */
function ask(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
  } catch {
    return '';
  }
}
export const KEY = join(INFRA, 'client_key');
export const KNOWN = join(INFRA, 'known_hosts');
export const STANDIN_BIN = join(ROOT, 'test/fixtures/standin/bin');
/** `start` flags that reach the test cluster with the test key. */
export const SSH_FLAGS = ['--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', KEY, '--known-hosts', KNOWN, '--partition', 'debug'];

/** Run a command on this machine, resolve its stdout; throws on non-zero exit. */
export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The job directory of a service on the "cluster" (this machine, user root). */
export const jobDirOf = (jobId: string): string => join(homedir(), '.tao-infer', 'jobs', jobId);

/** squeue line for a job (`STATE|NODE`), '' once Slurm no longer lists it as pending/running. */
export function squeue(id: string): string {
  try {
    return sh('squeue', ['-j', id, '-h', '-o', '%T|%N']).trim();
  } catch {
    return '';
  }
}

/** Slurm job ids of pending/running jobs named `name` (tao-infer names a service's job after its job_id). */
export function jobsNamed(name: string): string[] {
  try {
    return sh('squeue', ['-h', '-n', name, '-o', '%i']).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** Cancel Slurm jobs, ignoring ones already gone. */
export function scancel(ids: string[]): void {
  for (const id of ids) {
    try {
      sh('scancel', [id]);
    } catch {
      /* already gone */
    }
  }
}

/** Submit a job holding all GPUs of the node (so a service job has to wait in PENDING); resolves its Slurm job id. */
export function submitBlocker(gres = true): string {
  return sh('sbatch', ['--parsable', '--job-name=tao-infer-test-blocker', '--partition=debug', '--exclusive', ...(gres ? ['--gres=gpu:4'] : []), '--output=/dev/null', '--wrap=sleep 300']).trim();
}

/** Environment for a CLI run against the test cluster: own registry, canary as HF_TOKEN, stand-in on PATH. */
export function slurmTestEnv(extra: Record<string, string> = {}): { env: Record<string, string>; stateFile: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tao-infer-slurm-'));
  const stateFile = join(dir, 'state.json');
  return {
    dir,
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

/** The first registry entry that has a Slurm job id, or undefined (no registry yet, or sbatch not answered yet). */
export function entryWithSlurmJob(stateFile: string): { platform_job_id: string; job_id: string } | undefined {
  if (!existsSync(stateFile)) return undefined;
  const reg = JSON.parse(readFileSync(stateFile, 'utf8'));
  return Object.values(reg).find((v): v is { platform_job_id: string; job_id: string } => typeof v === 'object' && v !== null && 'platform_job_id' in v);
}
