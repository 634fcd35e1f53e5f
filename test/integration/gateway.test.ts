/**
 * The gateway in front of real Docker containers started and stopped by the built CLI (local-docker,
 * the stand-in image of test/fixtures/build-test-image.sh), with the real `openai` npm client as the
 * user's client: arch pools, job_id / path / header routing, a service that is still loading (202 →
 * ready), services started and stopped while the gateway runs, and a container killed mid-run.
 * Run under the shared lock: flock /tmp/tao-itest.lock npx vitest run test/integration/gateway.test.ts
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, parseJson, runCli } from '../helpers/cli.js';
import { CANARY, docker, dockerTestEnv, ensureTestImage, removeContainers } from '../helpers/docker.js';
import { startGateway } from '../../src/index.js';
import { post, userMsg } from '../gateway/helpers.js';

const PNG = `data:image/png;base64,${readFileSync(join(ROOT, 'test/fixtures/media/cat.png')).toString('base64')}`;
const started: string[] = [];
const t = dockerTestEnv();
const warnings: string[] = [];
let gw: Awaited<ReturnType<typeof startGateway>>;

async function start(arch: string, extra: string[] = [], env: Record<string, string> = {}): Promise<{ job_id: string; host_url: string }> {
  const r = await runCli(['start', '--arch', arch, '--model', '/models/m', '--num-gpus', '0', '--timeout', '120', '--json', ...extra], { env: { ...t.env, ...env } });
  expect(r.exitCode, r.stderr).toBe(0);
  const e = parseJson(r);
  started.push(e.job_id);
  return e;
}

async function modelIds(): Promise<string[]> {
  return ((await (await fetch(`${gw.url}/v1/models`)).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
}

async function until(what: string, ok: () => Promise<boolean>, ms = 5000): Promise<number> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - t0;
}

let d1: { job_id: string }, d2: { job_id: string }, rl: { job_id: string };

beforeAll(async () => {
  ensureTestImage();
  d1 = await start('tao-dataservices');
  d2 = await start('tao-dataservices');
  rl = await start('cosmos-rl');
  gw = await startGateway({ port: 0, stateFile: t.stateFile, probeIntervalS: 0.5, registryPollS: 0.5, onWarning: (m) => warnings.push(m) });
}, 170_000);

afterAll(async () => {
  await gw?.close();
  removeContainers(started);
});

describe('gateway over local-docker services started by the CLI', () => {
  it('the openai client reaches an arch pool (spread over both containers) and a job_id', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const c = (await client.chat.completions.create({ model: 'tao-dataservices', messages: [{ role: 'user', content: `hi ${i}` }] })) as any;
      expect(c.choices[0].message.content).toBe(`tao-dataservices saw 0 image(s), 0 video(s): hi ${i}`);
      seen.add(c.tao_standin.job_id);
      expect(c.tao_standin.secrets_present).toContain('HF_TOKEN');
    }
    expect([...seen].sort()).toEqual([d1.job_id, d2.job_id].sort());
    const byId = (await client.chat.completions.create({
      model: rl.job_id,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'what is it?' }, { type: 'image_url', image_url: { url: PNG } }] }],
    })) as any;
    expect(byId.tao_standin.job_id).toBe(rl.job_id);
    expect(byId.tao_standin.media[0]).toMatchObject({ type: 'image_url', scheme: 'data', mime: 'image/png' });
    expect(JSON.stringify(byId)).not.toContain(CANARY);
  });

  it('routes by path and header, and refuses a cosmos-rl request without media before it reaches the container', async () => {
    const path = await post(`${gw.url}/v1/jobs/${d2.job_id}/chat/completions`, { messages: userMsg('by path') });
    expect(path.json.tao_standin.job_id).toBe(d2.job_id);
    const header = await post(`${gw.url}/v1/chat/completions`, { messages: userMsg('by header') }, { 'x-tao-job-id': d1.job_id });
    expect(header.json.tao_standin.job_id).toBe(d1.job_id);
    const logsBefore = docker(['logs', rl.job_id]).out;
    const refused = await post(`${gw.url}/v1/chat/completions`, { model: 'cosmos-rl', messages: userMsg('no media') });
    expect(refused.status).toBe(400);
    expect(refused.json.error.message).toMatch(/needs at least one image or video/);
    expect(docker(['logs', rl.job_id]).out).toBe(logsBefore);
  });

  it('a service started by the CLI while the gateway runs is routable, waited for while loading, and gone once stopped', async () => {
    const fresh = await start('tao-dataservices', ['--no-wait', '--env', 'STANDIN_LOAD_MS'], { STANDIN_LOAD_MS: '4000' });
    // Loading for a few seconds: a request by job_id is held (202 model_loading) until it is ready.
    const took = await until('the new service in /v1/models', async () => (await modelIds()).includes(fresh.job_id));
    expect(took).toBeLessThan(3000);
    const r = await post(`${gw.url}/v1/chat/completions`, { model: fresh.job_id, messages: userMsg('new one') });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.tao_standin.job_id).toBe(fresh.job_id);
    const stop = await runCli(['stop', fresh.job_id, '--json'], { env: t.env });
    expect(stop.exitCode, stop.stderr).toBe(0);
    await until('the stopped service to leave /v1/models', async () => !(await modelIds()).includes(fresh.job_id), 3000);
    const gone = await post(`${gw.url}/v1/chat/completions`, { model: fresh.job_id, messages: userMsg('x') });
    expect(gone.status).toBe(404);
    expect(gone.json.error.code).toBe('model_not_found');
  });

  it('loses no arch-routed request when a container is killed mid-run', async () => {
    const statuses: number[] = [];
    let sent = 0;
    const client = async () => {
      while (sent < 80) {
        sent++;
        if (sent === 20) docker(['kill', d2.job_id]);
        const r = await post(`${gw.url}/v1/chat/completions`, { model: 'tao-dataservices', messages: userMsg(`q${sent}`) });
        statuses.push(r.status);
      }
    };
    await Promise.all([client(), client(), client(), client()]);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    await until('the killed container to leave /v1/models', async () => !(await modelIds()).includes(d2.job_id), 3000);
    expect(await modelIds()).toContain(d1.job_id);
  });
});
