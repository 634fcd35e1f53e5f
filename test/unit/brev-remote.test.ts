// The scripts tao-infer runs on a Brev instance, executed here by a real /bin/sh.
import { execa } from 'execa';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/errors.js';
import {
  checkName,
  forwardArgv,
  launchScript,
  logsScript,
  parseRemote,
  secretEnvFile,
  secretUploadCommand,
  stopScript,
  wrapRemote,
} from '../../src/platforms/brev/remote.js';
import { dockerRunArgs } from '../../src/platforms/docker-cli.js';
import { formatArgv } from '../../src/util/shell.js';
import type { LaunchSpec } from '../../src/types.js';
import { CANARY } from '../helpers/canary.js';


function spec(over: Partial<LaunchSpec> = {}): LaunchSpec {
  return {
    job_id: '0b7e9c8e-1f2a-4b3c-9d4e-5f6a7b8c9d0e',
    network_arch: 'cosmos-rl',
    image: 'nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt',
    inner_command: `umask 0 && cosmos-rl-inference-microservice --job '{"a":"it''s"}' --docker_env_vars '{}'`,
    num_gpus: 1,
    container_port: 8080,
    host_port: 8081,
    bind_address: '127.0.0.1',
    env: { secretNames: ['HF_TOKEN'], plain: { WANDB_PROJECT: "my 'project'" } },
    shm_size: '16g',
    labels: { 'tao-infer.job_id': '0b7e9c8e-1f2a-4b3c-9d4e-5f6a7b8c9d0e' },
    options: {},
    ...over,
  };
}

/** What the real brev exec does with the command: the remote shell runs it; piped stdout gets the instance name after. */
async function fakeExec(cmd: string) {
  const r = await execa('/bin/sh', ['-c', cmd], { reject: false });
  return { stdout: `${r.stdout}\n` + 'my-instance\n', stderr: r.stderr };
}

describe('wrapRemote / parseRemote', () => {
  it('reports the script exit code and output, ignoring what brev prints after', async () => {
    const r = await fakeExec(wrapRemote(`echo "it's"; echo line2; echo err >&2; exit 7`));
    const p = parseRemote(r.stdout);
    expect(p).toEqual({ rc: 7, out: "it's\nline2\n" });
    expect(r.stderr).toContain('err');
  });
  it('exits 0 itself, so brev never retries a failed script', async () => {
    const r = await execa('/bin/sh', ['-c', wrapRemote('exit 3')], { reject: false });
    expect(r.exitCode).toBe(0);
  });
  it('finds a marker glued to an output without a final newline', async () => {
    const r = await fakeExec(wrapRemote(`printf 'no-newline'`));
    expect(parseRemote(r.stdout)).toEqual({ rc: 0, out: 'no-newline' });
  });
  it('is undefined when the script never finished (connection failure)', () => {
    expect(parseRemote('Connection failed, checking instance status...\n')).toBeUndefined();
  });
});

describe('secret env file', () => {
  it('round-trips any value through set -a; . file', async () => {
    const nasty = `${CANARY} with 'quotes' "dq" $HOME \`bt\` \\ and\nnewline`;
    const dir = mkdtempSync(join(tmpdir(), 'brev-env-'));
    const f = join(dir, 'x.env');
    writeFileSync(f, secretEnvFile(['HF_TOKEN'], { HF_TOKEN: nasty }));
    const r = await execa('/bin/sh', ['-c', `set -a; . "${f}"; set +a; printf %s "$HF_TOKEN"`], { env: {}, extendEnv: false });
    expect(r.stdout).toBe(nasty);
  });
  it('upload command creates the file mode 600 from stdin, holding no value on its command line', async () => {
    const home = mkdtempSync(join(tmpdir(), 'brev-home-'));
    const cmd = secretUploadCommand(spec().job_id);
    expect(cmd).not.toContain(CANARY);
    await execa('/bin/sh', ['-c', cmd], { input: `HF_TOKEN='${CANARY}'\n`, env: { HOME: home, PATH: process.env.PATH } });
    const r = await execa('/bin/sh', ['-c', `stat -c %a "$HOME/.tao-infer/${spec().job_id}.env"; stat -c %a "$HOME/.tao-infer"`], { env: { HOME: home, PATH: process.env.PATH } });
    expect(r.stdout.split('\n')).toEqual(['600', '700']);
  });
  it('refuses a listed secret that is not set', () => {
    expect(() => secretEnvFile(['HF_TOKEN'], {})).toThrow(InvalidInputError);
  });
});

describe('scripts', () => {
  it('launch runs exactly the local-docker docker run, with secret names only', () => {
    const s = spec();
    const script = launchScript(s, 'tao_default');
    expect(script).toContain(formatArgv(['docker', ...dockerRunArgs(s, { network: 'tao_default' })]));
    expect(script).toContain('-e HF_TOKEN');
    expect(script).toContain(`. "$HOME/.tao-infer/${s.job_id}.env"`);
    expect(script).toContain(`rm -f "$HOME/.tao-infer/${s.job_id}.env"`);
    expect(script).toContain(`export WANDB_PROJECT='my '\\''project'\\'''`);
    expect(script).not.toContain(CANARY);
  });
  it('launch without secrets does not need the env file', () => {
    const script = launchScript(spec({ env: { secretNames: [], plain: {} } }), 'n1');
    expect(script).not.toContain('.env');
  });
  it('the launch script parses in /bin/sh', async () => {
    const r = await execa('/bin/sh', ['-n', '-c', launchScript(spec(), 'tao_default')], { reject: false });
    expect(r.exitCode).toBe(0);
    const r2 = await execa('/bin/sh', ['-n', '-c', wrapRemote(stopScript(spec().job_id))], { reject: false });
    expect(r2.exitCode).toBe(0);
  });
  it('logs script', () => {
    expect(logsScript('abc', { tail: 20, follow: true })).toBe('docker logs --tail 20 -f abc 2>&1');
    expect(logsScript('abc', {})).toBe('docker logs abc 2>&1');
  });
  it('names on command lines are checked', () => {
    expect(() => checkName('--instance', 'a;rm -rf /')).toThrow(InvalidInputError);
    expect(() => checkName('--instance', '-oProxyCommand=x')).toThrow(InvalidInputError);
    expect(checkName('--instance', 'gpu-box_1.a')).toBe('gpu-box_1.a');
  });
  it('forward argv binds loopback only and names the config', () => {
    const a = forwardArgv('box', 8090, 8080, '127.0.0.1', '/x/cfg');
    expect(a.slice(0, 3)).toEqual(['ssh', '-F', '/x/cfg']);
    expect(a).toContain('ExitOnForwardFailure=yes');
    expect(a[a.indexOf('-L') + 1]).toBe('127.0.0.1:8090:127.0.0.1:8080');
    expect(a[a.length - 1]).toBe('box');
  });
});
