// Benchmark: what `tao-infer start --no-wait` costs over a bare `docker run -d` of the same image (issue 9, Targets).
// Measured side by side in one run, each figure a median:
//   1. one `start --no-wait` vs one bare `docker run -d` with the same flags (alternating, RUNS pairs);
//   2. N (default 20) concurrent `start --no-wait` on one registry vs N concurrent bare `docker run -d` (ROUNDS
//      rounds); checks that all N entries are kept with distinct host ports;
//   3. `ls --json` with 10 entries (real containers from round 2) and `--help`, each vs `node -e 0`.
// Uses the local stand-in image (test/fixtures/build-test-image.sh) with --num-gpus 0, as scripts/lifecycle-smoke.sh
// does, a docker network of its own, a temp registry (TAO_INF_STATE_FILE) per run and temp dirs. Bare containers
// carry the label tao-infer.bench=<run id>; tao-infer's carry tao-infer.job_id=<job_id>; every container, the
// network and the temp dir are removed at the end, also on Ctrl-C. Docker is shared: run under
// `flock /tmp/tao-itest.lock`. Exit 1 when entries were lost or ports repeated; the ratios are only printed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ROOT, containersWithLabel, docker, fmt, freePorts, median, ratio, removeContainers, timed } from './lib.mjs';

const RUNS = Number(process.env.RUNS ?? 7);
const N = Number(process.env.N ?? 20);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const LS_RUNS = Number(process.env.LS_RUNS ?? 21);
const IMAGE = process.env.BENCH_IMAGE ?? 'tao-infer-test/standin:latest';
const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;
const BENCH_LABEL = `tao-infer.bench=${RUN_ID}`;
const NET = `tao-bench-${RUN_ID}`;
const work = mkdtempSync(join(tmpdir(), 'tao-bench-start-'));
const jobIds = new Set();
let stateSeq = 0;

function freshState() {
  return join(work, `state-${stateSeq++}.json`);
}

// The bin's code cache (src/cli/code-cache.ts) lives in the bench's own cache dir: cold at first, made by the
// first (uncounted) runs, as on a user's machine after the first run of each command.
const CACHE_HOME = join(work, 'cache');

function cliEnv(stateFile, extra = {}) {
  return { ...process.env, CI: 'true', NO_COLOR: '1', TAO_INF_STATE_FILE: stateFile, IMAGE_COSMOS_RL: IMAGE, XDG_CACHE_HOME: CACHE_HOME, ...extra };
}

const START_ARGS = ['start', '--arch', 'cosmos-rl', '--model', '/models/bench', '--num-gpus', '0', '--no-wait', '--yes', '--json', '--docker-network', NET];

async function startTao(stateFile) {
  const r = await timed(process.execPath, [BIN, ...START_ARGS], { env: cliEnv(stateFile) });
  let out;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    /* reported below */
  }
  const id = out?.job_id;
  if (id) jobIds.add(id);
  if (r.code !== 0 || !id) throw new Error(`tao-infer start exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return { ms: r.ms, job_id: id };
}

// The same docker argv tao-infer runs (from its --dry-run plan), with a bench name, label and port.
let dockerTemplate;
function bareArgs(port) {
  const name = `tao-bench-${RUN_ID}-${port}`;
  return dockerTemplate.map((a, i, all) => {
    if (all[i - 1] === '--name') return name;
    if (all[i - 1] === '-p') return `127.0.0.1:${port}:8080`;
    if (all[i - 1] === '--label' && a.startsWith('tao-infer.managed-by=')) return BENCH_LABEL;
    return a;
  });
}

async function runBare(port) {
  const r = await timed('docker', bareArgs(port));
  if (r.code !== 0) throw new Error(`docker run exited ${r.code}: ${r.stderr}`);
  return r.ms;
}

/** The floor for any Node CLI that starts the service: a Node process that only runs the same `docker run -d`. */
async function runFloor(port) {
  const r = await timed(process.execPath, ['-e', `require('node:child_process').execFileSync('docker', ${JSON.stringify(bareArgs(port))}, { stdio: 'ignore' })`]);
  if (r.code !== 0) throw new Error(`node + docker run exited ${r.code}: ${r.stderr}`);
  return r.ms;
}

async function cleanupAll() {
  for (const f of readdirSync(work).filter((n) => n.endsWith('.json'))) {
    try {
      for (const [k, v] of Object.entries(JSON.parse(readFileSync(join(work, f), 'utf8')))) if (k !== 'latest' && v?.job_id) jobIds.add(v.job_id);
    } catch {
      /* a registry being written: its ids are in jobIds already */
    }
  }
  await removeContainers([...jobIds, ...(await containersWithLabel(BENCH_LABEL).catch(() => []))]);
  jobIds.clear();
}

async function finish(code) {
  await cleanupAll().catch((e) => console.error(`cleanup: ${e.message}`));
  await timed('docker', ['network', 'rm', NET]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
  process.exit(code);
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(sig, () => void finish(130));

async function main() {
  await docker(['image', 'inspect', IMAGE]).catch(() => {
    console.log(`building ${IMAGE} (test/fixtures/build-test-image.sh)`);
    execFileSync('bash', [join(ROOT, 'test/fixtures/build-test-image.sh')], { stdio: 'inherit' });
  });
  await docker(['network', 'create', '--label', BENCH_LABEL, NET]);
  const plan = JSON.parse((await timed(process.execPath, [BIN, ...START_ARGS, '--dry-run'], { env: cliEnv(freshState()) })).stdout);
  dockerTemplate = plan.plan.steps.find((s) => Array.isArray(s.command) && s.command[1] === 'run').command.slice(1);

  console.log(`tao-infer bin: ${BIN}`);
  console.log(`image ${IMAGE}, --num-gpus 0, network ${NET}; machine shared: run it twice and compare`);

  // 1. one start vs one docker run, alternating; the first pair warms caches and is not counted.
  const tao = [];
  const bare = [];
  const floor = [];
  for (let i = 0; i <= RUNS; i++) {
    const [port, port2] = await freePorts(2);
    const a = await startTao(freshState());
    const b = await runBare(port);
    const f = await runFloor(port2);
    if (i > 0) {
      tao.push(a.ms);
      bare.push(b);
      floor.push(f);
    }
    await cleanupAll();
  }
  const t1 = median(tao);
  const b1 = median(bare);
  const f1 = median(floor);

  // 2. N concurrent, ROUNDS rounds; 3. ls/--help on 10 entries of the last round's registry.
  const taoN = [];
  const bareN = [];
  let kept = '';
  let failed = false;
  let ls;
  for (let round = 0; round < ROUNDS; round++) {
    const state = freshState();
    const t0 = performance.now();
    const results = await Promise.allSettled(Array.from({ length: N }, () => startTao(state)));
    taoN.push(performance.now() - t0);
    const errors = results.filter((r) => r.status === 'rejected');
    const reg = JSON.parse(readFileSync(state, 'utf8'));
    const entries = Object.entries(reg).filter(([k]) => k !== 'latest').map(([, v]) => v);
    const ports = new Set(entries.map((e) => e.host_port));
    kept = `entries kept ${entries.length}/${N}, distinct ports ${ports.size}, failed starts ${errors.length}`;
    if (errors.length || entries.length !== N || ports.size !== N) {
      failed = true;
      for (const e of errors.slice(0, 3)) console.error(String(e.reason?.message ?? e.reason).slice(0, 600));
    }
    if (round === ROUNDS - 1 && entries.length >= 10) ls = await lsBench(reg);
    await cleanupAll();

    const ports2 = await freePorts(N);
    const t1b = performance.now();
    await Promise.all(ports2.map((p) => runBare(p)));
    bareN.push(performance.now() - t1b);
    await cleanupAll();
  }
  const tN = median(taoN);
  const bN = median(bareN);

  console.log('');
  console.log(`start --no-wait, median of ${RUNS}:     tao-infer ${fmt(t1)}   docker run -d ${fmt(b1)}   ratio ${ratio(t1, b1)}  (target <= 1.3x)`);
  console.log(`  floor: node running the same docker run ${fmt(f1)}   ratio ${ratio(f1, b1)} (the least a Node CLI pays; tao-infer's own work is the rest)`);
  console.log(`${N} concurrent, median of ${ROUNDS} rounds:  tao-infer ${fmt(tN)}   docker run -d ${fmt(bN)}   ratio ${ratio(tN, bN)}  (target <= 1.5x)`);
  console.log(`  ${kept}`);
  if (ls) {
    console.log(`ls --json (10 entries), median of ${LS_RUNS}: tao-infer ${fmt(ls.ls)}   node -e 0     ${fmt(ls.base)}   ratio ${ratio(ls.ls, ls.base)}  (target <= 1.3x)`);
    if (ls.floor !== undefined)
      console.log(`  floor: node + one Engine API list call ${fmt(ls.floor)}   ratio ${ratio(ls.floor, ls.base)} (no Node program that asks docker for live state is below this)`);
    console.log(`--help, median of ${LS_RUNS}:               tao-infer ${fmt(ls.help)}   node -e 0     ${fmt(ls.base)}   ratio ${ratio(ls.help, ls.base)}  (target <= 1.3x)`);
  }
  if (failed) console.error('LOST ENTRIES, DUPLICATE PORTS OR FAILED STARTS');
  return failed ? 1 : 0;
}

/**
 * The floor for any `ls` that shows live state from docker: a Node process that does nothing but one Engine API
 * list call on the local socket and prints the answer (no CLI parsing, no registry, no modules of ours).
 */
const ENGINE_FLOOR = `require('node:http').request({ socketPath: '/var/run/docker.sock', path: '/containers/json?all=1' }, (r) => r.pipe(process.stdout)).end()`;

/** `ls --json` on a registry of 10 running services, `--help`, `node -e 0` and the Engine API floor, interleaved. */
async function lsBench(reg) {
  const ids = Object.keys(reg).filter((k) => k !== 'latest').slice(0, 10);
  const file = freshState();
  writeFileSync(file, JSON.stringify({ ...Object.fromEntries(ids.map((k) => [k, reg[k]])), latest: ids[ids.length - 1] }, null, 2));
  const env = cliEnv(file);
  const base = [];
  const ls = [];
  const help = [];
  const floor = [];
  for (let i = 0; i <= LS_RUNS; i++) {
    const b = await timed(process.execPath, ['-e', '0'], { env });
    const l = await timed(process.execPath, [BIN, 'ls', '--json'], { env });
    const h = await timed(process.execPath, [BIN, '--help'], { env });
    const f = await timed(process.execPath, ['-e', ENGINE_FLOOR], { env });
    if (l.code !== 0 || JSON.parse(l.stdout).length !== 10) throw new Error(`ls --json failed (${l.code}): ${l.stdout} ${l.stderr}`);
    if (i === 0) continue;
    base.push(b.ms);
    ls.push(l.ms);
    help.push(h.ms);
    if (f.code === 0) floor.push(f.ms);
  }
  return { base: median(base), ls: median(ls), help: median(help), floor: floor.length ? median(floor) : undefined };
}

main().then(finish, (e) => {
  console.error(e?.stack ?? e);
  return finish(1);
});
