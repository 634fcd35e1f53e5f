// The CLI as a person uses it: on a real pseudo-terminal (test/helpers/pty.ts), with no flags for what it
// can ask. start asks for network_arch and model_path; request asks which service when several run, the
// prompt, the media the arch needs, and each sampling parameter with its default shown; stop asks which
// service (the latest first) or confirms the only one; slurm offers the cluster's partitions (read over
// the real sshd from the real Slurm); Ctrl-C at a prompt exits 130 with nothing launched. Services run on
// the real Docker engine with the stand-in image.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, runCli, ROOT } from '../helpers/cli.js';
import { docker, dockerTestEnv, ensureTestImage } from '../helpers/docker.js';
import { KEY, startPty } from '../helpers/pty.js';

const PNG = join(ROOT, 'test/fixtures/media/cat.png');
let t: ReturnType<typeof dockerTestEnv>;

/** The registry file as the skill reads it: job_id → entry, plus "latest". */
const registry = (): { entries: Record<string, { network_arch: string }> } => {
  const { latest: _latest, ...entries } = JSON.parse(readFileSync(t.stateFile, 'utf8')) as Record<string, unknown>;
  return { entries: entries as Record<string, { network_arch: string }> };
};

beforeAll(() => {
  ensureTestImage();
  t = dockerTestEnv();
});

afterAll(async () => {
  await runCli(['stop', '--all', '--yes'], { env: t.env });
  docker(['network', 'rm', 'tao_infer_test']);
  rmSync(t.dir, { recursive: true, force: true });
});

describe('interactive use on a terminal', () => {
  it('start asks for network_arch (a choice) and model_path, then waits for readiness', async () => {
    const pty = startPty(['start', '--num-gpus', '0', '--timeout', '60'], t.env);
    await pty.expect(/network_arch[\s\S]*cosmos-rl[\s\S]*cosmos-predict2\.5[\s\S]*tao-dataservices/);
    pty.send(KEY.enter); // first choice: cosmos-rl
    await pty.expect(/model_path/);
    pty.send(`/models/cosmos-reason${KEY.enter}`);
    await pty.expect(/ready/, 60_000);
    const r = await pty.done();
    expect(r.exitCode, r.output).toBe(0);
    const entries = Object.values(registry().entries);
    expect(entries.map((e) => e.network_arch)).toEqual(['cosmos-rl']);
    // The secret was never asked for and never printed.
    expect(r.output).not.toContain(t.env.HF_TOKEN);
  });

  it('request asks which of two running services (never silently the latest), the prompt, the image cosmos-rl needs, then each sampling parameter with its default', async () => {
    const second = parseJson(await runCli(['start', '--arch', 'cosmos-rl', '--model', '/models/other', '--num-gpus', '0', '--timeout', '60', '--json'], { env: t.env }));
    expect(second.job_id).toBeTruthy();
    const pty = startPty(['request'], t.env);
    // Never silently the latest: both candidates are offered.
    const m = await pty.expect(/([0-9a-f-]{36})[^\n]*cosmos-rl[\s\S]*?([0-9a-f-]{36})[^\n]*cosmos-rl/);
    expect(new Set([m[1], m[2]]).size).toBe(2);
    expect([m[1], m[2]]).toContain(second.job_id);
    const secondIsFirst = m[1] === second.job_id;
    pty.send(secondIsFirst ? KEY.enter : `${KEY.down}${KEY.enter}`);
    await pty.expect(/prompt/);
    pty.send(`What is in this picture?${KEY.enter}`);
    // cosmos-rl needs media and none was given: asked, checked as typed (a text file is refused), then taken.
    await pty.expect(/image or video for cosmos-rl/);
    pty.send(`${join(ROOT, 'README.md')}${KEY.enter}`);
    await pty.expect(/takes images \(/);
    for (let i = 0; i < 80; i++) pty.send('\x7f'); // backspace over the rejected answer
    pty.send(`${PNG}${KEY.enter}`);
    // Every field with its type and default is listed first, then asked one by one (inquirer shows the default).
    await pty.expect(/max_tokens \(integer[^\n]*default 1024\s+top_p \(number[^\n]*default 0\.8\s+temperature \(number[^\n]*default 0\.7/);
    await pty.expect(/\? max_tokens[^\n]*\(1024\)/);
    pty.send(KEY.enter); // keep the default
    await pty.expect(/\? top_p[^\n]*\(0\.8\)/);
    pty.send(`0.5${KEY.enter}`);
    await pty.expect(/\? temperature[^\n]*\(0\.7\)/);
    pty.send(KEY.enter);
    const r = await pty.done();
    expect(r.exitCode, r.output).toBe(0);
    expect(r.output).toContain(`job_id=${second.job_id}`);
    // The values used are printed, defaults marked as such.
    expect(r.output).toMatch(/max_tokens=1024 \(default\)/);
    expect(r.output).toMatch(/top_p=0\.5(?! \(default\))/);
    expect(r.output).toContain('saw 1 image(s)');
  });

  it('stop without a job_id: with two running it asks which (the latest first), with one it confirms; No keeps it', async () => {
    const ids = Object.keys(registry().entries);
    expect(ids).toHaveLength(2);
    const latest = (JSON.parse(readFileSync(t.stateFile, 'utf8')) as { latest: string }).latest;
    const older = ids.find((id) => id !== latest)!;
    let pty = startPty(['stop'], t.env);
    await pty.expect(new RegExp(`Which service to stop\\?[\\s\\S]*❯ ${latest}[^\\n]*\\(latest\\)[\\s\\S]*${older}`));
    pty.send(`${KEY.down}${KEY.enter}`); // the older one, not the latest
    let r = await pty.done();
    expect(r.exitCode, r.output).toBe(0);
    expect(Object.keys(registry().entries)).toEqual([latest]);

    pty = startPty(['stop'], t.env);
    await pty.expect(new RegExp(`Stop the latest service ${latest}`));
    pty.send(`n${KEY.enter}`);
    r = await pty.done();
    expect(r.exitCode, r.output).toBe(0);
    expect(Object.keys(registry().entries)).toEqual([latest]);

    pty = startPty(['stop'], t.env);
    await pty.expect(/Stop the latest service/);
    pty.send(`y${KEY.enter}`);
    r = await pty.done();
    expect(r.exitCode, r.output).toBe(0);
    expect(Object.keys(registry().entries)).toEqual([]);
  });

  it('Ctrl-C at a prompt exits 130 and launches nothing', async () => {
    const before = readFileSync(t.stateFile, 'utf8');
    const pty = startPty(['start', '--num-gpus', '0'], t.env);
    await pty.expect(/network_arch/);
    pty.send(KEY.ctrlC);
    const r = await pty.done();
    expect(r.exitCode).toBe(130);
    expect(r.output).toMatch(/interrupted/);
    expect(r.output).not.toMatch(/bug in tao-infer/);
    expect(readFileSync(t.stateFile, 'utf8')).toBe(before);
  });

  it('slurm: a missing --partition is offered as a choice among the cluster\'s partitions', async () => {
    const ssh = '/tmp/tao-infer-infra/ssh';
    // This case may run on its own (CI runs the slurm-named tests in a second part): the registry may not exist yet.
    const registryText = () => (existsSync(t.stateFile) ? readFileSync(t.stateFile, 'utf8') : '');
    const before = registryText();
    const pty = startPty(
      ['start', '--platform', 'slurm', '--arch', 'cosmos-rl', '--model', '/models/x', '--num-gpus', '0', '--slurm-host', '127.0.0.1', '--ssh-port', '2222', '--identity-file', `${ssh}/client_key`, '--known-hosts', `${ssh}/known_hosts`],
      { ...t.env, SLURM_USER: 'root', SLURM_PARTITION: '' },
    );
    // The real Slurm started by test/infra/setup.sh has one partition, debug (the default).
    await pty.expect(/Slurm partition[\s\S]*❯ debug/);
    pty.send(KEY.ctrlC);
    const r = await pty.done();
    expect(r.exitCode).toBe(130);
    expect(registryText()).toBe(before);
  });
});
