/**
 * local-docker end to end against the real Docker engine, with the contract-faithful stand-in
 * microservice baked into the local test image (test/fixtures/build-test-image.sh).
 * Every run goes through the built CLI, the way users and CI scripts call it. The platform contract (lifecycle per
 * arch, crash at start, Ctrl-C/SIGTERM while loading, the canary) is in test/contract/; this file keeps
 * local-docker's own cases.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, parseJson, runCli } from '../helpers/cli.js';
import { CANARY, docker, dockerTestEnv, ensureTestImage, recordedArgv, removeContainers, TEST_IMAGE } from '../helpers/docker.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
const started: string[] = [];

beforeAll(() => {
  ensureTestImage();
});
afterAll(() => removeContainers(started));

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

  it('start is one docker call (docker run) when image and network exist; ls asks the Engine API, no docker process (issue 9)', async () => {
    const t = dockerTestEnv();
    docker(['network', 'create', t.env.DOCKER_NETWORK!]); // "already exists" when an earlier test made it
    const ids: string[] = [];
    for (const arch of ['cosmos-rl', 'tao-dataservices']) {
      const r = await runCli(['start', '--arch', arch, '--model', '/m', '--num-gpus', '0', '--no-wait', '--json'], { env: t.env });
      expect(r.exitCode, r.stderr).toBe(0);
      ids.push(parseJson(r).job_id);
      started.push(ids[ids.length - 1]!);
    }
    // Per start: `docker run --pull never` only (it proves the daemon, the network and the image); no
    // `docker version`, no `network inspect`, no `image inspect`, no pull.
    const calls = recordedArgv(t.argvLog).map((a) => a.slice(0, 4).join(' '));
    expect(calls).toEqual(['run -d --pull never', 'run -d --pull never']);
    const before = recordedArgv(t.argvLog).length;
    writeFileSync(
      t.stateFile,
      JSON.stringify({
        ...JSON.parse(readFileSync(t.stateFile, 'utf8')),
        gone: { job_id: 'gone', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:8199', started_at: '2030-01-01T00:00:00Z' },
      }),
      { mode: 0o600 },
    );
    const ls = await runCli(['ls', '--json'], { env: t.env });
    expect(ls.exitCode, ls.stderr).toBe(0);
    expect(parseJson(ls).map((s: { job_id: string; live: { state: string; native?: string } }) => [s.job_id, s.live.state, s.live.native])).toEqual([
      [ids[0], 'running', 'running'],
      [ids[1], 'running', 'running'],
      ['gone', 'gone', 'missing'],
    ]);
    // The CLI would use the local socket, so ls asks the Engine API there: no docker process at all.
    expect(recordedArgv(t.argvLog).slice(before)).toEqual([]);
    // A socket that cannot be used: one `docker inspect` for all services, which says what is wrong.
    const before2 = recordedArgv(t.argvLog).length;
    const down = await runCli(['ls', '--json'], { env: { ...t.env, DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
    expect(down.exitCode, down.stderr).toBe(0);
    const lsCalls = recordedArgv(t.argvLog).slice(before2);
    expect(lsCalls.length).toBe(1);
    expect(lsCalls[0]!.slice(0, 3)).toEqual(['inspect', '--type', 'container']);
    for (const s of parseJson(down) as Array<{ live: { state: string; reason?: string } }>) {
      expect(s.live.state).toBe('unknown');
      expect(s.live.reason).toMatch(/nonexistent\/docker\.sock|Cannot connect/);
    }
    const stop = await runCli(['stop', '--all', '--yes', '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
  });

  it('a missing docker network: docker run names it, the container it created is removed, the network made, the run repeated', async () => {
    const t = dockerTestEnv();
    const net = `tao_infer_test_${process.pid}_${Date.now().toString(36)}`;
    try {
      const r = await runCli(['start', '--arch', 'cosmos-rl', '--model', '/m', '--num-gpus', '0', '--no-wait', '--json', '--docker-network', net], { env: t.env });
      expect(r.exitCode, r.stderr).toBe(0);
      const id = parseJson(r).job_id as string;
      started.push(id);
      const calls = recordedArgv(t.argvLog).map((a) => a.slice(0, 2).join(' '));
      expect(calls).toEqual(['run -d', 'rm -f', 'network create', 'run -d']);
      expect(docker(['inspect', '--format', '{{.State.Status}} {{.HostConfig.NetworkMode}}', id]).out.trim()).toBe(`running ${net}`);
      expect(docker(['ps', '-a', '-q', '--filter', `name=^/${id}$`]).out.trim().split('\n').length).toBe(1);
      expect((await runCli(['stop', id], { env: t.env })).exitCode).toBe(0);
    } finally {
      docker(['network', 'rm', net]);
    }
  });

  it('no docker daemon, or no docker CLI: exit 3 saying so, nothing left in the registry, no stop attempted', async () => {
    const t = dockerTestEnv();
    const down = await runCli(['start', '--arch', 'cosmos-rl', '--model', '/m', '--num-gpus', '0', '--no-wait', '--json'], {
      env: { ...t.env, DOCKER_HOST: `unix://${join(t.dir, 'no-daemon.sock')}` },
    });
    expect(down.exitCode).toBe(3);
    expect(parseJson(down).error).toMatchObject({ code: 'platform_unavailable', platform: 'local-docker' });
    expect(parseJson(down).error.message).toMatch(/the docker daemon does not answer/);
    expect(recordedArgv(t.argvLog).map((a) => a[0])).toEqual(['run']);
    expect(JSON.parse(readFileSync(t.stateFile, 'utf8'))).toEqual({});
    expect(down.stderr).not.toContain('could not remove');
    const noCli = await runCli(['start', '--arch', 'cosmos-rl', '--model', '/m', '--num-gpus', '0', '--no-wait', '--json'], {
      env: { ...t.env, PATH: join(t.dir, 'empty-path') },
    });
    expect(noCli.exitCode).toBe(3);
    expect(parseJson(noCli).error.message).toMatch(/'docker' was not found on PATH/);
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
    // ls reads an ended container's exit code (Engine API inspect of the ended one).
    const ls = await runCli(['ls', '--json'], { env: t.env });
    const live = (parseJson(ls) as Array<{ job_id: string; live: { state: string; native?: string; exit_code?: number } }>).find((s) => s.job_id === jobId)!.live;
    expect(live).toMatchObject({ state: 'error', native: 'exited' });
    expect(live.exit_code).toBe(Number(docker(['inspect', '--format', '{{.State.ExitCode}}', jobId]).out.trim()));
    expect(live.exit_code).not.toBe(0);
    const stop = await runCli(['stop', jobId], { env: t.env });
    expect(stop.exitCode).toBe(0);
    expect(docker(['inspect', jobId]).code).not.toBe(0);
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
    expect(r.stdout).toMatch(/docker run -d --pull never --name [0-9a-f-]{36} .*-p 127\.0\.0\.1:\d+:8080 --network tao_infer_test --shm-size 16g --gpus '"device=0,1"' -e HF_TOKEN tao-infer-test\/standin:latest \/bin\/sh -c /);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    expect(recordedArgv(t.argvLog)).toEqual([]);
    expect(existsSync(t.stateFile)).toBe(false);
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
      [['request', '--job', 'keep', '--prompt', 'x', '--image', PNG, '--timeout', '10'], /--timeout must be a whole number of seconds, at least 300/],
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
