// CPU profile of one `tao-infer start --no-wait` and one `tao-infer ls --json` (issue 9, "measure first").
// Runs the bin users run under `node --cpu-prof`, with a `docker` shim first on PATH that notes when each docker
// call starts, and prints per run: wall time, time until the first docker call, and where the sampled time went
// (self time grouped by package / source file; idle and GC apart). The .cpuprofile files are kept when
// KEEP_PROFILES=<dir> is set (open them in Chrome DevTools). Uses the stand-in image, a temp registry and a
// docker network of its own; removes its container and network. Run under `flock /tmp/tao-itest.lock`.
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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
    else if (url.includes('/node_modules/')) g = 'npm ' + url.split('/node_modules/').pop().split('/').slice(0, url.split('/node_modules/').pop().startsWith('@') ? 2 : 1).join('/');
    else g = relative(ROOT, new URL(url).pathname);
    groups.set(g, (groups.get(g) ?? 0) + us);
  }
  const total = [...groups.values()].reduce((a, b) => a + b, 0);
  return { total: total / 1000, groups: [...groups].sort((a, b) => b[1] - a[1]).map(([g, us]) => [g, us / 1000]) };
}

async function profiled(label, args, env) {
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

let job;
async function cleanup() {
  if (job) await removeContainers([job]);
  await timed('docker', ['network', 'rm', NET]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(sig, () => void cleanup().finally(() => process.exit(130)));

try {
  await docker(['network', 'create', '--label', `tao-infer.bench=${RUN_ID}`, NET]);
  const env = { ...process.env, CI: 'true', NO_COLOR: '1', TAO_INF_STATE_FILE: join(work, 'state.json'), IMAGE_COSMOS_RL: IMAGE };
  console.log(`tao-infer bin: ${BIN}`);
  const r = await profiled('start --no-wait', ['start', '--arch', 'cosmos-rl', '--model', '/models/bench', '--num-gpus', '0', '--no-wait', '--yes', '--json', '--docker-network', NET], env);
  job = JSON.parse(r.stdout).job_id;
  await profiled('ls --json (1 entry)', ['ls', '--json'], env);
  await profiled('--help', ['--help'], env);
} finally {
  await cleanup();
}
