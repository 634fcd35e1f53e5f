// The platform descriptors: the list in src/platforms/index.ts is the only place above the platform folders
// that knows platform names; the CLI builds its platform flags and help texts from it.
import { Command } from '@commander-js/extra-typings';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addPlatformFlags, givenPlatformFlags, platformsSupporting } from '../../src/cli/platform-flags.js';
import { InvalidInputError } from '../../src/errors.js';
import { DEFAULT_PLATFORM, descriptorOf, PLATFORM_NAMES, PLATFORMS } from '../../src/platforms/index.js';
import { holdsLocalPort } from '../../src/registry/ports.js';
import type { RegistryEntry } from '../../src/types.js';
import { runCli, tempState } from '../helpers/cli.js';

const SRC = new URL('../../src/', import.meta.url).pathname;

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const entry = (e: Partial<RegistryEntry>): RegistryEntry => ({ job_id: 'j', platform: 'x', network_arch: 'cosmos-rl', host_url: '', started_at: '', ...e });

describe('platform descriptors', () => {
  it('PLATFORM_NAMES and the --platform default come from the descriptor list', () => {
    expect(PLATFORM_NAMES).toEqual(PLATFORMS.map((d) => d.name));
    expect(PLATFORM_NAMES).toEqual(['local-docker', 'brev', 'lepton', 'slurm', 'kubernetes']);
    expect(DEFAULT_PLATFORM).toBe('local-docker');
    expect(() => descriptorOf('nomad')).toThrow(InvalidInputError);
  });

  it('no platform name is a string literal in src/ outside its own folder and the descriptor list', () => {
    const names = PLATFORM_NAMES.join('|');
    const literal = new RegExp(`['"\`](${names})['"\`]`);
    const offenders: string[] = [];
    for (const f of tsFiles(SRC)) {
      const rel = relative(SRC, f);
      if (rel === join('platforms', 'index.ts') || PLATFORM_NAMES.some((n) => rel.startsWith(join('platforms', n) + '/'))) continue;
      const code = readFileSync(f, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/^\s*\/\/.*$/gm, '');
      code.split('\n').forEach((line, i) => {
        if (literal.test(line)) offenders.push(`${rel}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(offenders).toEqual([]);
  });

  it('stop gets the platforms stop flags (brev --delete-instance), described with their platform', () => {
    const cmd = new Command('stop').option('--json');
    addPlatformFlags(cmd, 'stop');
    const opt = cmd.options.find((o) => o.long === '--delete-instance');
    expect(opt?.description).toMatch(/^\[brev\] also delete the Brev instance/);
    expect(givenPlatformFlags({ deleteInstance: true, json: true }, 'stop')).toEqual(new Map([['brev', { flags: ['--delete-instance'], values: { deleteInstance: true } }]]));
    expect(givenPlatformFlags({ json: true }, 'stop').size).toBe(0);
  });

  it('help texts name the platforms that support a capability', () => {
    expect(platformsSupporting('gpu_ids')).toBe('local-docker, brev');
    expect(platformsSupporting('bind_address')).toBe('local-docker, brev');
  });

  it('a port on this machine is held by a local_port, or a host_port of a platform whose host ports are local', () => {
    expect(holdsLocalPort(entry({ platform: 'local-docker', host_port: 8080 }))).toBe(true);
    expect(holdsLocalPort(entry({ platform: 'slurm', host_port: 8081 }))).toBe(true);
    expect(holdsLocalPort(entry({ platform: 'brev', host_port: 8080 }))).toBe(false);
    expect(holdsLocalPort(entry({ platform: 'brev', host_port: 8080, local_port: 8082 }))).toBe(true);
    expect(holdsLocalPort(entry({ platform: 'lepton' }))).toBe(false);
    expect(holdsLocalPort(entry({ platform: 'other-tool', host_port: 8080 }))).toBe(false);
  });

  it('adapters take name, capabilities and host-port reservation from their descriptor', async () => {
    for (const d of PLATFORMS) {
      const a = await d.load();
      expect(a.name).toBe(d.name);
      expect(a.unsupported).toBe(d.unsupported);
      expect(a.reservesHostPort).toBe(d.reservesHostPort);
    }
  });
});

describe('stop with a platform stop flag', () => {
  it('--delete-instance on a service of another platform is a usage error (exit 2) before any platform call; the registry is unchanged', async () => {
    const { dir, stateFile } = tempState();
    try {
      const e = entry({ job_id: 'job-local', platform: 'local-docker', host_port: 8080, host_url: 'http://localhost:8080', started_at: '2026-11-30T00:00:00.000Z' });
      const doc = JSON.stringify({ 'job-local': e, latest: 'job-local' }, null, 2);
      writeFileSync(stateFile, doc, { mode: 0o600 });
      const r = await runCli(['stop', 'job-local', '--delete-instance', '--json'], { env: { TAO_INF_STATE_FILE: stateFile } });
      expect(r.exitCode).toBe(2);
      expect(r.stdout + r.stderr).toContain('--delete-instance applies to brev services only; job-local runs on local-docker');
      expect(readFileSync(stateFile, 'utf8')).toBe(doc);
      const help = await runCli(['stop', '--help']);
      expect(help.stdout).toMatch(/--delete-instance\s+\[brev\] also delete the Brev instance/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
