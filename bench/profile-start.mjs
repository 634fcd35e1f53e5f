// CPU profile of one `tao-infer start --no-wait` and one `tao-infer ls --json` (issue 9, "measure first").
// Runs the bin users run under `node --cpu-prof`, with a `docker` shim first on PATH that notes when each docker
// call starts, and prints per run: wall time, time until the first docker call, and where the sampled time went
// (self time grouped by package / source file, found through the bundle's source map; idle and GC apart). Each
// command runs once unprofiled first, so its code cache (src/cli/code-cache.ts, kept in the bench's own cache
// dir) is warm, as for a user after the first run. The .cpuprofile files are kept when KEEP_PROFILES=<dir> is set
// (open them in Chrome DevTools). Uses the stand-in image, a temp registry and a docker network of its own;
// removes its containers and network. Run under `flock /tmp/tao-itest.lock`.
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { BIN, ROOT, docker, fmt, removeContainers, timed } from './lib.mjs';

const IMAGE = process.env.BENCH_IMAGE ?? 'tao-infer-test/standin:latest';
const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;
const NET = `tao-bench-${RUN_ID}`;
const work = mkdtempSync(join(tmpdir(), 'tao-bench-prof-'));
const shimDir = join(work, 'bin');
const callLog = join(work, 'docker-calls.log');
const realDocker = (await timed('sh', ['-c', 'command -v docker'])).stdout.trim();

// The shim logs "<epoch ns> <args>" and execs the real docker (adds a few ms of sh start-up per call).
mkdirSync(shimDir, { recursive: true });
writeFileSync(join(shimDir, 'docker'), `#!/bin/sh\necho "$(date +%s%N) $*" >> '${callLog}'\nexec '${realDocker}' "$@"\n`);
chmodSync(join(shimDir, 'docker'), 0o755);

/** 'npm <package>' for a file in node_modules, else the path relative to the project. */
function sourceGroup(file) {
  if (file.includes('/node_modules/')) {
    const rest = file.split('/node_modules/').pop().split('/');
    return `npm ${rest.slice(0, rest[0].startsWith('@') ? 2 : 1).join('/')}`;
  }
  return relative(ROOT, file);
}

const sourceMaps = new Map();
/** The original source file of a position in a bundled file (through its `.map`), else the file itself. */
function originalSource(url, line, column) {
  const file = url.startsWith('file:') ? new URL(url).pathname : url;
  if (!sourceMaps.has(file)) sourceMaps.set(file, existsSync(`${file}.map`) ? new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8'))) : undefined);
  const entry = sourceMaps.get(file)?.findEntry(line, column);
  return entry?.originalSource ? (entry.originalSource.startsWith('file:') ? new URL(entry.originalSource).pathname : join(file, '..', entry.originalSource)) : file;
}

/** Self time per group: node_modules package, project source file, node internals, (idle), (garbage collector), (program). */
function summarize(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i]);
    const us = dt[i + 1] ?? 0;
    self.set(n, (self.get(n) ?? 0) + us);
  }
  const groups = new Map();
  for (const [n, us] of self) {
    const url = n.callFrame.url;
    let g;
    if (!url) g = n.callFrame.functionName.startsWith('(') ? n.callFrame.functionName : '(native)';
    else if (url.startsWith('node:')) g = url.includes('modules') ? 'node: module loader' : 'node: other internals';
    else g = sourceGroup(originalSource(url, n.callFrame.lineNumber, n.callFrame.columnNumber));
    groups.set(g, (groups.get(g) ?? 0) + us);
  }
  const total = [...groups.values()].reduce((a, b) => a + b, 0);
  return { total: total / 1000, groups: [...groups].sort((a, b) => b[1] - a[1]).map(([g, us]) => [g, us / 1000]) };
}

async function profiled(label, args, env) {
  // Unprofiled first: makes the command's code cache (and, for start, a service to remove).
  const warm = await timed(process.execPath, [BIN, ...args], { env });
  if (warm.code !== 0) throw new Error(`${label} exited ${warm.code}: ${warm.stdout}\n${warm.stderr}`);
  if (args[0] === 'start') jobs.push(JSON.parse(warm.stdout).job_id);
  const dir = join(work, label.replace(/\W+/g, '-'));
  rmSync(callLog, { force: true });
  const t0 = BigInt(Date.now()) * 1_000_000n;
  const r = await timed(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, BIN, ...args], { env: { ...env, PATH: `${shimDir}:${process.env.PATH}` } });
  if (r.code !== 0) throw new Error(`${label} exited ${r.code}: ${r.stdout}\n${r.stderr}`);
  let calls = [];
  try {
    calls = readFileSync(callLog, 'utf8').trim().split('\n').filter(Boolean).map((l) => ({ ms: Number(BigInt(l.split(' ')[0]) - t0) / 1e6, args: l.split(' ').slice(1, 4).join(' ') }));
  } catch {
    /* no docker call */
  }
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  const { total, groups } = summarize(JSON.parse(readFileSync(join(dir, file), 'utf8')));
  if (process.env.KEEP_PROFILES) cpSync(join(dir, file), join(process.env.KEEP_PROFILES, `${label.replace(/\W+/g, '-')}.cpuprofile`));
  console.log(`\n== ${label}: wall ${fmt(r.ms)} (with --cpu-prof), sampled ${fmt(total)}`);
  for (const c of calls) console.log(`   docker ${c.args.padEnd(28)} called at ${fmt(c.ms)}`);
  for (const [g, ms] of groups.slice(0, 14)) console.log(`   ${fmt(ms)}  ${g}`);
  return r;
}

const jobs = [];
async function cleanup() {
  if (jobs.length) await removeContainers(jobs);
  await timed('docker', ['network', 'rm', NET]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(sig, () => void cleanup().finally(() => process.exit(130)));

try {
  await docker(['network', 'create', '--label', `tao-infer.bench=${RUN_ID}`, NET]);
  const env = { ...process.env, CI: 'true', NO_COLOR: '1', TAO_INF_STATE_FILE: join(work, 'state.json'), IMAGE_COSMOS_RL: IMAGE, XDG_CACHE_HOME: join(work, 'cache') };
  console.log(`tao-infer bin: ${BIN}`);
  const r = await profiled('start --no-wait', ['start', '--arch', 'cosmos-rl', '--model', '/models/bench', '--num-gpus', '0', '--no-wait', '--yes', '--json', '--docker-network', NET], env);
  jobs.push(JSON.parse(r.stdout).job_id);
  await profiled('ls --json (2 entries)', ['ls', '--json'], env);
  await profiled('--help', ['--help'], env);
} finally {
  await cleanup();
}
