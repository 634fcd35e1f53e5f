/**
 * Issue 10 points 7 and 8: the `ls` table for people (short ids, AGE/EXPIRES, width, colours, the latest
 * footnote), `ls --json` in snake_case with the live state vocabulary, and environment defaults for
 * entries written by the published skill (declared per platform descriptor, applied by the routing).
 */
import { describe, expect, it } from 'vitest';
import { renderLsTable, terminalWidth, truncate, useColor } from '../../src/cli/ls-table.js';
import { liveState, type ListedService } from '../../src/manage.js';
import { applyEntryDefaults } from '../../src/platforms/entry-defaults.js';
import type { PlatformDescriptor } from '../../src/platforms/descriptor.js';
import { PLATFORMS } from '../../src/platforms/index.js';
import { route } from '../../src/platforms/routing.js';
import type { EntryContext, JobState, PlatformAdapter, RegistryEntry } from '../../src/types.js';

const NOW = Date.parse('2026-11-30T12:00:00Z');
const ID1 = '3f2a9c10-aaaa-4000-8000-000000000001';
const ID2 = '9d41e2c0-cccc-4000-8000-000000000003';

function svc(job_id: string, over: Partial<ListedService>, live: JobState): ListedService {
  const l = liveState(live);
  return { job_id, platform: 'local-docker', network_arch: 'cosmos-rl', host_url: 'http://localhost:8080', started_at: '2026-11-30T11:48:00Z', ...over, state: l.state, live: l };
}

const services = [
  svc(ID1, { platform: 'slurm', started_at: '2026-11-30T09:00:00Z', expires_at: '2026-11-30T13:00:00Z' }, { state: 'error', native: 'FAILED', exitCode: 1, reason: 'the model could not be loaded from the checkpoint directory because it does not exist' }),
  svc(ID2, { network_arch: 'tao-dataservices', idle_timeout_minutes: 30 }, { state: 'running', native: 'running' }),
];
const base = { latest: ID2, now: NOW, wide: false, color: false };
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/;

describe('ls table', () => {
  it('shows 8-character ids, the latest marked, relative AGE and EXPIRES, and explains the marker', () => {
    const t = renderLsTable(services, base).split('\n');
    expect(t[0]).toMatch(/^JOB_ID\s+ARCH\s+PLATFORM\s+STATE\s+AGE\s+EXPIRES\s+URL\s+DETAIL$/);
    expect(t[1]).toMatch(/^3f2a9c10 +cosmos-rl +slurm +error +3h +in 1h +http:\/\/localhost:8080 +\(FAILED\) exit 1; the model/);
    expect(t[2]).toMatch(/^9d41e2c0\* +tao-dataservices +local-docker +running +12m +idle 30m +http/);
    expect(t.join('\n')).not.toContain(ID1);
    expect(t.at(-1)).toContain("* = latest (the one 'tao-infer stop --yes' stops)");
    expect(t.at(-1)).toContain('any unique prefix of 4+ works');
  });
  it('fits the width by cutting DETAIL; --wide keeps full ids and full text', () => {
    const narrow = renderLsTable(services, { ...base, width: 110 });
    for (const l of narrow.split('\n').slice(0, 3)) expect(l.length).toBeLessThanOrEqual(110);
    expect(narrow).toContain('…');
    const wide = renderLsTable(services, { ...base, width: 110, wide: true });
    expect(wide).toContain(`${ID2}*`);
    expect(wide).toContain('because it does not exist');
    expect(wide).not.toContain('…');
    expect(wide).not.toContain('first 8 characters');
  });
  it('colours state words only when asked, keeping the columns aligned', () => {
    expect(renderLsTable(services, base)).not.toMatch(ANSI);
    const coloured = renderLsTable(services, { ...base, color: true });
    expect(coloured).toMatch(ANSI);
    // eslint-disable-next-line no-control-regex
    expect(coloured.replace(/\u001b\[[0-9;]*m/g, '')).toBe(renderLsTable(services, base));
  });
  it('colour needs a TTY and NO_COLOR unset or empty; the width comes from the terminal, else COLUMNS', () => {
    expect(useColor({}, { isTTY: true })).toBe(true);
    expect(useColor({ NO_COLOR: '1' }, { isTTY: true })).toBe(false);
    expect(useColor({ NO_COLOR: '' }, { isTTY: true })).toBe(true);
    expect(useColor({}, { isTTY: false })).toBe(false);
    expect(terminalWidth({ COLUMNS: '90' }, { isTTY: true, columns: 132 })).toBe(132);
    expect(terminalWidth({ COLUMNS: '90' }, { isTTY: false })).toBe(90);
    expect(terminalWidth({}, {})).toBeUndefined();
    expect(truncate('abcdef', 4)).toBe('abc…');
  });
});

describe('ls --json shape', () => {
  it('live keys are snake_case and state is the live word', () => {
    expect(liveState({ state: 'error', native: 'exited', exitCode: 137, reason: 'OOMKilled' })).toEqual({ state: 'error', native: 'exited', exit_code: 137, reason: 'OOMKilled' });
    const s = services[0]!;
    expect(s.state).toBe('error');
    expect(JSON.stringify(s)).not.toMatch(/exitCode|"started"/);
  });
});

describe('environment defaults for skill-written entries (contract §5)', () => {
  const skillEntry = (platform: string): RegistryEntry => ({ job_id: 'j-1234', platform, network_arch: 'cosmos-rl', host_url: 'http://localhost:8080', started_at: '2026-11-30T11:00:00Z' });
  const defaultsOf = (name: string) => (PLATFORMS.find((d) => d.name === name) as PlatformDescriptor).entryDefaults;

  it('slurm: login user and node from SLURM_USER / SLURM_HOSTNAME, named in the note', () => {
    const r = applyEntryDefaults(skillEntry('slurm'), defaultsOf('slurm'), { SLURM_USER: 'alice', SLURM_HOSTNAME: 'login1' });
    expect(r.entry.platform_data).toEqual({ ssh_user: 'alice', ssh_host: 'login1' });
    expect(r.note).toBe('login user from $SLURM_USER, login node from $SLURM_HOSTNAME: the entry does not record them');
  });
  it('kubernetes: KUBECONFIG, TAO_K8S_CONTEXT, and the namespace from TAO_K8S_NAMESPACE or default', () => {
    const r = applyEntryDefaults(skillEntry('kubernetes'), defaultsOf('kubernetes'), { KUBECONFIG: '/k/config' });
    expect(r.entry.platform_data).toEqual({ kubeconfig: '/k/config', namespace: 'default' });
    expect(r.note).toContain('kubeconfig from $KUBECONFIG');
    expect(r.note).toContain("namespace 'default' ($TAO_K8S_NAMESPACE unset)");
    expect(applyEntryDefaults(skillEntry('kubernetes'), defaultsOf('kubernetes'), { TAO_K8S_NAMESPACE: 'ml' }).entry.platform_data).toEqual({ namespace: 'ml' });
  });
  it('brev: the instance from BREV_INSTANCE', () => {
    const r = applyEntryDefaults(skillEntry('brev'), defaultsOf('brev'), { BREV_INSTANCE: 'gpu-box' });
    expect(r.entry.platform_data).toEqual({ instance: 'gpu-box' });
    expect(r.note).toContain('instance from $BREV_INSTANCE');
  });
  it('recorded platform data wins; nothing set leaves the entry as it is', () => {
    const own = { ...skillEntry('slurm'), platform_data: { ssh_user: 'bob', ssh_host: 'login9' } };
    expect(applyEntryDefaults(own, defaultsOf('slurm'), { SLURM_USER: 'alice', SLURM_HOSTNAME: 'login1' })).toEqual({ entry: own });
    const bare = skillEntry('slurm');
    expect(applyEntryDefaults(bare, defaultsOf('slurm'), {}).entry).toBe(bare);
  });
  it('the routing hands the filled entry to the adapter and reports the default: note in status (also on failure), warning in stop', async () => {
    const seen: RegistryEntry[] = [];
    let fail = false;
    const fake: PlatformAdapter = {
      name: 'slurm',
      unsupported: {},
      reservesHostPort: false,
      preflight: async () => undefined,
      plan: async () => ({ platform: 'slurm', steps: [] }),
      launch: async () => ({ host_url: '' }),
      status: async (e) => {
        seen.push(e);
        if (fail) throw new Error('ssh: connect refused\nmore');
        return { state: 'running' };
      },
      logs: async function* () {},
      stop: async (e) => {
        seen.push(e);
      },
    };
    const warnings: string[] = [];
    const ctx: EntryContext = { env: { SLURM_USER: 'alice', SLURM_HOSTNAME: 'login1' }, log: () => undefined, warn: (m) => warnings.push(m) };
    const p = route(fake, defaultsOf('slurm'));
    const st = await p.status(skillEntry('slurm'), ctx);
    expect(st).toEqual({ state: 'running', note: expect.stringContaining('login node from $SLURM_HOSTNAME') });
    expect(seen[0]!.platform_data).toEqual({ ssh_user: 'alice', ssh_host: 'login1' });
    fail = true;
    expect(await p.status(skillEntry('slurm'), ctx)).toEqual({ state: 'unknown', reason: 'ssh: connect refused', note: expect.stringContaining('$SLURM_USER') });
    await p.stop(skillEntry('slurm'), ctx);
    expect(seen.at(-1)!.platform_data).toEqual({ ssh_user: 'alice', ssh_host: 'login1' });
    expect(warnings).toEqual([expect.stringMatching(/^j-1234: login user from \$SLURM_USER/)]);
  });
});

describe('README', () => {
  it("the ls --json example is what ls builds: snake_case keys, state = live.state", async () => {
    const { readFileSync } = await import('node:fs');
    const { ROOT } = await import('../helpers/cli.js');
    const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
    const at = readme.indexOf('`ls --json` is an array of registry entries');
    const block = /```json\n([\s\S]*?)```/.exec(readme.slice(at))![1]!;
    const [shown] = JSON.parse(block) as ListedService[];
    const keys = (o: object): string[] => Object.entries(o).flatMap(([k, v]) => [k, ...(v && typeof v === 'object' ? keys(v) : [])]);
    for (const k of keys(shown!)) expect(k).toMatch(/^[a-z0-9_]+$/);
    expect(shown!.live).toEqual(liveState({ state: 'error', native: 'exited', exitCode: 137, reason: 'OOMKilled' }));
    expect(shown!.state).toBe(shown!.live.state);
  });
});
