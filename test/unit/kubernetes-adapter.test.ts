/**
 * The kubernetes adapter driven directly (no CLI) against the fake API server (test/fakes/k8s-api-server.ts)
 * through the real @kubernetes/client-node and a real kubeconfig file: status mapping, logs, stop
 * idempotency, failure reasons. The end-to-end flows through the CLI are in test/integration/kubernetes.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { buildInnerCommand } from '../../src/archs/command.js';
import { loadReferences } from '../../src/references.js';
import { createAdapter } from '../../src/platforms/kubernetes/adapter.js';
import { LaunchFailedError } from '../../src/errors.js';
import type { AdapterContext, EntryContext, LaunchSpec, RegistryEntry } from '../../src/types.js';
import { FakeK8sApiServer } from '../fakes/k8s-api-server.js';
import { waitFor } from '../helpers/wait.js';

const refs = loadReferences();
let fake: FakeK8sApiServer;
let dir: string;
let kubeconfig: string;

beforeAll(async () => {
  fake = new FakeK8sApiServer();
  await fake.start();
  dir = mkdtempSync(join(tmpdir(), 'k8s-adapter-'));
  kubeconfig = fake.writeKubeconfig(dir);
});
afterAll(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

function makeSpec(over: Partial<LaunchSpec> = {}, options: Record<string, unknown> = {}): LaunchSpec {
  const job_id = randomUUID();
  const inner = buildInnerCommand(refs, {
    job_id,
    network_arch: 'cosmos-rl',
    platform: 'kubernetes',
    model: { kind: 'hf_model', uri: 'hf_model://nvidia/Cosmos-Reason1-7B', repo: 'nvidia/Cosmos-Reason1-7B' },
  });
  return {
    job_id,
    network_arch: 'cosmos-rl',
    image: 'registry.example.com/tao/standin:latest',
    inner_command: inner.command,
    num_gpus: 1,
    container_port: 8080,
    bind_address: '127.0.0.1',
    env: { secretNames: [], plain: {} },
    shm_size: '16g',
    labels: { 'tao-infer.managed-by': 'tao-infer', 'tao-infer.job_id': job_id, 'tao-infer.network_arch': 'cosmos-rl' },
    options: { kubeconfig, namespace: 'default', expose: 'loadbalancer', lbTimeout: 20, ...options },
    ...over,
  };
}

function makeCtx(entry: RegistryEntry, env: NodeJS.ProcessEnv = {}): AdapterContext & { logs: string[]; warnings: string[] } {
  const logs: string[] = [];
  const warnings: string[] = [];
  return {
    env: { PATH: process.env.PATH, HOME: dir, ...env },
    log: (m) => logs.push(m),
    warn: (m) => warnings.push(m),
    record: async (f) => {
      Object.assign(entry, f);
    },
    allocatePort: async () => 8150,
    deadline: Date.now() + 60_000,
    logs,
    warnings,
  };
}

function entryFor(spec: LaunchSpec): RegistryEntry {
  return { job_id: spec.job_id, platform: 'kubernetes', network_arch: spec.network_arch, host_url: '', started_at: new Date().toISOString() };
}

const ectx: EntryContext = { env: { PATH: process.env.PATH }, log: () => undefined, warn: () => undefined };

const until = <T>(fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> => waitFor('the condition', fn, ms, 200);

describe('kubernetes adapter against the fake API server', () => {
  const adapter = createAdapter();

  it('launches, reaches readiness through the LoadBalancer, reports status and logs, stops idempotently', async () => {
    const spec = makeSpec();
    const entry = entryFor(spec);
    const ctx = makeCtx(entry);
    await adapter.preflight(spec, ctx);
    const launched = await adapter.launch(spec, ctx);
    Object.assign(entry, launched);
    expect(launched.platform_job_id).toBe(`tao-${spec.job_id}`);
    expect(launched.host_url).toMatch(/^http:\/\/127\.\d+\.\d+\.\d+:8080$/);
    const ready = await until(async () => {
      try {
        const r = await fetch(`${launched.host_url}/api/v1/health/readiness`);
        return r.status === 200 ? r.status : undefined;
      } catch {
        return undefined;
      }
    });
    expect(ready).toBe(200);
    const st = await adapter.status(entry, ectx);
    expect(st.state).toBe('running');
    expect(st.node).toBe('gpu-node-a');
    let text = '';
    for await (const c of adapter.logs(entry, { tail: 50 }, ectx)) text += c;
    expect(text).toContain('[standin]');
    await adapter.stop(entry, ectx);
    expect(fake.objects('jobs')).toEqual([]);
    expect(fake.objects('services')).toEqual([]);
    expect(fake.objects('pods')).toEqual([]);
    await adapter.stop(entry, ectx); // idempotent
    expect((await adapter.status(entry, ectx)).state).toBe('gone');
  });

  it('fails fast with ImagePullBackOff/ErrImagePull for an nvcr.io image without pull secret', async () => {
    const spec = makeSpec({ image: 'nvcr.io/nvidia/tao/tao-toolkit:7.1.0-data-services' });
    const entry = entryFor(spec);
    const ctx = makeCtx(entry);
    await adapter.preflight(spec, ctx);
    expect(ctx.warnings.join('\n')).toMatch(/nvcr\.io.*--image-pull-secret/);
    const err = await adapter.launch(spec, ctx).catch((e) => e);
    expect(err).toBeInstanceOf(LaunchFailedError);
    expect((err as LaunchFailedError).reason).toMatch(/ErrImagePull|ImagePullBackOff/);
    expect((err as Error).message).toContain('401 Unauthorized');
    await adapter.stop(entry, ectx);
    expect(fake.allObjects().filter((o) => o.kind !== 'Secret' || o.type !== 'kubernetes.io/dockerconfigjson')).toEqual([]);
  });
});
