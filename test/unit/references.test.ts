import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { loadReferences, projectRoot } from '../../src/references.js';

function copyRoot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tao-refs-'));
  cpSync(join(projectRoot(), 'references'), join(dir, 'references'), { recursive: true });
  cpSync(join(projectRoot(), 'versions.yaml'), join(dir, 'versions.yaml'));
  return dir;
}

describe('reference data validation', () => {
  it('the shipped files load', () => {
    const refs = loadReferences();
    expect(refs.service.valid_network_arch_config_basenames).toContain('cosmos-rl');
    expect(refs.request.network_arch_constraints['cosmos-predict2.5']!.sampling_fields.guidance!.default).toBe(7);
  });

  it('a broken field is a ConfigError naming the file and the field', () => {
    const dir = copyRoot();
    writeFileSync(join(dir, 'references', 'service.yaml'), 'valid_network_arch_config_basenames: []\n');
    try {
      loadReferences(dir);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).file).toBe(join(dir, 'references', 'service.yaml'));
      expect((e as Error).message).toMatch(/docker_image_defaults/);
      expect((e as Error).message).toMatch(/valid_network_arch_config_basenames/);
    }
  });

  it('an arch config with a wrong type is reported with its path', () => {
    const dir = copyRoot();
    writeFileSync(join(dir, 'references', 'cosmos-rl.config.json'), JSON.stringify({ api_params: { image: 42 } }));
    expect(() => loadReferences(dir).archConfig('cosmos-rl')).toThrow(/cosmos-rl\.config\.json: api_params\.image/);
  });

  it('adding an arch that reuses a command shape is data only', async () => {
    const dir = copyRoot();
    const { parse, stringify } = await import('yaml');
    const { readFileSync } = await import('node:fs');
    const svcPath = join(dir, 'references', 'service.yaml');
    const svc = parse(readFileSync(svcPath, 'utf8'));
    svc.valid_network_arch_config_basenames.push('vila');
    svc.docker_image_defaults.mapping.VILA = 'tao_toolkit.vila';
    svc.container_commands.vila = { shape: 'tao_job', executable: ['vila-inference-microservice'] };
    writeFileSync(svcPath, stringify(svc));
    const reqPath = join(dir, 'references', 'request.yaml');
    const req = parse(readFileSync(reqPath, 'utf8'));
    req.network_arch_constraints.vila = req.network_arch_constraints['tao-dataservices'];
    writeFileSync(reqPath, stringify(req));
    writeFileSync(join(dir, 'references', 'vila.config.json'), JSON.stringify({ api_params: { image: 'VILA' } }));
    const refs = loadReferences(dir);
    const { resolveImage } = await import('../../src/archs/image.js');
    const { buildInnerCommand } = await import('../../src/archs/command.js');
    expect(resolveImage(refs, 'vila', {}).image).toBe('nvcr.io/nvidia/tao/tao-toolkit:6.26.3-vila');
    expect(buildInnerCommand(refs, { job_id: 'j', network_arch: 'vila', platform: 'local-docker', model: { kind: 'path', path: '/m' } }).command).toMatch(
      /^umask 0 && vila-inference-microservice --job '\{"job_id":"j"/,
    );
  });
});

describe('validated reference data is cached per user, keyed by the files (issue 9)', () => {
  let cacheHome: string;
  const saved = process.env.XDG_CACHE_HOME;
  const cacheFile = () => join(cacheHome, 'tao-infer', 'references.json');
  const readCacheFile = () => JSON.parse(readFileSync(cacheFile(), 'utf8'));
  beforeEach(() => {
    cacheHome = mkdtempSync(join(tmpdir(), 'tao-cache-'));
    process.env.XDG_CACHE_HOME = cacheHome;
  });
  afterEach(() => {
    process.env.XDG_CACHE_HOME = saved;
    rmSync(cacheHome, { recursive: true, force: true });
  });

  it('the first load validates and writes the cache (0600); a later load of the same files reads it instead of validating', () => {
    loadReferences(copyRoot());
    expect((statSync(cacheFile()).mode & 0o777).toString(8)).toBe('600');
    const c = readCacheFile();
    expect(c.key).toMatch(/^[0-9a-f]{64}$/);
    expect(c.data.service.container_port).toBe(8080);
    // Mark the cached data: a root with the same files (another process, another install) gets the mark.
    c.data.service.container_port = 9999;
    writeFileSync(cacheFile(), JSON.stringify(c));
    expect(loadReferences(copyRoot()).service.container_port).toBe(9999);
  });

  it('an edit to any reference file changes the key: validated again and the cache rewritten', () => {
    loadReferences(copyRoot());
    const c = readCacheFile();
    c.data.service.container_port = 9999;
    writeFileSync(cacheFile(), JSON.stringify(c));
    const dir = copyRoot();
    writeFileSync(join(dir, 'references', 'cosmos-rl.config.json'), readFileSync(join(dir, 'references', 'cosmos-rl.config.json'), 'utf8') + '\n');
    expect(loadReferences(dir).service.container_port).toBe(8080);
    expect(readCacheFile().key).not.toBe(c.key);
  });

  it('a corrupt or foreign-shaped cache is ignored and replaced', () => {
    loadReferences(copyRoot());
    for (const junk of ['{not json', JSON.stringify({ format: 'other', key: readCacheFile().key, data: {} }), JSON.stringify({ ...readCacheFile(), data: { service: {} } })]) {
      writeFileSync(cacheFile(), junk);
      expect(loadReferences(copyRoot()).request.network_arch_constraints['cosmos-rl']).toBeDefined();
      expect(readCacheFile().data.service.container_port).toBe(8080);
    }
  });

  it('a broken file is never cached: it is reported on every run until fixed', () => {
    const dir = copyRoot();
    writeFileSync(join(dir, 'references', 'request.yaml'), 'endpoint: 1\n');
    expect(() => loadReferences(dir)).toThrow(ConfigError);
    expect(existsSync(cacheFile())).toBe(false);
    expect(() => loadReferences(dir)).toThrow(/request\.yaml/);
  });

  it('a broken arch config is cached as broken and still reported only when that arch is used', () => {
    const dir = copyRoot();
    writeFileSync(join(dir, 'references', 'cosmos-rl.config.json'), JSON.stringify({ api_params: { image: 42 } }));
    loadReferences(dir);
    const again = copyRoot();
    writeFileSync(join(again, 'references', 'cosmos-rl.config.json'), JSON.stringify({ api_params: { image: 42 } }));
    const refs = loadReferences(again); // from the cache
    expect(refs.archConfig('tao-dataservices')?.api_params?.image).toBe('TAO_DATASERVICES');
    expect(() => refs.archConfig('cosmos-rl')).toThrow(new RegExp(`${again}/references/cosmos-rl\\.config\\.json: api_params\\.image`));
  });
});
