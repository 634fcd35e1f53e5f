/**
 * local-docker pulls the image as its own step, with progress, and logs in with NGC_KEY when the registry says
 * unauthorized — against a real registry: Debian's docker-registry (CNCF distribution) on loopback with htpasswd
 * auth (test/helpers/registry.ts), user `$oauthtoken` and the NGC_KEY as password, as nvcr.io does. TAO_NGC_REGISTRY
 * points the NGC login at it. Each test gets a fresh DOCKER_CONFIG, so nothing is logged in beforehand and the
 * user's docker config is never touched.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, runCli } from '../helpers/cli.js';
import { docker, dockerTestEnv, ensureTestImage, recordedArgv, removeContainers, TEST_IMAGE } from '../helpers/docker.js';
import { startPty } from '../helpers/pty.js';
import { pushUniqueImage, startRegistry, type TestRegistry } from '../helpers/registry.js';

let reg: TestRegistry;
let image: string;
const started: string[] = [];

beforeAll(async () => {
  ensureTestImage();
  reg = await startRegistry();
  // One 6 MB layer the engine does not have, on top of the stand-in image's layers.
  image = pushUniqueImage(reg, TEST_IMAGE, 'nvidia/tao/standin', 6);
}, 180_000);

afterAll(async () => {
  removeContainers(started);
  if (image) docker(['rmi', '-f', image]);
  await reg?.stop();
});

/** The one `docker run --pull never` that docker refused with "No such image" (it creates nothing), and no other run. */
function expectOnlyTheRefusedRun(argvLog: string): void {
  const runs = recordedArgv(argvLog).filter((a) => a[0] === 'run');
  expect(runs.length).toBe(1);
  expect(runs[0]!.slice(0, 4)).toEqual(['run', '-d', '--pull', 'never']);
  const name = runs[0]![runs[0]!.indexOf('--name') + 1]!;
  expect(docker(['inspect', name]).code).not.toBe(0);
}

function pullEnv(ngcKey: string | undefined) {
  // Each test starts with the image absent from the engine.
  docker(['rmi', '-f', image]);
  const t = dockerTestEnv();
  // The network exists (a missing one is local-docker.test.ts's case), so the runs counted here are the image's.
  docker(['network', 'create', t.env.DOCKER_NETWORK!]);
  const dockerConfig = mkdtempSync(join(tmpdir(), 'tao-infer-dockercfg-'));
  const env = { ...t.env, IMAGE_COSMOS_RL: image, TAO_NGC_REGISTRY: reg.host, DOCKER_CONFIG: dockerConfig, NGC_KEY: ngcKey ?? '' };
  return { ...t, env, dockerConfig };
}

const startArgs = ['start', '--arch', 'cosmos-rl', '--model', 'hf_model://nvidia/Cosmos-Reason1-7B', '--num-gpus', '0', '--timeout', '120', '--json'];

/** Run start; a service it started is removed in afterAll even when an assertion fails first. */
async function start(env: Record<string, string>) {
  const r = await runCli(startArgs, { env });
  if (r.exitCode === 0) started.push(parseJson(r).job_id);
  return r;
}

describe('image pull before docker run', () => {
  it('not logged in, NGC_KEY set: pulls with progress on stderr after docker login with the key on stdin; stdout is only the JSON', async () => {
    const t = pullEnv(reg.password);
    const r = await start(t.env);
    expect(r.exitCode, r.stderr).toBe(0);
    const entry = parseJson(r);
    expect(entry).toMatchObject({ platform: 'local-docker', image, ready: true });

    // The login: argv without the key, the key went in on stdin; the login landed in DOCKER_CONFIG.
    expect(r.stderr).toContain(`${reg.host} refused the pull; logging in with NGC_KEY`);
    const argv = recordedArgv(t.argvLog);
    expect(argv).toContainEqual(['login', '-u', '$oauthtoken', '--password-stdin', reg.host]);
    for (const a of argv) expect(a.join(' ')).not.toContain(reg.password);
    expect(JSON.parse(readFileSync(join(t.dockerConfig, 'config.json'), 'utf8')).auths).toHaveProperty([reg.host]);
    // docker run --pull never answered "No such image"; the pull (and login) came as its own step, then the run again.
    const runs = argv.flatMap((a, i) => (a[0] === 'run' ? [i] : []));
    expect(runs.length).toBe(2);
    expect(argv[runs[0]!]!.slice(0, 4)).toEqual(['run', '-d', '--pull', 'never']);
    expect(runs[0]!).toBeLessThan(argv.findIndex((a) => a[0] === 'login'));
    expect(argv.findIndex((a) => a[0] === 'login')).toBeLessThan(runs[1]!);

    // Progress: plain lines (no TTY) with layers done / total, bytes and rate; the last one has every layer done.
    const lines = r.stderr.split('\n').filter((l) => l.startsWith(`pulling ${image}:`));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/: \d+\/\d+ layers, [\d.]+ (B|kB|MB)( \/ [\d.]+ (B|kB|MB))?, [\d.]+ (B|kB|MB|GB)\/s$/);
    const m = /: (\d+)\/(\d+) layers, [\d.]+ \S+ \/ ([\d.]+) MB/.exec(lines[lines.length - 1]!);
    expect(m, lines.join('\n')).not.toBeNull();
    expect(m![1]).toBe(m![2]);
    expect(Number(m![3])).toBeGreaterThanOrEqual(6);
    expect(r.stderr).not.toContain('\r');
    expect(r.stdout).not.toContain('pulling');
    expect(r.stdout + r.stderr).not.toContain(reg.password);

    const stop = await runCli(['stop', entry.job_id, '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
  });

  it('on a terminal the progress is one line redrawn in place', async () => {
    const t = pullEnv(reg.password);
    const pty = startPty([...startArgs.filter((a) => a !== '--json'), '--yes'], t.env);
    const { exitCode, output } = await pty.done(120_000);
    const id = /Job ID : (\S+)/.exec(output)?.[1];
    if (id) started.push(id);
    expect(exitCode, output).toBe(0);
    // \r and the erase-line code are stripped by the pty helper: redrawn updates end up on one line.
    const pullLines = output.split('\n').filter((l) => l.includes(`pulling ${image}:`));
    expect(pullLines.length, output).toBe(1);
    expect(pullLines[0]!.split(`pulling ${image}:`).length - 1).toBeGreaterThanOrEqual(2);
    const stop = await runCli(['stop', id!, '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
  });

  it('not logged in, no NGC_KEY: exit 3 saying to export NGC_KEY, no container, no registry entry', async () => {
    const t = pullEnv(undefined);
    const r = await start(t.env);
    expect(r.exitCode).toBe(3);
    const err = parseJson(r).error;
    expect(err.code).toBe('image_pull_unauthorized');
    expect(err.message).toContain(`cannot pull ${image}`);
    expect(err.hint).toContain('export NGC_KEY=');
    expectOnlyTheRefusedRun(t.argvLog);
    expect(recordedArgv(t.argvLog).some((a) => a[0] === 'login')).toBe(false);
    const state = existsSync(t.stateFile) ? JSON.parse(readFileSync(t.stateFile, 'utf8')) : {};
    expect(Object.keys(state).filter((k) => k !== 'latest')).toEqual([]);
  });

  it('a wrong NGC_KEY: the login is refused, exit 3 naming NGC_KEY, the key never printed', async () => {
    const wrong = `wrong-${reg.password.slice(0, 6)}-key`;
    const t = pullEnv(wrong);
    const r = await start(t.env);
    expect(r.exitCode).toBe(3);
    const err = parseJson(r).error;
    expect(err.message).toContain(`${reg.host} refused the login with NGC_KEY`);
    expect(r.stdout + r.stderr).not.toContain(wrong);
    expectOnlyTheRefusedRun(t.argvLog);
  });
});
