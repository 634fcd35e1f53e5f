// The rules of start's reserve → launch → await ready → roll back (src/start/steps.ts) against a fake adapter and a
// real registry file: what is removed, what is kept (--keep-on-failure), and that the rollback's stop always gets a
// live signal of its own (an interrupt aborts the start's signal, never the rollback's; a second one aborts that).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InterruptedError, LaunchFailedError, PlatformUnavailableError, ServiceFailedError } from '../../src/errors.js';
import { loadReferences } from '../../src/references.js';
import { Registry } from '../../src/registry/store.js';
import { prepareLaunch, type StartInput } from '../../src/start/prepare.js';
import { runStart, type StartRun } from '../../src/start/steps.js';
import type { AdapterContext, EntryContext, JobState, LaunchSpec, Launched, PlatformAdapter, RegistryEntry } from '../../src/types.js';
import { freePort } from '../helpers/ports.js';

const refs = loadReferences();
const dir = mkdtempSync(join(tmpdir(), 'tao-start-steps-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

interface Stop {
  entry: RegistryEntry;
  /** Was the stop's signal already aborted when stop was called? */
  abortedAtCall: boolean;
  signal?: AbortSignal;
}

/** A fake brev-like adapter: launch allocates a host port on its instance and a local forward port, like brev's. */
function fakeAdapter(over: Partial<PlatformAdapter> & { stops: Stop[] }): PlatformAdapter {
  const { stops, ...rest } = over;
  return {
    name: 'brev',
    unsupported: {},
    reservesHostPort: false,
    async preflight() {},
    async plan() {
      return { platform: 'brev', steps: [] };
    },
    async launch(spec: LaunchSpec, ctx: AdapterContext): Promise<Launched> {
      await ctx.record({ platform_job_id: `dep-${spec.job_id.slice(0, 8)}`, platform_data: { instance: 'vm-1' } });
      const host_port = await ctx.allocatePort({ kind: 'remote', host: 'vm-1' });
      const local = await ctx.allocatePort({ kind: 'local' });
      // A port nothing listens on: readiness probes there are refused.
      return { host_url: `http://127.0.0.1:${await freePort()}`, host_port, local_port: local };
    },
    async status(): Promise<JobState> {
      return { state: 'running' };
    },
    async *logs() {
      yield 'loading weights\n';
    },
    async stop(entry: RegistryEntry, ctx: EntryContext) {
      stops.push({ entry, abortedAtCall: Boolean(ctx.signal?.aborted), signal: ctx.signal });
    },
    ...rest,
  };
}

function newRun(adapter: PlatformAdapter, input: Partial<StartInput> = {}, signals: { signal?: AbortSignal; rollbackSignal?: AbortSignal } = {}) {
  const warnings: string[] = [];
  const full: StartInput = { network_arch: 'cosmos-rl', model_path: '/models/x', platform: 'brev', ...input };
  const { spec } = prepareLaunch(full, refs, {}, () => {});
  const registry = new Registry(join(dir, `state-${n++}.json`));
  const run: StartRun = {
    input: full,
    spec,
    platform: 'brev',
    adapter,
    registry,
    env: {},
    log: () => {},
    warn: (m) => warnings.push(m),
    ...signals,
    range: { min: 41100, max: 41199 },
    timeoutS: input.timeout_s ?? 30,
    readiness: refs.request.readiness,
    started_at: '',
  };
  return { run, registry, warnings, job_id: spec.job_id };
}

describe('start steps: roll back', () => {
  it('launch fails → the adapter stops what it left (recorded platform_job_id) and the entry is removed', async () => {
    const stops: Stop[] = [];
    const adapter = fakeAdapter({
      stops,
      async launch(_spec, ctx) {
        await ctx.record({ platform_job_id: 'dep-x' });
        throw new LaunchFailedError('the deployment failed', 'deploy_failed', ['oom']);
      },
    });
    const { run, registry, job_id } = newRun(adapter);
    await expect(runStart(run)).rejects.toBeInstanceOf(LaunchFailedError);
    expect(stops).toHaveLength(1);
    expect(stops[0]!.entry).toMatchObject({ job_id, platform_job_id: 'dep-x', state: 'starting' });
    expect(stops[0]!.abortedAtCall).toBe(false);
    expect(await registry.get(job_id)).toBeUndefined();
  });

  it('launch fails saying nothing was created (nothingLaunched) → no stop is asked of the platform, the entry is removed', async () => {
    const stops: Stop[] = [];
    const adapter = fakeAdapter({
      stops,
      async launch() {
        throw new PlatformUnavailableError('brev', 'the daemon does not answer', { nothingLaunched: true });
      },
    });
    const { run, registry, job_id, warnings } = newRun(adapter);
    await expect(runStart(run)).rejects.toMatchObject({ nothingLaunched: true });
    expect(stops).toEqual([]);
    expect(await registry.get(job_id)).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it('readiness fails (the job ended) → stop is called and the entry removed', async () => {
    const stops: Stop[] = [];
    const adapter = fakeAdapter({ stops, status: async () => ({ state: 'error', exitCode: 137, reason: 'OOMKilled' }) });
    const { run, registry, job_id } = newRun(adapter);
    const err = await runStart(run).catch((e) => e);
    expect(err).toBeInstanceOf(ServiceFailedError);
    expect(String(err.message)).toMatch(/exit code 137 \(OOMKilled\) before it was ready/);
    expect(stops.map((s) => s.entry.job_id)).toEqual([job_id]);
    // The stop got the launched entry: ports allocated under the lock, recorded in the policy's fields (the local one
    // is the lowest of the range free on this host: another program may hold 41100 at the moment).
    expect(stops[0]!.entry).toMatchObject({ state: 'started', host_port: 41100 });
    expect(stops[0]!.entry.local_port).toBeGreaterThanOrEqual(41100);
    expect(stops[0]!.entry.local_port).toBeLessThanOrEqual(41199);
    expect(await registry.get(job_id)).toBeUndefined();
  });

  it('readiness fails with --keep-on-failure → nothing is stopped, the entry is kept, and the warning says how to remove it', async () => {
    const stops: Stop[] = [];
    const adapter = fakeAdapter({ stops, status: async () => ({ state: 'complete', exitCode: 1 }) });
    const { run, registry, warnings, job_id } = newRun(adapter, { keep_on_failure: true });
    await expect(runStart(run)).rejects.toBeInstanceOf(ServiceFailedError);
    expect(stops).toEqual([]);
    expect(await registry.get(job_id)).toMatchObject({ job_id, state: 'started' });
    expect(warnings.join('\n')).toContain(`kept for inspection (--keep-on-failure). Remove it with: tao-infer stop ${job_id}`);
  });

  it('launch fails with --keep-on-failure → the entry is kept', async () => {
    const stops: Stop[] = [];
    const adapter = fakeAdapter({ stops, launch: async () => Promise.reject(new LaunchFailedError('no capacity', 'no_capacity', [])) });
    const { run, registry, job_id } = newRun(adapter, { keep_on_failure: true });
    await expect(runStart(run)).rejects.toBeInstanceOf(LaunchFailedError);
    expect(stops).toEqual([]);
    expect(await registry.get(job_id)).toMatchObject({ state: 'starting' });
  });

  it('an interrupt during launch → the launch ends, and stop runs with a live signal of its own', async () => {
    const stops: Stop[] = [];
    const ac = new AbortController();
    let launching!: () => void;
    const started = new Promise<void>((r) => (launching = r));
    const adapter = fakeAdapter({
      stops,
      async launch(_spec, ctx) {
        await ctx.record({ platform_job_id: 'dep-int' });
        launching();
        await new Promise((_r, reject) => ctx.signal!.addEventListener('abort', () => reject(ctx.signal!.reason), { once: true }));
        throw new Error('unreachable');
      },
    });
    const { run, registry, job_id } = newRun(adapter, {}, { signal: ac.signal });
    const p = runStart(run);
    await started;
    ac.abort(new InterruptedError('SIGINT'));
    await expect(p).rejects.toBeInstanceOf(InterruptedError);
    expect(stops).toHaveLength(1);
    expect(stops[0]!.abortedAtCall).toBe(false);
    expect(stops[0]!.signal).not.toBe(ac.signal);
    expect(stops[0]!.entry.platform_job_id).toBe('dep-int');
    expect(await registry.get(job_id)).toBeUndefined();
  });

  it('an interrupt while waiting for readiness → stop with a live signal, entry removed', async () => {
    const stops: Stop[] = [];
    const ac = new AbortController();
    const { run, registry, job_id } = newRun(fakeAdapter({ stops }), {}, { signal: ac.signal });
    const p = runStart(run);
    setTimeout(() => ac.abort(new InterruptedError('SIGTERM')), 400);
    await expect(p).rejects.toThrow(/interrupted by SIGTERM/);
    expect(stops).toHaveLength(1);
    expect(stops[0]!.abortedAtCall).toBe(false);
    expect(await registry.get(job_id)).toBeUndefined();
  });

  it('a second interrupt aborts the rollback: the entry is kept so `tao-infer stop` can retry', async () => {
    const stops: Stop[] = [];
    const ac = new AbortController();
    const again = new AbortController();
    const adapter = fakeAdapter({
      stops,
      async stop(entry, ctx) {
        stops.push({ entry, abortedAtCall: Boolean(ctx.signal?.aborted), signal: ctx.signal });
        again.abort(new InterruptedError('SIGINT'));
        // A platform call that honours its signal.
        await new Promise((_r, reject) => (ctx.signal!.aborted ? reject(ctx.signal!.reason) : ctx.signal!.addEventListener('abort', () => reject(ctx.signal!.reason), { once: true })));
      },
    });
    const { run, registry, warnings, job_id } = newRun(adapter, {}, { signal: ac.signal, rollbackSignal: again.signal });
    const p = runStart(run);
    setTimeout(() => ac.abort(new InterruptedError('SIGINT')), 300);
    await expect(p).rejects.toBeInstanceOf(InterruptedError);
    expect(stops).toHaveLength(1);
    expect(await registry.get(job_id)).toMatchObject({ job_id });
    expect(warnings.join('\n')).toMatch(new RegExp(`could not remove the failed service on brev: .*'tao-infer stop ${job_id}' can retry`));
  });

  it('a stop that fails keeps the entry with a hint; the start still fails with its own error', async () => {
    const stops: Stop[] = [];
    const adapter = fakeAdapter({
      stops,
      launch: async () => Promise.reject(new LaunchFailedError('boom', 'boom', [])),
      stop: async () => Promise.reject(new Error('API unreachable')),
    });
    const { run, registry, warnings, job_id } = newRun(adapter);
    await expect(runStart(run)).rejects.toThrow('boom');
    expect(await registry.get(job_id)).toBeDefined();
    expect(warnings.join('\n')).toContain(`could not remove the failed service on brev: API unreachable. The registry entry is kept so 'tao-infer stop ${job_id}' can retry.`);
  });

  it('--no-wait returns once launched: the entry is `started`, nothing is stopped', async () => {
    const stops: Stop[] = [];
    const { run, registry, job_id } = newRun(fakeAdapter({ stops }), { no_wait: true });
    const r = await runStart(run);
    expect(r.ready).toBe(false);
    expect(stops).toEqual([]);
    expect(await registry.get(job_id)).toMatchObject({ state: 'started', starter_pid: process.pid });
  });
});
