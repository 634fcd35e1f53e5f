/**
 * The gateway as users' clients meet it: the real `openai` npm client (chat and stream), streaming that
 * arrives chunk by chunk, a client abort reaching the upstream, back-pressure from a slow client, the api key (401, never in output, never
 * forwarded upstream), lepton-style upstream bearer tokens, the CLI in the foreground (URL, SIGTERM,
 * exit codes) and the lazy loading of the gateway's libraries.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, runCli } from '../helpers/cli.js';
import { entryFor, gatewayOver, post, startStandin, startStreamingUpstream, TestRegistry, userMsg, type Standin, type StreamingUpstream } from './helpers.js';

const KEY = `gw-key-${Math.random().toString(36).slice(2)}`;
const TOKEN = `lepton-token-${Math.random().toString(36).slice(2)}`;
let reg: TestRegistry;
let s: Standin;
let up: StreamingUpstream;
let gw: Awaited<ReturnType<typeof gatewayOver>>;

beforeAll(async () => {
  reg = new TestRegistry();
  s = await startStandin('tao-dataservices');
  up = await startStreamingUpstream('cosmos-predict2.5');
  await reg.add(entryFor(s), entryFor(up, { platform: 'lepton', auth_env: 'TEST_LEPTON_TOKEN' }));
  gw = await gatewayOver(reg, { apiKeyEnv: 'TEST_GATEWAY_KEY', env: { ...process.env, TEST_GATEWAY_KEY: KEY, TEST_LEPTON_TOKEN: TOKEN }, logFile: join(reg.dir, 'access.jsonl') });
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
  s?.kill();
  reg?.cleanup();
});

describe('openai npm client pointed at the gateway', () => {
  it('chat: a completion routed by network_arch', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const c = await client.chat.completions.create({ model: 'tao-dataservices', messages: [{ role: 'user', content: 'hello from the SDK' }], max_tokens: 16 });
    expect(c.choices[0]!.message.content).toBe('tao-dataservices saw 0 image(s), 0 video(s): hello from the SDK');
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(expect.arrayContaining([s.job_id, 'tao-dataservices', up.job_id]));
  });

  it('stream: chunks arrive one by one, the first before the upstream sends the rest', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: up.job_id, messages: [{ role: 'user', content: 'go' }], stream: true });
    const parts: string[] = [];
    for await (const chunk of stream) {
      const text = chunk.choices[0]?.delta?.content ?? '';
      if (text) parts.push(text);
      if (text === 'first ') up.release();
    }
    expect(parts).toEqual(['first ', 'second']);
  });

  it('errors: a wrong key is a 401 AuthenticationError, an unknown model a 404 NotFoundError', async () => {
    const wrong = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-the-key', maxRetries: 0 });
    await expect(wrong.chat.completions.create({ model: 'tao-dataservices', messages: [{ role: 'user', content: 'x' }] })).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const err = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect(err.code).toBe('model_not_found');
  });
});

describe('streaming and aborts over plain HTTP', () => {
  it('passes the stream through incrementally: the first event is readable while the upstream holds the rest', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: up.job_id, messages: userMsg('go'), stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    let seen = '';
    while (!seen.includes('first ')) seen += new TextDecoder().decode((await reader.read()).value);
    expect(seen).not.toContain('second');
    up.release();
    for (let r = await reader.read(); !r.done; r = await reader.read()) seen += new TextDecoder().decode(r.value);
    expect(seen).toContain('second');
    expect(seen.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('a client that disconnects mid-stream aborts the upstream request', async () => {
    const ctl = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: up.job_id, messages: userMsg('go'), stream: true }),
      signal: ctl.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    ctl.abort();
    await expect(Promise.race([up.aborted.then(() => 'aborted'), new Promise((r) => setTimeout(() => r('timeout'), 5000))])).resolves.toBe('aborted');
    // The gateway is still fine and releases the member.
    const r = await post(`${gw.url}/v1/chat/completions`, { model: 'tao-dataservices', messages: userMsg('after') }, { authorization: `Bearer ${KEY}` });
    expect(r.status).toBe(200);
  });
});

describe('back-pressure on replies', () => {
  it('a client that stops reading holds the upstream back (the gateway does not buffer the reply); the 128 MiB reply arrives intact', async () => {
    // A sized reply far larger than every socket buffer on the way (tcp_rmem max is 32 MiB here), written as the
    // upstream may: 1 MiB at a time, waiting for 'drain'. `written` is what the upstream got rid of so far.
    const piece = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < piece.length; i++) piece[i] = i % 251;
    const pieces = 128;
    const total = pieces * piece.length;
    let written = 0;
    const server = createServer(async (req, res) => {
      if (req.url === '/api/v1/health/readiness') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}');
      for await (const _ of req);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(total) });
      for (let i = 0; i < pieces && !res.destroyed; i++) {
        if (!res.write(piece)) await once(res, 'drain');
        written += piece.length;
      }
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address() as AddressInfo;
    const big = { job_id: `bulk-${Math.random().toString(36).slice(2)}`, network_arch: 'tao-dataservices', host_url: `http://127.0.0.1:${addr.port}` };
    await reg.add(entryFor(big));
    try {
      const body = JSON.stringify({ messages: userMsg('a long video please') });
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const r = httpRequest(`${gw.url}/v1/jobs/${big.job_id}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' } }, resolve);
        r.on('error', reject);
        r.end(body);
      });
      expect(res.statusCode).toBe(200);
      // The client reads nothing for a while: the upstream must stall well short of the whole reply.
      await new Promise((r) => setTimeout(r, 400));
      const first = written;
      await new Promise((r) => setTimeout(r, 300));
      expect(written).toBe(first);
      expect(first).toBeLessThan(total);
      const hash = createHash('sha256');
      let got = 0;
      for await (const c of res) {
        hash.update(c as Buffer);
        got += (c as Buffer).length;
      }
      const want = createHash('sha256');
      for (let i = 0; i < pieces; i++) want.update(piece);
      expect(got).toBe(total);
      expect(hash.digest('hex')).toBe(want.digest('hex'));
    } finally {
      await reg.remove(big.job_id);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('large bodies routed by job_id', () => {
  const bigBody = (extra: Record<string, unknown> = {}) =>
    Buffer.from(JSON.stringify({ messages: userMsg('make it move', { kind: 'video_url', url: `data:video/mp4;base64,${Buffer.alloc(2 * 1024 * 1024, 3).toString('base64')}` }), ...extra }));
  const sendInTwoParts = async (body: Buffer, between: () => Promise<void>) => {
    let push!: (b: Uint8Array | null) => void;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => void (push = (b) => (b ? c.enqueue(b) : c.close())) });
    const pending = fetch(`${gw.url}/v1/jobs/${up.job_id}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'content-length': String(body.length) },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    push(body.subarray(0, body.length >> 1));
    await between();
    push(body.subarray(body.length >> 1));
    push(null);
    const res = await pending;
    return { status: res.status, json: (await res.json()) as any };
  };

  it('stream straight through to a ready service: it sees the request before the client has sent it all', async () => {
    const before = up.requests.length;
    const r = await sendInTwoParts(bigBody(), async () => {
      const t0 = Date.now();
      while (up.requests.length === before && Date.now() - t0 < 5000) await new Promise((res) => setTimeout(res, 20));
      expect(up.requests.length).toBe(before + 1);
    });
    expect(r.status).toBe(200);
    expect(r.json.choices[0].message.content).toBe('whole reply');
  });

  it('are still checked: a body failing the per-arch checks is cut off before its last byte and answered 400', async () => {
    const [requests, complete] = [up.requests.length, up.bodies.count];
    const bad = await sendInTwoParts(Buffer.from(JSON.stringify({ messages: [{ role: 'system', content: 'z'.repeat(2 * 1024 * 1024) }] })), async () => undefined);
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/no user message/);
    expect(up.requests.length).toBe(requests + 1);
    await new Promise((res) => setTimeout(res, 200));
    expect(up.bodies.count).toBe(complete);
  });
});

describe('api key and upstream credentials', () => {
  it('needs the key on every route but /health (401 with an OpenAI error), and keeps it out of everything', async () => {
    expect((await fetch(`${gw.url}/health`)).status).toBe(200);
    for (const path of ['/v1/models', '/metrics']) {
      const r = await fetch(`${gw.url}${path}`);
      expect(r.status).toBe(401);
      expect(((await r.json()) as any).error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
      expect((await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${KEY}x` } })).status).toBe(401);
    }
    const bad = await post(`${gw.url}/v1/chat/completions`, { model: 'tao-dataservices', messages: userMsg('x') }, { authorization: 'Bearer nope' });
    expect(bad.status).toBe(401);
    const metrics = await (await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
    const log = readFileSync(join(reg.dir, 'access.jsonl'), 'utf8');
    expect(log).toContain('"status":401');
    for (const text of [metrics, log, JSON.stringify(bad.json), gw.warnings.join('\n')]) {
      expect(text).not.toContain(KEY);
      expect(text).not.toContain(TOKEN);
    }
  });

  it('sends the lepton bearer token from the env var named in the entry, never the client key', async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: up.job_id, messages: userMsg('x') }),
    });
    expect(res.status).toBe(200);
    await res.text();
    const last = up.requests.at(-1)!;
    expect(last.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(JSON.stringify(last.headers)).not.toContain(KEY);
  });
});

describe('tao-infer gateway (CLI)', () => {
  it('serves in the foreground, prints its URL, logs JSONL without bodies, and stops cleanly on SIGTERM', async () => {
    const t = new TestRegistry();
    try {
      await t.add(entryFor(s));
      const logFile = join(t.dir, 'access.jsonl');
      const p = execa(process.execPath, [CLI, 'gateway', '--port', '0', '--json', '--log-file', logFile], { env: { TAO_INF_STATE_FILE: t.file, CI: 'true' }, reject: false, cwd: ROOT });
      const first = await new Promise<string>((resolve, reject) => {
        let buf = '';
        p.stdout!.on('data', (c) => {
          buf += c;
          if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
        });
        setTimeout(() => reject(new Error('no URL line')), 15_000);
      });
      const { url, base_url } = JSON.parse(first);
      expect(base_url).toBe(`${url}/v1`);
      const r = await post(`${url}/v1/chat/completions`, { model: s.job_id, messages: userMsg('secret prompt text') });
      expect(r.status).toBe(200);
      p.kill('SIGTERM');
      const done = await p;
      expect(done.exitCode).toBe(0);
      expect(done.stderr).toContain(`listening on ${url}`);
      const lines = readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(lines[0]).toMatchObject({ method: 'POST', model: s.job_id, routed_to: s.job_id, network_arch: 'tao-dataservices', status: 200, retries: 0, stream: false });
      expect(lines[0].bytes_in).toBeGreaterThan(0);
      expect(lines[0].bytes_out).toBeGreaterThan(0);
      expect(typeof lines[0].latency_ms).toBe('number');
      expect(readFileSync(logFile, 'utf8')).not.toContain('secret prompt text');
    } finally {
      t.cleanup();
    }
  });

  it('refuses a non-loopback address without an api key, an unset key variable, a key given as a value and an unwritable log file (exit 2)', async () => {
    const open = await runCli(['gateway', '--host', '0.0.0.0', '--port', '0']);
    expect(open.exitCode).toBe(2);
    expect(open.stderr).toMatch(/without an api key/);
    const unset = await runCli(['gateway', '--port', '0', '--api-key-env', 'NO_SUCH_VAR_FOR_TAO']);
    expect(unset.exitCode).toBe(2);
    expect(unset.stderr).toContain('$NO_SUCH_VAR_FOR_TAO is not set');
    const value = await runCli(['gateway', '--port', '0', '--api-key-env', 'sk-live-1234/abcd']);
    expect(value.exitCode).toBe(2);
    expect(value.stderr).not.toContain('sk-live-1234/abcd');
    const log = await runCli(['gateway', '--port', '0', '--log-file', '/nonexistent-dir-tao/gw.jsonl']);
    expect(log.exitCode).toBe(2);
    expect(log.stderr).toContain('cannot open /nonexistent-dir-tao/gw.jsonl');
  });

  it('loads undici and prom-client only when the gateway runs', () => {
    const script = `
      await import(${JSON.stringify(join(ROOT, 'dist/src/index.js'))});
      const { createRequire } = await import('node:module');
      const cache = Object.keys(createRequire(import.meta.url).cache);
      process.stdout.write(JSON.stringify(cache.filter((f) => /node_modules\\/(undici|prom-client)\\//.test(f))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT }).toString());
    expect(loaded).toEqual([]);
    const after = `
      const { startGateway } = await import(${JSON.stringify(join(ROOT, 'dist/src/index.js'))});
      const gw = await startGateway({ port: 0, stateFile: ${JSON.stringify(join(reg.dir, 'lazy-state.json'))} }).catch((e) => e);
      const { createRequire } = await import('node:module');
      const cache = Object.keys(createRequire(import.meta.url).cache);
      process.stdout.write(JSON.stringify(cache.some((f) => /node_modules\\/undici\\//.test(f))));
      if (gw.close) await gw.close();`;
    expect(execFileSync(process.execPath, ['--input-type=module', '-e', after], { cwd: ROOT }).toString()).toBe('true');
  });
});
