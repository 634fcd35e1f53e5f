// Issue 8 points 2, 3, 4: bounded reads of replies and readiness answers, checked local input files with
// streamed base64, and --output checked before sending with a video that is never lost. The service is a real
// HTTP server on a loopback port found free at run time; the CLI runs as a child process, as users run it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, ftruncateSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadReferences } from '../../src/references.js';
import { probeReadiness } from '../../src/service/readiness.js';
import { runCli } from '../helpers/cli.js';

type Handler = (req: IncomingMessage, body: Buffer, res: ServerResponse) => void;
let handler: Handler;
let requests = 0;
let server: Server;
let url: string;
let dir: string;
let stateFile: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    // The body is hashed as it arrives (never kept) so large uploads cost the test little memory.
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size <= 1024 * 1024) chunks.push(d);
    });
    req.on('end', () => {
      if (req.url === '/v1/chat/completions') requests++;
      handler(req, Buffer.concat(chunks), res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tao-req-hard-'));
  stateFile = join(dir, 'state.json');
  requests = 0;
  const entry = (job_id: string, network_arch: string) => ({ job_id, platform: 'local-docker', network_arch, host_url: url, host_port: 1, started_at: '2026-01-01T00:00:00Z', state: 'started' });
  writeFileSync(stateFile, JSON.stringify({ vid: entry('vid', 'cosmos-predict2.5'), txt: entry('txt', 'tao-dataservices') }), { mode: 0o600 });
  return () => rmSync(dir, { recursive: true, force: true });
});

const env = () => ({ TAO_INF_STATE_FILE: stateFile });
const VIDEO = Buffer.from(Array.from({ length: 300_001 }, (_, i) => (i * 7) % 256));
const videoReply: Handler = (_req, _body, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: `data:video/mp4;base64,${VIDEO.toString('base64')}` }, finish_reason: 'stop' }] }));
};
const endless = (status: number): Handler => (_req, _body, res) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  const chunk = Buffer.alloc(1024 * 1024, 'a');
  const pump = () => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', pump);
  };
  res.write('{"choices":[{"message":{"role":"assistant","content":"');
  pump();
};

describe('2: every HTTP read has a size cap', () => {
  it('an endless reply stops at --max-reply-mb with exit 5 and says so', async () => {
    handler = endless(200);
    const t0 = Date.now();
    const r = await runCli(['request', '--job', 'txt', '--prompt', 'hi', '--max-reply-mb', '8'], { env: env(), timeoutMs: 60_000 });
    expect(r.exitCode, r.stderr).toBe(5);
    expect(r.stderr).toMatch(/larger than 8 MiB; reading stopped there/);
    expect(r.stderr).toMatch(/--max-reply-mb/);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('a readiness endpoint with an endless body: the status decides after at most 64 KiB', async () => {
    const refs = loadReferences();
    handler = endless(200);
    expect(await probeReadiness(url, refs.request.readiness, {}, 10_000)).toEqual({ kind: 'ready' });
    handler = endless(202);
    expect(await probeReadiness(url, refs.request.readiness, {}, 10_000)).toMatchObject({ kind: 'waiting' });
  });

  it('an endless error reply (HTTP 500) is read only up to 64 KiB: exit 5 at once', async () => {
    handler = endless(500);
    const t0 = Date.now();
    const r = await runCli(['request', '--job', 'txt', '--prompt', 'hi'], { env: env(), timeoutMs: 60_000 });
    expect(r.exitCode, r.stderr).toBe(5);
    expect(r.stderr).toMatch(/HTTP 500/);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

describe('3: files from the command line are regular files below a stated size', () => {
  it('--body /dev/zero, a FIFO, a directory: exit 2 at once, nothing sent', async () => {
    const fifo = join(dir, 'body.fifo');
    execFileSync('mkfifo', [fifo]);
    for (const [path, what] of [
      ['/dev/zero', /character device/],
      [fifo, /named pipe/],
      [dir, /directory/],
    ] as const) {
      const r = await runCli(['request', '--job', 'txt', '--body', path], { env: env(), timeoutMs: 20_000 });
      expect(r.exitCode, `${path}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(what);
    }
    expect(requests).toBe(0);
  });

  it('a 2 GiB sparse --image is refused with exit 2 naming the limit, not a Node error', async () => {
    const big = join(dir, 'huge.png');
    const fd = openSync(big, 'w');
    ftruncateSync(fd, 2 * 1024 * 1024 * 1024);
    closeSync(fd);
    const r = await runCli(['request', '--job', 'txt', '--prompt', 'hi', '--image', big], { env: env(), timeoutMs: 20_000 });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/2 GiB, more than the 1 GiB --image accepts/);
    expect(requests).toBe(0);
  });

  it('a local image is streamed base64 into the body and arrives byte-identical', async () => {
    const img = join(dir, 'pic.png');
    const data = Buffer.from(Array.from({ length: 200_003 }, (_, i) => (i * 31) % 256));
    writeFileSync(img, data);
    let seen = '';
    handler = (_req, body, res) => {
      const b = JSON.parse(body.toString());
      const item = b.messages[0].content.find((c: { type: string }) => c.type === 'image_url');
      seen = item.image_url.url;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: 'ok' } }] }));
    };
    const r = await runCli(['request', '--job', 'txt', '--prompt', 'hi', '--image', img], { env: env(), timeoutMs: 60_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(seen.startsWith('data:image/png;base64,')).toBe(true);
    expect(createHash('sha256').update(Buffer.from(seen.slice('data:image/png;base64,'.length), 'base64')).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
  });
});

describe('4: --output is checked before the GPU works, and a received video is never lost', () => {
  it('a directory, a missing directory, /dev/full, a symlink: exit 2 before sending', async () => {
    handler = videoReply;
    mkdirSync(join(dir, 'sub'));
    symlinkSync(join(dir, 'elsewhere.mp4'), join(dir, 'link.mp4'));
    for (const [out, what] of [
      [join(dir, 'sub'), /is a directory/],
      [join(dir, 'missing', 'v.mp4'), /does not exist/],
      ['/dev/full', /not a regular file/],
      [join(dir, 'link.mp4'), /symbolic link[\s\S]*--force/],
    ] as const) {
      const r = await runCli(['request', '--job', 'vid', '--prompt', 'a cat', '--output', out], { env: env(), timeoutMs: 20_000 });
      expect(r.exitCode, `${out}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(what);
    }
    expect(requests).toBe(0);
    // --force replaces the link itself; the file it pointed to is never created.
    const forced = await runCli(['request', '--job', 'vid', '--prompt', 'a cat', '--output', join(dir, 'link.mp4'), '--force'], { env: env(), timeoutMs: 60_000 });
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(readFileSync(join(dir, 'link.mp4')).equals(VIDEO)).toBe(true);
    expect(existsSync(join(dir, 'elsewhere.mp4'))).toBe(false);
  });

  it('the video is decoded to the target through a temporary file; --json carries the path, not the base64', async () => {
    handler = videoReply;
    const out = join(dir, 'v.mp4');
    const r = await runCli(['request', '--job', 'vid', '--prompt', 'a cat', '--output', out, '--json'], { env: env(), timeoutMs: 60_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(out).equals(VIDEO)).toBe(true);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ saved_file: out, saved_bytes: VIDEO.length });
    expect(r.stdout.length).toBeLessThan(5000);
    expect(readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('when the target directory disappears while the GPU works, the video is saved under the default name and the path is said', async () => {
    const outDir = join(dir, 'out');
    mkdirSync(outDir);
    const cwd = join(dir, 'cwd');
    mkdirSync(cwd);
    handler = (req, body, res) => {
      rmSync(outDir, { recursive: true, force: true });
      videoReply(req, body, res);
    };
    const r = await runCli(['request', '--job', 'vid', '--prompt', 'a cat', '--output', join(outDir, 'v.mp4'), '--json'], { env: env(), timeoutMs: 60_000, cwd });
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.saved_file.startsWith(join(cwd, 'vid-'))).toBe(true);
    expect(readFileSync(doc.saved_file).equals(VIDEO)).toBe(true);
    expect(r.stderr).toMatch(/the video was saved to .*vid-.*\.mp4 instead/);
  });
});
