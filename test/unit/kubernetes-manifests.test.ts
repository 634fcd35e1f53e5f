/**
 * Pure parts of the kubernetes platform: object names, option validation, manifests built from the
 * templates in platforms/kubernetes/, and the Job/Pod state mapping (contract §8 kubernetes).
 */
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { ConfigError, InvalidInputError } from '../../src/errors.js';
import {
  buildManifests,
  fillTemplate,
  isDns1123Label,
  isLabelValue,
  manifestsToYaml,
  namesFor,
  parseK8sOptions,
  shmSizeToQuantity,
} from '../../src/platforms/kubernetes/manifests.js';
import { options } from '../../src/platforms/kubernetes/options.js';
import { jobVerdict, podVerdict } from '../../src/platforms/kubernetes/pods.js';
import type { LaunchSpec } from '../../src/types.js';

const JOB_ID = '0b9f3c52-6a51-4f0e-9d0e-3c1d2b7a8e11';

function spec(over: Partial<LaunchSpec> = {}): LaunchSpec {
  return {
    job_id: JOB_ID,
    network_arch: 'cosmos-predict2.5',
    image: 'nvcr.io/nvidia/tao/tao-toolkit:7.0.1-cosmos-predict',
    inner_command: `umask 0 && cosmos_predict inference_microservice start --checkpoint-path '/m/it'"'"'s' --output-dir '/tmp/o' --port 8080`,
    num_gpus: 2,
    container_port: 8080,
    bind_address: '127.0.0.1',
    env: { secretNames: ['HF_TOKEN'], plain: { WANDB_PROJECT: 'p', HF_TOKEN: 'must-not-be-inline' } },
    shm_size: '32g',
    labels: { 'tao-infer.managed-by': 'tao-infer', 'tao-infer.job_id': JOB_ID, 'tao-infer.network_arch': 'cosmos-predict2.5' },
    options: {},
    ...over,
  };
}

describe('names', () => {
  it('a uuid job_id gives tao-<job_id>, a DNS-1123 label of at most 63 characters', () => {
    const n = namesFor(JOB_ID);
    expect(n).toEqual({ job: `tao-${JOB_ID}`, service: `tao-${JOB_ID}`, secret: `tao-${JOB_ID}-env` });
    expect(isDns1123Label(n.job)).toBe(true);
  });
  it('odd or long job_ids are sanitised, shortened, and stay distinct', () => {
    const a = namesFor('My_Job.ID with spaces/and-Ü' + 'x'.repeat(80));
    const b = namesFor('My_Job.ID with spaces/and-Ü' + 'x'.repeat(81));
    for (const n of [a, b]) {
      expect(n.job.length).toBeLessThanOrEqual(63);
      expect(isDns1123Label(n.job)).toBe(true);
      expect(/^[a-z]/.test(n.service)).toBe(true); // DNS-1035 for Services
    }
    expect(a.job).not.toBe(b.job);
    expect(namesFor('ABC').job).not.toBe(namesFor('abc').job);
  });
});

describe('options', () => {
  it('declares the documented flags and env vars, importing nothing heavy', () => {
    const byKey = Object.fromEntries(options.map((o) => [o.key, o]));
    expect(byKey.context).toMatchObject({ flags: '--context <name>', env: 'TAO_K8S_CONTEXT' });
    expect(byKey.namespace).toMatchObject({ env: 'TAO_K8S_NAMESPACE', default: 'default' });
    expect(byKey.expose).toMatchObject({ choices: ['loadbalancer', 'nodeport', 'port-forward'], default: 'loadbalancer' });
    expect(byKey.kubeconfig).toMatchObject({ env: 'KUBECONFIG' });
    expect(byKey.skipCapacityCheck.flags).toBe('--skip-capacity-check');
    expect(byKey.imagePullSecret.flags).toBe('--image-pull-secret <name>');
    expect(byKey.lbTimeout).toMatchObject({ integer: true });
  });
  it('validates before any cluster call', () => {
    expect(parseK8sOptions({})).toEqual({ namespace: 'default', expose: 'loadbalancer', skipCapacityCheck: false, lbTimeoutS: 300, lbInternal: false });
    expect(() => parseK8sOptions({ namespace: 'Not_Valid' })).toThrow(InvalidInputError);
    expect(() => parseK8sOptions({ expose: 'ingress' })).toThrow(/--expose must be one of/);
    expect(() => parseK8sOptions({ imagePullSecret: 'Bad Name' })).toThrow(InvalidInputError);
    expect(() => parseK8sOptions({ lbTimeout: 0 })).toThrow(/--lb-timeout/);
    expect(parseK8sOptions({ skipCapacityCheck: true, expose: 'port-forward', lbTimeout: 5 })).toMatchObject({ skipCapacityCheck: true, expose: 'port-forward', lbTimeoutS: 5 });
  });
  it('converts docker shm sizes to Kubernetes quantities', () => {
    expect(shmSizeToQuantity('16g')).toBe('16Gi');
    expect(shmSizeToQuantity('512m')).toBe('512Mi');
    expect(shmSizeToQuantity('64K')).toBe('64Ki');
    expect(shmSizeToQuantity('1048576')).toBe('1048576');
    expect(shmSizeToQuantity('8Gi')).toBe('8Gi');
    expect(() => shmSizeToQuantity('lots')).toThrow(InvalidInputError);
  });
});

describe('manifests', () => {
  const opts = parseK8sOptions({ namespace: 'tao', imagePullSecret: 'ngc-pull', expose: 'nodeport' });

  it('Secret holds only the set secret env vars (value from the callback), the Job references it with envFrom', () => {
    const m = buildManifests(spec(), opts, namesFor(JOB_ID), (n) => Buffer.from(`v-${n}`).toString('base64'));
    expect(m.secret).toMatchObject({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: `tao-${JOB_ID}-env`, namespace: 'tao' } });
    expect(m.secret!.data).toEqual({ HF_TOKEN: Buffer.from('v-HF_TOKEN').toString('base64') });
    const c = m.job.spec!.template.spec!.containers[0]!;
    expect(c.envFrom).toEqual([{ secretRef: { name: `tao-${JOB_ID}-env` } }]);
    // A secret name never goes inline, even when it shows up among the plain vars.
    expect(c.env).toEqual([{ name: 'WANDB_PROJECT', value: 'p' }]);
    expect(JSON.stringify(m.job)).not.toContain('must-not-be-inline');
    expect(JSON.stringify(m.service)).not.toContain('HF_TOKEN');
  });

  it('Job: name, annotation, labels, backoffLimit 0, image, sh -c, port, GPUs, probe, /dev/shm, pull secret', () => {
    const m = buildManifests(spec(), opts, namesFor(JOB_ID), () => 'eA==');
    const j = m.job;
    expect(j).toMatchObject({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: `tao-${JOB_ID}`, namespace: 'tao' } });
    expect(j.metadata!.annotations).toMatchObject({ 'tao-infer.nvidia.com/job-id': JOB_ID });
    expect(j.metadata!.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'tao-infer', 'tao-infer.nvidia.com/network-arch': 'cosmos-predict2.5', 'tao-infer.job_id': JOB_ID });
    for (const v of Object.values(j.metadata!.labels!)) expect(isLabelValue(v)).toBe(true);
    expect(j.spec!.backoffLimit).toBe(0);
    const ps = j.spec!.template.spec!;
    expect(ps.restartPolicy).toBe('Never');
    expect(ps.imagePullSecrets).toEqual([{ name: 'ngc-pull' }]);
    expect(ps.tolerations).toEqual([
      { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' },
      { key: 'sku', operator: 'Equal', value: 'gpu', effect: 'NoSchedule' },
    ]);
    const c = ps.containers[0]!;
    expect(c.image).toBe('nvcr.io/nvidia/tao/tao-toolkit:7.0.1-cosmos-predict');
    expect(c.command).toEqual(['/bin/sh', '-c', spec().inner_command]);
    expect(c.ports).toEqual([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    expect(c.resources).toEqual({ limits: { 'nvidia.com/gpu': '2' } });
    expect(c.readinessProbe!.httpGet).toEqual({ path: '/api/v1/health/readiness', port: 8080 });
    expect(c.volumeMounts).toEqual([{ name: 'dshm', mountPath: '/dev/shm' }]);
    expect(ps.volumes).toEqual([{ name: 'dshm', emptyDir: { medium: 'Memory', sizeLimit: '32Gi' } }]);
    expect(m.service.spec).toMatchObject({ type: 'NodePort', selector: { 'app.kubernetes.io/managed-by': 'tao-infer', 'app.kubernetes.io/instance': `tao-${JOB_ID}` } });
    expect(j.spec!.template.metadata!.labels).toMatchObject(m.service.spec!.selector!);
  });

  it('no secrets → no Secret and no envFrom; --num-gpus 0 → no GPU limits or tolerations; no pull secret → none', () => {
    const m = buildManifests(spec({ num_gpus: 0, env: { secretNames: [], plain: {} } }), parseK8sOptions({}), namesFor(JOB_ID), () => {
      throw new Error('not called');
    });
    expect(m.secret).toBeUndefined();
    const ps = m.job.spec!.template.spec!;
    expect(ps.containers[0]!.envFrom).toBeUndefined();
    expect(ps.containers[0]!.env).toBeUndefined();
    expect(ps.containers[0]!.resources).toBeUndefined();
    expect(ps.tolerations).toBeUndefined();
    expect(ps.imagePullSecrets).toBeUndefined();
    expect(m.service.spec!.type).toBe('LoadBalancer');
  });

  it('YAML for --dry-run: Secret, Job, Service documents that parse back to the objects', () => {
    const m = buildManifests(spec(), opts, namesFor(JOB_ID), (n) => `<base64 of $${n}>`);
    const docs = parseAllDocuments(manifestsToYaml(m)).map((d) => d.toJSON());
    expect(docs.map((d) => d.kind)).toEqual(['Secret', 'Job', 'Service']);
    expect(docs[1]).toEqual(JSON.parse(JSON.stringify(m.job)));
    expect(docs[0].data).toEqual({ HF_TOKEN: '<base64 of $HF_TOKEN>' });
  });

  it('template substitution works on parsed values (no YAML injection) and rejects unknown placeholders', () => {
    const tpl = parseYaml('a: "{{x}}"\nb: "pre-{{x}}"\nc: ["{{gone}}", keep]\nd: "{{gone}}"\n');
    expect(fillTemplate(tpl, { x: 'v: [1]\n- injected', gone: undefined }, 't.yaml')).toEqual({ a: 'v: [1]\n- injected', b: 'pre-v: [1]\n- injected', c: ['keep'] });
    expect(() => fillTemplate(parseYaml('a: "{{nope}}"'), {}, 't.yaml')).toThrow(ConfigError);
  });
});

describe('Job and Pod state mapping', () => {
  const pod = (status: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ metadata: { name: 'p' }, spec: { containers: [], nodeName: 'n1' }, status, ...extra }) as any;

  it('Unschedulable is pending with the scheduler message, fatal only when asked', () => {
    const p = pod({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.' }] });
    expect(podVerdict(p)).toMatchObject({ state: 'pending', native: 'Unschedulable', reason: expect.stringContaining('Insufficient nvidia.com/gpu') });
    expect(podVerdict(p).fatal).toBeUndefined();
    expect(podVerdict(p, { unschedulableIsFatal: true }).fatal).toBe(true);
  });
  it('ImagePullBackOff is an error; ErrImagePull only when the registry answer is permanent', () => {
    const w = (reason: string, message: string) => pod({ phase: 'Pending', containerStatuses: [{ state: { waiting: { reason, message } } }] });
    expect(podVerdict(w('ImagePullBackOff', 'Back-off pulling image "x"'))).toMatchObject({ state: 'error', native: 'ImagePullBackOff', fatal: true });
    expect(podVerdict(w('ErrImagePull', 'failed to pull: 401 Unauthorized'))).toMatchObject({ state: 'error', fatal: true });
    expect(podVerdict(w('ErrImagePull', 'i/o timeout'))).toMatchObject({ state: 'pending', native: 'ErrImagePull' });
    expect(podVerdict(w('ContainerCreating', ''))).toMatchObject({ state: 'pending' });
  });
  it('running, completed, OOMKilled, error exit codes', () => {
    expect(podVerdict(pod({ phase: 'Running', containerStatuses: [{ ready: true, state: { running: {} } }] }))).toMatchObject({ state: 'running', node: 'n1' });
    expect(podVerdict(pod({ phase: 'Failed', containerStatuses: [{ state: { terminated: { exitCode: 137, reason: 'OOMKilled' } } }] }))).toMatchObject({
      state: 'error',
      native: 'OOMKilled',
      exitCode: 137,
    });
    expect(podVerdict(pod({ phase: 'Failed', containerStatuses: [{ state: { terminated: { exitCode: 1, reason: 'Error' } } }] }))).toMatchObject({ state: 'error', exitCode: 1 });
    expect(podVerdict(pod({ phase: 'Succeeded', containerStatuses: [{ state: { terminated: { exitCode: 0, reason: 'Completed' } } }] }))).toMatchObject({ state: 'complete' });
    expect(podVerdict(pod({ phase: 'Running' }, { metadata: { name: 'p', deletionTimestamp: new Date() } }))).toMatchObject({ state: 'canceled' });
  });
  it('Job conditions: Failed, Complete, being deleted, active', () => {
    expect(jobVerdict({ status: { conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' }] } } as any)).toMatchObject({
      state: 'error',
      native: 'BackoffLimitExceeded',
    });
    expect(jobVerdict({ status: { conditions: [{ type: 'Complete', status: 'True' }] } } as any)).toMatchObject({ state: 'complete' });
    expect(jobVerdict({ metadata: { deletionTimestamp: new Date() }, status: {} } as any)).toMatchObject({ state: 'canceled' });
    expect(jobVerdict({ status: { active: 1 } } as any)).toBeUndefined();
  });
});
