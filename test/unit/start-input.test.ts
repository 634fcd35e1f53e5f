// Issue 8 point 11: start refuses input that cannot work (exit 2, nothing launched) and warns about risky choices;
// entries left `starting` by a killed start are shown as stale and give their port back.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pickPort } from '../../src/registry/ports.js';
import { Registry } from '../../src/registry/store.js';
import { parseJson, runCli } from '../helpers/cli.js';
import { RANGE } from '../helpers/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'tao-start-input-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const stateFile = join(dir, 'state.json');
// docker is not reachable for these runs: any platform call would end in exit 3, not 2.
// LD_PRELOAD is set (empty, harmless) so that the refusal, not 'not set', is what --env LD_PRELOAD meets.
const env = { TAO_INF_STATE_FILE: stateFile, PATH: `/nonexistent:${process.env.PATH}`, DOCKER_HOST: `unix://${join(dir, 'none.sock')}`, LD_PRELOAD: '' };
const start = (...args: string[]) => runCli(['start', '--platform', 'local-docker', '--arch', 'cosmos-rl', '--model', '/m', ...args], { env });

describe('start input (issue 8.11)', () => {
  it.each([
    [['--bind', '8.8.8.8'], /--bind 8\.8\.8\.8 is not an address of this machine/],
    [['--num-gpus', '100000000000000000000'], /--num-gpus must be a whole number from 1 to 4096/],
    [['--timeout', '-5'], /--timeout must be a whole number of seconds between 1 and/],
    [['--env', 'PATH'], /--env PATH would replace the container's own PATH[\s\S]*--allow-env-override/],
    [['--env', 'LD_PRELOAD'], /--env LD_PRELOAD would replace the container's own LD_PRELOAD/],
  ])('%j is exit 2 before any platform call', async (args, msg) => {
    const r = await start(...args);
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(msg);
  });

  it('a model path that makes the container command longer than one argv string may be is exit 2 naming the limit', async () => {
    const r = await runCli(['start', '--platform', 'local-docker', '--arch', 'cosmos-rl', '--model', `/m/${'x'.repeat(131_000)}`], { env });
    expect(r.exitCode, r.stderr.slice(0, 500)).toBe(2);
    expect(r.stderr).toMatch(/one argument may not exceed 131071 bytes \(Linux MAX_ARG_STRLEN\)/);
  });

  it('--bind 0.0.0.0 and a port below 1024 are accepted with a warning (dry run)', async () => {
    const r = await start('--bind', '0.0.0.0', '--port', '1023', '--dry-run', '--num-gpus', '0');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: --bind 0\.0\.0\.0: the service listens on every interface/);
    expect(r.stderr).toMatch(/warning: --port 1023 is a privileged port/);
  });

  it('--env PATH with --allow-env-override passes the check (dry run)', async () => {
    const r = await start('--env', 'PATH', '--allow-env-override', '--dry-run', '--num-gpus', '0');
    expect(r.exitCode, r.stderr).toBe(0);
  });
});

describe('stale starting entries (issue 8.11)', () => {
  it('a starting entry whose start process is gone and whose launch deadline passed is shown as stale, and its port is handed out again', async () => {
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const live = { job_id: 'live', platform: 'local-docker', network_arch: 'cosmos-rl', host_url: '', host_port: RANGE.min + 1, started_at: new Date().toISOString(), state: 'starting', starter_pid: process.pid, launch_deadline: '2020-01-01T00:00:00.000Z' };
    const stale = { ...live, job_id: 'stale', host_port: RANGE.min, starter_pid: Number(dead), started_at: '2020-01-01T00:00:00.000Z' };
    writeFileSync(stateFile, JSON.stringify({ stale, live }), { mode: 0o600 });
    const ls = await runCli(['ls', '--json'], { env });
    expect(ls.exitCode, ls.stderr).toBe(0);
    const rows = parseJson(ls) as Array<{ job_id: string; live: { native?: string } }>;
    expect(rows.find((r) => r.job_id === 'stale')!.live.native).toBe('stale');
    expect(rows.find((r) => r.job_id === 'live')!.live.native).not.toBe('stale');
    const s = await new Registry(stateFile).read();
    expect(await pickPort(s, { holds: () => true, checkBound: false, bindAddress: '127.0.0.1' })).toBe(RANGE.min);
  });
});
