// The port policy of src/registry/ports.ts (contract §5 port rule): range, scopes (this machine, or a remote host
// such as a brev instance), which entries hold which ports (from their fields and the descriptor's hostPortScope),
// explicit --port, and stale `starting` entries.
import { createServer, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { InvalidInputError, RegistryError } from '../../src/errors.js';
import { entryPorts, isPortFree, portField, portRange, probeCandidates, reservePort, type PortScope } from '../../src/registry/ports.js';
import type { RegistryState } from '../../src/registry/store.js';
import type { RegistryEntry } from '../../src/types.js';

const entry = (job_id: string, over: Partial<RegistryEntry> = {}): RegistryEntry => ({
  job_id,
  platform: 'local-docker',
  network_arch: 'cosmos-rl',
  host_url: 'http://localhost:1',
  started_at: '2026-01-01T00:00:00Z',
  state: 'started',
  ...over,
});
const state = (...entries: RegistryEntry[]): RegistryState => ({ entries: Object.fromEntries(entries.map((e) => [e.job_id, e])), other: {} });
const LOCAL: PortScope = { kind: 'local' };
const onInstance = (host: string): PortScope => ({ kind: 'remote', host });
// A range far from user services; the local cases that probe the host find a free one at run time.
const R = { min: 41000, max: 41009 };
const brev = (job_id: string, instance: string, host_port: number, local_port?: number) =>
  entry(job_id, { platform: 'brev', host_port, ...(local_port !== undefined ? { local_port } : {}), platform_data: { instance } });

describe('port policy', () => {
  it('the range is 8080-8199 unless TAO_INF_PORT_RANGE says otherwise, and a malformed one is bad input', () => {
    expect(portRange({})).toEqual({ min: 8080, max: 8199 });
    expect(portRange({ TAO_INF_PORT_RANGE: '18080-18090' })).toEqual({ min: 18080, max: 18090 });
    for (const bad of ['8090-8080', '0-10', '1-70000', 'x'])
      expect(() => portRange({ TAO_INF_PORT_RANGE: bad })).toThrow(InvalidInputError);
  });

  it('an entry holds its host_port where its descriptor says, its local_port locally, and nothing when the platform is unknown', () => {
    expect(entryPorts(entry('a', { host_port: 8080 }))).toEqual([{ port: 8080, scope: LOCAL }]);
    expect(entryPorts(entry('s', { platform: 'slurm', host_port: 8081 }))).toEqual([{ port: 8081, scope: LOCAL }]);
    expect(entryPorts(brev('b', 'vm-1', 8080, 8082))).toEqual([
      { port: 8082, scope: LOCAL },
      { port: 8080, scope: onInstance('vm-1') },
    ]);
    expect(entryPorts(entry('l', { platform: 'lepton' }))).toEqual([]);
    expect(entryPorts(entry('o', { platform: 'other-tool', host_port: 8080 }))).toEqual([]);
  });

  it('the field a port is recorded in follows the platform: a local port of a remote-host platform is its local_port', () => {
    expect(portField('local-docker', LOCAL)).toBe('host_port');
    expect(portField('slurm', LOCAL)).toBe('host_port');
    expect(portField('kubernetes', LOCAL)).toBe('host_port');
    expect(portField('brev', LOCAL)).toBe('local_port');
    expect(portField('brev', onInstance('vm-1'))).toBe('host_port');
  });

  it('a host port on an instance is held only by services on that instance', async () => {
    const s = state(brev('b1', 'vm-1', R.min, R.min + 5), brev('b2', 'vm-2', R.min + 1), entry('d', { host_port: R.min + 2 }));
    // vm-1 holds R.min only: the local ports of brev and local-docker's port are not on the instance.
    expect(await reservePort(s, { scope: onInstance('vm-1'), range: R })).toBe(R.min + 1);
    expect(await reservePort(s, { scope: onInstance('vm-2'), range: R })).toBe(R.min);
    expect(await reservePort(s, { scope: onInstance('vm-3'), range: R })).toBe(R.min);
  });

  it('a local port is held by every platform that binds one here, not by a remote host port', async () => {
    const s = state(brev('b1', 'vm-1', R.min, R.min + 1), entry('s', { platform: 'slurm', host_port: R.min + 2 }), entry('o', { platform: 'other-tool', host_port: R.min + 3 }));
    // R.min is brev's port on its instance, free here; R.min+1 (brev's forward) and R.min+2 (slurm's tunnel) are taken.
    expect(await reservePort(s, { scope: LOCAL, range: R })).toBe(R.min);
    expect(await reservePort(state(brev('b1', 'vm-1', R.min + 4, R.min), entry('s', { platform: 'slurm', host_port: R.min + 1 })), { scope: LOCAL, range: R })).toBe(R.min + 2);
  });

  it("the asking service's own entry never holds its port", async () => {
    const s = state(entry('me', { host_port: R.min, state: 'starting' }));
    expect(await reservePort(s, { scope: LOCAL, range: R, job_id: 'me' })).toBe(R.min);
    expect(await reservePort(s, { scope: LOCAL, range: R, job_id: 'other' })).toBe(R.min + 1);
  });

  it('local ports bound by another program are skipped and refused as --port; remote ones are never probed', async () => {
    let srv: Server | undefined;
    let bound = 0;
    for (let p = R.min; p <= R.max && !srv; p++) {
      const s = createServer();
      const ok = await new Promise<boolean>((res) => s.once('error', () => res(false)).listen(p, '127.0.0.1', () => res(true)));
      if (ok) [srv, bound] = [s, p];
    }
    expect(srv, 'a free port in the test range').toBeDefined();
    try {
      const r = { min: bound, max: R.max };
      expect(await reservePort(state(), { scope: LOCAL, range: r })).toBeGreaterThan(bound);
      await expect(reservePort(state(), { scope: LOCAL, range: r, explicit: bound })).rejects.toThrow(/already bound on 127.0.0.1 by another program/);
      expect(await reservePort(state(), { scope: onInstance('vm-1'), range: r })).toBe(bound);
    } finally {
      srv!.close();
    }
  });

  it('a loopback or wildcard port is taken when another program listens on 127.0.0.1, ::1 (localhost may resolve to it) or 0.0.0.0', async () => {
    /** Listen on `host` on the first port of the test range free there; undefined when no port or no such address. */
    const listenOn = async (host: string): Promise<{ srv: Server; port: number } | undefined> => {
      for (let p = R.min; p <= R.max; p++) {
        const s = createServer();
        const ok = await new Promise<boolean>((res) => s.once('error', () => res(false)).listen({ port: p, host, exclusive: true }, () => res(true)));
        if (ok) return { srv: s, port: p };
      }
      return undefined;
    };
    let checked = 0;
    for (const host of ['127.0.0.1', '::1', '0.0.0.0']) {
      const held = await listenOn(host);
      if (!held) continue; // no IPv6 loopback on this host
      try {
        checked++;
        expect(await isPortFree(held.port, '127.0.0.1'), `held on ${host}`).toBe(false);
        expect(await isPortFree(held.port, '0.0.0.0'), `held on ${host}`).toBe(false);
      } finally {
        await new Promise((r) => held.srv.close(r));
      }
      expect(await isPortFree(held.port, '127.0.0.1'), `released on ${host}`).toBe(true);
    }
    expect(checked).toBeGreaterThanOrEqual(2);
  });

  it('probes made before the lock: the first unheld ports, bound ones false; the pick under the lock uses them', async () => {
    let srv: Server | undefined;
    let bound = 0;
    for (let p = R.min + 1; p <= R.max && !srv; p++) {
      const s = createServer();
      const ok = await new Promise<boolean>((res) => s.once('error', () => res(false)).listen(p, '127.0.0.1', () => res(true)));
      if (ok) [srv, bound] = [s, p];
    }
    expect(srv, 'a free port in the test range').toBeDefined();
    try {
      // R.min .. bound-1 held by services (local-docker host ports), so the candidates are `bound` and the next free one.
      const held = Array.from({ length: bound - R.min }, (_, i) => entry(`h${i}`, { host_port: R.min + i }));
      const s = state(...held);
      const r = { min: R.min, max: R.max };
      const probed = await probeCandidates(s, { scope: LOCAL, range: r });
      expect([...probed.keys()][0]).toBe(bound);
      expect(probed.get(bound)).toBe(false);
      expect(probed.size).toBe(2);
      const next = [...probed.keys()][1]!;
      expect(await reservePort(s, { scope: LOCAL, range: r, probed })).toBe(next);
      // A probe result is trusted under the lock: a port probed as taken is skipped even when it is free by now.
      expect(await reservePort(s, { scope: LOCAL, range: r, probed: new Map([[next, false]]) })).toBeGreaterThan(next);
      // Remote scopes and explicit ports are never probed.
      expect((await probeCandidates(s, { scope: onInstance('vm-1'), range: r })).size).toBe(0);
      expect((await probeCandidates(s, { scope: LOCAL, range: r, explicit: next })).size).toBe(0);
    } finally {
      srv!.close();
    }
  });

  it('an explicit --port held in the scope is refused naming its owner; elsewhere it is granted', async () => {
    const s = state(brev('b1', 'vm-1', R.min + 3));
    await expect(reservePort(s, { scope: onInstance('vm-1'), range: R, explicit: R.min + 3 })).rejects.toThrow(/used by service b1/);
    expect(await reservePort(s, { scope: onInstance('vm-2'), range: R, explicit: R.min + 3 })).toBe(R.min + 3);
    // An explicit port outside the range is the user's choice.
    expect(await reservePort(s, { scope: onInstance('vm-1'), range: R, explicit: 50123 })).toBe(50123);
  });

  it('a stale `starting` entry (its starter gone, its deadline past) holds no port; a live one does', async () => {
    const gone = 2 ** 22 + 12345; // above the usual pid_max: no such process
    const stale = entry('stale', { platform: 'brev', state: 'starting', host_port: R.min, platform_data: { instance: 'vm-1' }, starter_pid: gone, launch_deadline: '2026-01-01T00:00:01Z' });
    const live = entry('live', { platform: 'brev', state: 'starting', host_port: R.min + 1, platform_data: { instance: 'vm-1' }, starter_pid: process.pid, launch_deadline: '2026-01-01T00:00:01Z' });
    const s = state(stale, live);
    expect(await reservePort(s, { scope: onInstance('vm-1'), range: R })).toBe(R.min);
    await expect(reservePort(s, { scope: onInstance('vm-1'), range: R, explicit: R.min + 1 })).rejects.toThrow(/used by service live/);
  });

  it('a used-up range is a registry error; excluded ports are not handed out', async () => {
    const r = { min: R.min, max: R.min + 1 };
    const s = state(brev('a', 'vm-1', R.min), brev('b', 'vm-1', R.min + 1));
    await expect(reservePort(s, { scope: onInstance('vm-1'), range: r })).rejects.toBeInstanceOf(RegistryError);
    expect(await reservePort(state(), { scope: onInstance('vm-1'), range: r, exclude: new Set([R.min]) })).toBe(R.min + 1);
  });
});
