/**
 * Slurm job scripts and options (src/platforms/slurm/script.ts, options.ts, state mapping in adapter.ts):
 * golden scripts for every container runtime, each checked with `bash -n`; secrets never in the script;
 * the secrets file survives a real `sh` source byte for byte; input validation names the flag.
 * Regenerate goldens with UPDATE_GOLDEN=1 (then review the diff).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidInputError, MissingInputError } from '../../src/errors.js';
import { mapSlurmState } from '../../src/platforms/slurm/adapter.js';
import { options } from '../../src/platforms/slurm/options.js';
import { enrootImage, remote, remotePath, renderJobScript, renderSecretsFile, resolveSlurmParams, secretsFileNames } from '../../src/platforms/slurm/script.js';
import type { LaunchSpec } from '../../src/types.js';
import { CANARY as BASE_CANARY } from '../helpers/canary.js';

const GOLDEN = resolve(import.meta.dirname, '..', 'golden', 'slurm');
const tmp = mkdtempSync(join(tmpdir(), 'tao-infer-slurm-script-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const JOB_JSON = '{"job_id":"6f1c2d3e-0000-4000-8000-000000000001","specs":{"model_path":"/models/it\'s here"},"neural_network_name":"cosmos-rl"}';
const ENV_JSON = '{"TAO_EXECUTION_BACKEND":"slurm","TAO_API_JOB_ID":"6f1c2d3e-0000-4000-8000-000000000001","CLOUD_BASED":"False"}';

function spec(over: Partial<LaunchSpec> = {}, opts: Record<string, unknown> = {}): LaunchSpec {
  return {
    job_id: '6f1c2d3e-0000-4000-8000-000000000001',
    network_arch: 'cosmos-rl',
    image: 'nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt',
    inner_command: `umask 0 && cosmos-rl-inference-microservice --job '${JOB_JSON.replace(/'/g, `'\\''`)}' --docker_env_vars '${ENV_JSON}'`,
    num_gpus: 2,
    container_port: 8080,
    bind_address: '127.0.0.1',
    env: { secretNames: ['HF_TOKEN', 'WANDB_API_KEY'], plain: { WANDB_PROJECT: 'my project $x' } },
    shm_size: '16g',
    labels: { 'tao-infer.job_id': '6f1c2d3e-0000-4000-8000-000000000001', 'tao-infer.managed-by': 'tao-infer' },
    options: { slurmUser: 'alice', slurmHost: 'login.cluster.org', partition: 'batch', account: 'proj42', ...opts },
    ...over,
  };
}

function bashN(text: string, name: string) {
  const f = join(tmp, name);
  writeFileSync(f, text);
  execFileSync('bash', ['-n', f]); // throws with bash's message on a syntax error
}

function golden(name: string, text: string) {
  const f = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN) writeFileSync(f, text);
  expect(existsSync(f), `${f} is missing: run with UPDATE_GOLDEN=1 and review it`).toBe(true);
  expect(text).toBe(readFileSync(f, 'utf8'));
}

describe('job script golden files (+ bash -n)', () => {
  const cases: Array<[string, Partial<LaunchSpec>, Record<string, unknown>]> = [
    ['pyxis.sbatch', {}, { containerRuntime: 'pyxis', containerMounts: '/lustre/models:/models:ro,/scratch:/scratch', sbatchArgs: ['--qos=high', '--exclusive'] }],
    ['pyxis-sqsh.sbatch', { num_gpus: 8 }, { containerRuntime: 'pyxis', imageFile: '/lustre/images/tao 7.1.sqsh', jobDir: '/lustre/alice/tao-infer', time: '1-00:00:00', mem: '0', cpusPerTask: 64 }],
    ['apptainer.sbatch', {}, { containerRuntime: 'apptainer', containerMounts: '/data:/data' }],
    // start --max-duration 1h30m → the Slurm time limit (issue 10 point 6).
    ['max-duration.sbatch', { max_duration_s: 5400 }, { containerRuntime: 'pyxis' }],
    ['apptainer-nogpu.sbatch', { num_gpus: 0 }, { containerRuntime: 'apptainer', imageFile: '/images/tao.sif', sbatchArgs: ['--mem-per-cpu=4G'] }],
    ['docker.sbatch', {}, { containerRuntime: 'docker', containerMounts: '/data:/data:ro' }],
    ['none.sbatch', { num_gpus: 0, env: { secretNames: [], plain: {} } }, { containerRuntime: 'none', account: undefined }],
  ];
  for (const [name, over, opts] of cases) {
    it(name, () => {
      const s = spec(over, opts);
      const text = renderJobScript(s, resolveSlurmParams(s));
      bashN(text, name);
      golden(name, text);
    });
  }

  it('pyxis: enroot image URI, mounts, gres, account and extra #SBATCH lines', () => {
    const text = readFileSync(join(GOLDEN, 'pyxis.sbatch'), 'utf8');
    expect(text).toContain("--container-image='nvcr.io#nvidia/tao/tao-toolkit:7.1.0-pyt'");
    expect(text).toContain('--container-mounts=/lustre/models:/models:ro,/scratch:/scratch');
    expect(text).toMatch(/^#SBATCH --gres=gpu:2$/m);
    expect(text).toMatch(/^#SBATCH --account=proj42$/m);
    expect(text).toMatch(/^#SBATCH --qos=high$/m);
    expect(text).toMatch(/^#SBATCH --job-name=6f1c2d3e-0000-4000-8000-000000000001$/m);
  });

  it('no --gres line and no --nv without GPUs', () => {
    const text = readFileSync(join(GOLDEN, 'apptainer-nogpu.sbatch'), 'utf8');
    expect(text).not.toContain('--gres');
    expect(text).not.toContain('--nv');
    expect(text).toContain("\"$CT\" exec \\\n  /images/tao.sif \\\n  /bin/sh -c 'umask 0");
  });

  it('memory and CPUs are requested by default (the arch\'s figures); --mem 0 is the whole node; --mem-per-cpu replaces --mem', () => {
    const text = readFileSync(join(GOLDEN, 'pyxis.sbatch'), 'utf8');
    expect(text).toMatch(/^#SBATCH --cpus-per-task=8$/m);
    expect(text).toMatch(/^#SBATCH --mem=64G$/m); // references/cosmos-rl.config.json resources
    const sqsh = readFileSync(join(GOLDEN, 'pyxis-sqsh.sbatch'), 'utf8');
    expect(sqsh).toMatch(/^#SBATCH --mem=0$/m);
    expect(sqsh).toMatch(/^#SBATCH --cpus-per-task=64$/m);
    const nogpu = readFileSync(join(GOLDEN, 'apptainer-nogpu.sbatch'), 'utf8');
    expect(nogpu).not.toMatch(/^#SBATCH --mem=/m);
    expect(nogpu).toMatch(/^#SBATCH --mem-per-cpu=4G$/m);
    expect(resolveSlurmParams(spec({ network_arch: 'cosmos-predict2.5' }))).toMatchObject({ mem: '128G', cpusPerTask: 16 });
    expect(resolveSlurmParams(spec({}, { mem: '500000', cpusPerTask: '4' }))).toMatchObject({ mem: '500000', cpusPerTask: 4 });
  });

  it('--gpu-type asks for typed GRES (sbatch --gres=gpu:<type>:N); needs GPUs and a plain name', () => {
    const s = spec({}, { containerRuntime: 'pyxis', gpuType: 'h100' });
    const text = renderJobScript(s, resolveSlurmParams(s));
    expect(text).toMatch(/^#SBATCH --gres=gpu:h100:2$/m);
    expect(() => resolveSlurmParams(spec({ num_gpus: 0 }, { gpuType: 'h100' }))).toThrow(/--gpu-type needs --num-gpus/);
    expect(() => resolveSlurmParams(spec({}, { gpuType: 'h100:4' }))).toThrow(InvalidInputError);
    expect(() => resolveSlurmParams(spec({}, { gpuType: 'a b' }))).toThrow(InvalidInputError);
  });

  it('apptainer: NGC_KEY goes to secrets.env only for docker://nvcr.io pulls, and leaves the service environment', () => {
    const s = spec({}, { containerRuntime: 'apptainer' });
    const p = resolveSlurmParams(s);
    expect(secretsFileNames(s, p, { NGC_KEY: 'k' })).toEqual(['HF_TOKEN', 'WANDB_API_KEY', 'NGC_KEY']);
    expect(secretsFileNames(s, p, {})).toEqual(['HF_TOKEN', 'WANDB_API_KEY']);
    const sif = spec({}, { containerRuntime: 'apptainer', imageFile: '/images/tao.sif' });
    expect(secretsFileNames(sif, resolveSlurmParams(sif), { NGC_KEY: 'k' })).not.toContain('NGC_KEY');
    const other = spec({ image: 'registry.example.com/tao:1' }, { containerRuntime: 'apptainer' });
    expect(secretsFileNames(other, resolveSlurmParams(other), { NGC_KEY: 'k' })).not.toContain('NGC_KEY');
    expect(renderJobScript(other, resolveSlurmParams(other))).not.toContain('APPTAINER_DOCKER_PASSWORD');
    // The credential lines, run by a shell with NGC_KEY sourced from secrets.env: both tool families get the login,
    // NGC_KEY itself is gone, and no value is on a command line.
    const text = renderJobScript(s, p);
    const lines = text.split('\n');
    const from = lines.findIndex((l) => l.startsWith('if [ -n "${NGC_KEY:-}" ]'));
    const block = lines.slice(from, lines.indexOf('unset NGC_KEY') + 1).join('\n');
    const out = execFileSync('bash', ['-c', `${block}\nprintf '%s|%s|%s|%s' "$APPTAINER_DOCKER_USERNAME" "$SINGULARITY_DOCKER_USERNAME" "\${NGC_KEY-unset}" "$([ "$APPTAINER_DOCKER_PASSWORD" = k ] && [ "$SINGULARITY_DOCKER_PASSWORD" = k ] && echo same)"`], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, NGC_KEY: 'k' },
    });
    expect(out).toBe('$oauthtoken|$oauthtoken|unset|same');
  });

  it('apptainer falls back to singularity when apptainer is not on the PATH', () => {
    const s = spec({}, { containerRuntime: 'apptainer' });
    const line = renderJobScript(s, resolveSlurmParams(s)).split('\n').find((l) => l.startsWith('CT=$('))!;
    const bin = mkdtempSync(join(tmp, 'bin-'));
    for (const tool of ['singularity', 'apptainer']) {
      writeFileSync(join(bin, tool), '#!/bin/sh\n', { mode: 0o755 });
      const out = execFileSync('bash', ['-c', `${line}\nprintf '%s' "$CT"`], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin` } });
      expect(out).toBe(join(bin, tool)); // apptainer wins once both exist
    }
    rmSync(bin, { recursive: true });
    const none = (() => {
      try {
        execFileSync('/bin/bash', ['-c', line], { encoding: 'utf8', env: { PATH: '/nonexistent' }, stdio: 'pipe' });
        return undefined;
      } catch (e) {
        return e as { status: number; stderr: string };
      }
    })();
    expect(none?.status).toBe(127);
    expect(none?.stderr).toMatch(/neither apptainer nor singularity/);
  });

  it('the inner command survives the script quoting byte for byte', () => {
    // Execute the rendered RUN line with `sh -c` replaced by a printer.
    const s = spec({}, { containerRuntime: 'none' });
    const text = renderJobScript(s, resolveSlurmParams(s));
    const run = text.split('\n').find((l) => l.startsWith('/bin/sh -c '))!.replace(/ &$/, '');
    const out = execFileSync('bash', ['-c', run.replace(/^\/bin\/sh -c /, "printf '%s' ")], { encoding: 'utf8' });
    expect(out).toBe(s.inner_command);
  });
});

describe('secrets', () => {
  // The shared canary with shell metacharacters around it: the secrets file must source it back exactly.
  const CANARY = `${BASE_CANARY}-'quoted' "dq" $HOME \`tick\` \\ end`;

  it('never appear in the script; the secrets file is sourced back exactly', () => {
    const s = spec({}, { containerRuntime: 'docker' });
    const env = { HF_TOKEN: CANARY, WANDB_API_KEY: 'w\nmultiline' };
    const text = renderJobScript(s, resolveSlurmParams(s, env));
    expect(text).not.toContain('canary-');
    expect(text).toMatch(/^ {2}-e HF_TOKEN \\$/m);
    const file = join(tmp, 'secrets.env');
    writeFileSync(file, renderSecretsFile(s.env.secretNames, env), { mode: 0o600 });
    const out = execFileSync('sh', ['-c', `set -a; . "$1"; set +a; printf '%s|%s' "$HF_TOKEN" "$WANDB_API_KEY"`, 'sh', file], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(out).toBe(`${CANARY}|w\nmultiline`);
  });

  it('unset secrets and invalid names are left out of the file', () => {
    expect(renderSecretsFile(['HF_TOKEN', 'NGC_KEY', 'BAD-NAME'], { HF_TOKEN: 'x', 'BAD-NAME': 'y' })).toBe("HF_TOKEN='x'\n");
  });

  it('remote commands carry no values, only paths', () => {
    const p = resolveSlurmParams(spec());
    const cmds = [remote.prepareDir(p), remote.writeSecrets(p), remote.writeScript(p), remote.submit(p), remote.squeue('12'), remote.cancel('12')];
    expect(cmds.join('\n')).not.toMatch(/canary|HF_TOKEN=/);
    expect(remote.writeSecrets(p)).toBe(
      'umask 077 && cat > "$HOME"/.tao-infer/jobs/6f1c2d3e-0000-4000-8000-000000000001/secrets.env && chmod 600 "$HOME"/.tao-infer/jobs/6f1c2d3e-0000-4000-8000-000000000001/secrets.env',
    );
    expect(remote.submit(p)).toBe('cd "$HOME"/.tao-infer/jobs/6f1c2d3e-0000-4000-8000-000000000001 && sbatch --parsable job.sbatch');
  });
});

describe('resolveSlurmParams validation', () => {
  const bad = (opts: Record<string, unknown>, flag: string, over: Partial<LaunchSpec> = {}) => {
    let err: unknown;
    try {
      resolveSlurmParams(spec(over, opts));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).field).toBe(flag);
    return err as InvalidInputError;
  };

  it('missing user, host, partition name the flag; env vars fill in', () => {
    expect(bad({ slurmUser: undefined }, '--slurm-user')).toBeInstanceOf(MissingInputError);
    expect(bad({ slurmHost: '' }, '--slurm-host')).toBeInstanceOf(MissingInputError);
    expect(bad({ partition: undefined }, '--partition')).toBeInstanceOf(MissingInputError);
    const p = resolveSlurmParams(spec({}, { slurmUser: undefined, slurmHost: undefined, partition: undefined, account: undefined }), {
      SLURM_USER: 'bob',
      SLURM_HOSTNAME: 'dgx-login',
      SLURM_PARTITION: 'gpu',
      SLURM_ACCOUNT: 'acct',
    });
    expect(p).toMatchObject({ target: { user: 'bob', host: 'dgx-login', port: 22 }, partition: 'gpu', account: 'acct', runtime: 'pyxis', time: '04:00:00' });
  });

  it('rejects values that could break #SBATCH lines or the shell', () => {
    bad({ partition: 'batch\n#SBATCH --wrap=x' }, '--partition');
    bad({ account: 'a b' }, '--account');
    bad({ time: '4 hours' }, '--time');
    bad({ slurmUser: 'alice;rm' }, '--slurm-user');
    bad({ slurmHost: 'user@host' }, '--slurm-host');
    bad({ sshPort: 70000 }, '--ssh-port');
    bad({ sshPort: 'abc' }, '--ssh-port');
    bad({ jobDir: 'relative/dir' }, '--job-dir');
    bad({ containerRuntime: 'podman' }, '--container-runtime');
    bad({ containerRuntime: 'none', containerMounts: '/a:/a' }, '--container-mounts');
    bad({ containerRuntime: 'docker', imageFile: '/x.sqsh' }, '--image-file');
    bad({ imageFile: 'rel.sqsh' }, '--image-file');
    expect(bad({ sbatchArgs: ['--output=/tmp/x'] }, '--sbatch-arg').message).toContain('--output is set by tao-infer');
    bad({ sbatchArgs: ['--comment=a b'] }, '--sbatch-arg');
    bad({ sbatchArgs: ['qos=high'] }, '--sbatch-arg');
    bad({ mem: '64 GB' }, '--mem');
    bad({ mem: '-1' }, '--mem');
    bad({ cpusPerTask: 0 }, '--cpus-per-task');
    bad({ cpusPerTask: 'many' }, '--cpus-per-task');
    expect(bad({ sbatchArgs: ['--mem=8G'] }, '--sbatch-arg').message).toContain('--mem is set by tao-infer');
  });

  it('accepts the usual forms', () => {
    for (const time of ['30', '04:00:00', '1-00:00:00', '2-12', 'UNLIMITED']) expect(resolveSlurmParams(spec({}, { time })).time).toBe(time);
    const p = resolveSlurmParams(spec({}, { sshPort: '2222', partition: 'a,b', jobDir: '/lustre/x/', identityFile: 'rel/key', knownHosts: '~/kh' }));
    expect(p.target.port).toBe(2222);
    expect(p.jobDir).toBe('/lustre/x/6f1c2d3e-0000-4000-8000-000000000001');
    expect(p.target.identityFile).toBe(resolve('rel/key'));
    expect(p.target.knownHosts).not.toContain('~');
  });
});

describe('helpers', () => {
  it('enrootImage turns registry references into enroot URIs', () => {
    expect(enrootImage('nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt')).toBe('nvcr.io#nvidia/tao/tao-toolkit:7.1.0-pyt');
    expect(enrootImage('localhost:5000/x/y:1')).toBe('localhost:5000#x/y:1');
    expect(enrootImage('localhost/x')).toBe('localhost#x');
    expect(enrootImage('ubuntu:22.04')).toBe('ubuntu:22.04');
    expect(enrootImage('library/ubuntu')).toBe('library/ubuntu');
    expect(enrootImage('nvcr.io#nvidia/x')).toBe('nvcr.io#nvidia/x');
    expect(enrootImage('/images/x.sqsh')).toBe('/images/x.sqsh');
  });

  it('remotePath expands ~ in the remote shell and quotes the rest', () => {
    const sh = (expr: string) => execFileSync('sh', ['-c', `printf '%s' ${expr}`], { encoding: 'utf8', env: { HOME: '/home/a b' } });
    expect(sh(remotePath('~/.tao-infer/jobs/x', 'job.log'))).toBe('/home/a b/.tao-infer/jobs/x/job.log');
    expect(sh(remotePath('/data/it\'s $here'))).toBe("/data/it's $here");
    expect(sh(remotePath('~'))).toBe('/home/a b');
  });

  it('maps Slurm states as the contract says', () => {
    const m: Record<string, string> = {
      PENDING: 'pending',
      RUNNING: 'running',
      COMPLETING: 'running',
      COMPLETED: 'complete',
      FAILED: 'error',
      TIMEOUT: 'error',
      OUT_OF_MEMORY: 'error',
      NODE_FAIL: 'error',
      BOOT_FAIL: 'error',
      CANCELLED: 'canceled',
      'CANCELLED by 1234': 'canceled',
      'CANCELLED+': 'canceled',
      PREEMPTED: 'canceled',
      REVOKED: 'canceled',
      OUT_OF_ME: 'error',
      WHATEVER: 'unknown',
      '': 'unknown',
    };
    for (const [k, v] of Object.entries(m)) expect(mapSlurmState(k), k).toBe(v);
  });

  it('declares the issue flags with their env fallbacks', () => {
    const byKey = Object.fromEntries(options.map((o) => [o.key, o]));
    expect(byKey.slurmUser).toMatchObject({ env: 'SLURM_USER', required: true });
    expect(byKey.slurmHost).toMatchObject({ env: 'SLURM_HOSTNAME', required: true });
    expect(byKey.partition).toMatchObject({ env: 'SLURM_PARTITION', required: true });
    expect(byKey.account).toMatchObject({ env: 'SLURM_ACCOUNT' });
    expect(byKey.sshPort).toMatchObject({ integer: true, default: 22 });
    expect(byKey.containerRuntime!.choices).toEqual(['pyxis', 'apptainer', 'docker', 'none']);
    for (const f of ['--slurm-user', '--slurm-host', '--ssh-port', '--identity-file', '--known-hosts', '--partition', '--account', '--time', '--job-dir', '--container-runtime', '--container-mounts'])
      expect(options.some((o) => o.flags.startsWith(f)), f).toBe(true);
  });
});
