// Shared helpers of the benchmarks in bench/: the CLI bin users run (package.json `bin`), child-process timing,
// medians, free loopback ports, and cleanup of every docker object a benchmark created.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

// Output piped into `head` must not kill a benchmark before it removes its containers (EPIPE on a closed pipe).
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);

export const ROOT = resolve(import.meta.dirname, '..');
/** The `tao-infer` bin from package.json (the file `npm install -g` links), absolute. */
export const BIN = join(ROOT, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).bin['tao-infer']);

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

/**
 * Run `file args` to completion; resolves {ms, code, stdout, stderr}. Killed after `timeoutMs` (default 120 s),
 * then `code` is null.
 */
export function timed(file, args, { env = process.env, timeoutMs = 120_000 } = {}) {
  return new Promise((res, rej) => {
    const t0 = process.hrtime.bigint();
    const c = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('error', (e) => {
      clearTimeout(timer);
      rej(e);
    });
    c.on('close', (code) => {
      clearTimeout(timer);
      res({ ms: Number(process.hrtime.bigint() - t0) / 1e6, code, stdout, stderr });
    });
  });
}

/** `docker args`, rejecting on a non-zero exit (used for setup and cleanup, not timed). */
export async function docker(args, opts) {
  const r = await timed('docker', args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** `n` distinct loopback ports that are free right now (all held open together while picking, then released). */
export async function freePorts(n) {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen({ port: 0, host: '127.0.0.1' }, () => res(s));
    })),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Remove containers by name or id, in batches; missing ones are ignored. */
export async function removeContainers(names) {
  const list = [...new Set(names)].filter(Boolean);
  for (let i = 0; i < list.length; i += 25) await timed('docker', ['rm', '-f', ...list.slice(i, i + 25)], { timeoutMs: 120_000 });
}

/** Ids of every container (running or not) carrying `label` (key=value). */
export async function containersWithLabel(label) {
  const out = await docker(['ps', '-aq', '--filter', `label=${label}`]);
  return out.split('\n').filter(Boolean);
}

export const fmt = (ms) => `${ms.toFixed(0).padStart(6)} ms`;
export const ratio = (a, b) => `${(a / b).toFixed(2)}x`;
