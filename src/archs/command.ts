/**
 * Per-arch inner command and env payload (contract §3). The same string runs on every platform as
 * `/bin/sh -c <inner>`; JSON blobs are compact and single-quoted so they reach the process byte-identical.
 */
import { InvalidInputError } from '../errors.js';
import type { ContainerCommand, References } from '../references.js';
import type { PlatformName } from '../types.js';
import { shQuote, shQuoteAlways } from '../util/shell.js';
import { assertSupportedArch } from './image.js';
import type { ModelPath } from './inputs.js';

export interface InnerCommandInput {
  job_id: string;
  network_arch: string;
  platform: PlatformName;
  model: ModelPath;
  /** cosmos-predict2.5 with hf_model://: the registered model key (e.g. `base-2b`), asked from the user. */
  model_key?: string;
  /** cosmos-predict2.5 output dir (default from service.yaml). */
  output_dir?: string;
  /** Optional per-arch flags by name from `container_commands.<arch>.optional_flags` (e.g. idle_timeout_minutes). */
  arch_options?: Record<string, string | number | boolean>;
}

export interface InnerCommand {
  /** `umask 0 && ...` */
  command: string;
  /** The job payload (tao_job shape) or undefined. */
  job_payload?: { job_id: string; specs: { model_path: string }; neural_network_name: string };
  /** The env payload (tao_job shape) or undefined. */
  env_payload?: Record<string, string>;
}

/** Env payload: TAO_EXECUTION_BACKEND per platform, TAO_API_JOB_ID, CLOUD_BASED "False" (contract §3). */
export function envPayload(refs: References, platform: PlatformName, job_id: string): Record<string, string> {
  const backend = refs.service.execution_backends[platform];
  if (!backend) throw new InvalidInputError('--platform', `no TAO_EXECUTION_BACKEND is defined for platform '${platform}'`);
  const payload: Record<string, string> = { TAO_EXECUTION_BACKEND: backend, TAO_API_JOB_ID: job_id, CLOUD_BASED: 'False' };
  for (const f of refs.service.forbidden_env_vars) delete payload[f];
  return payload;
}

function optionalFlags(cmd: ContainerCommand, network_arch: string, values: Record<string, string | number | boolean> = {}): string[] {
  const out: string[] = [];
  const specs = cmd.optional_flags ?? {};
  for (const [name, raw] of Object.entries(values)) {
    const spec = specs[name];
    if (!spec)
      throw new InvalidInputError('--arch-opt', `'${name}' is not an option of ${network_arch}`, {
        hint: `Options of ${network_arch}: ${Object.keys(specs).join(', ') || '(none)'}`,
      });
    if (spec.type === 'boolean') {
      if (raw === true || raw === 'true' || raw === '') out.push(spec.flag);
      else if (!(raw === false || raw === 'false'))
        throw new InvalidInputError('--arch-opt', `${name} takes true or false, got '${raw}'`);
      continue;
    }
    const s = String(raw);
    if (spec.type === 'integer' && !/^-?\d+$/.test(s)) throw new InvalidInputError('--arch-opt', `${name} must be a whole number, got '${s}'`);
    if (spec.type === 'number' && !Number.isFinite(Number(s)) ) throw new InvalidInputError('--arch-opt', `${name} must be a number, got '${s}'`);
    out.push(spec.flag, shQuote(s));
  }
  return out;
}

/** The `container_commands.<arch>.optional_flags` key of an arch's own idle timeout (service.yaml). */
export const IDLE_TIMEOUT_OPTION = 'idle_timeout_minutes';

/**
 * `start --idle-timeout MIN` → the arch's own idle-timeout option (contract §3: tao-dataservices
 * `--idle_timeout_minutes`, integer, default 30; cosmos-predict2.5 `--idle-timeout-minutes`, number), read from
 * `references/service.yaml`. Returns the arch options with it set, and the minutes the service will idle
 * before it ends (the given value, else the arch's declared default, else undefined).
 * @throws InvalidInputError (`--idle-timeout`) when the arch has no idle timeout, the value is not a positive
 *   number (a whole number where the arch takes an integer), or `--arch-opt idle_timeout_minutes` disagrees.
 */
export function applyIdleTimeout(
  refs: References,
  network_arch: string,
  minutes: number | string | undefined,
  arch_options: Record<string, string | number | boolean> = {},
): { arch_options: Record<string, string | number | boolean>; idle_timeout_minutes?: number } {
  assertSupportedArch(refs, network_arch);
  const spec = refs.service.container_commands[network_arch]!.optional_flags?.[IDLE_TIMEOUT_OPTION];
  const viaArchOpt = arch_options[IDLE_TIMEOUT_OPTION];
  if (minutes === undefined || String(minutes).trim() === '') {
    const m = viaArchOpt !== undefined ? Number(viaArchOpt) : typeof spec?.default === 'number' ? spec.default : undefined;
    return { arch_options, ...(m !== undefined && Number.isFinite(m) ? { idle_timeout_minutes: m } : {}) };
  }
  if (!spec)
    throw new InvalidInputError('--idle-timeout', `${network_arch} has no idle timeout: its container runs until it is stopped`, {
      hint: 'Drop --idle-timeout; use --max-duration to bound how long it runs.',
    });
  const text = String(minutes).trim();
  const value = Number(text);
  const whole = spec.type === 'integer';
  if (!(whole ? /^\d+$/.test(text) : /^\d+(\.\d+)?$/.test(text)) || !(value > 0))
    throw new InvalidInputError('--idle-timeout', `--idle-timeout '${text}' must be a positive ${whole ? 'whole ' : ''}number of minutes for ${network_arch}`);
  if (viaArchOpt !== undefined && Number(viaArchOpt) !== value)
    throw new InvalidInputError('--idle-timeout', `--idle-timeout ${text} and --arch-opt ${IDLE_TIMEOUT_OPTION}=${viaArchOpt} disagree`, { hint: 'Give one of them.' });
  return { arch_options: { ...arch_options, [IDLE_TIMEOUT_OPTION]: text }, idle_timeout_minutes: value };
}

/**
 * Build the inner command for `network_arch`.
 * @throws UnsupportedArchError, InvalidInputError (missing/invalid model key, unknown arch option)
 */
export function buildInnerCommand(refs: References, input: InnerCommandInput): InnerCommand {
  assertSupportedArch(refs, input.network_arch);
  const cmd = refs.service.container_commands[input.network_arch]!;
  const exe = cmd.executable.map(shQuote).join(' ');
  const extra = optionalFlags(cmd, input.network_arch, input.arch_options);
  if (cmd.shape === 'tao_job') {
    const model_path = input.model.kind === 'hf_model' ? input.model.uri : input.model.path;
    const job_payload = { job_id: input.job_id, specs: { model_path }, neural_network_name: input.network_arch };
    const env_payload = envPayload(refs, input.platform, input.job_id);
    const parts = [exe, '--job', shQuoteAlways(JSON.stringify(job_payload)), '--docker_env_vars', shQuoteAlways(JSON.stringify(env_payload)), ...extra];
    return { command: `umask 0 && ${parts.join(' ')}`, job_payload, env_payload };
  }
  // cosmos_predict shape
  let checkpoint: string[];
  if (input.model.kind === 'path') {
    if (input.model_key) throw new InvalidInputError('--model-key', '--model-key applies only to hf_model:// paths');
    checkpoint = ['--checkpoint-path', shQuoteAlways(input.model.path)];
  } else {
    const key = input.model_key?.trim();
    if (!key)
      throw new InvalidInputError('--model-key', `${input.network_arch} with an hf_model:// path needs a registered model key`, {
        hint: `Pass --model-key with one of: ${cmd.registered_model_keys.join(', ')} (it is never derived from the URI).`,
      });
    if (!/^[A-Za-z0-9._-]+$/.test(key))
      throw new InvalidInputError('--model-key', `model key '${key}' may hold only letters, digits, '.', '_' and '-'`, {
        hint: `Known keys: ${cmd.registered_model_keys.join(', ')}`,
      });
    checkpoint = ['--model', shQuoteAlways(key)];
  }
  const outputDir = input.output_dir ?? cmd.output_dir_default;
  if (!outputDir.startsWith('/')) throw new InvalidInputError('--output-dir', `output dir '${outputDir}' must be an absolute path`);
  const parts = [exe, ...checkpoint, '--output-dir', shQuoteAlways(outputDir), ...cmd.port_flag.map(shQuote), ...extra];
  return { command: `umask 0 && ${parts.join(' ')}` };
}
