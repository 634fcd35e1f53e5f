/**
 * The questions `request` asks a person on a terminal (src/request.ts RequestHooks): the content a service needs
 * (prompt, the image or video an arch requires) and each sampling parameter with its type, range and default
 * (spec: "prompt for sampling parameters"). Answers are checked as they are typed, with the same rules the
 * request body uses (src/service/request-body.ts).
 */
import type { References } from '../references.js';
import type { RequestHooks } from '../request.js';
import { MediaFiles, constraintsFor, mediaKind, mediaUrl, parseSamplingValue, samplingFields } from '../service/request-body.js';
import { askText, info } from './io.js';

/** The `askContent` and `askSampling` hooks for an interactive `request`, over the arch data in `refs`. */
export function requestPrompts(refs: References): Required<Pick<RequestHooks, 'askContent' | 'askSampling'>> {
  return {
    askContent: async (entry, need) => {
      const arch = entry.network_arch;
      const out: { prompt?: string; images?: string[]; videos?: string[] } = {};
      if (need.prompt) out.prompt = await askText('prompt', { validate: (v) => (v.trim() ? true : 'a prompt is required') });
      if (need.media) {
        const c = constraintsFor(refs, arch);
        const value = (
          await askText(`image or video for ${arch} (local file or http(s) URL)`, {
            validate: (raw) => {
              const v = raw.trim();
              const kind = mediaKind(refs, arch, v);
              if (!kind) return `${arch} takes images (${c.image_extensions.join(' ')}) or videos (${c.video_extensions.join(' ')})`;
              try {
                mediaUrl(refs, arch, kind, v, new MediaFiles());
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
    },
    askSampling: async (entry, missing) => {
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
    },
  };
}
