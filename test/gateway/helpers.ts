/**
 * Shared pieces of the gateway tests: stand-in TAO services on loopback (test/fixtures/standin, the
 * contract-faithful fake of §6–§7), a registry written through the real Registry code (as the CLI does),
 * an OpenAI-style streaming upstream, and a gateway started in-process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli.js';
import { Registry } from '../../src/registry/store.js';
import { startGateway, type GatewayOptions } from '../../src/index.js';
import type { RegistryEntry } from '../../src/types.js';

const STANDIN = join(ROOT, 'test/fixtures/standin/standin.mjs');

/** A port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export interface Standin {
  job_id: string;
  network_arch: string;
  host_url: string;
  proc: ChildProcess;
  /** Everything the stand-in printed. */
  output: () => string;
  kill: () => void;
}

/** Run the stand-in for `arch` on a free loopback port; resolves once it listens (it may still be loading). */
export async function startStandin(arch: 'cosmos-rl' | 'tao-dataservices', env: Record<string, string> = {}): Promise<Standin> {
  const port = await freePort();
  const job_id = randomUUID();
  const job = JSON.stringify({ job_id, specs: { model_path: '/models/m' }, neural_network_name: arch });
  const denv = JSON.stringify({ TAO_EXECUTION_BACKEND: 'local-docker', TAO_API_JOB_ID: job_id, CLOUD_BASED: 'False' });
  const args =
    arch === 'cosmos-rl'
      ? ['cosmos-rl', '--job', job, '--docker_env_vars', denv]
      : ['python', '-m', 'nvidia_tao_core.microservices.handlers.huggingface_inference_microservice_server', '--port', String(port), '--job', job, '--docker_env_vars', denv];
  const proc = spawn(process.execPath, [STANDIN, ...args], {
    env: { ...process.env, STANDIN_HOST: '127.0.0.1', STANDIN_PORT: String(port), STANDIN_LOAD_MS: '0', STANDIN_EXIT_WITH_PARENT: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c) => (out += c));
  proc.stderr!.on('data', (c) => (out += c));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`stand-in did not listen: ${out}`)), 10_000);
    const check = () => {
      if (out.includes('listening on')) {
        clearTimeout(t);
        resolve();
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', () => reject(new Error(`stand-in exited: ${out}`)));
  });
  return { job_id, network_arch: arch, host_url: `http://127.0.0.1:${port}`, proc, output: () => out, kill: () => proc.kill('SIGKILL') };
}

/** A registry entry for a service on loopback. */
export function entryFor(s: { job_id: string; network_arch: string; host_url: string }, extra: Partial<RegistryEntry> = {}): RegistryEntry {
  return { job_id: s.job_id, platform: 'local-docker', network_arch: s.network_arch, host_url: s.host_url, started_at: new Date().toISOString(), state: 'started', ...extra };
}

/** A temp dir with a registry file, written through the real Registry (lock + atomic rename, like the CLI). */
export class TestRegistry {
  readonly dir = mkdtempSync(join(tmpdir(), 'tao-gateway-test-'));
  readonly file = join(this.dir, 'state.json');
  readonly registry = new Registry(this.file);

  async add(...entries: RegistryEntry[]): Promise<void> {
    await this.registry.mutate((s) => {
      for (const e of entries) {
        s.entries[e.job_id] = e;
        s.latest = e.job_id;
      }
    });
  }

  async remove(job_id: string): Promise<void> {
    await this.registry.remove(job_id);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Start a gateway on a free loopback port over `reg` with quick probing. */
export async function gatewayOver(reg: TestRegistry, o: GatewayOptions = {}) {
  const warnings: string[] = [];
  const gw = await startGateway({ port: 0, stateFile: reg.file, probeIntervalS: 0.3, registryPollS: 0.2, drainTimeoutS: 2, onWarning: (m) => warnings.push(m), ...o });
  return { ...gw, warnings };
}

/** POST a JSON body; returns status, parsed body and headers. */
export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, json, headers: res.headers };
}

export const userMsg = (text: string, media?: { kind: 'image_url' | 'video_url'; url: string }) => [
  { role: 'user', content: media ? [{ type: 'text', text }, { type: media.kind, [media.kind]: { url: media.url } }] : text },
];

export interface StreamingUpstream {
  job_id: string;
  network_arch: string;
  host_url: string;
  /** Requests received (headers only). */
  requests: IncomingMessage[];
  /** How many request bodies arrived complete. */
  bodies: { count: number };
  /** Let the current stream send its remaining chunks. */
  release: () => void;
  /** Resolves when the upstream saw its client (the gateway) go away before the stream ended. */
  aborted: Promise<void>;
  close: () => Promise<void>;
}

/**
 * An OpenAI-compatible streaming upstream (readiness 200 per contract §6). With `stream: true` it answers
 * `text/event-stream` the way vLLM's OpenAI server does (vllm-project/vllm
 * vllm/entrypoints/openai/serving_chat.py @003fe593, chat_completion_stream_generator: a first chunk with
 * `delta: {role, content: ""}`, then `data: <chat.completion.chunk JSON>\n\n` per delta, then
 * `data: [DONE]\n\n`): the role chunk and a first content chunk at once, the rest only after release().
 */
export async function startStreamingUpstream(network_arch = 'tao-dataservices'): Promise<StreamingUpstream> {
  const requests: IncomingMessage[] = [];
  const bodies = { count: 0 };
  let release = () => {};
  let onAbort = () => {};
  const aborted = new Promise<void>((r) => (onAbort = r));
  const server: Server = createServer(async (req, res) => {
    if (req.url === '/api/v1/health/readiness') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}');
    requests.push(req);
    let raw = '';
    try {
      for await (const c of req) raw += c;
    } catch {
      return; // the gateway cut the body off
    }
    bodies.count++;
    const body = JSON.parse(raw);
    const id = `chatcmpl-${randomUUID()}`;
    const chunk = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: network_arch, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    if (!body.stream) {
      const data = JSON.stringify({ id, object: 'chat.completion', created: 0, model: network_arch, choices: [{ index: 0, message: { role: 'assistant', content: 'whole reply' }, finish_reason: 'stop' }] });
      return res.writeHead(200, { 'content-type': 'application/json' }).end(data);
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(chunk({ role: 'assistant', content: '' }));
    res.write(chunk({ content: 'first ' }));
    res.on('close', () => {
      if (!res.writableFinished) onAbort();
    });
    await new Promise<void>((r) => (release = r));
    if (res.destroyed) return;
    res.write(chunk({ content: 'second' }));
    res.write(chunk({}, 'stop'));
    res.end('data: [DONE]\n\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    job_id: randomUUID(),
    network_arch,
    host_url: `http://127.0.0.1:${port}`,
    requests,
    bodies,
    release: () => release(),
    aborted,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
