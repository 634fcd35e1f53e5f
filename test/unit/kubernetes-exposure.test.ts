/**
 * kubernetes on real clusters (issue 11 point 6): GPU tolerations, LoadBalancer source ranges and internal
 * load balancers, the warning for a public LoadBalancer, and kubeconfig files merged like kubectl merges them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/errors.js';
import { loadKube } from '../../src/platforms/kubernetes/client.js';
import { buildManifests, namesFor, parseK8sOptions, parseSourceRanges, parseToleration } from '../../src/platforms/kubernetes/manifests.js';
import type { LaunchSpec } from '../../src/types.js';
import { runCli } from '../helpers/cli.js';

const JOB_ID = '5d0c7c9e-2f4a-4b8e-9a7e-1f0e2d3c4b5a';
const dir = mkdtempSync(join(tmpdir(), 'tao-k8s-exposure-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function spec(over: Partial<LaunchSpec> = {}): LaunchSpec {
  return {
    job_id: JOB_ID,
    network_arch: 'cosmos-rl',
    image: 'nvcr.io/nvidia/tao/tao-toolkit:7.0.1-cosmos-rl',
    inner_command: 'true',
    num_gpus: 1,
    container_port: 8080,
    bind_address: '127.0.0.1',
    env: { secretNames: [], plain: {} },
    shm_size: '16g',
    labels: {},
    options: {},
    ...over,
  };
}

describe('--toleration', () => {
  it('key[=value]:Effect → Equal or Exists tolerations; --toleration replaces the GPU defaults', () => {
    expect(parseToleration('sku=gpu:NoSchedule')).toEqual({ key: 'sku', operator: 'Equal', value: 'gpu', effect: 'NoSchedule' });
    expect(parseToleration('nvidia.com/gpu:NoExecute')).toEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoExecute' });
    const o = parseK8sOptions({ toleration: ['dedicated=ml:PreferNoSchedule', 'nvidia.com/gpu:NoSchedule'] });
    const ps = buildManifests(spec(), o, namesFor(JOB_ID), () => '').job.spec!.template.spec!;
    expect(ps.tolerations).toEqual([
      { key: 'dedicated', operator: 'Equal', value: 'ml', effect: 'PreferNoSchedule' },
      { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
    ]);
    // given explicitly, they apply without GPUs too
    expect(buildManifests(spec({ num_gpus: 0 }), o, namesFor(JOB_ID), () => '').job.spec!.template.spec!.tolerations).toHaveLength(2);
  });

  it.each(['sku=gpu', 'sku=gpu:Sometimes', ':NoSchedule', 'bad key:NoSchedule', 'sku=a b:NoSchedule'])('rejects %j naming the flag', (t) => {
    expect(() => parseK8sOptions({ toleration: [t] })).toThrow(InvalidInputError);
    try {
      parseK8sOptions({ toleration: [t] });
    } catch (e) {
      expect((e as InvalidInputError).message).toContain('--toleration');
    }
  });
});

describe('LoadBalancer restrictions', () => {
  it('--lb-source-ranges → spec.loadBalancerSourceRanges; --lb-internal → the AWS, Azure and GKE internal annotations', () => {
    const o = parseK8sOptions({ lbSourceRanges: '203.0.113.0/24, 2001:db8::/32', lbInternal: true });
    const svc = buildManifests(spec(), o, namesFor(JOB_ID), () => '').service;
    expect(svc.spec!.type).toBe('LoadBalancer');
    expect(svc.spec!.loadBalancerSourceRanges).toEqual(['203.0.113.0/24', '2001:db8::/32']);
    expect(svc.metadata!.annotations).toMatchObject({
      'service.beta.kubernetes.io/aws-load-balancer-internal': 'true',
      'service.beta.kubernetes.io/aws-load-balancer-scheme': 'internal',
      'service.beta.kubernetes.io/azure-load-balancer-internal': 'true',
      'networking.gke.io/load-balancer-type': 'Internal',
      'tao-infer.nvidia.com/job-id': JOB_ID,
    });
    // the Job carries none of them
    expect(JSON.stringify(buildManifests(spec(), o, namesFor(JOB_ID), () => '').job)).not.toContain('load-balancer');
    const plain = buildManifests(spec(), parseK8sOptions({}), namesFor(JOB_ID), () => '').service;
    expect(plain.spec!.loadBalancerSourceRanges).toBeUndefined();
    expect(JSON.stringify(plain.metadata!.annotations)).not.toContain('internal');
  });

  it.each(['10.0.0.0', '10.0.0.0/33', '300.1.1.1/8', '::/129', 'example.com/24', '10.0.0.0/8/1', ','])('rejects %j as a CIDR', (c) => {
    expect(() => parseSourceRanges(c)).toThrow(/--lb-source-ranges/);
  });

  it('--lb-source-ranges and --lb-internal need --expose loadbalancer', () => {
    expect(() => parseK8sOptions({ expose: 'nodeport', lbInternal: true })).toThrow(/--lb-internal applies to --expose loadbalancer only/);
    expect(() => parseK8sOptions({ expose: 'port-forward', lbSourceRanges: '10.0.0.0/8' })).toThrow(/--lb-source-ranges applies/);
  });

  it('start --dry-run warns that a LoadBalancer is public and unauthenticated, and shows the restrictions', async () => {
    const kubeconfig = join(dir, 'dry-kubeconfig');
    writeFileSync(kubeconfig, kubeconfigText({ cluster: 'c', user: 'u', context: 'ctx', current: 'ctx', token: 't' }));
    const base = ['start', '--platform', 'kubernetes', '--kubeconfig', kubeconfig, '--arch', 'cosmos-rl', '--model', '/models/x', '--dry-run'];
    const env = { TAO_INF_STATE_FILE: join(dir, 'state.json'), HOME: dir };
    const open = await runCli(base, { env });
    expect(open.exitCode, open.stderr).toBe(0);
    expect(open.stderr).toMatch(/PUBLIC load balancer.*no authentication.*--lb-source-ranges/s);
    const narrowed = await runCli([...base, '--lb-source-ranges', '10.1.0.0/16', '--lb-internal', '--toleration', 'sku=gpu:NoSchedule'], { env });
    expect(narrowed.exitCode, narrowed.stderr).toBe(0);
    expect(narrowed.stderr).toMatch(/internal load balancer .*10\.1\.0\.0\/16.*no authentication/s);
    expect(narrowed.stdout + narrowed.stderr).toMatch(/loadBalancerSourceRanges:\s*\n\s*- 10\.1\.0\.0\/16/);
    expect(narrowed.stdout + narrowed.stderr).toContain('networking.gke.io/load-balancer-type: Internal');
    const bad = await runCli([...base, '--lb-source-ranges', '10.1.0.0'], { env });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('--lb-source-ranges');
  });
});

function kubeconfigText(a: { cluster: string; user: string; context: string; current?: string; token: string; server?: string }): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${a.cluster}`,
    '  cluster:',
    `    server: ${a.server ?? 'https://127.0.0.1:6443'}`,
    'users:',
    `- name: ${a.user}`,
    '  user:',
    `    token: ${a.token}`,
    'contexts:',
    `- name: ${a.context}`,
    '  context:',
    `    cluster: ${a.cluster}`,
    `    user: ${a.user}`,
    ...(a.current ? [`current-context: ${a.current}`] : []),
    '',
  ].join('\n');
}

describe('kubeconfig files merged like kubectl', () => {
  it('duplicate cluster/user/context names across files: the first file wins (also for current-context); no error', () => {
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    writeFileSync(a, kubeconfigText({ cluster: 'shared', user: 'admin', context: 'one', current: 'one', token: 'from-a', server: 'https://10.0.0.1:6443' }));
    writeFileSync(b, kubeconfigText({ cluster: 'shared', user: 'admin', context: 'two', current: 'two', token: 'from-b', server: 'https://10.0.0.2:6443' }));
    const conn = loadKube({ kubeconfig: `${a}:${b}`, env: { HOME: dir } });
    expect(conn.source.context).toBe('one');
    expect(conn.kc.getCurrentCluster()!.server).toBe('https://10.0.0.1:6443');
    expect(conn.kc.getCurrentUser()!.token).toBe('from-a');
    // the second file's own context is there, bound to the first file's cluster and user of the same names
    const two = loadKube({ kubeconfig: `${a}:${b}`, context: 'two', env: { HOME: dir } });
    expect(two.kc.getCurrentCluster()!.server).toBe('https://10.0.0.1:6443');
    expect(two.kc.getCurrentUser()!.token).toBe('from-a');
    // KUBECONFIG is merged the same way
    expect(loadKube({ env: { HOME: dir, KUBECONFIG: `${b}:${a}` } }).source.context).toBe('two');
  });
});
