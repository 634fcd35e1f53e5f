import { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidInputError } from '../../errors.js';
import { askText, chooseService, emit, info, isInteractive, warnLine, type GlobalFlags } from '../io.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Sampling flags: flag name ↔ field name (contract §7 table). */
const SAMPLING_FLAGS: Record<string, string> = {
  maxTokens: 'max_tokens',
  topP: 'top_p',
  temperature: 'temperature',
  guidance: 'guidance',
  numSteps: 'num_steps',
  seed: 'seed',
  negativePrompt: 'negative_prompt',
};

/** Decode `data:video/mp4;base64,...` and write it. Returns the absolute path. */
function saveVideo(content: string, output: string): string {
  const m = /^data:(video\/[a-z0-9.+-]+);base64,(.*)$/is.exec(content.trim());
  if (!m) throw new InvalidInputError('--output', 'the reply is not a base64 video data URI');
  const path = resolve(output);
  writeFileSync(path, Buffer.from(m[2]!, 'base64'));
  return path;
}

/** `tao-infer request`: route (contract §7), build the body, ask or take sampling parameters, send, save a video reply. */
export function requestCommand(): Command {
  return new Command('request')
    .description('Send a chat-completion request to a running service (routing: --job, else --arch, else the only service)')
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
    .option('--output <file>', 'where to write a generated video (default ./<job_id>-<time>.mp4)')
    .option('--retry-window <s>', 'seconds to keep retrying while the model still loads (202 / model_not_ready)', '120')
    .option('--json', 'print one JSON document (the chat.completion) on stdout')
    .option('-y, --yes', 'never prompt')
    .action(async (o: Record<string, any>) => {
      const [{ prepareRequest, sendRequest }, { loadReferences }, { mediaKind, mediaUrl, parseSamplingValue, samplingFields }] = await Promise.all([
        import('../../lifecycle.js'),
        import('../../references.js'),
        import('../../service/request-body.js'),
      ]);
      const flags: GlobalFlags = { json: o.json, yes: o.yes };
      const interactive = isInteractive(flags);
      const refs = loadReferences();
      const sampling: Record<string, string | undefined> = {};
      for (const [attr, field] of Object.entries(SAMPLING_FLAGS)) if (o[attr] !== undefined) sampling[field] = o[attr];
      const prepared = await prepareRequest(
        { job_id: o.job, network_arch: o.arch, prompt: o.prompt, system: o.system, images: o.image, videos: o.video, body_file: o.body, sampling },
        {
          choose: interactive ? chooseService : undefined,
          askContent: interactive
            ? async (entry, need) => {
                const arch = entry.network_arch;
                const out: { prompt?: string; images?: string[]; videos?: string[] } = {};
                if (need.prompt) out.prompt = await askText('prompt', { validate: (v) => (v.trim() ? true : 'a prompt is required') });
                if (need.media) {
                  const c = refs.request.network_arch_constraints[arch]!;
                  const value = (
                    await askText(`image or video for ${arch} (local file or http(s) URL)`, {
                      validate: (raw) => {
                        const v = raw.trim();
                        const kind = mediaKind(refs, arch, v);
                        if (!kind) return `${arch} takes images (${c.image_extensions.join(' ')}) or videos (${c.video_extensions.join(' ')})`;
                        try {
                          mediaUrl(refs, arch, kind, v);
                          return true;
                        } catch (e) {
                          return (e as Error).message;
                        }
                      },
                    })
                  ).trim();
                  if (mediaKind(refs, arch, value) === 'video') out.videos = [value];
                  else out.images = [value];
                }
                return out;
              }
            : undefined,
          askSampling: interactive
            ? async (entry, missing) => {
                const answers: Record<string, string | number | undefined> = {};
                const range = (spec: { minimum?: number; maximum?: number }) =>
                  spec.minimum !== undefined || spec.maximum !== undefined ? `, ${spec.minimum ?? ''}–${spec.maximum ?? ''}` : '';
                const asked = samplingFields(refs, entry.network_arch).filter(([name]) => missing.includes(name));
                // Every applicable field with its type and default first, then one question per field.
                info(`Sampling parameters for ${entry.network_arch} (Enter keeps the default):`);
                for (const [name, spec] of asked) info(`  ${name} (${spec.type}${range(spec)}) default ${JSON.stringify(spec.default)}`);
                for (const [name, spec] of asked) {
                  const a = await askText(`${name} (${spec.type}${range(spec)})`, {
                    default: String(spec.default),
                    validate: (v) => {
                      try {
                        parseSamplingValue(name, spec, v);
                        return true;
                      } catch (e) {
                        return (e as Error).message;
                      }
                    },
                  });
                  if (a !== String(spec.default)) answers[name] = a;
                }
                return answers;
              }
            : undefined,
        },
      );
      const e = prepared.entry;
      for (const w of prepared.warnings) warnLine(w);
      info(`Sending to job_id=${e.job_id} arch=${e.network_arch} url=${e.host_url}/v1/chat/completions`);
      info(
        `sampling parameters: ${Object.entries(prepared.sampling)
          .map(([k, v]) => `${k}=${JSON.stringify(v)}${prepared.defaulted.includes(k) ? ' (default)' : ''}`)
          .join(' ')}`,
      );
      if (!/^\d+$/.test(String(o.retryWindow))) throw new InvalidInputError('--retry-window', `--retry-window must be a whole number of seconds, got '${o.retryWindow}'`);
      const completion = await sendRequest(prepared, {
        retry_window_s: Number(o.retryWindow),
        onRetry: (status, type, el) => info(`service still loading (HTTP ${status} ${type}) after ${el.toFixed(0)}s; retrying`),
      });
      const content = completion.choices[0]!.message.content;
      const c = refs.request.network_arch_constraints[e.network_arch];
      let saved_file: string | undefined;
      if (c?.returns_video && typeof content === 'string' && /^data:video\//i.test(content)) {
        const stamp = new Date().toISOString().replace(/[:.]/g, '-');
        saved_file = saveVideo(content, o.output ?? `./${e.job_id}-${stamp}.mp4`);
        info(`video written to ${saved_file}`);
      }
      emit(flags, { ...completion, ...(saved_file ? { saved_file } : {}), routed_to: { job_id: e.job_id, network_arch: e.network_arch, host_url: e.host_url }, sampling: prepared.sampling, ...(prepared.warnings.length ? { warnings: prepared.warnings } : {}) }, () =>
        saved_file ? saved_file : String(content),
      );
    });
}
