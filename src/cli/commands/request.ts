import { resolve } from 'node:path';
import { InvalidInputError } from '../../errors.js';
import { chooseService, emit, globalFlags, info, isInteractive, warnLine } from '../io.js';
import { requestPrompts } from '../request-prompts.js';
import { loadReferences } from '../../references.js';
import { prepareRequest, sendRequest } from '../../request.js';
import { VideoWriter, checkOutputPath } from '../../service/video-output.js';
import { declaredCommand } from './index.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Sampling flags: flag name ↔ field name (contract §7 table). */
const SAMPLING_FLAGS = {
  maxTokens: 'max_tokens',
  topP: 'top_p',
  temperature: 'temperature',
  guidance: 'guidance',
  numSteps: 'num_steps',
  seed: 'seed',
  negativePrompt: 'negative_prompt',
} as const;


/** `tao-infer request`: route (contract §7), build the body, ask or take sampling parameters, send, save a video reply. */
export function requestCommand() {
  return declaredCommand('request')
    .option('--job <job_id>', 'the service to send to (full job_id or a unique prefix of 4+ characters)')
    .option('--arch <network_arch>', 'route to the service running this network_arch')
    .option('--prompt <text>', 'user prompt text')
    .option('--system <text>', 'system message')
    .option('--image <path|url>', 'image file (sent as data URI) or http(s) URL (repeatable)', collect)
    .option('--video <path|url>', 'video file (sent as data URI) or http(s) URL (repeatable)', collect)
    .option('--max-tokens <n>', 'max_tokens (cosmos-predict2.5: number of output frames)')
    .option('--top-p <x>', 'top_p')
    .option('--temperature <x>', 'temperature')
    .option('--guidance <x>', 'guidance (cosmos-predict2.5)')
    .option('--num-steps <n>', 'num_steps (cosmos-predict2.5)')
    .option('--seed <n>', 'seed (cosmos-predict2.5)')
    .option('--negative-prompt <text>', 'negative_prompt (cosmos-predict2.5)')
    .option('--body <file.json>', 'a complete chat-completions body (messages...) instead of --prompt/--image/--video')
    .option('--output <file>', 'where to write a generated video (default ./<job_id>-<time>.mp4); checked before sending')
    .option('--force', 'with --output: replace a symbolic link at that path instead of refusing it')
    .option('--max-reply-mb <n>', 'largest reply accepted, MiB (a cosmos-predict2.5 video arrives base64 in JSON)', '512')
    .option('--retry-window <s>', 'seconds to keep retrying while the model still loads (202 / model_not_ready)', '120')
    .option('--timeout <s>', 'seconds to wait for one response (at least 300, the default; a cosmos-predict2.5 video can take longer)')
    .action(async (o, command) => {
      if (o.timeout !== undefined && !(/^\d+$/.test(String(o.timeout)) && Number(o.timeout) >= 300))
        throw new InvalidInputError('--timeout', `--timeout must be a whole number of seconds, at least 300, got '${o.timeout}'`);
      if (!/^\d+$/.test(String(o.retryWindow))) throw new InvalidInputError('--retry-window', `--retry-window must be a whole number of seconds, got '${o.retryWindow}'`);
      if (!/^\d+$/.test(String(o.maxReplyMb)) || Number(o.maxReplyMb) < 1 || Number(o.maxReplyMb) > 65536)
        throw new InvalidInputError('--max-reply-mb', `--max-reply-mb must be a whole number of MiB between 1 and 65536, got '${o.maxReplyMb}'`);
      // --output is checked before anything is sent (a GPU run is not wasted on an unwritable path).
      const output = o.output !== undefined ? await checkOutputPath(String(o.output), Boolean(o.force)) : undefined;
      const flags = globalFlags(command);
      const interactive = isInteractive(flags);
      const refs = loadReferences();
      const sampling: Record<string, string | undefined> = {};
      for (const [attr, field] of Object.entries(SAMPLING_FLAGS) as Array<[keyof typeof SAMPLING_FLAGS, string]>) if (o[attr] !== undefined) sampling[field] = o[attr];
      const prepared = await prepareRequest(
        { job_id: o.job, network_arch: o.arch, prompt: o.prompt, system: o.system, images: o.image, videos: o.video, body_file: o.body, sampling },
        { choose: interactive ? chooseService : undefined, ...(interactive ? requestPrompts(refs) : {}) },
      );
      const e = prepared.entry;
      for (const w of prepared.warnings) warnLine(w);
      info(`Sending to job_id=${e.job_id} arch=${e.network_arch} url=${e.host_url}/v1/chat/completions`);
      info(
        `sampling parameters: ${Object.entries(prepared.sampling)
          .map(([k, v]) => `${k}=${JSON.stringify(v)}${prepared.defaulted.includes(k) ? ' (default)' : ''}`)
          .join(' ')}`,
      );
      const c = Object.hasOwn(refs.request.network_arch_constraints, e.network_arch) ? refs.request.network_arch_constraints[e.network_arch] : undefined;
      const defaultName = `${e.job_id}-${new Date().toISOString().replace(/[:.]/g, '-')}.mp4`;
      const completion = await sendRequest(prepared, {
        retry_window_s: Number(o.retryWindow),
        ...(o.timeout !== undefined ? { timeout_s: Number(o.timeout) } : {}),
        max_reply_bytes: Number(o.maxReplyMb) * 1024 * 1024,
        onRetry: (status, type, el) => info(`service still loading (HTTP ${status} ${type}) after ${el.toFixed(0)}s; retrying`),
        // A video answer is decoded to disk as it arrives (never held in memory whole).
        video_writer: c?.returns_video ? (mime) => new VideoWriter(output ?? resolve(defaultName), defaultName, mime) : undefined,
      });
      const { saved_video, ...reply } = completion;
      const content = reply.choices[0]!.message.content;
      const saved_file = saved_video?.path;
      if (saved_video?.fallback_reason) warnLine(`${saved_video.fallback_reason}; the video was saved to ${saved_video.path} instead`);
      if (saved_file) info(`video written to ${saved_file} (${saved_video!.bytes} bytes)`);
      emit(flags, { ...reply, ...(saved_video ? { saved_file, saved_bytes: saved_video.bytes, ...(saved_video.fallback_reason ? { save_fallback_reason: saved_video.fallback_reason } : {}) } : {}), routed_to: { job_id: e.job_id, network_arch: e.network_arch, host_url: e.host_url }, sampling: prepared.sampling, ...(prepared.warnings.length ? { warnings: prepared.warnings } : {}) }, () =>
        saved_file ? saved_file : String(content),
      );
    });
}
