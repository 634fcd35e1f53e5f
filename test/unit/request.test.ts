import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmbiguousTargetError, InvalidInputError, JobNotFoundError, NoServiceError, RequestRejectedError, ServiceFailedError, ServiceNotReadyError } from '../../src/errors.js';
import { loadReferences } from '../../src/references.js';
import type { RegistryState } from '../../src/registry/store.js';
import { sendChatCompletion } from '../../src/service/chat.js';
import { waitForReadiness } from '../../src/service/readiness.js';
import { buildBody, mediaKind, mediaUrl, resolveSampling } from '../../src/service/request-body.js';
import { resolveTarget } from '../../src/service/routing.js';
import type { RegistryEntry } from '../../src/types.js';
import { ROOT } from '../helpers/cli.js';

const refs = loadReferences();
const PNG = join(ROOT, 'test/fixtures/media/cat.png');

const e = (job_id: string, network_arch: string, started_at: string): RegistryEntry => ({ job_id, network_arch, platform: 'local-docker', host_url: `http://localhost/${job_id}`, started_at });
const state = (...entries: RegistryEntry[]): RegistryState => ({ entries: Object.fromEntries(entries.map((x) => [x.job_id, x])), latest: entries.at(-1)?.job_id, other: {} });

describe('routing (contract §7)', () => {
  const a = e('a', 'cosmos-rl', '2026-01-01');
  const b = e('b', 'cosmos-rl', '2026-01-02');
  const c = e('c', 'cosmos-predict2.5', '2026-01-03');

  it('explicit job_id must exist', async () => {
    expect((await resolveTarget(state(a, b), { job_id: 'b' })).job_id).toBe('b');
    await expect(resolveTarget(state(a), { job_id: 'zzzz' })).rejects.toBeInstanceOf(JobNotFoundError);
  });
  it('arch: one match used, none an error, several never auto-picked', async () => {
    expect((await resolveTarget(state(a, c), { network_arch: 'cosmos-predict2.5' })).job_id).toBe('c');
    await expect(resolveTarget(state(a), { network_arch: 'tao-dataservices' })).rejects.toBeInstanceOf(NoServiceError);
    const err = await resolveTarget(state(a, b, c), { network_arch: 'cosmos-rl' }).catch((x) => x);
    expect(err).toBeInstanceOf(AmbiguousTargetError);
    expect((err as AmbiguousTargetError).candidates.map((x) => x.job_id)).toEqual(['a', 'b']);
    expect((await resolveTarget(state(a, b, c), { network_arch: 'cosmos-rl' }, async (_m, cands) => cands[0]!.job_id)).job_id).toBe('a');
  });
  it('neither: the only entry, else ask (never latest), none → start one', async () => {
    expect((await resolveTarget(state(c), {})).job_id).toBe('c');
    await expect(resolveTarget(state(a, c), {})).rejects.toBeInstanceOf(AmbiguousTargetError);
    await expect(resolveTarget(state(), {})).rejects.toThrow(/no inference service/);
  });
});

describe('request body (contract §7)', () => {
  it('sampling: defaults per arch, values verbatim, range checked, foreign fields refused', () => {
    expect(resolveSampling(refs, 'cosmos-rl', {})).toEqual({ values: { max_tokens: 1024, top_p: 0.8, temperature: 0.7 }, defaulted: ['max_tokens', 'top_p', 'temperature'] });
    expect(resolveSampling(refs, 'cosmos-predict2.5', { seed: '5' }).values).toEqual({ max_tokens: 77, guidance: 7, num_steps: 35, seed: 5, negative_prompt: '' });
    expect(() => resolveSampling(refs, 'cosmos-rl', { temperature: '2.5' })).toThrow(/out of range 0–2/);
    expect(() => resolveSampling(refs, 'cosmos-predict2.5', { guidance: '8' })).toThrow(/out of range/);
    expect(() => resolveSampling(refs, 'cosmos-rl', { guidance: '3' })).toThrow(/does not apply to cosmos-rl/);
    expect(() => resolveSampling(refs, 'cosmos-rl', { max_tokens: '1.5' })).toThrow(/whole number/);
  });

  it('local files become data URIs; types checked per arch; cloud URIs refused', () => {
    expect(mediaUrl(refs, 'cosmos-rl', 'image', PNG)).toMatch(/^data:image\/png;base64,iVBOR/);
    expect(mediaUrl(refs, 'cosmos-rl', 'video', 'https://example.invalid/clip.mp4')).toBe('https://example.invalid/clip.mp4');
    expect(() => mediaUrl(refs, 'cosmos-rl', 'image', 's3://bucket/cat.png')).toThrow(/cloud URI/);
    expect(() => mediaUrl(refs, 'cosmos-predict2.5', 'image', '/x/a.bmp')).toThrow(/does not take images of type '.bmp'/);
    expect(() => mediaUrl(refs, 'cosmos-rl', 'image', '/nope/none.png')).toThrow(/file not found/);
    const dir = mkdtempSync(join(tmpdir(), 'tao-media-'));
    writeFileSync(join(dir, 'x.mp4'), 'x');
    expect(() => mediaUrl(refs, 'cosmos-rl', 'image', join(dir, 'x.mp4'))).toThrow(InvalidInputError);
  });

  it('mediaKind tells image from video by data-URI type or extension, per arch', () => {
    expect(mediaKind(refs, 'cosmos-rl', PNG)).toBe('image');
    expect(mediaKind(refs, 'cosmos-rl', 'https://example.invalid/a/clip.MP4?x=1')).toBe('video');
    expect(mediaKind(refs, 'cosmos-rl', 'data:video/mp4;base64,AAAA')).toBe('video');
    expect(mediaKind(refs, 'cosmos-predict2.5', '/x/a.bmp')).toBeUndefined(); // predict takes no .bmp
    expect(mediaKind(refs, 'cosmos-rl', '/x/notes.txt')).toBeUndefined();
  });

  it('cross-checks: cosmos-rl needs media; predict fields refused on other archs', () => {
    expect(() => buildBody(refs, { network_arch: 'cosmos-rl', prompt: 'hi', sampling: {} })).toThrow(/needs at least one image or video/);
    const body = buildBody(refs, { network_arch: 'cosmos-rl', prompt: 'what is this?', system: 'be brief', images: [PNG], sampling: { max_tokens: 10 } });
    expect(body.messages[0]).toEqual({ role: 'system', content: 'be brief' });
    expect((body.messages[1]!.content as any[]).map((i) => i.type)).toEqual(['text', 'image_url']);
    expect(body.max_tokens).toBe(10);
    expect(() =>
      buildBody(refs, { network_arch: 'tao-dataservices', sampling: {}, body: { messages: [{ role: 'user', content: 'x' }], guidance: 3 } }),
    ).toThrow(/belong to cosmos-predict2.5/);
    expect(() => buildBody(refs, { network_arch: 'cosmos-predict2.5', sampling: {}, body: { messages: [{ role: 'system', content: 'x' }] } })).toThrow(/no user message/);
  });
});

describe('HTTP contract handling against a real loopback server', () => {
  let server: Server;
  let base = '';
  let readinessSeq: Array<[number, unknown]> = [];
  let chatSeq: Array<[number, unknown]> = [];
  let chatCalls = 0;
  beforeAll(async () => {
    server = createServer((req, res) => {
      const next = (seq: Array<[number, unknown]>) => (seq.length > 1 ? seq.shift()! : seq[0]!);
      const [status, body] = req.url === '/api/v1/health/readiness' ? next(readinessSeq) : (chatCalls++, next(chatSeq));
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => server.close());

  const loading = [202, { error: { type: 'model_loading', message: 'loading' } }] as [number, unknown];
  const ok = [200, { choices: [{ message: { role: 'assistant', content: 'hello' } }] }] as [number, unknown];

  it('readiness: 202 then 200 → ready, with progress', async () => {
    readinessSeq = [loading, loading, [200, { status: 'ready' }]];
    const states: string[] = [];
    await waitForReadiness({ job_id: 'j', host_url: base, readiness: refs.request.readiness, timeoutS: 10, onProgress: (_t, s) => states.push(s) });
    expect(states).toEqual(['model_loading', 'model_loading', 'ready']);
  });
  it('readiness: 503 model_load_error is a hard failure; timeout is reported with the last state', async () => {
    readinessSeq = [[503, { error: { type: 'model_load_error', message: 'bad weights' } }]];
    await expect(waitForReadiness({ job_id: 'j', host_url: base, readiness: refs.request.readiness, timeoutS: 10 })).rejects.toBeInstanceOf(ServiceFailedError);
    readinessSeq = [[503, { error: { type: 'model_not_ready', message: '' } }]];
    await expect(waitForReadiness({ job_id: 'j', host_url: base, readiness: refs.request.readiness, timeoutS: 1 })).rejects.toThrow(/not ready after 1s \(last state: model_not_ready\)/);
  });
  it('chat: 202 and model_not_ready retried, then 200', async () => {
    chatSeq = [loading, [503, { error: { type: 'model_not_ready', message: '' } }], ok];
    chatCalls = 0;
    const c = await sendChatCompletion({ messages: [{ role: 'user', content: 'x' }] }, { job_id: 'j', host_url: base, request: refs.request, retryWindowS: 30 });
    expect(c.choices[0]!.message.content).toBe('hello');
    expect(chatCalls).toBe(3);
  });
  it('chat: 400 and 500 are rejections, 503 fatal is a service failure, endless loading is bounded', async () => {
    const body = { messages: [{ role: 'user', content: 'x' }] };
    const o = { job_id: 'j', host_url: base, request: refs.request, retryWindowS: 1 };
    chatSeq = [[400, { error: { type: 'invalid_request', message: 'empty' } }]];
    await expect(sendChatCompletion(body, o)).rejects.toMatchObject({ status: 400, errorType: 'invalid_request' });
    chatSeq = [[500, { error: { type: 'internal_error', message: "Cosmos requires 'media' parameter" } }]];
    const e500 = await sendChatCompletion(body, o).catch((x) => x);
    expect(e500).toBeInstanceOf(RequestRejectedError);
    expect(e500.hint).toMatch(/tao-infer logs j/);
    chatSeq = [[503, { error: { type: 'initialization_error', message: 'x' } }]];
    await expect(sendChatCompletion(body, o)).rejects.toBeInstanceOf(ServiceFailedError);
    chatSeq = [loading];
    await expect(sendChatCompletion(body, o)).rejects.toBeInstanceOf(ServiceNotReadyError);
  });
});

describe('readiness against a server that closes every connection at once', () => {
  it('keeps polling and ends with a readiness timeout instead of exiting silently', async () => {
    const { execa } = await import('execa');
    const r = await execa(process.execPath, [join(ROOT, 'test/fixtures/readiness-vs-closing-server.mjs'), '3'], { reject: false, timeout: 60_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ReadinessTimeoutError after \d+ probes/);
  });
});
