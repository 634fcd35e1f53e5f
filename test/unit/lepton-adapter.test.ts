// Pure parts of the lepton adapter: names, sizes, the deployment body and the state mapping.
import { describe, expect, it } from 'vitest';
import { MissingInputError, PlatformUnavailableError } from '../../src/errors.js';
import { buildDeployment, deploymentName, mapLeptonState, secretName, shapeGpus, shmToMiB } from '../../src/platforms/lepton/adapter.js';
import { leptonConfig } from '../../src/platforms/lepton/api.js';
import type { LaunchSpec } from '../../src/types.js';

const spec = (over: Partial<LaunchSpec> = {}): LaunchSpec => ({
  job_id: '0B7E9C8E-1f2a-4b3c-9d4e-5f6a7b8c9d0e',
  network_arch: 'cosmos-rl',
  image: 'nvcr.io/nvidia/tao/x:1',
  inner_command: "umask 0 && cosmos-rl-inference-microservice --job '{}' --docker_env_vars '{}'",
  num_gpus: 1,
  container_port: 8080,
  bind_address: '127.0.0.1',
  env: { secretNames: ['HF_TOKEN', 'WANDB_API_KEY'], plain: { WANDB_PROJECT: 'p' } },
  shm_size: '16g',
  labels: {},
  options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'EP_TOK' },
  ...over,
});

describe('lepton names and sizes', () => {
  it('deployment names are valid Lepton names derived from the job id', () => {
    expect(deploymentName('0B7E9C8E-1f2a-4b3c-9d4e-5f6a7b8c9d0e')).toBe('tao-0b7e9c8e1f2a');
    expect(deploymentName('x')).toMatch(/^[a-z][a-z0-9-]{0,35}$/);
    expect(secretName('tao-0b7e9c8e1f2a', 'CLEARML_API_SECRET_KEY')).toBe('tao-0b7e9c8e1f2a-clearml-api-secret-key');
  });
  it('shm size in MiB', () => {
    expect(shmToMiB('16g')).toBe(16384);
    expect(shmToMiB('512m')).toBe(512);
    expect(shmToMiB('1073741824')).toBe(1024);
    expect(shmToMiB('lots')).toBeUndefined();
  });
  it('GPUs of a shape', () => {
    expect(shapeGpus('gpu.8xh100-sxm')).toBe(8);
    expect(shapeGpus('cpu.small')).toBeUndefined();
  });
});

describe('deployment body', () => {
  it('secrets by reference only; the endpoint token from the named env var; the default ingress timeout', () => {
    const env = { HF_TOKEN: 'secret-1', WANDB_API_KEY: 'secret-2', EP_TOK: 'ep-1' };
    const b = buildDeployment(spec(), env, 'ng-1', true);
    const text = JSON.stringify(b.body);
    expect(text).not.toContain('secret-1');
    expect(text).not.toContain('secret-2');
    expect(b.body.spec.envs).toEqual([
      { name: 'WANDB_PROJECT', value: 'p' },
      { name: 'HF_TOKEN', value_from: { secret_name_ref: 'tao-0b7e9c8e1f2a-hf-token' } },
      { name: 'WANDB_API_KEY', value_from: { secret_name_ref: 'tao-0b7e9c8e1f2a-wandb-api-key' } },
      // discover's marker: the NAME of the env var holding the endpoint token (labels add TAO_INFER_JOB_ID, ...)
      { name: 'TAO_INFER_AUTH_ENV', value: 'EP_TOK' },
    ]);
    expect(b.body.spec.container.command).toEqual(['/bin/bash', '-c', spec().inner_command]);
    expect(b.body.spec.resource_requirement.affinity).toEqual({ allowed_dedicated_node_groups: ['ng-1'] });
    expect(b.body.spec.api_tokens).toEqual([{ value: 'ep-1' }]);
    expect(b.auth_env).toBe('EP_TOK');
    expect(b.body.spec.ingress_timeout_seconds).toBe(1800);
  });
  it('--endpoint-token-env puts that token value in api_tokens (named in plans)', () => {
    const s = spec({ options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'EP_TOK' } });
    expect(buildDeployment(s, { EP_TOK: 'abc' }, undefined, true).body.spec.api_tokens).toEqual([{ value: 'abc' }]);
    const plan = buildDeployment(s, { EP_TOK: 'abc' }, undefined, false);
    expect(plan.body.spec.api_tokens).toEqual([{ value: '<value of $EP_TOK>' }]);
    expect(plan.auth_env).toBe('EP_TOK');
  });
  it('--resource-shape is required', () => {
    expect(() => buildDeployment(spec({ options: {} }), {}, undefined, false)).toThrow(MissingInputError);
  });
  it('no workspace-token default: without --endpoint-token-env only an explicit --public builds, with no tokens', () => {
    expect(() => buildDeployment(spec({ options: { resourceShape: 'gpu.1xh100' } }), {}, undefined, false)).toThrow(/--endpoint-token-env/);
    const pub = buildDeployment(spec({ options: { resourceShape: 'gpu.1xh100', public: true } }), {}, undefined, true);
    expect(pub.body.spec.api_tokens).toEqual([]);
    expect(pub.auth_env).toBeUndefined();
    expect(JSON.stringify(pub.body)).not.toContain('WORKSPACE_TOKEN');
  });
  it('the resource shape is sent lowercase; --ingress-timeout must be 300-6000', () => {
    const b = buildDeployment(spec({ options: { resourceShape: 'GPU.8xH100-SXM', endpointTokenEnv: 'EP_TOK', ingressTimeout: 6000 } }), {}, undefined, false);
    expect(b.body.spec.resource_requirement.resource_shape).toBe('gpu.8xh100-sxm');
    expect(b.body.spec.ingress_timeout_seconds).toBe(6000);
    expect(() => buildDeployment(spec({ options: { resourceShape: 'gpu.1xh100', endpointTokenEnv: 'EP_TOK', ingressTimeout: 299 } }), {}, undefined, false)).toThrow(/300 to 6000/);
  });
});

describe('state mapping', () => {
  const dep = (state: string) => ({ metadata: { name: 'd' }, status: { state } });
  it('Ready, stopped, starting', () => {
    expect(mapLeptonState(dep('Ready'), {}, {})).toMatchObject({ state: 'running' });
    expect(mapLeptonState(dep('Stopped'), {}, {})).toMatchObject({ state: 'canceled' });
    expect(mapLeptonState(dep('Starting'), { r1: [{ reason: 'InProgress', message: 'pulling' }] }, {})).toEqual({ state: 'pending', native: 'Starting', reason: 'InProgress: pulling' });
  });
  it('ConfigError / SystemError readiness issues are errors with the message', () => {
    const st = mapLeptonState(dep('Not Ready'), { r1: [{ reason: 'ConfigError', message: 'ErrImagePull: x' }] }, {});
    expect(st).toEqual({ state: 'error', native: 'Not Ready', reason: 'ConfigError: ErrImagePull: x' });
  });
  it('a non-zero termination is an error with exit code', () => {
    const st = mapLeptonState(dep('Not Ready'), {}, { r1: [{ exit_code: 3, reason: 'Error', message: 'RuntimeError: CUDA' }] });
    expect(st).toMatchObject({ state: 'error', exitCode: 3, reason: 'Error (exit 3): RuntimeError: CUDA' });
  });
  it('NoCapacity stays pending with the reason', () => {
    expect(mapLeptonState(dep('Starting'), { r1: [{ reason: 'NoCapacity', message: 'none free' }] }, {})).toMatchObject({ state: 'pending', reason: 'NoCapacity: none free' });
  });
  it('Error state', () => {
    expect(mapLeptonState(dep('Error'), {}, {})).toMatchObject({ state: 'error', native: 'Error' });
  });
});

describe('workspace config', () => {
  it('default gateway URL from the workspace id; token required', () => {
    expect(leptonConfig({ LEPTON_WORKSPACE_ID: 'ws1', LEPTON_WORKSPACE_TOKEN: 't' }).baseUrl).toBe('https://gateway.dgxc-lepton.nvidia.com/api/v2/workspaces/ws1');
    expect(leptonConfig({ LEPTON_WORKSPACE_URL: 'http://127.0.0.1:9/api/v2/workspaces/w/', LEPTON_WORKSPACE_TOKEN: 't' }).baseUrl).toBe('http://127.0.0.1:9/api/v2/workspaces/w');
    expect(() => leptonConfig({ LEPTON_WORKSPACE_ID: 'ws1' })).toThrow(PlatformUnavailableError);
    expect(() => leptonConfig({ LEPTON_WORKSPACE_TOKEN: 't' })).toThrow(/LEPTON_WORKSPACE_ID/);
  });
  it('origin header as the SDK sends it: the workspace URL for DGXC URLs, LEPTON_WORKSPACE_ORIGIN_URL first, none otherwise', () => {
    const dgxc = leptonConfig({ LEPTON_WORKSPACE_ID: 'ws1', LEPTON_WORKSPACE_TOKEN: 't' });
    expect(dgxc.originUrl).toBe('https://gateway.dgxc-lepton.nvidia.com/api/v2/workspaces/ws1');
    expect(leptonConfig({ LEPTON_WORKSPACE_URL: 'http://127.0.0.1:9/api/v2/workspaces/w', LEPTON_WORKSPACE_TOKEN: 't' }).originUrl).toBeUndefined();
    expect(leptonConfig({ LEPTON_WORKSPACE_URL: 'http://127.0.0.1:9/api/v2/workspaces/w', LEPTON_WORKSPACE_TOKEN: 't', LEPTON_WORKSPACE_ORIGIN_URL: 'https://o' }).originUrl).toBe('https://o');
  });
});
