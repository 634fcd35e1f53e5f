/**
 * The markers discover rebuilds entries from (issue 10 point 1): the Slurm `--comment` marker round trip
 * (safe on an `#SBATCH` line, model_path with any characters), and a local-docker entry rebuilt from
 * `docker inspect` output (Docker Engine API ContainerInspectResponse: Config.Labels,
 * NetworkSettings.Ports["8080/tcp"][0].HostIp/HostPort, HostConfig.NetworkMode).
 */
import { describe, expect, it } from 'vitest';
import { LABELS } from '../../src/labels.js';
import { entryFromContainer } from '../../src/platforms/local-docker/adapter.js';
import { jobComment, parseJobComment } from '../../src/platforms/slurm/script.js';

describe('slurm --comment marker', () => {
  it('round-trips job_id, arch, runtime and a model_path with spaces, quotes and unicode', () => {
    const model = "/models/my model's ünïcode/$(x)";
    const c = jobComment({ job_id: '6f1c2d3e-0000-4000-8000-000000000001', network_arch: 'cosmos-predict2.5', labels: { [LABELS.modelPath]: model } }, 'pyxis');
    expect(c).toMatch(/^tao-infer:6f1c2d3e-0000-4000-8000-000000000001:cosmos-predict2\.5:pyxis:[A-Za-z0-9_-]+$/);
    expect(c).not.toMatch(/[\s'"\\$]/);
    expect(parseJobComment(c)).toEqual({ job_id: '6f1c2d3e-0000-4000-8000-000000000001', network_arch: 'cosmos-predict2.5', runtime: 'pyxis', model_path: model });
  });
  it('ignores other comments', () => {
    for (const c of ['', 'my job', 'tao-infer:', 'tao-infer:x y:a:b:c', 'other:1:2:3:4']) expect(parseJobComment(c)).toBeUndefined();
  });
});

describe('local-docker entry from a labelled container', () => {
  const labels = { [LABELS.managedBy]: 'tao-infer', [LABELS.jobId]: 'j-1', [LABELS.arch]: 'cosmos-rl', [LABELS.modelPath]: 'hf_model://a/b', [LABELS.startedAt]: '2026-11-30T03:00:00.000Z' };
  it('takes job_id, arch, model_path, started_at from labels and host_port, bind address from the 8080 binding', () => {
    const e = entryFromContainer({
      Created: '2026-11-30T02:59:59Z',
      Config: { Image: 'img:1', Labels: labels },
      HostConfig: { NetworkMode: 'tao_default' },
      NetworkSettings: { Ports: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '8093' }] } },
    }, 'local-docker');
    expect(e).toEqual({
      job_id: 'j-1',
      platform: 'local-docker',
      network_arch: 'cosmos-rl',
      host_url: 'http://localhost:8093',
      host_port: 8093,
      docker_url: 'http://j-1:8080',
      started_at: '2026-11-30T03:00:00.000Z',
      image: 'img:1',
      model_path: 'hf_model://a/b',
      platform_data: { network: 'tao_default', bind_address: '127.0.0.1', discovered: true },
    });
  });
  it('an exited container: the binding from HostConfig.PortBindings; a container without our labels is skipped', () => {
    const exited = { Config: { Labels: labels }, HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '8094' }] } }, NetworkSettings: { Ports: {} } };
    expect(entryFromContainer(exited, 'local-docker')).toMatchObject({ host_url: 'http://localhost:8094', host_port: 8094, job_id: 'j-1' });
    expect(entryFromContainer({ Config: { Labels: labels }, NetworkSettings: { Ports: {} } }, 'local-docker')).toMatchObject({ host_url: '', job_id: 'j-1' });
    expect(entryFromContainer({ Config: { Labels: { [LABELS.managedBy]: 'tao-infer' } } }, 'local-docker')).toBeUndefined();
  });
});
