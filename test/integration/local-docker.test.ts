/**
 * local-docker end to end against the real Docker engine, with the contract-faithful stand-in
 * microservice baked into the local test image (test/fixtures/build-test-image.sh).
 * Every run goes through the built CLI, the way users and CI scripts call it.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, parseJson, runCli } from '../helpers/cli.js';
import { CANARY, docker, dockerTestEnv, ensureTestImage, recordedArgv, removeContainers, TEST_IMAGE } from '../helpers/docker.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const MP4 = join(ROOT, 'test/fixtures/media/clip.mp4');
const started: string[] = [];

beforeAll(() => {
  ensureTestImage();
});
afterAll(() => removeContainers(started));

function noCanaryAnywhere(t: ReturnType<typeof dockerTestEnv>, outputs: string[]): void {
  for (const argv of recordedArgv(t.argvLog)) expect(argv.join(' ')).not.toContain(CANARY);
  if (existsSync(t.stateFile)) expect(readFileSync(t.stateFile, 'utf8')).not.toContain(CANARY);
  for (const o of outputs) expect(o).not.toContain(CANARY);
}

describe('local-docker lifecycle per arch: start → ready → request → stop', () => {
  const cases: Array<{ arch: string; model: string; request: string[]; extra?: string[] }> = [
    { arch: 'cosmos-rl', model: '/models/cosmos rl/it\'s "mine" $HOME', request: ['--prompt', 'What is in the picture?', '--image', PNG, '--temperature', '0.3'] },
    { arch: 'tao-dataservices', model: 'hf_model://Qwen/Qwen2.5-VL-3B-Instruct', request: ['--prompt', 'Describe the clip', '--video', MP4, '--max-tokens', '64'] },
    {
      arch: 'cosmos-predict2.5',
      model: 'hf_model://nvidia/Cosmos-Predict2.5-2B',
      extra: ['--model-key', 'base-2b'],
      request: ['--prompt', 'a robot arm picks up a red cube', '--guidance', '3', '--seed', '42', '--max-tokens', '9'],
    },
  ];

  for (const c of cases) {
    it(c.arch, async () => {
      const t = dockerTestEnv();
      const outputs: string[] = [];
      const start = await runCli(['start', '--arch', c.arch, '--model', c.model, '--num-gpus', '0', '--timeout', '120', '--json', ...(c.extra ?? [])], { env: t.env });
      outputs.push(start.stdout, start.stderr);
      expect(start.exitCode, start.stderr).toBe(0);
      const entry = parseJson(start);
      started.push(entry.job_id);
      expect(entry).toMatchObject({ platform: 'local-docker', network_arch: c.arch, ready: true, state: 'started', image: TEST_IMAGE });
      expect(entry.host_url).toBe(`http://localhost:${entry.host_port}`);
      expect(entry.docker_url).toBe(`http://${entry.job_id}:8080`);
      expect(start.stderr).toMatch(/lifecycle smoke/);

      const reg = JSON.parse(readFileSync(t.stateFile, 'utf8'));
      expect(reg.latest).toBe(entry.job_id);
      expect(reg[entry.job_id].host_port).toBe(entry.host_port);
      expect(statSync(t.stateFile).mode & 0o777).toBe(0o600);
      const labels = JSON.parse(docker(['inspect', '--format', '{{json .Config.Labels}}', entry.job_id]).out);
      expect(labels['tao-infer.job_id']).toBe(entry.job_id);
      expect(labels['tao-infer.network_arch']).toBe(c.arch);

      const out = join(t.dir, 'out.mp4');
      const req = await runCli(['request', '--json', '--output', out, ...c.request], { env: t.env });
      outputs.push(req.stdout, req.stderr);
      expect(req.exitCode, req.stderr).toBe(0);
      const completion = parseJson(req);
      expect(completion.object).toBe('chat.completion');
      expect(completion.routed_to.job_id).toBe(entry.job_id);
      expect(completion.tao_standin.network_arch).toBe(c.arch);
      expect(completion.tao_standin.secrets_present).toContain('HF_TOKEN');
      expect(req.stderr).toContain(`Sending to job_id=${entry.job_id} arch=${c.arch} url=${entry.host_url}/v1/chat/completions`);
      expect(req.stderr).toMatch(/sampling parameters: .*\(default\)/);
      if (c.arch === 'cosmos-rl') {
        expect(completion.tao_standin.model_path).toBe(c.model);
        expect(completion.tao_standin.sampling).toEqual({ max_tokens: 1024, top_p: 0.8, temperature: 0.3 });
        expect(completion.tao_standin.media.map((m: any) => m.mime)).toEqual(['image/png']);
      }
      if (c.arch === 'tao-dataservices') expect(completion.tao_standin.sampling).toMatchObject({ max_tokens: 64, temperature: 0.7 });
      if (c.arch === 'cosmos-predict2.5') {
        expect(completion.tao_standin.sampling).toEqual({ max_tokens: 9, guidance: 3, num_steps: 35, seed: 42, negative_prompt: '' });
        expect(completion.saved_file).toBe(out);
        expect(readFileSync(out).subarray(4, 8).toString('latin1')).toBe('ftyp');
      }

      const ls = await runCli(['ls', '--json'], { env: t.env });
      expect(ls.exitCode).toBe(0);
      expect(parseJson(ls)).toEqual([expect.objectContaining({ job_id: entry.job_id, live: expect.objectContaining({ state: 'running', native: 'running' }) })]);

      const logs = await runCli(['logs', entry.job_id, '--tail', '50'], { env: t.env });
      expect(logs.exitCode).toBe(0);
      expect(logs.stdout).toMatch(/standin/i);

      const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
      outputs.push(stop.stdout, stop.stderr);
      expect(stop.exitCode, stop.stderr).toBe(0);
      expect(parseJson(stop)).toEqual({ stopped: [entry.job_id], failed: [], already_gone: false, already_gone_ids: [] });
      expect(docker(['inspect', entry.job_id]).code).not.toBe(0);
      expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
      noCanaryAnywhere(t, outputs);
    });
  }
});

describe('local-docker: several services, failures, bad input', () => {
  it('two services at once get distinct ports and --arch routing picks the right one', async () => {
    const t = dockerTestEnv();
    const a = await runCli(['start', '--arch', 'cosmos-rl', '--model', '/m/a', '--num-gpus', '0', '--json'], { env: t.env });
    const b = await runCli(['start', '--arch', 'tao-dataservices', '--model', '/m/b', '--num-gpus', '0', '--json'], { env: t.env });
    expect(a.exitCode, a.stderr).toBe(0);
    expect(b.exitCode, b.stderr).toBe(0);
    const ea = parseJson(a);
    const eb = parseJson(b);
    started.push(ea.job_id, eb.job_id);
    expect(ea.host_port).not.toBe(eb.host_port);

    const toB = await runCli(['request', '--arch', 'tao-dataservices', '--prompt', 'hello', '--json'], { env: t.env });
    expect(toB.exitCode, toB.stderr).toBe(0);
    expect(parseJson(toB).tao_standin.job_id).toBe(eb.job_id);
    const toA = await runCli(['request', '--arch', 'cosmos-rl', '--prompt', 'hi', '--image', PNG, '--json'], { env: t.env });
    expect(parseJson(toA).tao_standin.job_id).toBe(ea.job_id);

    // Neither --job nor --arch with two services: never the latest, a listed choice instead.
    const amb = await runCli(['request', '--prompt', 'hello'], { env: t.env });
    expect(amb.exitCode).toBe(2);
    expect(amb.stderr).toContain(ea.job_id);
    expect(amb.stderr).toContain(eb.job_id);
    expect(amb.stderr).toMatch(/--job/);

    // cosmos-rl without media is refused before sending.
    const noMedia = await runCli(['request', '--job', ea.job_id, '--prompt', 'hi'], { env: t.env });
    expect(noMedia.exitCode).toBe(2);
    expect(noMedia.stderr).toMatch(/needs at least one image or video/);

    const stop = await runCli(['stop', '--all', '--yes', '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(parseJson(stop).stopped.sort()).toEqual([ea.job_id, eb.job_id].sort());
    expect(docker(['inspect', ea.job_id]).code).not.toBe(0);
  });

  it('a container that crashes at start is reported within a poll or two with its exit code and log tail, and removed', async () => {
    const t = dockerTestEnv();
    t.env.STANDIN_CRASH_AT_START = '1';
    const r = await runCli(['start', '--arch', 'cosmos-rl', '--model', '/m/x', '--num-gpus', '0', '--env', 'STANDIN_CRASH_AT_START', '--timeout', '300', '--json'], { env: t.env });
    expect(r.exitCode).toBe(4);
    const err = parseJson(r).error;
    expect(err.code).toBe('service_failed');
    expect(err.exit_code).toBe(4);
    expect(err.service_exit_code).toBe(3);
    expect(err.log_tail.join('\n')).toMatch(/Traceback|crash/i);
    expect(r.stderr).toMatch(/last \d+ log lines/);
    const jobId = /service ([0-9a-f-]{36}) failed/.exec(err.message)![1]!;
    expect(docker(['inspect', jobId]).code).not.toBe(0);
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
  });

  it('--keep-on-failure keeps the crashed container and its registry entry', async () => {
    const t = dockerTestEnv();
    t.env.STANDIN_CRASH_AT_START = '1';
    const r = await runCli(['start', '--arch', 'cosmos-rl', '--model', '/m/x', '--num-gpus', '0', '--env', 'STANDIN_CRASH_AT_START', '--keep-on-failure', '--json'], { env: t.env });
    expect(r.exitCode).toBe(4);
    const jobId = parseJson(r).error.job_id as string;
    started.push(jobId);
    expect(docker(['inspect', '--format', '{{.State.Status}}', jobId]).out.trim()).toBe('exited');
    const reg = JSON.parse(readFileSync(t.stateFile, 'utf8'));
    expect(reg[jobId].network_arch).toBe('cosmos-rl');
    expect(r.stderr).toContain(`tao-infer stop ${jobId}`);
    const stop = await runCli(['stop', jobId], { env: t.env });
    expect(stop.exitCode).toBe(0);
    expect(docker(['inspect', jobId]).code).not.toBe(0);
  });

  it('Ctrl-C while waiting for readiness removes the half-started service and exits 130', async () => {
    const t = dockerTestEnv();
    t.env.STANDIN_READY_FILE = '/never-created'; // inside the container: the model never finishes loading
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [CLI, 'start', '--arch', 'cosmos-rl', '--model', '/m/x', '--num-gpus', '0', '--env', 'STANDIN_READY_FILE', '--json'], {
      env: { ...process.env, ...t.env, CI: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((res) => child.once('close', (code) => res(code)));
    await new Promise<void>((res) => {
      child.stderr!.on('data', (d) => {
        err += d;
        if (/model_loading/.test(err)) res();
      });
    });
    const jobId = /job_id ([0-9a-f-]{36})/.exec(err)![1]!;
    expect(docker(['inspect', '--format', '{{.State.Status}}', jobId]).out.trim()).toBe('running');
    child.kill('SIGINT');
    const code = await exited;
    const r = { exitCode: code, stdout: out };
    expect(r.exitCode, err).toBe(130);
    expect(JSON.parse(String(r.stdout)).error.code).toBe('interrupted');
    expect(docker(['inspect', jobId]).code).not.toBe(0);
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
  });

  it('model_load_error from readiness is a hard failure, not a timeout', async () => {
    const t = dockerTestEnv();
    t.env.STANDIN_MODEL_LOAD_ERROR = '1';
    const r = await runCli(['start', '--arch', 'tao-dataservices', '--model', '/m/x', '--num-gpus', '0', '--env', 'STANDIN_MODEL_LOAD_ERROR', '--json'], { env: t.env });
    expect(r.exitCode).toBe(4);
    expect(parseJson(r).error.error_type).toBe('model_load_error');
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
  });

  it('--dry-run prints image, inner command and the exact docker invocation with secrets by name only, and changes nothing', async () => {
    const t = dockerTestEnv();
    const r = await runCli(['start', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', '--gpu-ids', '0,1', '--dry-run'], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(`# image ${TEST_IMAGE}`);
    expect(r.stdout).toContain("umask 0 && cosmos-rl-inference-microservice --job '{");
    expect(r.stdout).toMatch(/docker run -d --name [0-9a-f-]{36} .*-p 127\.0\.0\.1:80\d\d:8080 --network tao_infer_test --shm-size 16g --gpus '"device=0,1"' -e HF_TOKEN tao-infer-test\/standin:latest \/bin\/sh -c /);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    expect(recordedArgv(t.argvLog)).toEqual([]);
    expect(existsSync(t.stateFile)).toBe(false);
  });

  it('the canary secret reaches the container only through its environment', async () => {
    const t = dockerTestEnv();
    const r = await runCli(['start', '--arch', 'tao-dataservices', '--model', '/m/x', '--num-gpus', '0', '--no-wait', '--json'], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    const e = parseJson(r);
    started.push(e.job_id);
    const cfg = JSON.parse(docker(['inspect', '--format', '{{json .Config}}', e.job_id]).out);
    expect(JSON.stringify(cfg.Cmd)).not.toContain(CANARY);
    expect(cfg.Env).toContain(`HF_TOKEN=${CANARY}`);
    const run = recordedArgv(t.argvLog).find((a) => a[0] === 'run')!;
    expect(run).toContain('HF_TOKEN');
    expect(run.join(' ')).not.toContain(CANARY);
    const stop = await runCli(['stop', e.job_id], { env: t.env });
    noCanaryAnywhere(t, [r.stdout, r.stderr, stop.stdout, stop.stderr]);
  });

  it('bad input: clear error, exit 2, no platform call, no registry change', async () => {
    const t = dockerTestEnv();
    const original = JSON.stringify({ keep: { job_id: 'keep', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:8080', host_port: 8080, started_at: '2026-01-01T00:00:00Z' }, latest: 'keep' }, null, 2);
    writeFileSync(t.stateFile, original, { mode: 0o600 });
    const cases: Array<[string[], RegExp]> = [
      [['start', '--arch', 'yolo_v9', '--model', '/m'], /network_arch 'yolo_v9' is not supported[\s\S]*cosmos-rl/],
      [['start', '--arch', 'cosmos-rl', '--model', 's3://bucket/model'], /unsupported scheme 's3:\/\/'[\s\S]*hint:/],
      [['start', '--arch', 'cosmos-rl', '--model', 'hf://org/model'], /hf_model:\/\/org\/model/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--num-gpus', '-1'], /--num-gpus must be a whole number/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--port', '70000'], /between 1 and 65535/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--port', '8080'], /port 8080 is already used by service keep/],
      [['start', '--arch', 'cosmos-rl', '--model', 'hf_model://org/m;rm -rf ~'], /not a valid HuggingFace model id/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m\nx'], /control character/],
      [['start', '--arch', 'cosmos-rl'], /missing model_path[\s\S]*--model/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--env', 'NOT_SET_ANYWHERE_X'], /NOT_SET_ANYWHERE_X is not set/],
      [['start', '--arch', 'cosmos-predict2.5', '--model', 'hf_model://nvidia/x'], /--model-key/],
      [['stop', 'no-such-job'], /no service with job_id 'no-such-job'/],
      [['logs', 'no-such-job'], /no service with job_id/],
      [['request', '--job', 'no-such-job', '--prompt', 'x'], /no service with job_id/],
      [['request', '--job', 'keep', '--prompt', 'x'], /needs at least one image or video/],
      [['request', '--job', 'keep', '--prompt', 'x', '--image', 's3://b/cat.png'], /cloud URI/],
      [['request', '--job', 'keep', '--prompt', 'x', '--image', PNG, '--guidance', '2'], /guidance does not apply to cosmos-rl/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--platform', 'mars'], /unknown platform 'mars'/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--docker-network', 'bad name;x'], /not a docker network name/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--bind', '9.9.9.9.9'], /--bind '9\.9\.9\.9\.9' is not an IP address/],
      [['request', '--job', 'keep', '--prompt', 'x', '--image', PNG, '--retry-window', 'abc'], /--retry-window must be a whole number/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--platform', 'lepton', '--resource-shape', 'gpu.1xh100', '--port', '9000'], /--port is not available on lepton/],
      [['start', '--arch', 'cosmos-rl', '--model', '/m', '--platform', 'lepton', '--resource-shape', 'gpu.1xh100', '--gpu-ids', '0'], /--gpu-ids is not available on lepton/],
    ];
    for (const [args, msg] of cases) {
      const r = await runCli(args, { env: t.env });
      expect(r.exitCode, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(recordedArgv(t.argvLog), args.join(' ')).toEqual([]);
      expect(readFileSync(t.stateFile, 'utf8'), args.join(' ')).toBe(original);
    }
  });

  it('16 concurrent starts get distinct ports and every entry survives', async () => {
    const t = dockerTestEnv();
    const runs = await Promise.all(
      Array.from({ length: 16 }, (_, i) => runCli(['start', '--arch', 'cosmos-rl', '--model', `/m/${i}`, '--num-gpus', '0', '--no-wait', '--json'], { env: t.env })),
    );
    const entries = runs.map((r) => {
      expect(r.exitCode, r.stderr).toBe(0);
      return parseJson(r);
    });
    started.push(...entries.map((e) => e.job_id));
    const reg = JSON.parse(readFileSync(t.stateFile, 'utf8'));
    const ids = Object.keys(reg).filter((k) => k !== 'latest');
    expect(ids.sort()).toEqual(entries.map((e) => e.job_id).sort());
    const ports = ids.map((id) => reg[id].host_port);
    expect(new Set(ports).size).toBe(16);
    for (const e of entries) expect(docker(['inspect', '--format', '{{.HostConfig.PortBindings}}', e.job_id]).out).toContain(String(e.host_port));
    const stop = await runCli(['stop', '--all', '--yes', '--json'], { env: t.env, timeoutMs: 170_000 });
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(parseJson(stop).stopped).toHaveLength(16);
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
  });
});
