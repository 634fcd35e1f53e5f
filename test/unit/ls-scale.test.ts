/**
 * `ls` with many entries (issue 10 point 2): status calls run with bounded concurrency and a per-call
 * timeout. A stand-in `docker` on PATH answers every `docker inspect` after 200 ms with the real CLI's
 * "No such object" message (so every entry is `gone`), logs when each call starts and ends, and hangs for
 * the one entry whose job_id starts with `hang` (that one is not counted: it must be aborted at its limit).
 *
 * The entries are local-docker ones asked one by one (`batchStatus: false`: what every platform without a one-call
 * `statusMany` gets; local-docker itself asks docker once for all its entries).
 *
 * Stated bound: 400 entries answer within 20 s (sequential calls would take 80 s; with 16 in flight the
 * floor is 25 × 200 ms = 5 s), never more than 16 calls in flight, and the hung call is `unknown`
 * ("status timed out") after its 2 s limit without holding up the rest.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { listServices, pruneServices, STATUS_CONCURRENCY } from '../../src/manage.js';
import { Registry } from '../../src/registry/store.js';
import { isAlive } from '../../src/util/detached.js';

const dir = mkdtempSync(join(tmpdir(), 'tao-infer-ls-scale-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const callLog = join(dir, 'calls.log');
const bin = join(dir, 'bin');
const hangPid = join(dir, 'hang.pid');
function fakeDocker(): void {
  rmSync(bin, { recursive: true, force: true });
  mkdirSync(bin);
  const script = `#!/bin/sh
# docker inspect --format '{{json .State}}' -- <job_id>: the job_id is the last argument
for a; do id=$a; done
case "$id" in hang*) echo $$ > ${JSON.stringify(hangPid)}; exec sleep 30 ;; esac
echo "start $(date +%s%N)" >> ${JSON.stringify(callLog)}
sleep 0.2
echo "end $(date +%s%N)" >> ${JSON.stringify(callLog)}
echo "Error: No such object: $id" >&2
exit 1
`;
  writeFileSync(join(bin, 'docker'), script);
  chmodSync(join(bin, 'docker'), 0o755);
}

/** Most calls in flight at once, from the start/end lines. */
function maxInFlight(): number {
  const events = readFileSync(callLog, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' '))
    .map(([kind, t]) => ({ d: kind === 'start' ? 1 : -1, t: BigInt(t!) }))
    .sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : a.d - b.d));
  let cur = 0;
  let max = 0;
  for (const e of events) max = Math.max(max, (cur += e.d));
  return max;
}

it('400 entries: every status asked, at most 16 at once, a hung call times out alone; prune keeps unknown', async () => {
  fakeDocker();
  const file = join(dir, 'state.json');
  const state: Record<string, unknown> = {};
  for (let i = 0; i < 400; i++) {
    const job_id = `${i === 7 ? 'hang' : 'job'}-${String(i).padStart(4, '0')}`;
    state[job_id] = { job_id, platform: 'local-docker', network_arch: 'cosmos-rl', host_url: `http://localhost:${8080 + (i % 120)}`, started_at: new Date(1_700_000_000_000 + i * 1000).toISOString() };
  }
  writeFileSync(file, JSON.stringify(state));
  const registry = new Registry(file);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
  const t0 = Date.now();
  const { services } = await listServices({ registry, env, statusTimeoutMs: 2000, batchStatus: false });
  const took = Date.now() - t0;
  console.log(`ls: 400 entries in ${took} ms, at most ${maxInFlight()} status calls in flight`);
  expect(took).toBeLessThan(20_000);
  expect(services).toHaveLength(400);
  expect(maxInFlight()).toBeLessThanOrEqual(STATUS_CONCURRENCY);
  expect(maxInFlight()).toBeGreaterThan(1);
  const hung = services.find((s) => s.job_id.startsWith('hang'))!;
  expect(hung.live).toMatchObject({ state: 'unknown', reason: expect.stringMatching(/timed out/) });
  // The timed-out call was aborted: its process is gone, so it held no slot past its limit.
  const pid = Number(readFileSync(hangPid, 'utf8').trim());
  await new Promise((r) => setTimeout(r, 300));
  expect(isAlive(pid)).toBe(false);
  const others = services.filter((s) => s !== hung);
  expect(others.every((s) => s.live.state === 'gone')).toBe(true);

  // prune --dry-run lists the 399 gone ones and never the unknown one; nothing is written.
  const before = readFileSync(file, 'utf8');
  const dry = await pruneServices({ dryRun: true }, { registry, env, statusTimeoutMs: 1000, batchStatus: false });
  expect(dry.removed).toHaveLength(399);
  expect(dry.kept).toEqual([{ job_id: hung.job_id, state: 'unknown' }]);
  expect(readFileSync(file, 'utf8')).toBe(before);
}, 60_000);
