import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RegistryCorruptError, RegistryError } from '../../src/errors.js';
import { pickPort } from '../../src/registry/ports.js';
import { RANGE } from '../helpers/ports.js';
import { Registry, repairLatest, type RegistryState } from '../../src/registry/store.js';
import type { RegistryEntry } from '../../src/types.js';
import { leaveStaleLock } from '../helpers/lock.js';

function tmpFile(): string {
  return join(mkdtempSync(join(tmpdir(), 'tao-reg-')), 'state.json');
}
const entry = (job_id: string, over: Partial<RegistryEntry> = {}): RegistryEntry => ({
  job_id,
  platform: 'local-docker',
  network_arch: 'cosmos-rl',
  host_url: 'http://localhost:8080',
  host_port: 8080,
  started_at: new Date().toISOString(),
  ...over,
});

describe('registry file', () => {
  it('reads and preserves entries written by the published skill (same keys, latest)', async () => {
    const f = tmpFile();
    const skill = {
      'a1': { job_id: 'a1', platform: 'local-docker', platform_job_id: null, network_arch: 'cosmos-rl', host_url: 'http://localhost:8080', docker_url: 'http://a1:8080', host_port: 8080, started_at: '2026-01-01T00:00:00Z' },
      latest: 'a1',
    };
    writeFileSync(f, JSON.stringify(skill));
    const reg = new Registry(f);
    const s = await reg.read();
    expect(s.latest).toBe('a1');
    expect(s.entries.a1!.docker_url).toBe('http://a1:8080');
    await reg.mutate((st) => {
      st.entries.b2 = entry('b2', { host_port: 8081, started_at: '2026-01-02T00:00:00Z' });
      st.latest = 'b2';
    });
    const raw = JSON.parse(readFileSync(f, 'utf8'));
    expect(raw.a1).toEqual(skill.a1);
    expect(raw.latest).toBe('b2');
    expect(statSync(f).mode & 0o777).toBe(0o600);
  });

  it('remove repairs latest to the newest remaining entry, or drops it', async () => {
    const f = tmpFile();
    const reg = new Registry(f);
    await reg.mutate((s) => {
      s.entries.old = entry('old', { started_at: '2026-01-01T00:00:00Z' });
      s.entries.mid = entry('mid', { started_at: '2026-01-03T00:00:00Z' });
      s.entries.new = entry('new', { started_at: '2026-01-05T00:00:00Z' });
      s.latest = 'new';
    });
    await reg.remove('new');
    expect((await reg.read()).latest).toBe('mid');
    await reg.remove('mid');
    await reg.remove('old');
    const raw = JSON.parse(readFileSync(f, 'utf8'));
    expect(raw).toEqual({});
  });

  it('a file that does not parse is reported by a read (left in place) and moved aside by a read-modify-write, never replaced', async () => {
    const f = tmpFile();
    writeFileSync(f, '{"a1": {"job_id": "a1", TRUNCATED');
    const reg = new Registry(f);
    const seen = await reg.read().catch((e) => e);
    expect(seen).toBeInstanceOf(RegistryError);
    expect(seen).not.toBeInstanceOf(RegistryCorruptError);
    expect(seen.code).toBe('registry_corrupt');
    expect(readFileSync(f, 'utf8')).toBe('{"a1": {"job_id": "a1", TRUNCATED');
    const err = await reg.mutate(() => undefined).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryCorruptError);
    const moved = (err as RegistryCorruptError).quarantinedTo;
    expect(readFileSync(moved, 'utf8')).toBe('{"a1": {"job_id": "a1", TRUNCATED');
    expect(existsSync(f)).toBe(false);
    expect((err as Error).message).toContain(moved);
    // mutate on a corrupt file does not write {} over it either
    writeFileSync(f, '[1,2,3]');
    await expect(reg.mutate((s) => void (s.entries.x = entry('x')))).rejects.toBeInstanceOf(RegistryCorruptError);
    expect(existsSync(f)).toBe(false);
    expect(readdirSync(join(f, '..')).filter((n) => n.includes('.corrupt-')).length).toBe(2);
  });

  it('peek (for --dry-run) reports a corrupt file without moving it', async () => {
    const f = tmpFile();
    writeFileSync(f, 'not json');
    await expect(new Registry(f).peek()).rejects.toThrow(/could not be parsed/);
    expect(readFileSync(f, 'utf8')).toBe('not json');
  });

  it('refuses a symlinked registry without touching its target', async () => {
    const f = tmpFile();
    const target = join(f, '..', 'target.json');
    writeFileSync(target, '{}');
    symlinkSync(target, f);
    const reg = new Registry(f);
    await expect(reg.read()).rejects.toThrow(/symbolic link/);
    await expect(reg.mutate((s) => void (s.entries.x = entry('x')))).rejects.toBeInstanceOf(RegistryError);
    expect(readFileSync(target, 'utf8')).toBe('{}');
  });

  it('refuses a file owned by another user', async () => {
    const f = tmpFile();
    writeFileSync(f, '{}');
    chownSync(f, 65534, 65534);
    await expect(new Registry(f).read()).rejects.toThrow(/owned by uid 65534/);
  });

  it('concurrent read-modify-writes in one process lose nothing', async () => {
    const f = tmpFile();
    await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        new Registry(f).mutate(async (s) => {
          const port = await pickPort(s, { holds: () => true, checkBound: false, bindAddress: '127.0.0.1' });
          s.entries[`j${i}`] = entry(`j${i}`, { host_port: port });
        }),
      ),
    );
    const s = await new Registry(f).read();
    expect(Object.keys(s.entries)).toHaveLength(24);
    const ports = Object.values(s.entries).map((e) => e.host_port);
    expect(new Set(ports).size).toBe(24);
    expect(Math.min(...(ports as number[]))).toBe(RANGE.min);
  });

  it('a SIGKILLed lock holder delays the next writer no longer than the stale timeout', async () => {
    const f = tmpFile();
    await leaveStaleLock(f);
    const reg = new Registry(f, { staleMs: 3000 });
    const t0 = Date.now();
    await reg.mutate((s) => void (s.entries.after = entry('after')));
    const waited = Date.now() - t0;
    expect(waited).toBeLessThan(3000 + 2500);
    expect(reg.stats.contended).toBe(1);
    expect(Object.keys((await reg.read()).entries)).toEqual(['after']);
  });
});

describe('port rule (contract §5)', () => {
  const state = (entries: RegistryEntry[]): RegistryState => ({ entries: Object.fromEntries(entries.map((e) => [e.job_id, e])), other: {} });

  it('lowest port not held by an entry of the same platform', async () => {
    const s = state([entry('a', { host_port: 8080 }), entry('b', { host_port: 8082 }), entry('c', { platform: 'brev', host_port: 8081 })]);
    expect(await pickPort(s, { holds: (e) => e.platform === 'local-docker', checkBound: false, bindAddress: '127.0.0.1', range: { min: 8080, max: 8199 } })).toBe(8081);
  });

  it('an explicit port that is taken is refused with the owner named', async () => {
    const s = state([entry('a', { host_port: 8080 })]);
    await expect(pickPort(s, { holds: () => true, checkBound: false, bindAddress: '127.0.0.1', explicit: 8080 })).rejects.toThrow(/used by service a/);
  });

  it('skips ports bound by other programs', async () => {
    const { createServer } = await import('node:net');
    const s = state([]);
    const first = await pickPort(s, { holds: () => true, checkBound: true, bindAddress: '127.0.0.1' });
    const srv = createServer().listen(first, '127.0.0.1');
    await new Promise((r) => srv.once('listening', r));
    try {
      const next = await pickPort(s, { holds: () => true, checkBound: true, bindAddress: '127.0.0.1' });
      expect(next).toBeGreaterThan(first);
      await expect(pickPort(s, { holds: () => true, checkBound: true, bindAddress: '127.0.0.1', explicit: first })).rejects.toThrow(/bound/);
    } finally {
      srv.close();
    }
  });

  it('repairLatest', () => {
    const s = state([entry('x', { started_at: '2026-01-01' }), entry('y', { started_at: '2026-02-01' })]);
    s.latest = 'gone';
    repairLatest(s);
    expect(s.latest).toBe('y');
  });
});
