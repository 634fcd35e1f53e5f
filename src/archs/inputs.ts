/**
 * Validation of start inputs (contract §4): model_path forms, num_gpus, GPU ids, ports, env var names.
 * All functions throw InvalidInputError naming the flag and saying what to do.
 */
import { InvalidInputError } from '../errors.js';
import type { References } from '../references.js';

export type ModelPath = { kind: 'hf_model'; uri: string; repo: string } | { kind: 'path'; path: string };

// HuggingFace repo ids: <org>/<name>, letters, digits, '-', '_', '.' (no shell metacharacters possible).
const HF_REPO = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;
// Control characters cannot be part of a path handed to a service (newline would split a job script line).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Parse and check a model_path: `hf_model://<org>/<model>` or an absolute container path.
 * Cloud URIs (`s3://`, `gs://`, `az://`, `cs://`, `aws://`) and `hf://` are rejected, as are
 * control characters anywhere and anything but a plain repo id after `hf_model://`.
 * Quotes, spaces, `$`, backticks and non-ASCII in an absolute path are allowed: the inner command quotes them.
 */
export function parseModelPath(refs: References, raw: string): ModelPath {
  const value = raw.trim();
  if (!value) throw new InvalidInputError('--model', 'model_path is empty', { hint: 'Pass --model hf_model://<org>/<model> or an absolute path inside the container.' });
  if (CONTROL.test(value))
    throw new InvalidInputError('--model', 'model_path contains a control character (newline, tab, NUL, ...)', {
      hint: 'Pass the path on one line without control characters.',
    });
  const lower = value.toLowerCase();
  for (const p of refs.service.model_path_protocols.rejected_prefixes) {
    if (lower.startsWith(p)) {
      const hint =
        p === 'hf://'
          ? `'hf://' is not recognised: write hf_model://${value.slice(5)}`
          : 'The inference service has no cloud-storage dependency: copy the checkpoint to a path the container can read, or publish it on HuggingFace (hf_model://org/model).';
      throw new InvalidInputError('--model', `model_path '${value}' uses an unsupported scheme '${p}'`, { hint });
    }
  }
  const hf = refs.service.model_path_protocols.huggingface;
  if (lower.startsWith(hf)) {
    const repo = value.slice(hf.length);
    if (!HF_REPO.test(repo))
      throw new InvalidInputError('--model', `'${value}' is not a valid HuggingFace model id`, {
        hint: 'Use hf_model://<org>/<model> with letters, digits, ".", "_" and "-" only (no shell metacharacters, no spaces).',
      });
    return { kind: 'hf_model', uri: `${hf}${repo}`, repo };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value))
    throw new InvalidInputError('--model', `model_path '${value}' has an unknown scheme`, {
      hint: 'Use hf_model://<org>/<model> or an absolute path inside the container.',
    });
  if (!value.startsWith('/'))
    throw new InvalidInputError('--model', `model_path '${value}' is not absolute`, {
      hint: 'Give the absolute path of the checkpoint inside the container (e.g. /workspace/models/my-model), or hf_model://<org>/<model>.',
    });
  return { kind: 'path', path: value };
}

/** Upper bound for --num-gpus (no single job asks for more; larger numbers are typos such as 1e20). */
export const MAX_NUM_GPUS = 4096;

/** num_gpus: integer from minimum (1) to 4096; 0 only when `allowZero` (the explicit lifecycle smoke). */
export function checkNumGpus(refs: References, n: number, allowZero: boolean): number {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_NUM_GPUS)
    throw new InvalidInputError('--num-gpus', `--num-gpus must be a whole number from ${refs.service.num_gpus.minimum} to ${MAX_NUM_GPUS}, got '${n}'`);
  if (n === 0 && allowZero) return 0;
  if (n < refs.service.num_gpus.minimum)
    throw new InvalidInputError('--num-gpus', `inference needs at least ${refs.service.num_gpus.minimum} GPU`, {
      hint: 'Pass --num-gpus 1 (or more). --num-gpus 0 is only a lifecycle smoke test on local-docker and slurm.',
    });
  return n;
}

/** `--gpu-ids 0,1` → ['0','1'] (digits or GPU UUIDs). */
export function parseGpuIds(raw: string): string[] {
  const ids = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (!ids.length || ids.some((id) => !/^(\d+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-fA-F/-]+)$/.test(id)))
    throw new InvalidInputError('--gpu-ids', `--gpu-ids '${raw}' is not a comma-separated list of device indexes or GPU UUIDs`, {
      hint: 'Example: --gpu-ids 0,1',
    });
  return [...new Set(ids)];
}

/** The contract's default host-port allocation range (§5); `TAO_INF_PORT_RANGE` overrides it (registry/ports.ts). */
export const PORT_RANGE = { min: 8080, max: 8199 } as const;

/** A port given with --port: 1–65535. */
export function checkPort(n: number, flag = '--port'): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new InvalidInputError(flag, `${flag} must be a whole number between 1 and 65535, got '${n}'`, {
      hint: `Omit ${flag} to take the lowest free port of the allocation range (default ${PORT_RANGE.min}–${PORT_RANGE.max}, TAO_INF_PORT_RANGE).`,
    });
  return n;
}

/** Env var name shape. */
export function checkEnvName(name: string, flag = '--env'): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    throw new InvalidInputError(flag, `'${name}' is not an environment variable name`, { hint: `Pass ${flag} NAME (the value is read from your environment).` });
  return name;
}
