// Benchmark: N concurrent "starts" against one registry file. Each child process does what
// `tao-infer start` does to the registry (reserve an entry and a host port under the lock, then
// record the launched fields) without launching anything, and reports its lock statistics.
// Prints wall time, lock waits, and checks that every entry survived with a distinct port.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const N = Number(process.env.N ?? 32);
const file = join(mkdtempSync(join(tmpdir(), 'tao-bench-')), 'state.json');
const worker = resolve(import.meta.dirname, 'registry-worker.mjs');

const t0 = Date.now();
const results = await Promise.all(
  Array.from({ length: N }, (_, i) =>
    new Promise((res, rej) => {
      const c = spawn(process.execPath, [worker, file, String(i)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.on('exit', (code) => (code === 0 ? res(JSON.parse(out)) : rej(new Error(`worker ${i} exited ${code}`))));
    }),
  ),
);
const wall = Date.now() - t0;
const reg = JSON.parse(readFileSync(file, 'utf8'));
const entries = Object.keys(reg).filter((k) => k !== 'latest');
const ports = new Set(entries.map((k) => reg[k].host_port));
const contended = results.reduce((a, r) => a + r.contended, 0);
const acquisitions = results.reduce((a, r) => a + r.acquisitions, 0);
const waitMs = results.reduce((a, r) => a + r.totalWaitMs, 0);
const maxWait = Math.max(...results.map((r) => r.totalWaitMs));
console.log(`concurrent starts:         ${N}`);
console.log(`wall time:                 ${wall} ms`);
console.log(`lock acquisitions:         ${acquisitions} (${contended} had to wait)`);
console.log(`lock wait total / mean:    ${waitMs} ms / ${(waitMs / acquisitions).toFixed(1)} ms per acquisition`);
console.log(`longest wait in one start: ${maxWait} ms`);
console.log(`entries kept:              ${entries.length}/${N}, distinct ports: ${ports.size}`);
if (entries.length !== N || ports.size !== N) {
  console.error('LOST ENTRIES OR DUPLICATE PORTS');
  process.exit(1);
}
