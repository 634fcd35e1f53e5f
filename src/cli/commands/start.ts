import { Option } from '@commander-js/extra-typings';
import { InterruptedError, InvalidInputError } from '../../errors.js';
import { parseGpuIds } from '../../archs/inputs.js';
import { supportedArchs } from '../../archs/image.js';
import type { JobStateName, PlanStep } from '../../types.js';
import type { StartInput } from '../../start/prepare.js';
import { formatArgv } from '../../util/shell.js';
import { askSelect, askText, emit, globalFlags, info, isInteractive, lineReporter, progressReporter, requireInput, warnLine } from '../io.js';
import { addPlatformFlags, platformOptionValues, platformsSupporting } from '../platform-flags.js';
import { checkPlatform, DEFAULT_PLATFORM, loadAdapter, PLATFORM_NAMES } from '../../platforms/index.js';
import { loadReferences } from '../../references.js';
import { Registry } from '../../registry/store.js';
import { startService } from '../../start/index.js';
import { declaredCommand } from './index.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

function intArg(flag: string) {
  return (v: string) => {
    if (!/^-?\d+$/.test(v.trim())) throw new InvalidInputError(flag, `${flag} must be a whole number, got '${v}'`);
    return Number(v);
  };
}

function renderStep(s: PlanStep): string {
  const lines = [`# ${s.description}`];
  if (s.command) lines.push(Array.isArray(s.command) ? formatArgv(s.command) : s.command);
  if (s.http) lines.push(`${s.http.method} ${s.http.url}${s.http.body !== undefined ? `\n${JSON.stringify(s.http.body, null, 2)}` : ''}`);
  if (s.document) lines.push(`--- ${s.document.name} ---\n${s.document.text.trimEnd()}\n--- end ${s.document.name} ---`);
  return lines.join('\n');
}

/** `tao-infer start`: gather inputs (flags, env, prompts), launch on the platform, wait for readiness. */
export function startCommand() {
  const cmd = declaredCommand('start')
    .option('--arch <network_arch>', 'network_arch (cosmos-rl, cosmos-predict2.5, tao-dataservices)')
    .option('--model <model_path>', 'hf_model://<org>/<model> or an absolute path inside the container')
    .addOption(new Option('--platform <name>', `where to run: ${PLATFORM_NAMES.join(', ')}`).default(DEFAULT_PLATFORM))
    .option('--num-gpus <n>', 'GPUs to request (default 1; 0 = lifecycle smoke without GPU flags)', intArg('--num-gpus'))
    .option('--gpu-ids <ids>', `explicit GPU device ids, e.g. 0,1 (${platformsSupporting('gpu_ids')})`)
    .option('--port <n>', `host port of the service, or the local port of its forwarder (${platformsSupporting('port')}; default: lowest free in 8080-8199, or TAO_INF_PORT_RANGE)`, intArg('--port'))
    .option('--bind <addr>', `address the host port binds to (${platformsSupporting('bind_address')}; on the instance for VMs)`, '127.0.0.1')
    .option('--model-key <key>', 'cosmos-predict2.5 registered model key for hf_model:// paths (e.g. base-2b)')
    .option('--output-dir <dir>', 'cosmos-predict2.5 output dir inside the container')
    .option('--arch-opt <name=value>', 'per-arch optional flag, e.g. idle_timeout_minutes=60 (repeatable)', collect)
    .option('--idle-timeout <min>', "minutes of idleness after which the service ends itself (the arch's own flag; tao-dataservices, cosmos-predict2.5)")
    .option('--max-duration <dur>', 'longest the service may run, e.g. 90m, 4h, 1d (slurm --time, kubernetes activeDeadlineSeconds; elsewhere an expiry prune enforces)')
    .option('--env <NAME>', 'hand this env var (value from your environment) to the service (repeatable)', collect)
    .option('--allow-env-override', 'let --env replace variables that change how the container runs (PATH, HOME, LD_PRELOAD, LD_LIBRARY_PATH, PYTHONPATH, ...)')
    .option('--shm-size <size>', 'shared memory for the container', '16g')
    .option('--timeout <s>', 'readiness timeout in seconds', intArg('--timeout'))
    .option('--no-wait', 'return once launched, without waiting for readiness')
    .option('--keep-on-failure', 'keep the container/job and registry entry when the start fails')
    .option('--dry-run', 'print the image, inner command and platform calls; change nothing');
  addPlatformFlags(cmd);
  return cmd.action(async (o, command) => {
    const flags = globalFlags(command);
    const interactive = isInteractive(flags);
    const refs = loadReferences();
    const platform = checkPlatform(o.platform);
    const archs = supportedArchs(refs);
    const network_arch = await requireInput(o.arch, '--arch', 'network_arch (--arch)', interactive, () =>
      askSelect('network_arch', archs.map((a) => ({ name: a, value: a }))),
    );
    const model_path = await requireInput(o.model, '--model', 'model_path (--model)', interactive, () =>
      askText('model_path (hf_model://<org>/<model> or an absolute path in the container)', { validate: (v) => (v.trim() ? true : 'model_path is required') }),
    );
    let model_key: string | undefined = o.modelKey;
    const cmdSpec = refs.service.container_commands[network_arch];
    if (!model_key && cmdSpec?.shape === 'cosmos_predict' && /^hf_model:\/\//i.test(model_path.trim()) && interactive) {
      model_key = await askSelect(
        'registered model key for this HuggingFace checkpoint',
        cmdSpec.registered_model_keys.map((k) => ({ name: k, value: k })),
      );
    }
    const arch_options: Record<string, string> = {};
    for (const kv of (o.archOpt as string[] | undefined) ?? []) {
      const i = kv.indexOf('=');
      if (i <= 0) throw new InvalidInputError('--arch-opt', `--arch-opt '${kv}' is not name=value`);
      arch_options[kv.slice(0, i)] = kv.slice(i + 1);
    }
    let suggest: ((key: string, gathered: Record<string, unknown>) => Promise<string[] | undefined>) | undefined;
    if (interactive) {
      suggest = async (key, gathered) => {
        const adapter = await loadAdapter(platform);
        return adapter.suggest?.(key, process.env, gathered).catch(() => undefined);
      };
    }
    const options = await platformOptionValues(platform, o, process.env, interactive, suggest);
    const input: StartInput = {
      network_arch,
      model_path,
      platform,
      num_gpus: o.numGpus,
      gpu_ids: o.gpuIds ? parseGpuIds(o.gpuIds) : undefined,
      port: o.port,
      bind_address: o.bind,
      model_key,
      output_dir: o.outputDir,
      arch_options: Object.keys(arch_options).length ? arch_options : undefined,
      idle_timeout_minutes: o.idleTimeout,
      max_duration: o.maxDuration,
      env_names: o.env,
      allow_env_override: Boolean(o.allowEnvOverride),
      shm_size: o.shmSize,
      options,
      timeout_s: o.timeout,
      no_wait: o.wait === false,
      keep_on_failure: Boolean(o.keepOnFailure),
      dry_run: Boolean(o.dryRun),
    };
    const progress = progressReporter('waiting for readiness');
    const lines = lineReporter();
    // Ctrl-C / SIGTERM while launching or loading: stop waiting and remove the half-started service
    // (kept with --keep-on-failure), then exit 130. A second one gives up the removal (the entry is kept so
    // `tao-infer stop` can retry). The handlers stay installed (`on`, not `once`) until start returns: with no
    // handler of ours left, signal-exit (installed by execa and proper-lockfile while a child runs or a lock is
    // held) sees itself alone and re-raises the signal, killing the CLI in the middle of its rollback.
    const ac = new AbortController();
    const again = new AbortController();
    const onSignal = (sig: NodeJS.Signals) => (ac.signal.aborted ? again : ac).abort(new InterruptedError(sig));
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const result = await startService(input, {
      registry: new Registry(),
      refs,
      signal: ac.signal,
      rollbackSignal: again.signal,
      reporter: {
        log: (m) => (lines.done(), info(m)),
        warn: (m) => (lines.done(), warnLine(m)),
        progress: (s, st) => (lines.done(), progress.progress(s, st)),
        progressLine: lines.line,
      },
    }).finally(() => {
      lines.done();
      progress.done();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });
    if (result.dry_run) {
      const d = result.dry_run;
      emit(flags, { dry_run: true, job_id: result.job_id, network_arch, platform, image: d.image.image, image_source: d.image.source, inner_command: d.inner_command, host_port: d.host_port, plan: d.plan, warnings: result.warnings }, () =>
        [
          `# dry run: nothing was started and the registry is unchanged`,
          `# job_id ${result.job_id} (a new one is drawn for the real start)`,
          `# image ${d.image.image} (${d.image.source})`,
          `# inner command:`,
          d.inner_command,
          '',
          ...d.plan.steps.map(renderStep),
        ].join('\n'),
      );
      return;
    }
    const entry = result.entry!;
    // `state` in the live vocabulary shared with `ls --json` (the platform confirmed the launch: running),
    // not the registry file's own `started` marker.
    const state: JobStateName = 'running';
    emit(flags, { ...entry, state, ready: result.ready, warnings: result.warnings }, () =>
      result.ready
        ? `ready: ${entry.job_id} ${entry.network_arch} ${entry.host_url}\nSend a request: tao-infer request --job ${entry.job_id} --prompt "..."\nStop it:        tao-infer stop ${entry.job_id}`
        : `launched (not waiting for readiness): ${entry.job_id} ${entry.host_url}`,
    );
  });
}
