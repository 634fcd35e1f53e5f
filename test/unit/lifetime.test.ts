/**
 * Issue 10 points 5 and 6: short job_ids (one resolver) and service lifetimes — `--idle-timeout` mapped to
 * the arch's own flag from references/service.yaml, `--max-duration` in what every platform is handed
 * (docker argv, brev launch script, kubernetes Job, Lepton body, Slurm --time; the golden Slurm script is
 * test/golden/slurm/max-duration.sbatch in slurm-script.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { applyIdleTimeout } from '../../src/archs/command.js';
import { AmbiguousTargetError, InvalidInputError, JobNotFoundError } from '../../src/errors.js';
import { prepareLaunch } from '../../src/lifecycle.js';
import { launchScript } from '../../src/platforms/brev/remote.js';
import { dockerRunArgs } from '../../src/platforms/docker-cli.js';
import { buildManifests, EXPIRES_AT_ANNOTATION, namesFor } from '../../src/platforms/kubernetes/manifests.js';
import { buildDeployment, EXPIRES_AT_ENV } from '../../src/platforms/lepton/deployment.js';
import { resolveSlurmParams, slurmTime, slurmTimeSeconds } from '../../src/platforms/slurm/script.js';
import { loadReferences } from '../../src/references.js';
import { resolveJobId } from '../../src/service/routing.js';
import type { RegistryEntry } from '../../src/types.js';
import { formatAge, formatSpan, formatUntil, parseDuration } from '../../src/util/duration.js';

const refs = loadReferences();
const noWarn = () => undefined;

describe('short job_ids (resolveJobId)', () => {
  const mk = (job_id: string, started_at: string): RegistryEntry => ({ job_id, network_arch: 'cosmos-rl', platform: 'local-docker', host_url: 'http://localhost:8080', started_at });
  const entries = Object.fromEntries(
    [mk('3f2a9c10-aaaa-4000-8000-000000000001', '2026-01-01'), mk('3f2a77e1-bbbb-4000-8000-000000000002', '2026-01-02'), mk('abcd', '2026-01-03'), mk('9d41e2c0-cccc-4000-8000-000000000003', '2026-01-04')].map((e) => [e.job_id, e]),
  );
  it('an exact id wins, even when it is also a prefix of another', () => {
    expect(resolveJobId({ ...entries, abcde1: mk('abcde1', '2026-02-01') }, 'abcd').job_id).toBe('abcd');
  });
  it('a unique prefix of 4+ characters resolves; blanks around it are ignored', () => {
    expect(resolveJobId(entries, '9d41').job_id).toBe('9d41e2c0-cccc-4000-8000-000000000003');
    expect(resolveJobId(entries, ' 3f2a9 ').job_id).toBe('3f2a9c10-aaaa-4000-8000-000000000001');
  });
  it('an ambiguous prefix lists the candidates (exit 2)', () => {
    let err: unknown;
    try {
      resolveJobId(entries, '3f2a');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AmbiguousTargetError);
    expect((err as AmbiguousTargetError).candidates.map((c) => c.job_id)).toEqual(['3f2a9c10-aaaa-4000-8000-000000000001', '3f2a77e1-bbbb-4000-8000-000000000002']);
    expect((err as AmbiguousTargetError).hint).toContain('3f2a77e1-bbbb-4000-8000-000000000002');
  });
  it('fewer than 4 characters that are not an exact id are refused; no match is not found', () => {
    expect(() => resolveJobId(entries, '3f2')).toThrow(InvalidInputError);
    expect(() => resolveJobId(entries, '3f2')).toThrow(/at least 4 characters/);
    expect(() => resolveJobId(entries, 'ffff')).toThrow(JobNotFoundError);
  });
  it('inherited names match nothing', () => {
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) expect(() => resolveJobId(entries, name)).toThrow(JobNotFoundError);
  });
});

describe('durations', () => {
  it('parses units s, m, h, d and combinations', () => {
    expect(parseDuration('90m')).toBe(5400);
    expect(parseDuration('4h')).toBe(14400);
    expect(parseDuration('1d')).toBe(86400);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration('120s')).toBe(120);
  });
  it('refuses bare numbers, unknown units, zero and under a minute', () => {
    for (const bad of ['90', '4 hours', '1w', '0m', '30s', '', '-1h', 'h']) expect(() => parseDuration(bad), bad).toThrow(InvalidInputError);
  });
  it('formats spans and relative instants', () => {
    const now = Date.parse('2026-11-30T12:00:00Z');
    expect(formatSpan(42)).toBe('42s');
    expect(formatSpan(12 * 60 + 5)).toBe('12m');
    expect(formatSpan(3 * 3600)).toBe('3h');
    expect(formatSpan(3 * 86400)).toBe('3d');
    expect(formatAge('2026-11-30T11:48:00Z', now)).toBe('12m');
    expect(formatUntil('2026-11-30T15:00:00Z', now)).toBe('in 3h');
    expect(formatUntil('2026-11-30T11:55:00Z', now)).toBe('5m ago');
    expect(formatUntil(undefined, now)).toBe('-');
    expect(formatAge('not a date', now)).toBe('-');
  });
  it('converts to and from Slurm time limits', () => {
    expect(slurmTime(5400)).toBe('0-01:30:00');
    expect(slurmTime(86400 + 61)).toBe('1-00:02:00');
    expect(slurmTimeSeconds('04:00:00')).toBe(14400);
    expect(slurmTimeSeconds('90')).toBe(5400);
    expect(slurmTimeSeconds('1-12')).toBe(129600);
    expect(slurmTimeSeconds('2-00:30')).toBe(174600);
    expect(slurmTimeSeconds('UNLIMITED')).toBeUndefined();
  });
});

describe('--idle-timeout (data from references/service.yaml)', () => {
  it("maps to each arch's own flag, and records the arch default when not given", () => {
    expect(applyIdleTimeout(refs, 'tao-dataservices', 45)).toEqual({ arch_options: { idle_timeout_minutes: '45' }, idle_timeout_minutes: 45 });
    expect(applyIdleTimeout(refs, 'tao-dataservices', undefined)).toEqual({ arch_options: {}, idle_timeout_minutes: 30 });
    expect(applyIdleTimeout(refs, 'cosmos-predict2.5', '7.5').idle_timeout_minutes).toBe(7.5);
    expect(applyIdleTimeout(refs, 'cosmos-rl', undefined)).toEqual({ arch_options: {} });
  });
  it('is refused for an arch without one, for bad values, and when --arch-opt disagrees', () => {
    expect(() => applyIdleTimeout(refs, 'cosmos-rl', 30)).toThrow(/cosmos-rl has no idle timeout/);
    expect(() => applyIdleTimeout(refs, 'tao-dataservices', '7.5')).toThrow(/whole number/);
    expect(() => applyIdleTimeout(refs, 'cosmos-predict2.5', '0')).toThrow(InvalidInputError);
    expect(() => applyIdleTimeout(refs, 'tao-dataservices', 20, { idle_timeout_minutes: '40' })).toThrow(/disagree/);
  });
  it('lands in the inner command as the arch flag', () => {
    const dataservices = prepareLaunch({ network_arch: 'tao-dataservices', model_path: 'hf_model://o/m', platform: 'local-docker', idle_timeout_minutes: 45 }, refs, {}, noWarn);
    expect(dataservices.spec.inner_command).toMatch(/ --idle_timeout_minutes 45$/);
    const predict = prepareLaunch({ network_arch: 'cosmos-predict2.5', model_path: '/models/ckpt', platform: 'slurm', idle_timeout_minutes: '12.5' }, refs, {}, noWarn);
    expect(predict.spec.inner_command).toMatch(/ --idle-timeout-minutes 12\.5$/);
    expect(predict.spec.idle_timeout_minutes).toBe(12.5);
  });
});

describe('--max-duration in what each platform is handed', () => {
  const before = Date.now();
  const { spec } = prepareLaunch(
    { network_arch: 'cosmos-rl', model_path: 'hf_model://o/m', platform: 'local-docker', max_duration: '90m', options: { resourceShape: 'gpu.1xh100' } },
    refs,
    {},
    noWarn,
  );
  spec.host_port = 8123;
  it('the spec carries the seconds and an ISO-8601 UTC expiry', () => {
    expect(spec.max_duration_s).toBe(5400);
    const t = Date.parse(spec.expires_at!);
    expect(spec.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(t - before).toBeGreaterThanOrEqual(5400_000);
    expect(t - Date.now()).toBeLessThanOrEqual(5400_000);
  });
  it('local-docker: the docker run argv has the tao-infer.expires_at label', () => {
    const argv = dockerRunArgs(spec, { network: 'tao_default' });
    expect(argv).toContain(`tao-infer.expires_at=${spec.expires_at}`);
    expect(argv[argv.indexOf(`tao-infer.expires_at=${spec.expires_at}`) - 1]).toBe('--label');
    expect(dockerRunArgs({ ...spec, expires_at: undefined }, { network: 'n' }).join(' ')).not.toContain('expires_at');
  });
  it('brev: the launch script on the instance runs the same labelled docker run', () => {
    expect(launchScript(spec, 'tao_default')).toContain(`--label tao-infer.expires_at=${spec.expires_at}`);
  });
  it('kubernetes: Job activeDeadlineSeconds and an expires-at annotation; absent without --max-duration', () => {
    const m = buildManifests(spec, { namespace: 'default', expose: 'loadbalancer' } as never, namesFor(spec.job_id), () => 'x');
    expect(m.job.spec?.activeDeadlineSeconds).toBe(5400);
    expect(m.job.metadata?.annotations?.[EXPIRES_AT_ANNOTATION]).toBe(spec.expires_at);
    const plain = buildManifests({ ...spec, max_duration_s: undefined, expires_at: undefined }, { namespace: 'default', expose: 'loadbalancer' } as never, namesFor(spec.job_id), () => 'x');
    expect(plain.job.spec).not.toHaveProperty('activeDeadlineSeconds');
    expect(plain.job.metadata?.annotations).not.toHaveProperty(EXPIRES_AT_ANNOTATION);
  });
  it('lepton: the deployment body carries TAO_INFER_EXPIRES_AT', () => {
    const withToken = { ...spec, options: { ...spec.options, endpointTokenEnv: 'TAO_ENDPOINT_TOKEN' } };
    const b = buildDeployment(withToken, {}, undefined, false);
    expect(b.body.spec.envs).toContainEqual({ name: EXPIRES_AT_ENV, value: spec.expires_at });
    expect(buildDeployment({ ...withToken, expires_at: undefined }, {}, undefined, false).body.spec.envs.map((e) => e.name)).not.toContain(EXPIRES_AT_ENV);
  });
  it('slurm: it becomes --time; an explicit --time that disagrees is refused', () => {
    const opts = { slurmUser: 'alice', slurmHost: 'login', partition: 'batch' };
    expect(resolveSlurmParams({ job_id: 'j1', network_arch: 'cosmos-rl', num_gpus: 1, options: opts, max_duration_s: 5400 }).time).toBe('0-01:30:00');
    expect(resolveSlurmParams({ job_id: 'j1', network_arch: 'cosmos-rl', num_gpus: 1, options: { ...opts, time: '04:00:00' }, max_duration_s: 5400 }).time).toBe('0-01:30:00');
    expect(resolveSlurmParams({ job_id: 'j1', network_arch: 'cosmos-rl', num_gpus: 1, options: { ...opts, time: '90' }, max_duration_s: 5400 }).time).toBe('0-01:30:00');
    expect(() => resolveSlurmParams({ job_id: 'j1', network_arch: 'cosmos-rl', num_gpus: 1, options: { ...opts, time: '10:00:00' }, max_duration_s: 5400 })).toThrow(/--max-duration and --time/);
  });
});
