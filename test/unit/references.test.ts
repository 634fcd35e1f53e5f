import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
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
