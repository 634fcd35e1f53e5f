/**
 * What the platform contract suite (platform-contract.test.ts) needs to know about one platform: how to set up
 * its environment (real Docker, real Slurm + sshd, or a faithful fake), which `start` flags reach it, how to make
 * a start fail or hang, and how to list what a service left behind there. One object per platform (or platform
 * variant) under harnesses/; the suite runs the same cases over all of them.
 */
import { mkdirSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CliResult } from '../helpers/cli.js';

/** A CLI environment of its own for one test: registry file, private TMPDIR (forwarder logs go there), env vars. */
export interface ContractEnv {
  dir: string;
  stateFile: string;
  /** TMPDIR of every CLI run: after a stop or a failed start no file may be left in it. */
  tmp: string;
  env: Record<string, string>;
}

/** A fresh temp dir with a registry path, a private TMPDIR and `env` (TAO_INF_STATE_FILE and TMPDIR set). */
export function contractEnv(prefix: string, env: Record<string, string> = {}): ContractEnv {
  const dir = mkdtempSync(join(tmpdir(), `tao-contract-${prefix}-`));
  const stateFile = join(dir, 'state.json');
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp);
  return { dir, stateFile, tmp, env: { ...env, TAO_INF_STATE_FILE: stateFile, TMPDIR: tmp } };
}

/** A ContractEnv around an existing test env (its dir, registry file and env), with a private TMPDIR inside dir. */
export function withTmp(base: { dir: string; stateFile: string; env: Record<string, string> }): ContractEnv {
  const tmp = join(base.dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  return { dir: base.dir, stateFile: base.stateFile, tmp, env: { ...base.env, TAO_INF_STATE_FILE: base.stateFile, TMPDIR: tmp } };
}

/** Files (not directories) below `dir`, as paths relative to it. */
export function filesBelow(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p, join(rel, name));
      else out.push(join(rel, name));
    }
  };
  walk(dir, '');
  return out;
}

/** State of one lifecycle run, shared by the suite and the harness hooks. */
export interface Run {
  t: ContractEnv;
  /** Every stdout/stderr of the run (checked for the canary at the end). */
  outputs: string[];
  /** Push a CLI result's stdout and stderr into `outputs`, return it. */
  keep(r: CliResult): CliResult;
  /** Free slots for a harness to carry values from one hook to the next. */
  state: Record<string, any>;
}

/** One start → request run: the arch, its model and request flags, and arch-specific checks of the answer. */
export interface LifecycleCase {
  arch: string;
  model: string;
  /** Extra `start` flags of the arch (e.g. --model-key). */
  startArgs?: string[];
  /** `request` flags after `--json` (with `--job entry.job_id` unless the case means the latest service). */
  request: (run: Run, entry: any) => string[];
  /** Arch-specific checks of the completion (the `request --json` document). */
  check?: (completion: any, entry: any, run: Run, req: CliResult) => void | Promise<void>;
}

/** How to make the service do something at start: extra `start` flags and env, and fake knobs to arm first. */
export interface StartTweak {
  args?: string[];
  env?: Record<string, string>;
  arm?: (t: ContractEnv) => void;
}

/** One platform (or platform variant) under the contract suite. */
export interface Harness {
  /** Describe title. */
  label: string;
  /** The `platform` field of its registry entries. */
  platform: string;
  /** Once before the harness's tests (image build, fake server start); throws when the platform is not usable. */
  setup(): Promise<void>;
  /** Once after: stop fakes, remove whatever a failed test left (by recorded ids only). */
  teardown(): Promise<void>;
  /** After each test (e.g. reset a fake). */
  afterEach?(): Promise<void> | void;
  /** A fresh environment for one test. */
  newEnv(): ContractEnv;
  /** `start` flags that reach this platform (`--platform X ...`, GPUs), before the case's own flags. */
  startFlags(t: ContractEnv): string[];
  /** Lifecycle cases to run (an arch each). */
  cases: LifecycleCase[];
  /** Fields `ls --json` reports in `live` besides `state: 'running'` (e.g. the platform's native state). */
  live?: Record<string, unknown>;
  /** Checks of the `ls --json` document once it reports the service running. */
  afterList?(listed: any[], entry: any): void;
  /** Checks of what `logs --tail 50` printed (besides the stand-in's `[standin]` lines the suite checks). */
  afterLogs?(stdout: string): void;
  /** Extra `stop` flags of the lifecycle (e.g. brev's --delete-instance) and what `stop --json` then prints. */
  stopArgs?: string[];
  stopJson?: (entry: any) => Record<string, unknown>;
  /** Hooks of the lifecycle run, for the platform's own checks at each step. */
  beforeStart?(run: Run): Promise<void> | void;
  /** Runs while `start` is still running (e.g. the Slurm job waits in PENDING). */
  whileStarting?(run: Run): Promise<void>;
  afterStart?(entry: any, run: Run, start: CliResult): Promise<void> | void;
  afterRequest?(completion: any, entry: any, run: Run): Promise<void> | void;
  beforeStop?(entry: any, run: Run): Promise<void> | void;
  afterStop?(entry: any, run: Run, stop: CliResult): Promise<void> | void;
  /** A service that crashes while loading, and the exit codes and error the CLI then reports. */
  crash: StartTweak & { exitCodes: number[]; check(err: any, r: CliResult, run: Run): void | Promise<void> };
  /** A service that never becomes ready (for the interrupted starts). */
  hang: StartTweak;
  /** True once the service exists on the platform (container/job/pod/deployment), for the interrupted starts. */
  launched(jobId: string, t: ContractEnv): Promise<boolean>;
  /** What the service `jobId` left on the platform (containers, jobs, objects, remote files); [] when nothing. */
  leftovers(jobId: string, t: ContractEnv): Promise<string[]>;
  /** Strings that mark this test's local processes (forwarders) besides the job_id, e.g. a per-test config path. */
  processMarkers?(t: ContractEnv): string[];
  /** Extra places the canary must not be in (argv logs of shims and fakes, request bodies, objects). */
  secretPlaces(t: ContractEnv): Array<[string, string]>;
  /** Files the canary must not be in (job script and log on the cluster...), for a service `jobId`. */
  secretFiles?(jobId: string, t: ContractEnv): string[];
  /** Further secret values to look for (besides the shared canary). */
  secrets?: string[];
  /** Record a job_id this harness must clean up at teardown if a test fails before stop. */
  track(jobId: string, entry?: any): void;
}
