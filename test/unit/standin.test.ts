/**
 * The stand-in TAO inference microservice (test/fixtures/standin/standin.mjs) that every other test runs,
 * checked against contract §3 (argv and payloads), §6 (readiness) and §7 (chat completions).
 * Each case runs the stand-in on the host as a real child process, through its bin/ wrappers, on a free
 * loopback port (STANDIN_HOST=127.0.0.1, STANDIN_PORT), and talks real HTTP to it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { freePort } from '../helpers/ports.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const STANDIN = join(ROOT, 'test', 'fixtures', 'standin');
const BIN = join(STANDIN, 'bin');
const MEDIA = join(ROOT, 'test', 'fixtures', 'media');
const HF_MODULE = 'nvidia_tao_core.microservices.handlers.huggingface_inference_microservice_server';
const SECRET_NAMES = ['HF_TOKEN', 'WANDB_API_KEY', 'CLEARML_API_ACCESS_KEY', 'CLEARML_API_SECRET_KEY', 'TAO_API_KEY', 'TAO_USER_KEY', 'NGC_KEY'];

const pngUri = `data:image/png;base64,${readFileSync(join(MEDIA, 'cat.png')).toString('base64')}`;
const mp4Uri = `data:video/mp4;base64,${readFileSync(join(MEDIA, 'clip.mp4')).toString('base64')}`;

interface Proc {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
}

const running: Proc[] = [];
afterEach(() => {
  for (const p of running.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null && p.child.pid) {
      try {
        process.kill(-p.child.pid, 'SIGKILL'); // own process group (detached), so a `sh -c` child dies too
      } catch {
        /* already gone */
      }
    }
  }
});

/** Inherited env without any real secret, plus the given variables. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, STANDIN_EXIT_WITH_PARENT: '1' };
  for (const k of [...SECRET_NAMES, ...Object.keys(env).filter((k) => k.startsWith('STANDIN_'))]) delete env[k];
  return { ...env, STANDIN_EXIT_WITH_PARENT: '1', ...extra };
}

function spawnProc(cmd: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(cmd, args, { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  const p = { child, out: () => out, err: () => err, exited };
  running.push(p);
  return p;
}

/**
 * Run a stand-in that is expected to exit by itself (bad argv, crash). On a free loopback port, so a stand-in that
 * wrongly starts serving fails the test at once (exit code 'listening') instead of hanging on port 8080.
 */
async function runToExit(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null | 'listening'; p: Proc }> {
  const p = spawnProc(cmd, args, { STANDIN_HOST: '127.0.0.1', STANDIN_PORT: String(await freePort()), ...env });
  let listening = false;
  const code = await Promise.race([
    p.exited,
    new Promise<'listening'>((res) => {
      const check = () => (/listening on/.test(p.out()) ? ((listening = true), res('listening')) : undefined);
      p.child.stdout!.on('data', () => setImmediate(check));
    }),
  ]);
  if (listening) process.kill(-p.child.pid!, 'SIGKILL');
  return { code, p };
}

interface Service extends Proc {
  url: string;
}

/** Start a stand-in (through its wrapper, or any command) and wait until it listens. */
async function startService(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Service> {
  const port = await freePort();
  const p = spawnProc(cmd, args, { STANDIN_HOST: '127.0.0.1', STANDIN_PORT: String(port), STANDIN_LOAD_MS: '0', ...env });
  let exitCode: number | null | undefined;
  void p.exited.then((c) => (exitCode = c));
  for (let i = 0; i < 400 && !/listening on/.test(p.out()); i++) {
    if (exitCode !== undefined) throw new Error(`stand-in exited ${exitCode}:\n${p.out()}\n${p.err()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!/listening on/.test(p.out())) throw new Error(`stand-in never listened:\n${p.out()}\n${p.err()}`);
  return { ...p, url: `http://127.0.0.1:${port}` };
}

async function waitReady(url: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const r = await fetch(`${url}/api/v1/health/readiness`);
    if (r.status === 200) return;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error('stand-in never became ready');
}

function payloads(o: { arch?: string; jobId?: string; envJobId?: string; modelPath?: string; env?: Record<string, unknown> } = {}) {
  const jobId = o.jobId ?? randomUUID();
  const job = { job_id: jobId, specs: { model_path: o.modelPath ?? 'hf_model://nvidia/Cosmos-Reason1-7B' }, neural_network_name: o.arch ?? 'cosmos-rl' };
  const env = { TAO_EXECUTION_BACKEND: 'local-docker', TAO_API_JOB_ID: o.envJobId ?? jobId, CLOUD_BASED: 'False', ...o.env };
  return { jobId, job: JSON.stringify(job), env: JSON.stringify(env) };
}
const rlArgs = (o: Parameters<typeof payloads>[0] = {}) => {
  const p = payloads(o);
  return ['--job', p.job, '--docker_env_vars', p.env];
};
const dsArgs = (o: Parameters<typeof payloads>[0] = {}) => ['-m', HF_MODULE, '--port', '8080', ...rlArgs({ arch: 'tao-dataservices', ...o })];
const predictArgs = (extra: string[] = []) => [
  'inference_microservice', 'start', '--checkpoint-path', '/models/checkpoint_folder', '--output-dir', '/tmp/cosmos-predict2.5-output', '--port', '8080', ...extra,
];
const rl = join(BIN, 'cosmos-rl-inference-microservice');
const py = join(BIN, 'python');
const predict = join(BIN, 'cosmos_predict');

async function chat(url: string, body: unknown): Promise<{ status: number; text: string; json: any }> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, text, json: JSON.parse(text) };
}
const jsonOf = (r: Response): Promise<any> => r.json();
const userMsg = (content: unknown) => ({ messages: [{ role: 'user', content }] });

describe('stand-in readiness (contract §6)', () => {
  it('answers 202 model_loading until loaded, then 200 ready; chat before that is 503 model_not_ready', async () => {
    const readyFile = join(mkdtempSync(join(tmpdir(), 'standin-')), 'ready');
    const s = await startService(rl, rlArgs(), { STANDIN_READY_FILE: readyFile });
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`${s.url}/api/v1/health/readiness`);
      expect(r.status).toBe(202);
      expect((await jsonOf(r)).error.type).toBe('model_loading');
    }
    const early = await chat(s.url, userMsg([{ type: 'image_url', image_url: { url: pngUri } }]));
    expect(early.status).toBe(503);
    expect(early.json.error.type).toBe('model_not_ready');
    writeFileSync(readyFile, '');
    const r = await fetch(`${s.url}/api/v1/health/readiness`);
    expect(r.status).toBe(200);
    expect(await jsonOf(r)).toEqual({ status: 'ready' });
  });

  it('with the default timed load only ever answers 202 model_loading before 200', async () => {
    const s = await startService(rl, rlArgs(), { STANDIN_LOAD_MS: '1500' });
    const seen: string[] = [];
    for (let i = 0; i < 400; i++) {
      const r = await fetch(`${s.url}/api/v1/health/readiness`);
      const j = await jsonOf(r);
      seen.push(r.status === 200 ? `200 ${j.status}` : `${r.status} ${j.error.type}`);
      if (r.status === 200) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(seen.at(-1)).toBe('200 ready');
    expect(new Set(seen.slice(0, -1))).toEqual(new Set(seen.length > 1 ? ['202 model_loading'] : []));
  });

  it('STANDIN_NOT_READY_MS gives 503 model_not_ready first', async () => {
    const s = await startService(rl, rlArgs(), { STANDIN_NOT_READY_MS: '600000' });
    const r = await fetch(`${s.url}/api/v1/health/readiness`);
    expect(r.status).toBe(503);
    expect((await jsonOf(r)).error.type).toBe('model_not_ready');
  });

  it('STANDIN_MODEL_LOAD_ERROR gives 503 model_load_error after loading', async () => {
    const s = await startService(rl, rlArgs(), { STANDIN_MODEL_LOAD_ERROR: '1' });
    const r = await fetch(`${s.url}/api/v1/health/readiness`);
    expect(r.status).toBe(503);
    expect((await jsonOf(r)).error.type).toBe('model_load_error');
    const c = await chat(s.url, userMsg([{ type: 'image_url', image_url: { url: pngUri } }]));
    expect(c.status).toBe(503);
    expect(c.json.error.type).toBe('model_load_error');
  });

  it('STANDIN_CRASH_AT_START prints a traceback and exits 3 without listening', async () => {
    const { code, p } = await runToExit(rl, rlArgs(), { STANDIN_CRASH_AT_START: '1' });
    expect(code).toBe(3);
    expect(p.out() + p.err()).toContain('Traceback');
    expect(p.out()).not.toContain('listening on');
  });

  it('exits 0 on SIGTERM', async () => {
    const s = await startService(rl, rlArgs());
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });
});

describe('stand-in argv checks (contract §3)', () => {
  const cases: Array<[string, string, string[], Record<string, string>, RegExp]> = [
    ['job_id differs from TAO_API_JOB_ID', rl, rlArgs({ jobId: 'a', envJobId: 'b' }), {}, /TAO_API_JOB_ID/],
    ['wrong neural_network_name (cosmos-rl)', rl, rlArgs({ arch: 'tao-dataservices' }), {}, /neural_network_name/],
    ['wrong neural_network_name (dataservices)', py, dsArgs({ arch: 'cosmos-rl' }), {}, /neural_network_name/],
    ['CLOUD_BASED not "False"', rl, rlArgs({ env: { CLOUD_BASED: 'false' } }), {}, /CLOUD_BASED/],
    ['TAO_ADMIN_KEY set', rl, rlArgs({ env: { TAO_ADMIN_KEY: 'x' } }), {}, /TAO_ADMIN_KEY/],
    ['TAO_LOGGING_SERVER_URL set', py, dsArgs({ env: { TAO_LOGGING_SERVER_URL: 'http://x' } }), {}, /TAO_LOGGING_SERVER_URL/],
    ['unknown backend', rl, rlArgs({ env: { TAO_EXECUTION_BACKEND: 'docker' } }), {}, /TAO_EXECUTION_BACKEND/],
    ['secret inside the env payload', rl, rlArgs({ env: { HF_TOKEN: 'hf_x' } }), {}, /HF_TOKEN/],
    ['missing --docker_env_vars', rl, rlArgs().slice(0, 2), {}, /--docker_env_vars/],
    ['unknown flag', rl, [...rlArgs(), '--verbose'], {}, /unrecognized/],
    ['--job passed to cosmos_predict', predict, predictArgs(['--job', payloads().job]), {}, /--job/],
    ['--docker_env_vars passed to cosmos_predict', predict, predictArgs(['--docker_env_vars', payloads().env]), {}, /--docker_env_vars/],
    ['both --checkpoint-path and --model', predict, predictArgs(['--model', 'base-2b']), {}, /exactly one/],
    ['hf_model:// URI given to --model', predict, ['inference_microservice', 'start', '--model', 'hf_model://nvidia/x', '--output-dir', '/o', '--port', '8080'], {}, /registered model key/],
    ['python -m another module', py, ['-m', 'http.server', '--port', '8080'], {}, /No module named/],
    ['dataservices without --port', py, dsArgs().filter((a, i, all) => a !== '--port' && all[i - 1] !== '--port'), {}, /--port/],
  ];
  it.each(cases)('%s → exit 2', async (_name, cmd, args, env, message) => {
    const { code, p } = await runToExit(cmd, args, env);
    expect(code).toBe(2);
    expect(p.err()).toMatch(message);
    expect(p.out()).not.toContain('listening on');
  });

  it('a secret value on the command line → exit 2, naming the secret but never printing it', async () => {
    const canary = `hf_canary_${randomUUID()}`;
    const { code, p } = await runToExit(rl, rlArgs({ modelPath: `/models/${canary}` }), { HF_TOKEN: canary });
    expect(code).toBe(2);
    expect(p.err()).toMatch(/HF_TOKEN/);
    expect(p.out() + p.err()).not.toContain(canary);
  });
});

describe('stand-in chat completions (contract §7)', () => {
  it('cosmos-rl: request rules, sampling echo, secret names only', async () => {
    const canary = `hf_canary_${randomUUID()}`;
    const jobId = randomUUID();
    const s = await startService(rl, rlArgs({ jobId, modelPath: '/models/parent_model' }), {
      HF_TOKEN: canary,
      STANDIN_PROBE: 'probe-value',
      STANDIN_ECHO_ENV: 'STANDIN_PROBE,HF_TOKEN,UNSET_VAR_X',
    });
    await waitReady(s.url);

    for (const bad of ['', '   ', '{not json']) {
      const r = await chat(s.url, bad);
      expect(r.status).toBe(400);
      expect(r.json.error.type).toBe('invalid_request');
    }
    expect((await chat(s.url, {})).status).toBe(400);
    expect((await chat(s.url, { messages: [{ role: 'system', content: 'x' }] })).status).toBe(400);
    for (const url of ['s3://bucket/cat.png', 'gs://b/cat.png', '/data/cat.png', 'data:text/plain;base64,aGk=', 'data:image/png;base64,@@@']) {
      const r = await chat(s.url, userMsg([{ type: 'image_url', image_url: { url } }]));
      expect(r.status, url).toBe(400);
      expect(r.json.error.type).toBe('invalid_request');
    }
    const wrongKind = await chat(s.url, userMsg([{ type: 'video_url', video_url: { url: pngUri } }]));
    expect(wrongKind.status).toBe(400);
    const noMedia = await chat(s.url, userMsg('describe the scene'));
    expect(noMedia.status).toBe(500);
    expect(noMedia.json).toEqual({ error: { type: 'internal_error', message: "Cosmos requires 'media' parameter" } });
    for (const k of ['guidance', 'num_steps', 'seed', 'negative_prompt']) {
      const r = await chat(s.url, { ...userMsg([{ type: 'image_url', image_url: { url: pngUri } }]), [k]: k === 'negative_prompt' ? 'blurry' : 3 });
      expect(r.status, k).toBe(400);
      expect(r.json.error.type).toBe('invalid_request');
    }
    const badType = await chat(s.url, { ...userMsg([{ type: 'image_url', image_url: { url: pngUri } }]), temperature: '0.7' });
    expect(badType.status).toBe(400);

    const sampling = { max_tokens: 1024, top_p: 0.8, temperature: 0.7 };
    const ok = await chat(s.url, {
      messages: [
        { role: 'system', content: 'You are a careful observer.' },
        { role: 'user', content: [{ type: 'text', text: 'What is in the picture?' }, { type: 'image_url', image_url: { url: pngUri } }, { type: 'video_url', video_url: { url: 'https://example.com/clip.mp4' } }] },
        { role: 'user', content: 'ignored second user message' },
      ],
      ...sampling,
    });
    expect(ok.status).toBe(200);
    expect(ok.json.object).toBe('chat.completion');
    expect(ok.json.model).toBe('cosmos-rl');
    expect(ok.json.choices[0]).toMatchObject({ index: 0, message: { role: 'assistant' }, finish_reason: 'stop' });
    expect(ok.json.choices[0].message.content).toBe('cosmos-rl saw 1 image(s), 1 video(s): What is in the picture?');
    const echo = ok.json.tao_standin;
    expect(echo).toMatchObject({
      network_arch: 'cosmos-rl',
      job_id: jobId,
      model_path: '/models/parent_model',
      backend: 'local-docker',
      text: 'What is in the picture?',
      system: 'You are a careful observer.',
      media: [
        { type: 'image_url', scheme: 'data', mime: 'image/png' },
        { type: 'video_url', scheme: 'http', mime: null },
      ],
      env_probe: { STANDIN_PROBE: 'probe-value', HF_TOKEN: '<refused: secret>', UNSET_VAR_X: null },
    });
    expect(echo.sampling).toStrictEqual(sampling);
    expect(echo.secrets_present).toEqual(['HF_TOKEN']);
    expect(ok.text).not.toContain(canary);
    expect(s.out() + s.err()).not.toContain(canary);
    expect(s.out()).toContain(`loading model /models/parent_model for job ${jobId}`);

    const models = await (await fetch(`${s.url}/v1/models`)).json();
    expect(models).toEqual({ object: 'list', data: [{ id: 'cosmos-rl', object: 'model' }] });
    const missing = await fetch(`${s.url}/v2/nothing`);
    expect(missing.status).toBe(404);
    expect((await jsonOf(missing)).error.type).toBe('not_found');
  });

  it('STANDIN_REJECT_DATA_URI makes data: media a 400', async () => {
    const s = await startService(rl, rlArgs(), { STANDIN_REJECT_DATA_URI: '1' });
    await waitReady(s.url);
    expect((await chat(s.url, userMsg([{ type: 'image_url', image_url: { url: pngUri } }]))).status).toBe(400);
    expect((await chat(s.url, userMsg([{ type: 'image_url', image_url: { url: 'http://example.com/cat.png' } }]))).status).toBe(200);
  });

  it('tao-dataservices via python -m: text-only works, predict parameters are refused, options echoed', async () => {
    const s = await startService(py, [...dsArgs({ modelPath: 'hf_model://org/model' }), '--idle_timeout_minutes', '5', '--disable_auto_deletion']);
    await waitReady(s.url);
    const ok = await chat(s.url, { ...userMsg('hello there'), max_tokens: 64 });
    expect(ok.status).toBe(200);
    expect(ok.json.model).toBe('tao-dataservices');
    expect(ok.json.choices[0].message.content).toBe('tao-dataservices saw 0 image(s), 0 video(s): hello there');
    expect(ok.json.tao_standin).toMatchObject({
      network_arch: 'tao-dataservices', model_path: 'hf_model://org/model', sampling: { max_tokens: 64 },
      options: { idle_timeout_minutes: 5, disable_auto_deletion: true }, secrets_present: [],
    });
    const bad = await chat(s.url, { ...userMsg('hello'), num_steps: 35 });
    expect(bad.status).toBe(400);
    expect(bad.json.error.type).toBe('invalid_request');
  });

  it('cosmos-predict2.5: text/image/video → text2world/image2world/video2world with a real MP4 back', async () => {
    const s = await startService(predict, predictArgs(['--idle-timeout-minutes', '2.5', '--disable-guardrails']));
    await waitReady(s.url);
    const sampling = { max_tokens: 12, guidance: 7, num_steps: 35, seed: 0, negative_prompt: 'blurry, low quality' };
    const t2w = await chat(s.url, { ...userMsg('a robot arm stacks red cubes'), ...sampling });
    expect(t2w.status).toBe(200);
    const content: string = t2w.json.choices[0].message.content;
    expect(content.startsWith('data:video/mp4;base64,')).toBe(true);
    const bytes = Buffer.from(content.slice('data:video/mp4;base64,'.length), 'base64');
    expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
    expect(bytes.equals(readFileSync(join(STANDIN, 'sample.mp4')))).toBe(true);
    expect(t2w.json.tao_standin).toMatchObject({
      network_arch: 'cosmos-predict2.5', job_id: null, model_path: '/models/checkpoint_folder', inference_type: 'text2world', frames: 12,
      options: { idle_timeout_minutes: 2.5, disable_guardrails: true },
    });
    expect(t2w.json.tao_standin.sampling).toStrictEqual(sampling);

    const i2w = await chat(s.url, userMsg([{ type: 'text', text: 'animate' }, { type: 'image_url', image_url: { url: pngUri } }]));
    expect(i2w.json.tao_standin).toMatchObject({ inference_type: 'image2world', frames: 77 });
    const v2w = await chat(s.url, userMsg([{ type: 'text', text: 'continue' }, { type: 'video_url', video_url: { url: mp4Uri } }]));
    expect(v2w.json.tao_standin).toMatchObject({ inference_type: 'video2world', media: [{ type: 'video_url', scheme: 'data', mime: 'video/mp4' }] });
    for (const k of ['top_p', 'temperature']) {
      const r = await chat(s.url, { ...userMsg('x'), [k]: 0.5 });
      expect(r.status, k).toBe(400);
    }
  });

  it('cosmos-predict2.5 with --model <key> echoes the key', async () => {
    const s = await startService(predict, ['inference_microservice', 'start', '--model', 'base-2b', '--output-dir', '/tmp/out', '--port', '8080', '--context-parallel-size', '2']);
    await waitReady(s.url);
    const r = await chat(s.url, userMsg('a cat'));
    expect(r.json.tao_standin).toMatchObject({ model_path: null, model_key: 'base-2b', options: { context_parallel_size: 2 } });
  });
});

describe('stand-in through a real /bin/sh -c', () => {
  /** POSIX single-quote quoting, written here on purpose (independent of src/util/shell.ts). */
  const sq = (w: string) => `'${w.split("'").join(`'\\''`)}'`;

  it('receives model_path byte-identical despite quotes, spaces, $HOME, backticks and non-ASCII', async () => {
    const modelPath = `/models/it's a "quoted" dir/$HOME/\`id\`/$(echo x)/ünïcødé 模型 \\n end`;
    const p = payloads({ modelPath });
    const inner = `umask 0 && cosmos-rl-inference-microservice --job ${sq(p.job)} --docker_env_vars ${sq(p.env)}`;
    const s = await startService('/bin/sh', ['-c', inner], { PATH: `${BIN}:${process.env.PATH}` });
    await waitReady(s.url);
    const r = await chat(s.url, userMsg([{ type: 'image_url', image_url: { url: pngUri } }]));
    expect(r.status).toBe(200);
    expect(r.json.tao_standin.job_id).toBe(p.jobId);
    expect(Buffer.from(r.json.tao_standin.model_path, 'utf8').equals(Buffer.from(modelPath, 'utf8'))).toBe(true);
    expect(s.out()).toContain(`loading model ${modelPath} for job ${p.jobId}`);
  });
});
