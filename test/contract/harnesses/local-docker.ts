/**
 * local-docker on the real Docker engine, with the contract-faithful stand-in microservice baked into the local
 * test image (test/fixtures/build-test-image.sh); every docker argv is recorded by test/fixtures/docker-shim.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { CANARY } from '../../helpers/canary.js';
import { ROOT } from '../../helpers/cli.js';
import { docker, dockerTestEnv, ensureTestImage, recordedArgv, removeContainers, TEST_IMAGE } from '../../helpers/docker.js';
import { withTmp, type ContractEnv, type Harness } from '../harness.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const MP4 = join(ROOT, 'test/fixtures/media/clip.mp4');
const started: string[] = [];

export const localDocker: Harness = {
  label: 'local-docker (real Docker engine)',
  platform: 'local-docker',
  async setup() {
    ensureTestImage();
  },
  async teardown() {
    removeContainers(started.splice(0));
  },
  newEnv: () => withTmp(dockerTestEnv()),
  startFlags: () => ['--num-gpus', '0'],
  live: { native: 'running' },
  cases: [
    {
      arch: 'cosmos-rl',
      model: '/models/cosmos rl/it\'s "mine" $HOME',
      // Without --job: one service, so it is the one the request goes to.
      request: (run) => ['--output', join(run.t.dir, 'out.mp4'), '--prompt', 'What is in the picture?', '--image', PNG, '--temperature', '0.3'],
      check(completion, _entry, _run, req) {
        expect(req.stderr).toMatch(/sampling parameters: .*\(default\)/);
        expect(completion.tao_standin.model_path).toBe('/models/cosmos rl/it\'s "mine" $HOME');
        expect(completion.tao_standin.sampling).toEqual({ max_tokens: 1024, top_p: 0.8, temperature: 0.3 });
        expect(completion.tao_standin.media.map((m: any) => m.mime)).toEqual(['image/png']);
      },
    },
    {
      arch: 'tao-dataservices',
      model: 'hf_model://Qwen/Qwen2.5-VL-3B-Instruct',
      request: (run) => ['--output', join(run.t.dir, 'out.mp4'), '--prompt', 'Describe the clip', '--video', MP4, '--max-tokens', '64'],
      check(completion, _entry, _run, req) {
        expect(req.stderr).toMatch(/sampling parameters: .*\(default\)/);
        expect(completion.tao_standin.sampling).toMatchObject({ max_tokens: 64, temperature: 0.7 });
      },
    },
    {
      arch: 'cosmos-predict2.5',
      model: 'hf_model://nvidia/Cosmos-Predict2.5-2B',
      startArgs: ['--model-key', 'base-2b'],
      request: (run) => ['--output', join(run.t.dir, 'out.mp4'), '--prompt', 'a robot arm picks up a red cube', '--guidance', '3', '--seed', '42', '--max-tokens', '9'],
      check(completion, _entry, run, req) {
        const out = join(run.t.dir, 'out.mp4');
        expect(req.stderr).toMatch(/sampling parameters: .*\(default\)/);
        expect(completion.tao_standin.sampling).toEqual({ max_tokens: 9, guidance: 3, num_steps: 35, seed: 42, negative_prompt: '' });
        expect(completion.saved_file).toBe(out);
        expect(readFileSync(out).subarray(4, 8).toString('latin1')).toBe('ftyp');
      },
    },
  ],
  afterStart(entry, run, start) {
    expect(entry.image).toBe(TEST_IMAGE);
    expect(entry.host_url).toBe(`http://localhost:${entry.host_port}`);
    expect(entry.docker_url).toBe(`http://${entry.job_id}:8080`);
    expect(start.stderr).toMatch(/lifecycle smoke/);
    const reg = JSON.parse(readFileSync(run.t.stateFile, 'utf8'));
    expect(reg[entry.job_id].host_port).toBe(entry.host_port);
    const labels = JSON.parse(docker(['inspect', '--format', '{{json .Config.Labels}}', entry.job_id]).out);
    expect(labels['tao-infer.job_id']).toBe(entry.job_id);
    expect(labels['tao-infer.network_arch']).toBe(entry.network_arch);
    // The canary secret reaches the container only through its environment.
    const cfg = JSON.parse(docker(['inspect', '--format', '{{json .Config}}', entry.job_id]).out);
    expect(JSON.stringify(cfg.Cmd)).not.toContain(CANARY);
    expect(cfg.Env).toContain(`HF_TOKEN=${CANARY}`);
    const dockerRun = recordedArgv(run.t.env.DOCKER_ARGV_LOG!).find((a) => a[0] === 'run')!;
    expect(dockerRun).toContain('HF_TOKEN');
    expect(dockerRun.join(' ')).not.toContain(CANARY);
  },
  afterStop(entry) {
    expect(docker(['inspect', entry.job_id]).code).not.toBe(0);
  },
  crash: {
    env: { STANDIN_CRASH_AT_START: '1' },
    args: ['--env', 'STANDIN_CRASH_AT_START'],
    exitCodes: [4],
    check(err, r) {
      expect(err.code).toBe('service_failed');
      expect(err.exit_code).toBe(4);
      expect(err.service_exit_code).toBe(3);
      expect(err.log_tail.join('\n')).toMatch(/Traceback|crash/i);
      expect(r.stderr).toMatch(/last \d+ log lines/);
      expect(err.message).toMatch(/service [0-9a-f-]{36} failed/);
    },
  },
  hang: { env: { STANDIN_READY_FILE: '/never-created' }, args: ['--env', 'STANDIN_READY_FILE'] }, // inside the container: the model never finishes loading
  async launched(jobId) {
    return docker(['inspect', '--format', '{{.State.Status}}', jobId]).out.trim() === 'running';
  },
  async leftovers(jobId) {
    const left = docker(['ps', '-a', '--filter', `label=tao-infer.job_id=${jobId}`, '--format', '{{.Names}}']).out.split('\n').filter(Boolean);
    if (docker(['inspect', jobId]).code === 0 && !left.includes(jobId)) left.push(jobId);
    return left.map((n) => `container ${n}`);
  },
  secretPlaces: (t: ContractEnv) => recordedArgv(t.env.DOCKER_ARGV_LOG!).map((a): [string, string] => ['docker argv', a.join(' ')]),
  track(jobId) {
    started.push(jobId);
  },
};
