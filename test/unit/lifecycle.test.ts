import { describe, expect, it } from 'vitest';
import { ConfigError, InvalidInputError } from '../../src/errors.js';
import { prepareLaunch } from '../../src/lifecycle.js';
import { loadReferences } from '../../src/references.js';

const refs = loadReferences();
const base = { network_arch: 'cosmos-rl', model_path: '/m', platform: 'kubernetes' };

describe('prepareLaunch input checks', () => {
  it('service secrets that are set, and credential-looking --env names, travel as secrets; others as plain values', () => {
    const env = { HF_TOKEN: 'h', MY_API_TOKEN: 't', NGC_API_KEY: 'k', DB_PASSWORD: 'p', WANDB_PROJECT: 'proj', TAO_DEBUG: '1' };
    const { spec } = prepareLaunch({ ...base, env_names: ['MY_API_TOKEN', 'NGC_API_KEY', 'DB_PASSWORD', 'WANDB_PROJECT', 'TAO_DEBUG'] }, refs, env, () => {});
    expect(spec.env.secretNames.sort()).toEqual(['DB_PASSWORD', 'HF_TOKEN', 'MY_API_TOKEN', 'NGC_API_KEY']);
    expect(spec.env.plain).toEqual({ WANDB_PROJECT: 'proj', TAO_DEBUG: '1' });
    expect(JSON.stringify(spec)).not.toMatch(/"(h|t|k|p)"/);
  });

  it('refuses forbidden callback variables, unset names and bad names', () => {
    expect(() => prepareLaunch({ ...base, env_names: ['TAO_LOGGING_SERVER_URL'] }, refs, { TAO_LOGGING_SERVER_URL: 'x' }, () => {})).toThrow(/callbacks are disabled/);
    expect(() => prepareLaunch({ ...base, env_names: ['NOPE'] }, refs, {}, () => {})).toThrow(/NOPE is not set/);
    expect(() => prepareLaunch({ ...base, env_names: ['A=B'] }, refs, {}, () => {})).toThrow(InvalidInputError);
  });

  it('--bind must be an IP address; --shm-size a size', () => {
    for (const bind of ['9.9.9.9.9', 'abc', '127.0.0.1;x']) expect(() => prepareLaunch({ ...base, bind_address: bind }, refs, {}, () => {}), bind).toThrow(/--bind/);
    expect(prepareLaunch({ ...base, bind_address: '::1' }, refs, {}, () => {}).spec.bind_address).toBe('::1');
    expect(() => prepareLaunch({ ...base, shm_size: '16 GB' }, refs, {}, () => {})).toThrow(/--shm-size/);
  });

  it('an IMAGE_<KEY> override that is not an image reference is refused', () => {
    for (const bad of ['--privileged/x', 'nvcr.io/x y:1', 'nvcr.io/x\n:1'])
      expect(() => prepareLaunch(base, refs, { IMAGE_COSMOS_RL: bad }, () => {}), JSON.stringify(bad)).toThrow(ConfigError);
  });

  it('--num-gpus 0 is accepted with a warning (lifecycle smoke)', () => {
    const warnings: string[] = [];
    expect(prepareLaunch({ ...base, num_gpus: 0 }, refs, {}, (w) => warnings.push(w)).spec.num_gpus).toBe(0);
    expect(warnings.join()).toMatch(/lifecycle smoke/);
  });
  it('warns when HF_TOKEN is unset and the model comes from hf_model:// (a gated model would fail late); not otherwise', () => {
    const warnings: string[] = [];
    prepareLaunch({ ...base, model_path: 'hf_model://nvidia/Cosmos-Reason1-7B' }, refs, {}, (w) => warnings.push(w));
    expect(warnings.join()).toMatch(/HF_TOKEN is not set: hf_model:\/\/nvidia\/Cosmos-Reason1-7B/);
    warnings.length = 0;
    prepareLaunch({ ...base, model_path: 'hf_model://nvidia/Cosmos-Reason1-7B' }, refs, { HF_TOKEN: 'h' }, (w) => warnings.push(w));
    prepareLaunch(base, refs, {}, (w) => warnings.push(w));
    expect(warnings.join()).not.toMatch(/HF_TOKEN/);
  });
});
