/**
 * brev with the fake `brev` CLI (test/fakes/brev), whose `exec` runs on this machine against the real Docker engine,
 * and the real OpenSSH server of test/infra (127.0.0.1:2222) standing in for the instance's sshd (secret upload on
 * stdin, the -L forward). Every docker argv (test/fixtures/docker-shim) and every brev argv is recorded.
 * The fake instance shares this machine's loopback with local-docker services (127.0.0.1:8080...), so its
 * containers publish on 127.0.0.2 (--bind): the forward then targets that address on "the instance".
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { listInstances } from '../../../src/platforms/brev/adapter.js';
import { isAlive } from '../../../src/util/detached.js';
import { createFakeBrev, type FakeBrev } from '../../fakes/brev/helpers.js';
import { CANARY } from '../../helpers/canary.js';
import { ROOT } from '../../helpers/cli.js';
import { docker, dockerTestEnv, ensureTestImage, recordedArgv, removeContainers } from '../../helpers/docker.js';
import { RANGE } from '../../helpers/ports.js';
import { withTmp, type ContractEnv, type Harness } from '../harness.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const INSTANCE = 'cli-box';
/** The fake Brev account of each test env, by its dir. */
const fakes = new Map<string, FakeBrev>();
const started: string[] = [];
const fakeOf = (t: ContractEnv): FakeBrev => fakes.get(t.dir)!;

export const brev: Harness = {
  label: 'brev (fake brev CLI, real Docker + sshd)',
  platform: 'brev',
  async setup() {
    ensureTestImage();
  },
  async teardown() {
    removeContainers(started.splice(0));
  },
  newEnv() {
    const base = dockerTestEnv();
    const fb = createFakeBrev([{ name: INSTANCE, unreachable_execs: 1 }]);
    fakes.set(base.dir, fb);
    // The instance's docker network is the default one (tao_default), not the local-docker test network.
    const { DOCKER_NETWORK: _localNetwork, ...env } = base.env;
    return withTmp({ ...base, env: { ...env, ...fb.env, PATH: `${fb.env.PATH.split(':')[0]}:${base.env.PATH}`, STANDIN_LOAD_MS: '300' } });
  },
  startFlags: () => ['--platform', 'brev', '--instance', INSTANCE, '--num-gpus', '0', '--bind', '127.0.0.2'],
  live: { native: 'running' },
  cases: [
    {
      arch: 'cosmos-rl',
      model: 'hf_model://nvidia/Cosmos-Reason1-7B',
      request: (_run, entry) => ['--job', entry.job_id, '--prompt', 'What is in the picture?', '--image', PNG],
    },
  ],
  stopArgs: ['--delete-instance'],
  stopJson: (entry) => ({ stopped: [entry.job_id], failed: [], deleted_instances: [INSTANCE] }),
  async afterStart(entry, run, start) {
    expect(entry).toMatchObject({ platform: 'brev', network_arch: 'cosmos-rl', state: 'started', host_port: RANGE.min });
    expect(entry.platform_data).toMatchObject({ instance: INSTANCE, network: 'tao_default' });
    expect(entry.local_port).toBeGreaterThanOrEqual(RANGE.min);
    expect(entry.local_port).toBeLessThanOrEqual(RANGE.max);
    expect(entry.host_url).toBe(`http://localhost:${entry.local_port}`);
    expect(entry.docker_url).toBe(`http://${entry.job_id}:8080`);
    expect(isAlive(entry.forwarder_pid)).toBe(true);
    // probe progress was shown while the instance did not answer yet
    expect(start.stderr).toMatch(/waiting for Brev instance cli-box to answer/);

    // the container on "the instance": same docker invocation as local-docker
    const insp = JSON.parse(docker(['inspect', entry.job_id]).out)[0];
    expect(insp.State.Status).toBe('running');
    expect(insp.HostConfig.PortBindings['8080/tcp']).toEqual([{ HostIp: '127.0.0.2', HostPort: String(RANGE.min) }]);
    expect(insp.Config.Labels['tao-infer.job_id']).toBe(entry.job_id);
    expect(insp.HostConfig.NetworkMode).toBe('tao_default');
    // the secret env file was removed after docker read it
    expect(existsSync(join(homedir(), '.tao-infer', `${entry.job_id}.env`))).toBe(false);
    expect(readFileSync(`/proc/${entry.forwarder_pid}/cmdline`, 'utf8')).not.toContain(CANARY);
    expect(existsSync(entry.platform_data.forward_log)).toBe(true);
    run.state.forwardLog = entry.platform_data.forward_log;
  },
  afterRequest(completion) {
    expect(completion.choices[0].message.content).toContain('cosmos-rl saw 1 image(s)');
    expect(completion.tao_standin.backend).toBe('local-docker');
    expect(completion.tao_standin.media.map((m: { mime: string }) => m.mime)).toEqual(['image/png']);
  },
  afterLogs(stdout) {
    expect(stdout).not.toContain('__tao_infer_rc');
    expect(stdout).not.toMatch(/^cli-box$/m);
  },
  async afterStop(entry, run) {
    const fb = fakeOf(run.t);
    expect((await listInstances(run.t.env)).map((w) => w.name)).not.toContain(INSTANCE);
    expect(docker(['inspect', entry.job_id]).code).not.toBe(0);
    expect(isAlive(entry.forwarder_pid)).toBe(false);
    expect(existsSync(run.state.forwardLog)).toBe(false);
    const dockerArgv = recordedArgv(run.t.env.DOCKER_ARGV_LOG!);
    expect(dockerArgv.some((a) => a[0] === 'run' && a.includes('HF_TOKEN'))).toBe(true);
    const argv = JSON.stringify(fb.argvLog());
    expect(argv).toContain('docker run -d --name');
    expect(argv).toContain('-e HF_TOKEN');
  },
  crash: {
    env: { STANDIN_CRASH_AT_START: '1' },
    args: ['--env', 'STANDIN_CRASH_AT_START'],
    exitCodes: [4],
    check(err) {
      expect(err.code).toBe('service_failed');
      expect(err.message).toMatch(/exit code 3/);
      expect(err.message).toContain('CUDA error');
    },
  },
  hang: { env: { STANDIN_READY_FILE: '/never-created' }, args: ['--env', 'STANDIN_READY_FILE'] }, // in the container: the model never finishes loading
  async launched(jobId) {
    return docker(['inspect', '--format', '{{.State.Status}}', jobId]).out.trim() === 'running';
  },
  async leftovers(jobId) {
    const left = docker(['ps', '-a', '--filter', `label=tao-infer.job_id=${jobId}`, '--format', '{{.Names}}']).out.split('\n').filter(Boolean).map((n) => `container ${n}`);
    const envFile = join(homedir(), '.tao-infer', `${jobId}.env`);
    if (existsSync(envFile)) left.push(envFile);
    return left;
  },
  processMarkers: (t) => [fakeOf(t).sshConfig],
  secretPlaces: (t) => [
    ...recordedArgv(t.env.DOCKER_ARGV_LOG!).map((a): [string, string] => ['docker argv', a.join(' ')]),
    ...fakeOf(t).argvLog().map((a): [string, string] => ['brev argv', a.join(' ')]),
  ],
  track(jobId) {
    started.push(jobId);
  },
};
