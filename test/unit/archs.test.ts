import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { buildInnerCommand } from '../../src/archs/command.js';
import { resolveImage, supportedArchs } from '../../src/archs/image.js';
import { checkNumGpus, parseGpuIds, parseModelPath } from '../../src/archs/inputs.js';
import { ConfigError, InvalidInputError, UnsupportedArchError } from '../../src/errors.js';
import { loadReferences, type References } from '../../src/references.js';

const refs = loadReferences();
const JOB = '0b7f7f6e-8f0e-4f7e-9d53-3f1a2b6c9d10';

describe('image resolution (contract §2)', () => {
  it('resolves each arch through the mapping and versions.yaml', () => {
    expect(resolveImage(refs, 'cosmos-rl', {})).toEqual({
      image: 'nvcr.io/nvstaging/tao/cosmos-rl:enhanced-hooks-custom-loggers-20260815-source-pynv-device-rgbp-v1',
      key: 'COSMOS_RL',
      source: 'versions.yaml:tao_toolkit.cosmos_rl',
    });
    expect(resolveImage(refs, 'cosmos-predict2.5', {}).image).toBe('nvcr.io/nvidia/tao/tao-toolkit:7.0.1-cosmos-predict');
    expect(resolveImage(refs, 'tao-dataservices', {}).image).toBe('nvcr.io/nvidia/tao/tao-toolkit:7.1.0-data-services');
  });

  it('IMAGE_<KEY> overrides; an absolute URI passes through; a dotted override resolves', () => {
    expect(resolveImage(refs, 'cosmos-rl', { IMAGE_COSMOS_RL: 'my.reg/x/cosmos:1' })).toMatchObject({ image: 'my.reg/x/cosmos:1', source: 'env:IMAGE_COSMOS_RL' });
    expect(resolveImage(refs, 'cosmos-rl', { IMAGE_COSMOS_RL: 'tao_toolkit.vila' }).image).toBe('nvcr.io/nvidia/tao/tao-toolkit:6.26.3-vila');
    expect(resolveImage(refs, 'tao-dataservices', { IMAGE_COSMOS_RL: 'ignored/x:1' }).key).toBe('TAO_DATASERVICES');
  });

  it('a dotted key that does not resolve is a ConfigError naming versions.yaml and the key', () => {
    try {
      resolveImage(refs, 'cosmos-rl', { IMAGE_COSMOS_RL: 'tao_toolkit.nope' });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).file).toMatch(/versions\.yaml$/);
      expect((e as Error).message).toContain('images.tao_toolkit.nope');
      expect((e as ConfigError).hint).toContain('IMAGE_COSMOS_RL');
    }
  });

  it('falls back to COSMOS_RL when the config file is missing or has no image', () => {
    const fake: References = { ...refs, archConfig: () => undefined };
    expect(resolveImage(fake, 'tao-dataservices', {}).key).toBe('COSMOS_RL');
    const empty: References = { ...refs, archConfig: () => ({ api_params: { image: '' } }) };
    expect(resolveImage(empty, 'cosmos-predict2.5', {}).key).toBe('COSMOS_RL');
  });

  it('unknown arch is UnsupportedArchError listing the valid ones', () => {
    expect(() => resolveImage(refs, 'yolo', {})).toThrow(UnsupportedArchError);
    expect(supportedArchs(refs)).toEqual(['cosmos-rl', 'cosmos-predict2.5', 'tao-dataservices']);
  });
});

describe('model_path and GPU inputs (contract §4)', () => {
  it.each(['s3://b/m', 'gs://b/m', 'az://c/m', 'cs://x', 'aws://x', 'hf://org/m', 'ftp://x/y', 'relative/path', '', '/ok\nrm -rf /'])('rejects %j', (p) => {
    expect(() => parseModelPath(refs, p)).toThrow(InvalidInputError);
  });
  it('rejects shell metacharacters in an hf_model id', () => {
    for (const p of ['hf_model://org/m;rm -rf /', 'hf_model://org/$(id)', 'hf_model://org/m`x`', "hf_model://o/m' x", 'hf_model://org/m|cat'])
      expect(() => parseModelPath(refs, p), p).toThrow(/valid HuggingFace model id/);
  });
  it('accepts hf_model ids and absolute paths with odd characters', () => {
    expect(parseModelPath(refs, 'hf_model://nvidia/Cosmos-Reason1-7B')).toEqual({ kind: 'hf_model', uri: 'hf_model://nvidia/Cosmos-Reason1-7B', repo: 'nvidia/Cosmos-Reason1-7B' });
    expect(parseModelPath(refs, `/m/it's a $HOME \`x\` 模型`).kind).toBe('path');
  });
  it('num_gpus: minimum 1, 0 only as smoke, negatives refused', () => {
    expect(checkNumGpus(refs, 2, false)).toBe(2);
    expect(checkNumGpus(refs, 0, true)).toBe(0);
    expect(() => checkNumGpus(refs, 0, false)).toThrow(InvalidInputError);
    expect(() => checkNumGpus(refs, -1, true)).toThrow(InvalidInputError);
    expect(() => checkNumGpus(refs, 1.5, true)).toThrow(InvalidInputError);
  });
  it('gpu ids', () => {
    expect(parseGpuIds('0, 1,1')).toEqual(['0', '1']);
    expect(() => parseGpuIds('0;1')).toThrow(InvalidInputError);
  });
});

/** Run the inner command's argv through a real /bin/sh and return what the program would receive. */
function argvAfterShell(command: string): string[] {
  const printer = `printf '%s\\0' "$@"`;
  // Replace the executable with a function printing its arguments NUL-separated.
  const script = command.replace(/^umask 0 && (\S+)/, (_m, exe: string) => `umask 0 && ${exe.replace(/[^A-Za-z0-9_]/g, '_')}`);
  const fnName = /^umask 0 && (\S+)/.exec(script)![1]!;
  const out = execFileSync('/bin/sh', ['-c', `${fnName}() { ${printer}; }; ${script}`]);
  return out.toString('utf8').split('\0').slice(0, -1);
}

describe('inner commands (contract §3)', () => {
  const tricky = `/models/it's "quoted" $HOME \`id\` \\ 模型 ✓/ckpt`;

  it('cosmos-rl: compact JSON blobs survive /bin/sh byte-identical', () => {
    const c = buildInnerCommand(refs, { job_id: JOB, network_arch: 'cosmos-rl', platform: 'slurm', model: parseModelPath(refs, tricky) });
    expect(c.command.startsWith('umask 0 && cosmos-rl-inference-microservice --job \'')).toBe(true);
    const argv = argvAfterShell(c.command);
    expect(argv[0]).toBe('--job');
    expect(argv[1]).toBe(`{"job_id":"${JOB}","specs":{"model_path":${JSON.stringify(tricky)}},"neural_network_name":"cosmos-rl"}`);
    expect(argv[2]).toBe('--docker_env_vars');
    expect(JSON.parse(argv[3]!)).toEqual({ TAO_EXECUTION_BACKEND: 'slurm', TAO_API_JOB_ID: JOB, CLOUD_BASED: 'False' });
    expect(argv[3]).not.toMatch(/TAO_LOGGING_SERVER_URL|TAO_ADMIN_KEY|, |": /);
  });

  it('TAO_EXECUTION_BACKEND per platform', () => {
    const want = { 'local-docker': 'local-docker', brev: 'local-docker', lepton: 'lepton', slurm: 'slurm', kubernetes: 'local-k8s' } as const;
    for (const [platform, backend] of Object.entries(want)) {
      const c = buildInnerCommand(refs, { job_id: JOB, network_arch: 'cosmos-rl', platform: platform as keyof typeof want, model: parseModelPath(refs, '/m') });
      expect(c.env_payload!.TAO_EXECUTION_BACKEND).toBe(backend);
    }
  });

  it('tao-dataservices: python -m module with --port 8080 and optional flags', () => {
    const c = buildInnerCommand(refs, {
      job_id: JOB,
      network_arch: 'tao-dataservices',
      platform: 'kubernetes',
      model: parseModelPath(refs, 'hf_model://Qwen/Qwen2.5-VL-7B-Instruct'),
      arch_options: { idle_timeout_minutes: 45, disable_auto_deletion: true },
    });
    const argv = argvAfterShell(c.command);
    expect(argv.slice(0, 4)).toEqual(['-m', 'nvidia_tao_core.microservices.handlers.huggingface_inference_microservice_server', '--port', '8080']);
    expect(JSON.parse(argv[5]!)).toEqual({ job_id: JOB, specs: { model_path: 'hf_model://Qwen/Qwen2.5-VL-7B-Instruct' }, neural_network_name: 'tao-dataservices' });
    expect(argv.slice(-3)).toEqual(['--idle_timeout_minutes', '45', '--disable_auto_deletion']);
    expect(() => buildInnerCommand(refs, { job_id: JOB, network_arch: 'tao-dataservices', platform: 'kubernetes', model: parseModelPath(refs, '/m'), arch_options: { bogus: 1 } })).toThrow(
      InvalidInputError,
    );
  });

  it('cosmos-predict2.5: --checkpoint-path for local paths, --model <key> for hf_model, no --job', () => {
    const local = buildInnerCommand(refs, { job_id: JOB, network_arch: 'cosmos-predict2.5', platform: 'local-docker', model: parseModelPath(refs, tricky) });
    expect(argvAfterShell(local.command)).toEqual(['inference_microservice', 'start', '--checkpoint-path', tricky, '--output-dir', '/tmp/cosmos-predict2.5-output', '--port', '8080']);
    expect(local.command).not.toContain('--job');
    const hf = buildInnerCommand(refs, { job_id: JOB, network_arch: 'cosmos-predict2.5', platform: 'local-docker', model: parseModelPath(refs, 'hf_model://nvidia/Cosmos-Predict2.5-2B'), model_key: 'base-2b' });
    expect(argvAfterShell(hf.command)).toEqual(['inference_microservice', 'start', '--model', 'base-2b', '--output-dir', '/tmp/cosmos-predict2.5-output', '--port', '8080']);
    expect(() => buildInnerCommand(refs, { job_id: JOB, network_arch: 'cosmos-predict2.5', platform: 'local-docker', model: parseModelPath(refs, 'hf_model://nvidia/x') })).toThrow(/registered model key/);
  });
});
