// Issue 8 points 5, 6, 7: the registry key is the identity; keys from the file are plain keys (no prototype
// lookups); ids that a platform CLI would read as flags are never acted on.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { exitCodeFor, InvalidInputError, JobNotFoundError } from '../../src/errors.js';
import { prepareRequest } from '../../src/lifecycle.js';
import { listServices, serviceLogs, stopService } from '../../src/manage.js';
import { Registry } from '../../src/registry/store.js';
import { resolveTarget } from '../../src/service/routing.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function registryWith(content: string): { file: string; registry: Registry } {
  const dir = mkdtempSync(join(tmpdir(), 'tao-keys-'));
  dirs.push(dir);
  const file = join(dir, 'state.json');
  writeFileSync(file, content, { mode: 0o600 });
  return { file, registry: new Registry(file) };
}
const entry = (job_id: string, over: Record<string, unknown> = {}) => ({
  job_id,
  platform: 'local-docker',
  network_arch: 'cosmos-rl',
  host_url: 'http://localhost:1',
  host_port: 1,
  started_at: '2026-01-01T00:00:00Z',
  ...over,
});
// A PATH without docker: any platform call would fail with exit 3 instead of the expected exit 2.
const env = { ...process.env, PATH: '/nonexistent' };

describe('registry keys (issue 8)', () => {
  it('5: an entry whose job_id differs from its key is shown as inconsistent and never acted on through either name', async () => {
    const { file, registry } = registryWith(JSON.stringify({ a: entry('b'), b2: entry('b2') }));
    const before = readFileSync(file, 'utf8');
    const err = await stopService('a', { registry, env }).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.message).toMatch(/registry key 'a' holds an entry whose job_id is 'b'/);
    expect(exitCodeFor(err)).toBe(2);
    // 'b' is only the other name (the job_id field), not a registry key: refused as an unknown id (exit 2).
    const errB = await stopService('b', { registry, env }).catch((e) => e);
    expect(exitCodeFor(errB)).toBe(2);
    await expect(resolveTarget(await registry.read(), { job_id: 'a' })).rejects.toThrow(/inconsistent/);
    const it = serviceLogs('a', {}, { registry, env })[Symbol.asyncIterator]();
    await expect(it.next()).rejects.toBeInstanceOf(InvalidInputError);
    const { services } = await listServices({ registry, env });
    const listed = services.find((s) => s.job_id === 'a')!;
    expect(listed.live).toMatchObject({ state: 'unknown', native: 'inconsistent' });
    expect(listed.live.reason).toMatch(/holds job_id 'b'/);
    // Untouched, and kept verbatim by the next write.
    expect(readFileSync(file, 'utf8')).toBe(before);
    await registry.mutate((s) => void (s.entries.c = entry('c') as never));
    expect(JSON.parse(readFileSync(file, 'utf8')).a).toEqual(entry('b'));
  });

  it('6: keys like constructor and __proto__ are plain keys: not found, visible, and preserved on write', async () => {
    const { file, registry } = registryWith('{"__proto__": {"note": "kept"}, "x1": ' + JSON.stringify(entry('x1')) + '}');
    const err = await stopService('constructor', { registry, env }).catch((e) => e);
    expect(err).toBeInstanceOf(JobNotFoundError);
    expect(err.message).toMatch(/no service with job_id 'constructor'/);
    await expect(stopService('toString', { registry, env })).rejects.toBeInstanceOf(JobNotFoundError);
    await expect(resolveTarget(await registry.read(), { job_id: 'hasOwnProperty' })).rejects.toBeInstanceOf(JobNotFoundError);
    const s = await registry.read();
    expect(Object.keys(s.other)).toEqual(['__proto__']);
    await registry.mutate((st) => void (st.entries.x2 = entry('x2') as never));
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('"__proto__": {');
    expect(Object.keys(JSON.parse(text)).sort()).toEqual(['__proto__', 'x1', 'x2']);
  });

  it('6: a network_arch from the file that names an Object.prototype member is looked up as a plain key', async () => {
    const { registry } = registryWith(JSON.stringify({ odd: entry('odd', { network_arch: 'constructor', host_url: 'http://127.0.0.1:9', state: 'started' }) }));
    const p = await prepareRequest({ job_id: 'odd', prompt: 'hi' }, {}, { registry, env });
    expect(p.body.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'hi' }] }]);
    expect(Object.keys(p.sampling).sort()).toEqual(['max_tokens', 'temperature', 'top_p']);
  });

  it('6: an entry keyed __proto__ is an entry like any other', async () => {
    const { registry } = registryWith('{"__proto__": ' + JSON.stringify(entry('__proto__')) + '}');
    const s = await registry.read();
    expect(Object.keys(s.entries)).toEqual(['__proto__']);
    expect((await registry.get('__proto__'))?.job_id).toBe('__proto__');
  });

  it('7: a job_id or platform_job_id starting with - is refused with exit 2 before any platform call', async () => {
    const { registry } = registryWith(JSON.stringify({ '-rf': entry('-rf'), k8s: entry('k8s', { platform: 'slurm', platform_job_id: '--signal=KILL' }) }));
    for (const id of ['-rf', 'k8s']) {
      const err = await stopService(id, { registry, env }).catch((e) => e);
      expect(err, id).toBeInstanceOf(InvalidInputError);
      expect(err.message).toMatch(/starts with '-'/);
    }
    const { services } = await listServices({ registry, env });
    expect(services.map((s) => s.live.native)).toEqual(['unsafe-id', 'unsafe-id']);
    expect(Object.keys((await registry.read()).entries).sort()).toEqual(['-rf', 'k8s']);
  });
});
