/**
 * `tao-infer gateway` against stand-in TAO services on loopback (test/fixtures/standin): routing by
 * job_id / prefix / arch / path / header, pool spread, failover when a member dies, warm-up (202 → ready),
 * model_load_error ejection, the registry followed live, and the gateway's own 400/404/413/503 answers.
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryFor, gatewayOver, post, startStandin, startStreamingUpstream, TestRegistry, userMsg, type Standin } from './helpers.js';

const PNG = `data:image/png;base64,${Buffer.from('png-bytes').toString('base64')}`;
const standins: Standin[] = [];
const regs: TestRegistry[] = [];
const closers: Array<() => Promise<void>> = [];
const standin = async (...a: Parameters<typeof startStandin>) => {
  const s = await startStandin(...a);
  standins.push(s);
  return s;
};
const newReg = () => {
  const r = new TestRegistry();
  regs.push(r);
  return r;
};
const gateway = async (...a: Parameters<typeof gatewayOver>) => {
  const g = await gatewayOver(...a);
  closers.push(g.close);
  return g;
};

afterAll(async () => {
  for (const c of closers) await c();
  for (const s of standins) s.kill();
  for (const r of regs) r.cleanup();
});

describe('routing', () => {
  let a1: Standin, a2: Standin, rl: Standin, reg: TestRegistry, gw: Awaited<ReturnType<typeof gatewayOver>>;
  beforeAll(async () => {
    [a1, a2, rl] = await Promise.all([standin('tao-dataservices'), standin('tao-dataservices'), standin('cosmos-rl')]);
    reg = newReg();
    await reg.add(entryFor(a1), entryFor(a2), entryFor(rl));
    gw = await gateway(reg);
  });

  it('routes a job_id, a unique job_id prefix, the path form and the x-tao-job-id header to that service', async () => {
    const chat = `${gw.url}/v1/chat/completions`;
    const byId = await post(chat, { model: a1.job_id, messages: userMsg('one') });
    expect(byId.status).toBe(200);
    expect(byId.json.tao_standin.job_id).toBe(a1.job_id);
    expect(byId.headers.get('x-tao-job-id')).toBe(a1.job_id);
    const byPrefix = await post(chat, { model: a2.job_id.slice(0, 13), messages: userMsg('two') });
    expect(byPrefix.json.tao_standin.job_id).toBe(a2.job_id);
    const byPath = await post(`${gw.url}/v1/jobs/${a2.job_id}/chat/completions`, { messages: userMsg('three') });
    expect(byPath.json.tao_standin.job_id).toBe(a2.job_id);
    const byHeader = await post(chat, { model: 'tao-dataservices', messages: userMsg('four') }, { 'x-tao-job-id': a1.job_id });
    expect(byHeader.json.tao_standin.job_id).toBe(a1.job_id);
    expect(byHeader.json.tao_standin.request_model).toBe('tao-dataservices');
  });

  it('spreads an arch pool over its members (least in flight, ties round-robin)', async () => {
    const seen: Record<string, number> = {};
    for (let i = 0; i < 20; i++) {
      const r = await post(`${gw.url}/v1/chat/completions`, { model: 'tao-dataservices', messages: userMsg(`n${i}`) });
      expect(r.status).toBe(200);
      seen[r.json.tao_standin.job_id] = (seen[r.json.tao_standin.job_id] ?? 0) + 1;
    }
    expect(seen).toEqual({ [a1.job_id]: 10, [a2.job_id]: 10 });
  });

  it('lists every live job_id and arch alias in /v1/models with network_arch, platform and state', async () => {
    const res = await fetch(`${gw.url}/v1/models`);
    const list = (await res.json()) as { object: string; data: any[] };
    expect(list.object).toBe('list');
    const ids = list.data.map((m) => m.id).sort();
    expect(ids).toEqual([a1.job_id, a2.job_id, rl.job_id, 'cosmos-rl', 'tao-dataservices'].sort());
    expect(list.data.find((m) => m.id === a1.job_id)).toMatchObject({ object: 'model', network_arch: 'tao-dataservices', platform: 'local-docker', state: 'ready' });
    expect(list.data.find((m) => m.id === 'tao-dataservices').members.sort()).toEqual([a1.job_id, a2.job_id].sort());
    const one = await fetch(`${gw.url}/v1/models/cosmos-rl`);
    expect(((await one.json()) as any).members).toEqual([rl.job_id]);
  });

  it('answers an unknown model with 404 and an OpenAI error object, without forwarding', async () => {
    const r = await post(`${gw.url}/v1/chat/completions`, { model: 'llama-3', messages: userMsg('x') });
    expect(r.status).toBe(404);
    expect(r.json.error).toMatchObject({ type: 'invalid_request_error', code: 'model_not_found' });
    expect(r.json.error.message).toContain("'llama-3'");
    const path = await post(`${gw.url}/v1/jobs/no-such-job/chat/completions`, { messages: userMsg('x') });
    expect(path.status).toBe(404);
    const none = await post(`${gw.url}/v1/chat/completions`, { messages: userMsg('x') });
    expect(none.status).toBe(400);
    expect(none.json.error.code).toBe('model_required');
  });

  it('applies the per-arch checks of `request` before forwarding (400 with the reason)', async () => {
    const before = rl.output().split('POST /v1/chat/completions').length;
    const noMedia = await post(`${gw.url}/v1/chat/completions`, { model: 'cosmos-rl', messages: userMsg('what is this?') });
    expect(noMedia.status).toBe(400);
    expect(noMedia.json.error.message).toMatch(/cosmos-rl needs at least one image or video/);
    const cloud = await post(`${gw.url}/v1/chat/completions`, { model: 'cosmos-rl', messages: userMsg('x', { kind: 'image_url', url: 's3://bucket/cat.png' }) });
    expect(cloud.status).toBe(400);
    expect(cloud.json.error.message).toMatch(/cloud URI/);
    const foreign = await post(`${gw.url}/v1/chat/completions`, { model: 'tao-dataservices', messages: userMsg('x'), guidance: 3, num_steps: 5 });
    expect(foreign.status).toBe(400);
    expect(foreign.json.error.message).toMatch(/belong to cosmos-predict2.5/);
    const bad = await post(`${gw.url}/v1/chat/completions`, '{"model": "cosmos-rl", "messages": [');
    expect(bad.status).toBe(400);
    expect(rl.output().split('POST /v1/chat/completions').length).toBe(before);
    const ok = await post(`${gw.url}/v1/chat/completions`, { model: 'cosmos-rl', messages: userMsg('what is this?', { kind: 'image_url', url: PNG }) });
    expect(ok.status).toBe(200);
    expect(ok.json.tao_standin.media).toEqual([{ type: 'image_url', scheme: 'data', mime: 'image/png', bytes: 9 }]);
  });

  it('streams a large body upstream without parsing it: model after messages, spooled to disk, checks on the skeleton', async () => {
    const video = `data:video/mp4;base64,${Buffer.alloc(3 * 1024 * 1024, 7).toString('base64')}`;
    const text = JSON.stringify({ messages: userMsg('describe', { kind: 'video_url', url: video }), model: 'tao-dataservices', max_tokens: 12 });
    expect(text.indexOf('"model"')).toBeGreaterThan(4 * 1024 * 1024);
    const r = await post(`${gw.url}/v1/chat/completions`, text);
    expect(r.status).toBe(200);
    expect(r.json.tao_standin.media).toEqual([{ type: 'video_url', scheme: 'data', mime: 'video/mp4', bytes: 3 * 1024 * 1024 }]);
    expect(r.json.tao_standin.sampling).toEqual({ max_tokens: 12 });
    const rlText = JSON.stringify({ messages: userMsg('no media but a long text ' + 'z'.repeat(2 * 1024 * 1024)), model: 'cosmos-rl' });
    const refused = await post(`${gw.url}/v1/chat/completions`, rlText);
    expect(refused.status).toBe(400);
    expect(refused.json.error.message).toMatch(/needs at least one image or video/);
  });

  it('answers 405 for a wrong method and 404 for an unknown path', async () => {
    expect((await fetch(`${gw.url}/v1/chat/completions`)).status).toBe(405);
    expect((await fetch(`${gw.url}/v2/whatever`)).status).toBe(404);
    expect((await fetch(`${gw.url}/health`)).status).toBe(200);
  });
});

describe('warm-up, failures and the live registry', () => {
  it('waits for a loading service (202 model_loading → ready) within the retry window', async () => {
    const reg = newReg();
    const readyFile = join(reg.dir, 'ready');
    const s = await standin('tao-dataservices', { STANDIN_READY_FILE: readyFile });
    await reg.add(entryFor(s));
    const gw = await gateway(reg, { retryWindowS: 20, logFile: join(reg.dir, 'access.jsonl') });
    const pending = post(`${gw.url}/v1/chat/completions`, { model: s.job_id, messages: userMsg('hello') });
    await new Promise((r) => setTimeout(r, 1200));
    // The gauges are read at scrape time: the waiting request (and its body) and this scrape are in flight.
    const during = await (await fetch(`${gw.url}/metrics`)).text();
    expect(during).toMatch(/^tao_gateway_in_flight_requests 2$/m);
    expect(during).toMatch(/^tao_gateway_body_bytes_in_flight [1-9]\d*$/m);
    writeFileSync(readyFile, '');
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.json.choices[0].message.content).toContain('hello');
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/tao_gateway_retries_total\{reason="warming_up"\} [1-9]/);
    expect(metrics).toMatch(/^tao_gateway_in_flight_requests 1$/m);
    expect(metrics).toMatch(/^tao_gateway_body_bytes_in_flight 0$/m);
  });

  it('gives up after the retry window with 503 and Retry-After while the model still loads', async () => {
    const reg = newReg();
    const s = await standin('tao-dataservices', { STANDIN_READY_FILE: join(reg.dir, 'never') });
    await reg.add(entryFor(s));
    const gw = await gateway(reg, { retryWindowS: 1 });
    const r = await post(`${gw.url}/v1/chat/completions`, { model: 'tao-dataservices', messages: userMsg('x') });
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('model_loading');
    expect(r.headers.get('retry-after')).toBeTruthy();
  });

  it('ejects a member answering model_load_error and fails over to a healthy one', async () => {
    const reg = newReg();
    // Both still loading when the gateway first probes them; then one loads, the other fails to.
    const [badReady, goodReady] = [join(reg.dir, 'bad-ready'), join(reg.dir, 'good-ready')];
    const [bad, good] = await Promise.all([
      standin('tao-dataservices', { STANDIN_MODEL_LOAD_ERROR: '1', STANDIN_READY_FILE: badReady }),
      standin('tao-dataservices', { STANDIN_READY_FILE: goodReady }),
    ]);
    await reg.add(entryFor(bad), entryFor(good));
    // Probing only every 60 s: the ejection must come from the request path itself.
    const gw = await gateway(reg, { probeIntervalS: 60 });
    writeFileSync(badReady, '');
    writeFileSync(goodReady, '');
    for (let i = 0; i < 6; i++) {
      const r = await post(`${gw.url}/v1/chat/completions`, { model: 'tao-dataservices', messages: userMsg(`r${i}`) });
      expect(r.status).toBe(200);
      expect(r.json.tao_standin.job_id).toBe(good.job_id);
    }
    const ids = ((await (await fetch(`${gw.url}/v1/models`)).json()) as any).data.map((m: any) => m.id);
    expect(ids).not.toContain(bad.job_id);
    expect(await (await fetch(`${gw.url}/metrics`)).text()).toMatch(/tao_gateway_ejections_total\{reason="model_load_error"\} 1/);
    const direct = await post(`${gw.url}/v1/chat/completions`, { model: bad.job_id, messages: userMsg('x') });
    expect(direct.status).toBe(503);
    expect(direct.json.error.code).toBe('model_load_error');
  });

  it('loses no arch-routed request when a member is killed mid-run', async () => {
    const reg = newReg();
    const [m1, m2, m3] = await Promise.all([standin('tao-dataservices'), standin('tao-dataservices'), standin('tao-dataservices')]);
    await reg.add(entryFor(m1), entryFor(m2), entryFor(m3));
    const gw = await gateway(reg, { probeIntervalS: 60 });
    const statuses: number[] = [];
    let sent = 0;
    const client = async () => {
      while (sent < 90) {
        sent++;
        if (sent === 30) m2.kill();
        const r = await post(`${gw.url}/v1/chat/completions`, { model: 'tao-dataservices', messages: userMsg(`q${sent}`) });
        statuses.push(r.status);
      }
    };
    await Promise.all([client(), client(), client(), client()]);
    expect(statuses.length).toBeGreaterThanOrEqual(90);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const models = ((await (await fetch(`${gw.url}/v1/models`)).json()) as any).data.map((m: any) => m.id);
    expect(models).not.toContain(m2.job_id);
  });

  it('follows the registry: a service added is routable and one removed is gone, without a restart', async () => {
    const reg = newReg();
    const s = await standin('cosmos-rl');
    const gw = await gateway(reg);
    const body = { model: 'cosmos-rl', messages: userMsg('x', { kind: 'image_url', url: PNG }) };
    expect((await post(`${gw.url}/v1/chat/completions`, body)).status).toBe(404);
    await reg.add(entryFor(s));
    const t0 = Date.now();
    let ids: string[] = [];
    while (Date.now() - t0 < 5000) {
      ids = ((await (await fetch(`${gw.url}/v1/models`)).json()) as any).data.map((m: any) => m.id);
      if (ids.includes(s.job_id)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ids).toContain(s.job_id);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect((await post(`${gw.url}/v1/chat/completions`, body)).status).toBe(200);
    await reg.remove(s.job_id);
    const t1 = Date.now();
    while (Date.now() - t1 < 5000) {
      ids = ((await (await fetch(`${gw.url}/v1/models`)).json()) as any).data.map((m: any) => m.id);
      if (!ids.includes(s.job_id)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ids).not.toContain(s.job_id);
    expect((await post(`${gw.url}/v1/chat/completions`, body)).status).toBe(404);
  });
});

describe('limits', () => {
  it('answers 413 above --max-body-mb and 503 with Retry-After when the byte budget is used up', async () => {
    const reg = newReg();
    const s = await standin('tao-dataservices');
    await reg.add(entryFor(s));
    const gw = await gateway(reg, { maxBodyMb: 0.5, byteBudgetMb: 0.5 });
    const big = JSON.stringify({ model: 'tao-dataservices', messages: userMsg('y'.repeat(600 * 1024)) });
    const r = await post(`${gw.url}/v1/chat/completions`, big);
    expect(r.status).toBe(413);
    expect(r.json.error.code).toBe('request_too_large');
    // Two 300 KiB bodies at once do not fit a 512 KiB budget: the second one is refused, not read.
    const ctl = new AbortController();
    const slow = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(300 * 1024) },
      body: new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('{"model":')) }),
      duplex: 'half',
      signal: ctl.signal,
    } as RequestInit).catch(() => undefined);
    await new Promise((res) => setTimeout(res, 300));
    const second = await post(`${gw.url}/v1/chat/completions`, JSON.stringify({ model: 'tao-dataservices', messages: userMsg('z'.repeat(300 * 1024)) }));
    expect(second.status).toBe(503);
    expect(second.headers.get('retry-after')).toBeTruthy();
    ctl.abort();
    await slow;
  });
});

describe('shutdown', () => {
  it('close() stops accepting at once and lets a stream in flight finish', async () => {
    const reg = newReg();
    const up = await startStreamingUpstream();
    closers.push(up.close);
    await reg.add(entryFor(up));
    const gw = await gatewayOver(reg, { drainTimeoutS: 10 });
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', connection: 'close' },
      body: JSON.stringify({ model: up.job_id, messages: userMsg('go'), stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    const closed = gw.close();
    await new Promise((r) => setTimeout(r, 200));
    await expect(fetch(`${gw.url}/health`)).rejects.toThrow();
    up.release();
    let text = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    expect(text).toContain('[DONE]');
    await closed;
  });
});

describe('timeouts', () => {
  it('a hung service costs only its own requests: others are served meanwhile, it gets 504 after the first-byte timeout', async () => {
    const reg = newReg();
    const hung = createServer((req, res) => {
      if (req.url === '/api/v1/health/readiness') res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}');
      else req.resume(); // accepts the request, never answers
    });
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => (hung.closeAllConnections(), hung.close(() => r()))));
    const hungEntry = entryFor({ job_id: randomUUID(), network_arch: 'tao-dataservices', host_url: `http://127.0.0.1:${(hung.address() as { port: number }).port}` });
    const s = await standin('tao-dataservices');
    await reg.add(hungEntry, entryFor(s));
    const gw = await gateway(reg, { firstByteTimeoutS: 1.5 });
    const t0 = Date.now();
    const stuck = post(`${gw.url}/v1/chat/completions`, { model: hungEntry.job_id, messages: userMsg('hello?') });
    for (let i = 0; i < 10; i++) expect((await post(`${gw.url}/v1/chat/completions`, { model: s.job_id, messages: userMsg(`m${i}`) })).status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(1400);
    const r = await stuck;
    expect(r.status).toBe(504);
    expect(r.json.error.code).toBe('upstream_timeout');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
  });
});
