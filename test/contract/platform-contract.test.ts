/**
 * The platform contract, the same cases for every platform (issue 9): local-docker on the real Docker engine,
 * slurm on the real Slurm + sshd (both container runtimes), kubernetes, brev and lepton on their fakes. Each
 * platform is described by a harness (harnesses/*.ts, see harness.ts); platform test files under
 * test/integration/ keep only their own edge cases.
 *
 * Contract, per platform:
 * - start → ready → request → ls → logs → stop through the built CLI, with the platform's own checks at each step;
 * - after stop nothing is left behind: registry entry, containers/jobs/objects (the harness lists them), local
 *   processes naming the job (forwarders, the service itself), files in the run's TMPDIR (forwarder logs);
 * - the canary secret is never seen: in the argv of any process on this machine (sampled during the whole run),
 *   the registry, any output, and the places the harness names (argv logs, request bodies, objects, job files);
 * - a service that crashes while loading fails the start with its log tail, and nothing is left;
 * - a start interrupted by SIGINT or SIGTERM while the model loads exits 130 and nothing is left.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectNoCanary, CANARY } from '../helpers/canary.js';
import { CLI, parseJson, runCli, type CliResult } from '../helpers/cli.js';
import { processesMentioning, sampleArgv } from '../helpers/proc.js';
import { waitFor } from '../helpers/wait.js';
import { filesBelow, type ContractEnv, type Harness, type Run } from './harness.js';
import { brev } from './harnesses/brev.js';
import { kubernetes } from './harnesses/kubernetes.js';
import { lepton } from './harnesses/lepton.js';
import { localDocker } from './harnesses/local-docker.js';
import { slurmDocker, slurmNone } from './harnesses/slurm.js';

const HARNESSES: Harness[] = [localDocker, slurmNone, slurmDocker, kubernetes, brev, lepton];

const UUID = /job_id ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/;

function registry(t: ContractEnv): Record<string, any> {
  return existsSync(t.stateFile) ? JSON.parse(readFileSync(t.stateFile, 'utf8')) : {};
}

/** Nothing of service `jobId` is left: registry entry, platform leftovers, local processes, TMPDIR files. */
async function expectNothingLeft(h: Harness, jobId: string, t: ContractEnv): Promise<void> {
  expect(registry(t)[jobId], 'registry entry').toBeUndefined();
  expect(await h.leftovers(jobId, t), 'left on the platform').toEqual([]);
  // Processes end with the stop; give the kernel a moment to reap them (a stuck one fails after 10 s).
  const needles = [jobId, ...(h.processMarkers?.(t) ?? [])];
  await waitFor(`no process naming ${needles.join(' or ')}`, () => processesMentioning(needles).length === 0, 10_000).catch(() => undefined);
  expect(processesMentioning(needles), 'processes left').toEqual([]);
  expect(filesBelow(t.tmp), 'files left in TMPDIR').toEqual([]);
}

function newRun(t: ContractEnv): Run {
  const outputs: string[] = [];
  return { t, outputs, state: {}, keep: (r: CliResult) => (outputs.push(r.stdout, r.stderr), r) };
}

/** `start --json` argv for harness `h`: its platform flags, then arch, model and `extra`. */
function startCli(h: Harness, t: ContractEnv, arch: string, model: string, extra: string[]): string[] {
  return ['start', ...h.startFlags(t), '--arch', arch, '--model', model, '--json', ...extra];
}

describe.each(HARNESSES)('platform contract: $label', (h) => {
  beforeAll(() => h.setup(), 300_000);
  afterAll(() => h.teardown(), 120_000);
  /** The env of the running test: a test that fails before its stop leaves services, stopped after it. */
  let current: ContractEnv | undefined;
  const newEnv = (): ContractEnv => (current = h.newEnv());
  afterEach(async () => {
    if (current && Object.keys(registry(current)).length) await runCli(['stop', '--all', '--yes'], { env: current.env });
    current = undefined;
    await h.afterEach?.();
  });

  for (const c of h.cases) {
    it(`${c.arch}: start → ready → request → ls → logs → stop; nothing left behind; the canary is never seen`, async () => {
      const t = newEnv();
      const run = newRun(t);
      await h.beforeStart?.(run);
      const sampler = sampleArgv();
      let argvSeen: string[] = [];
      try {
        const startP = runCli(startCli(h, t, c.arch, c.model, [...(c.startArgs ?? []), '--timeout', '150']), { env: t.env, timeoutMs: 200_000 });
        await h.whileStarting?.(run);
        const start = run.keep(await startP);
        expect(start.exitCode, `${start.stdout}\n${start.stderr}`).toBe(0);
        const entry = parseJson(start);
        h.track(entry.job_id, entry);
        expect(entry).toMatchObject({ platform: h.platform, network_arch: c.arch, ready: true, state: 'running' });
        const reg = registry(t);
        expect(reg.latest).toBe(entry.job_id);
        expect(reg[entry.job_id]).toMatchObject({ job_id: entry.job_id, host_url: entry.host_url });
        expect(statSync(t.stateFile).mode & 0o777).toBe(0o600);
        await h.afterStart?.(entry, run, start);

        const req = run.keep(await runCli(['request', '--json', ...c.request(run, entry)], { env: t.env }));
        expect(req.exitCode, req.stderr).toBe(0);
        const completion = parseJson(req);
        expect(completion.object).toBe('chat.completion');
        expect(completion.routed_to.job_id).toBe(entry.job_id);
        expect(completion.tao_standin.network_arch).toBe(c.arch);
        expect(completion.tao_standin.secrets_present).toContain('HF_TOKEN');
        expect(req.stderr).toContain(`Sending to job_id=${entry.job_id} arch=${c.arch} url=${entry.host_url}/v1/chat/completions`);
        await c.check?.(completion, entry, run, req);
        await h.afterRequest?.(completion, entry, run);

        // The platform's own state may lag the service's readiness a little (Lepton): poll ls for `running`.
        const listed = await waitFor(
          'ls to report the service running',
          async () => {
            const ls = run.keep(await runCli(['ls', '--json'], { env: t.env }));
            expect(ls.exitCode, ls.stderr).toBe(0);
            const doc = parseJson(ls);
            return doc.find((s: any) => s.job_id === entry.job_id)?.live?.state === 'running' ? doc : undefined;
          },
          10_000,
          200,
        );
        expect(listed).toEqual([expect.objectContaining({ job_id: entry.job_id, live: expect.objectContaining({ state: 'running', ...h.live }) })]);
        h.afterList?.(listed, entry);

        const logs = run.keep(await runCli(['logs', entry.job_id, '--tail', '50'], { env: t.env }));
        expect(logs.exitCode, logs.stderr).toBe(0);
        expect(logs.stdout).toContain('[standin]');
        h.afterLogs?.(logs.stdout);

        await h.beforeStop?.(entry, run);
        const stop = run.keep(await runCli(['stop', entry.job_id, '--json', ...(h.stopArgs ?? [])], { env: t.env }));
        expect(stop.exitCode, stop.stderr).toBe(0);
        expect(parseJson(stop)).toEqual(h.stopJson?.(entry) ?? { stopped: [entry.job_id], failed: [], already_gone: false, already_gone_ids: [] });
        expect(registry(t)).toEqual({});
        await expectNothingLeft(h, entry.job_id, t);
        await h.afterStop?.(entry, run, stop);
        argvSeen = await sampler.stop();
        expectNoCanary(
          [...run.outputs.map((o, i): [string, string] => [`output ${i}`, o]), ...argvSeen.map((a): [string, string] => ['argv', a]), ...h.secretPlaces(t)],
          [t.stateFile, ...(h.secretFiles?.(entry.job_id, t) ?? [])],
          [CANARY, ...(h.secrets ?? [])],
        );
      } finally {
        if (!argvSeen.length) await sampler.stop();
      }
    });
  }

  it('a service that crashes while loading fails the start with its log tail, and nothing is left behind', async () => {
    const t = newEnv();
    const run = newRun(t);
    h.crash.arm?.(t);
    const r = run.keep(await runCli(startCli(h, t, 'cosmos-rl', 'hf_model://nvidia/Cosmos-Reason1-7B', [...(h.crash.args ?? []), '--timeout', '120']), { env: { ...t.env, ...h.crash.env } }));
    expect(h.crash.exitCodes, `${r.stdout}\n${r.stderr}`).toContain(r.exitCode);
    const err = parseJson(r).error;
    const jobId = UUID.exec(r.stderr)![1]!;
    h.track(jobId);
    await h.crash.check(err, r, run);
    expect(registry(t)).toEqual({});
    await expectNothingLeft(h, jobId, t);
    expectNoCanary([...run.outputs.map((o): [string, string] => ['output', o]), ...h.secretPlaces(t)], [t.stateFile], [CANARY, ...(h.secrets ?? [])]);
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal} while the model loads removes the half-started service and exits 130`, async () => {
      const t = newEnv();
      h.hang.arm?.(t);
      const child = spawn(process.execPath, [CLI, ...startCli(h, t, 'cosmos-rl', 'hf_model://nvidia/Cosmos-Reason1-7B', [...(h.hang.args ?? []), '--timeout', '150'])], {
        env: { ...process.env, CI: 'true', NO_COLOR: '1', ...t.env, ...h.hang.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (err += d));
      const exited = new Promise<number | null>((res) => child.once('close', (code) => res(code)));
      let jobId = '';
      try {
        jobId = await waitFor('the start to wait for the model to load', async () => {
          const id = UUID.exec(err)?.[1];
          return id && /model_loading/.test(err) && (await h.launched(id, t)) ? id : undefined;
        }, 150_000, 250);
        h.track(jobId);
        expect(registry(t)[jobId]).toBeDefined();
      } catch (e) {
        child.kill('SIGKILL');
        throw new Error(`${(e as Error).message}\n--- stderr ---\n${err}`);
      }
      child.kill(signal);
      const code = await exited;
      expect(code, err).toBe(130);
      expect(JSON.parse(out).error.code).toBe('interrupted');
      expect(registry(t), err).toEqual({});
      await expectNothingLeft(h, jobId, t);
      expectNoCanary([['stdout', out], ['stderr', err], ...h.secretPlaces(t)], [t.stateFile], [CANARY, ...(h.secrets ?? [])]);
    });
  }
});
