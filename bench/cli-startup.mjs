// Benchmark: start-up cost of `tao-infer ls --json` (empty registry) and `--help` against `node -e 0`.
// Prints the median of repeated runs of each and their ratio, with the bin's code cache (src/cli/code-cache.ts, in
// the bench's own cache dir, made by the first run) and without it (TAO_INF_CODE_CACHE=0, as on a first run).
// Run after `npm run build`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 21);
const cli = BIN; // the bin users run (package.json `bin`)
const work = mkdtempSync(join(tmpdir(), 'tao-bench-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
let env = { ...process.env, TAO_INF_STATE_FILE: join(work, 'state.json'), XDG_CACHE_HOME: join(work, 'cache'), CI: 'true' };

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
function time(args) {
  const out = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    execFileSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(out);
}
time(['-e', '0']); // warm the file cache
const base = time(['-e', '0']);
const ls = time([cli, 'ls', '--json']);
const help = time([cli, '--help']);
console.log(`runs per command: ${RUNS}`);
console.log(`node -e 0                 median ${base.toFixed(1)} ms`);
console.log(`tao-infer ls --json       median ${ls.toFixed(1)} ms   ratio ${(ls / base).toFixed(2)}x`);
console.log(`tao-infer --help          median ${help.toFixed(1)} ms   ratio ${(help / base).toFixed(2)}x`);
env = { ...env, TAO_INF_CODE_CACHE: '0' };
const lsCold = time([cli, 'ls', '--json']);
const helpCold = time([cli, '--help']);
console.log(`without the code cache: ls --json ${lsCold.toFixed(1)} ms (${(lsCold / base).toFixed(2)}x), --help ${helpCold.toFixed(1)} ms (${(helpCold / base).toFixed(2)}x)`);
