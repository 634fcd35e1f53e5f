// The pure parts of the local-docker image pull (src/platforms/local-docker/pull.ts) and the opt-in NGC run flags.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { lineReporter } from '../../src/cli/io.js';
import { dockerRunArgs } from '../../src/platforms/docker-cli.js';
import { humanBytes, ngcRegistry, parseImageRef, pullOnce, PullProgress, storedAuth } from '../../src/platforms/local-docker/pull.js';
import type { LaunchSpec } from '../../src/types.js';

const tmp = mkdtempSync(join(tmpdir(), 'tao-infer-pull-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('image references as the docker CLI splits them', () => {
  it('registry, repository and tag', () => {
    expect(parseImageRef('nvcr.io/nvidia/tao/tao-toolkit:6.25.9-pyt')).toEqual({ registry: 'nvcr.io', repository: 'nvcr.io/nvidia/tao/tao-toolkit', tag: '6.25.9-pyt' });
    expect(parseImageRef('127.0.0.1:5000/a/b')).toEqual({ registry: '127.0.0.1:5000', repository: '127.0.0.1:5000/a/b', tag: 'latest' });
    expect(parseImageRef('ubuntu:22.04')).toEqual({ registry: 'docker.io', repository: 'ubuntu', tag: '22.04' });
    expect(parseImageRef('tao-infer-test/standin:latest').registry).toBe('docker.io');
    expect(parseImageRef('localhost/x@sha256:abc')).toEqual({ registry: 'localhost', repository: 'localhost/x', tag: 'sha256:abc' });
  });
  it('NGC_KEY logs in to nvcr.io unless TAO_NGC_REGISTRY names another host', () => {
    expect(ngcRegistry({})).toBe('nvcr.io');
    expect(ngcRegistry({ TAO_NGC_REGISTRY: '127.0.0.1:5000' })).toBe('127.0.0.1:5000');
  });
});

describe('pull progress', () => {
  it('layers done / total, bytes and rate from the daemon messages; the tag line is not a layer', () => {
    let now = 0;
    const p = new PullProgress('nvcr.io/x:1', () => now);
    p.update({ status: 'Pulling from x', id: 'abcdef012345' });
    p.update({ status: 'Already exists', id: 'aaaaaaaaaaaa' });
    expect(p.update({ status: 'Pulling fs layer', id: 'bbbbbbbbbbbb' })).toBe(false);
    p.update({ status: 'Downloading', id: 'bbbbbbbbbbbb', progressDetail: { current: 500_000_000, total: 2_000_000_000 } });
    p.update({ status: 'Downloading', id: 'cccccccccccc', progressDetail: { current: 0, total: 1_000_000_000 } });
    now = 10_000;
    expect(p.line()).toBe('pulling nvcr.io/x:1: 1/3 layers, 500.0 MB / 3.00 GB, 50.0 MB/s');
    p.update({ status: 'Download complete', id: 'bbbbbbbbbbbb' });
    expect(p.update({ status: 'Pull complete', id: 'bbbbbbbbbbbb' })).toBe(true);
    expect(p.update({ status: 'Pull complete', id: 'bbbbbbbbbbbb' })).toBe(false);
    expect(p.figures()).toMatchObject({ layersDone: 2, layers: 3, bytes: 2_000_000_000, totalBytes: 3_000_000_000 });
  });
  it('sizes in decimal units, as docker prints them', () => {
    expect(humanBytes(999)).toBe('999 B');
    expect(humanBytes(1500)).toBe('1.50 kB');
    expect(humanBytes(12_300_000_000)).toBe('12.3 GB');
  });
});

describe('stored registry credentials (docker config.json)', () => {
  it('auths[registry].auth (base64 user:password)', async () => {
    const dir = join(tmp, 'plain');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: { 'nvcr.io': { auth: Buffer.from('$oauthtoken:k3y:with:colons').toString('base64') } } }));
    expect(await storedAuth('nvcr.io', { DOCKER_CONFIG: dir })).toEqual({ username: '$oauthtoken', password: 'k3y:with:colons', serveraddress: 'nvcr.io' });
    expect(await storedAuth('other.io', { DOCKER_CONFIG: dir })).toBeUndefined();
    expect(await storedAuth('nvcr.io', { DOCKER_CONFIG: join(tmp, 'missing') })).toBeUndefined();
  });
  it('a credential helper (credHelpers before credsStore): registry on stdin, {Username, Secret} out', async () => {
    const dir = join(tmp, 'helper');
    const bin = join(tmp, 'bin');
    mkdirSync(dir);
    mkdirSync(bin);
    writeFileSync(join(bin, 'docker-credential-fake'), '#!/bin/sh\nread reg\n[ "$1" = get ] && [ "$reg" = nvcr.io ] && echo \'{"ServerURL":"nvcr.io","Username":"$oauthtoken","Secret":"from-helper"}\' && exit 0\necho "credentials not found" >&2; exit 1\n');
    chmodSync(join(bin, 'docker-credential-fake'), 0o755);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ credsStore: 'missing-store', credHelpers: { 'nvcr.io': 'fake' }, auths: { 'nvcr.io': {} } }));
    const env = { DOCKER_CONFIG: dir, PATH: `${bin}:${process.env.PATH}` };
    expect(await storedAuth('nvcr.io', env)).toEqual({ username: '$oauthtoken', password: 'from-helper', serveraddress: 'nvcr.io' });
  });
});

describe('opt-in NGC container flags on docker run', () => {
  const spec = { job_id: 'j1', image: 'img:1', inner_command: 'true', num_gpus: 1, container_port: 8080, bind_address: '127.0.0.1', host_port: 18080, env: { secretNames: [], plain: {} }, shm_size: '16g', labels: {}, options: {} } as unknown as LaunchSpec;
  it('default: --shm-size, no ulimits, no --ipc', () => {
    const a = dockerRunArgs(spec, { network: 'n' });
    expect(a).toContain('--shm-size');
    expect(a).not.toContain('--ipc');
    expect(a).not.toContain('--ulimit');
  });
  it('--ipc-host replaces --shm-size; --ulimit-memlock adds memlock=-1 and stack=67108864', () => {
    const a = dockerRunArgs(spec, { network: 'n', ipcHost: true, ulimitMemlock: true });
    expect(a.join(' ')).toContain('--ipc host --ulimit memlock=-1 --ulimit stack=67108864');
    expect(a).not.toContain('--shm-size');
  });
});

describe('progress lines on stderr', () => {
  const capture = (tty: boolean, fn: () => void): string => {
    const out: string[] = [];
    const had = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
    Object.defineProperty(process.stderr, 'isTTY', { value: tty, configurable: true });
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => (out.push(String(c)), true));
    try {
      fn();
    } finally {
      spy.mockRestore();
      if (had) Object.defineProperty(process.stderr, 'isTTY', had);
      else delete (process.stderr as { isTTY?: boolean }).isTTY;
    }
    return out.join('');
  };
  it('a TTY gets one line redrawn in place, ended by done()', () => {
    const text = capture(true, () => {
      const r = lineReporter();
      r.line('pulling x: 0/2 layers', false);
      r.line('pulling x: 1/2 layers', true);
      r.done();
    });
    expect(text).toBe('\r\x1b[2Kpulling x: 0/2 layers\r\x1b[2Kpulling x: 1/2 layers\n');
  });
  it('otherwise plain lines: the important ones, and others at most every 10 s', () => {
    const text = capture(false, () => {
      const r = lineReporter();
      r.line('a', false);
      r.line('b', false);
      r.line('c', true);
      r.done();
    });
    expect(text).toBe('a\nc\n');
  });
});

describe('the Engine API pull against a fake daemon socket (DOCKER_HOST=unix://...)', () => {
  const sock = join(tmp, 'docker.sock');
  let mode: 'ok' | 'error' | 'stall' = 'ok';
  const seen: { url: string; auth?: string }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', auth: req.headers['x-registry-auth'] as string | undefined });
    res.writeHead(200, { 'content-type': 'application/json' });
    const send = (o: object) => res.write(`${JSON.stringify(o)}\r\n`);
    send({ status: 'Pulling from a/b', id: '1.0' });
    send({ status: 'Pulling fs layer', id: 'aaaaaaaaaaaa' });
    if (mode === 'stall') return; // says nothing more, keeps the connection open
    send({ status: 'Downloading', id: 'aaaaaaaaaaaa', progressDetail: { current: 1000, total: 2000 } });
    if (mode === 'error') {
      send({ errorDetail: { message: 'unauthorized: authentication required' }, error: 'unauthorized: authentication required' });
      return void res.end();
    }
    send({ status: 'Pull complete', id: 'aaaaaaaaaaaa' });
    res.end();
  });
  const before = process.env.DOCKER_HOST;
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(sock, () => r()));
    process.env.DOCKER_HOST = `unix://${sock}`;
  });
  afterAll(async () => {
    if (before === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = before;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const ref = parseImageRef('reg.example:5000/a/b:1.0');

  it('sends fromImage/tag and X-Registry-Auth, reports progress, resolves on success', async () => {
    mode = 'ok';
    const lines: Array<[string, boolean]> = [];
    const r = await pullOnce(ref, 'reg.example:5000/a/b:1.0', { username: 'u', password: 'p', serveraddress: 'reg.example:5000' }, { env: {}, log: () => undefined, progress: (l, i) => lines.push([l, i]) });
    expect(r).toBeUndefined();
    const last = seen[seen.length - 1]!;
    expect(last.url).toMatch(/\/images\/create\?fromImage=reg\.example%3A5000%2Fa%2Fb&tag=1\.0$/);
    expect(JSON.parse(Buffer.from(last.auth!.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString())).toEqual({ username: 'u', password: 'p', serveraddress: 'reg.example:5000' });
    const [text, important] = lines[lines.length - 1]!;
    expect(text).toMatch(/^pulling reg\.example:5000\/a\/b:1\.0: 1\/1 layers, 2\.00 kB \/ 2\.00 kB, [\d.]+ k?B\/s$/);
    expect(important).toBe(true);
  });
  it('an error message in the stream is the result', async () => {
    mode = 'error';
    expect(await pullOnce(ref, 'x', undefined, { env: {}, log: () => undefined })).toBe('unauthorized: authentication required');
  });
  it('a daemon that goes quiet is given up after stallMs', async () => {
    mode = 'stall';
    const t0 = Date.now();
    expect(await pullOnce(ref, 'x', undefined, { env: {}, log: () => undefined, stallMs: 400 })).toMatch(/no answer from the Docker daemon for 0 s/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});
