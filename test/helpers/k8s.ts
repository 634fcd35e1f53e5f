/**
 * Helpers over the fake Kubernetes API server (test/fakes/k8s-api-server.ts), shared by
 * test/integration/kubernetes.test.ts and the kubernetes harness of the contract suite.
 */
import { existsSync, readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { FakeK8sApiServer } from '../fakes/k8s-api-server.js';
import { CANARY, CANARY_B64, makeCanary } from './canary.js';
import { tempState } from './cli.js';

/** A second secret value (WANDB_API_KEY) for the Secret that holds several. */
export const WANDB_CANARY = makeCanary('wandb-canary');

/** The usual nodes: one GPU node with the NVIDIA taint, one CPU node. */
export function defaultNodes(fake: FakeK8sApiServer): void {
  fake.setNodes([
    { name: 'gpu-node-a', gpus: 2, taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }] },
    { name: 'cpu-node-b', gpus: 0 },
  ]);
}

/** What a cluster admin does once: a docker-registry Secret `ngc-pull` with NGC credentials in `default` and `tao`. */
export function seedPullSecrets(fake: FakeK8sApiServer): void {
  fake.seedSecret('default', 'ngc-pull', 'kubernetes.io/dockerconfigjson', FakeK8sApiServer.dockerConfigFor('nvcr.io'));
  fake.seedSecret('tao', 'ngc-pull', 'kubernetes.io/dockerconfigjson', FakeK8sApiServer.dockerConfigFor('nvcr.io'));
}

export interface K8sEnv {
  dir: string;
  stateFile: string;
  kubeconfig: string;
  env: Record<string, string>;
}

/** Own registry, HOME and a kubeconfig for `fake` in a fresh temp dir. */
export function k8sEnv(fake: FakeK8sApiServer, extra: Record<string, string> = {}): K8sEnv {
  const { dir, stateFile } = tempState();
  const kubeconfig = fake.writeKubeconfig(dir);
  return { dir, stateFile, kubeconfig, env: { TAO_INF_STATE_FILE: stateFile, HOME: dir, ...extra } };
}

/**
 * End the port-forward processes a test started (a failed assertion may skip its `stop`), by their recorded PIDs
 * only and only while such a PID is still a kubernetes port-forward; empties `pids`.
 */
export function endForwarders(pids: number[]): void {
  for (const pid of pids.splice(0)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kubernetes/port-forward.js')) process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
}

/** Objects tao-infer created (everything but the seeded pull secrets). */
export function ourObjects(fake: FakeK8sApiServer): Array<Record<string, any>> {
  return fake.allObjects().filter((o) => !(o.kind === 'Secret' && o.metadata.name === 'ngc-pull'));
}

/** Bodies of the POSTs to `resource` (secrets, jobs, services). */
export function posts(fake: FakeK8sApiServer, resource: string): Array<Record<string, any>> {
  return fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith(`/${resource}`)).map((r) => JSON.parse(r.body));
}

/** The canary secret values appear nowhere but in the data of the per-job Secret, and in no output. */
export function expectNoSecretLeak(fake: FakeK8sApiServer, outputs: string[], stateFile: string): void {
  for (const r of fake.requests) {
    for (const secret of [CANARY, WANDB_CANARY]) expect(r.body, `${r.method} ${r.path}`).not.toContain(secret);
    if (r.body.includes(CANARY_B64)) {
      expect(r.method).toBe('POST');
      expect(r.path).toMatch(/^\/api\/v1\/namespaces\/[^/]+\/secrets$/);
      const body = JSON.parse(r.body);
      expect(body.data.HF_TOKEN).toBe(CANARY_B64);
      const { data: _data, ...rest } = body;
      expect(JSON.stringify(rest)).not.toContain(CANARY_B64);
    }
  }
  for (const o of fake.allObjects()) {
    if (o.kind === 'Secret') continue;
    expect(JSON.stringify(o)).not.toContain(CANARY);
    expect(JSON.stringify(o)).not.toContain(CANARY_B64);
  }
  for (const o of outputs) {
    expect(o).not.toContain(CANARY);
    expect(o).not.toContain(CANARY_B64);
    expect(o).not.toContain(WANDB_CANARY);
  }
  if (existsSync(stateFile)) {
    expect(readFileSync(stateFile, 'utf8')).not.toContain(CANARY);
    expect(readFileSync(stateFile, 'utf8')).not.toContain(CANARY_B64);
  }
}
