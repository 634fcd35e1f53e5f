// Benchmark: `tao-infer gateway` side by side with direct requests to the stand-in TAO service
// (test/fixtures/standin) on loopback, in one run (issue 12 targets). Run after `npm run build`:
//   node bench/gateway.mjs                 short run (about a minute)
//   node bench/gateway.mjs --soak-min 10   adds a 10-minute mixed-traffic soak with RSS samples
// Env: SEQ (sequential requests per side, default 2000), CONC_S (seconds per throughput run, default 5).
// Prints figures and ratios; it does not assert. The gateway runs as its own process (the built CLI) so its
// RSS is read alone from /proc/<pid>/status (VmRSS now, VmHWM peak).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist/src/cli/main.js');
const STANDIN = join(ROOT, 'test/fixtures/standin/standin.mjs');
const SEQ = Number(process.env.SEQ ?? 2000);
const CONC_S = Number(process.env.CONC_S ?? 5);
const soakIdx = process.argv.indexOf('--soak-min');
const SOAK_MIN = soakIdx > 0 ? Number(process.argv[soakIdx + 1]) : 0;
const dir = mkdtempSync(join(tmpdir(), 'tao-bench-gw-'));
const children = [];
const agent = new Agent({ connections: 64, keepAliveTimeout: 10_000 });

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}
function waitFor(proc, pattern, what) {
  return new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`${what} did not start: ${out}`)), 15_000);
    const on = (c) => {
      out += c;
      const m = pattern.exec(out);
      if (m) {
        clearTimeout(t);
        res(m);
      }
    };
    proc.stdout.on('data', on);
    proc.stderr.on('data', on);
  });
}
function rss(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)[1]);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}
/** CPU seconds (user + system) a process used so far. */
function cpuS(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
function resetPeak(pid) {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const small = JSON.stringify({ model: 'tao-dataservices', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 8 });

async function send(base, body) {
  const r = await request(`${base}/v1/chat/completions`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body });
  await r.body.dump({ limit: Infinity }).catch(() => r.body.text());
  return r.statusCode;
}
async function sequential(base, n) {
  const lat = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const st = await send(base, small);
    if (st !== 200) throw new Error(`status ${st}`);
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return lat;
}
async function throughput(base, clients, seconds) {
  let done = 0;
  let failed = 0;
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < until) (await send(base, small)) === 200 ? done++ : failed++;
    }),
  );
  return { rps: done / seconds, failed };
}

try {
  // One stand-in service, one registry entry, one gateway process.
  const port = await freePort();
  const job_id = randomUUID();
  const job = JSON.stringify({ job_id, specs: { model_path: '/models/m' }, neural_network_name: 'tao-dataservices' });
  const denv = JSON.stringify({ TAO_EXECUTION_BACKEND: 'local-docker', TAO_API_JOB_ID: job_id, CLOUD_BASED: 'False' });
  const standin = spawn(process.execPath, [STANDIN, 'python', '-m', 'nvidia_tao_core.microservices.handlers.huggingface_inference_microservice_server', '--port', String(port), '--job', job, '--docker_env_vars', denv], {
    env: { ...process.env, STANDIN_HOST: '127.0.0.1', STANDIN_PORT: String(port), STANDIN_LOAD_MS: '0', STANDIN_EXIT_WITH_PARENT: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(standin);
  await waitFor(standin, /listening on/, 'stand-in');
  standin.stdout.resume();
  const direct = `http://127.0.0.1:${port}`;
  const stateFile = join(dir, 'state.json');
  writeFileSync(stateFile, JSON.stringify({ [job_id]: { job_id, platform: 'local-docker', network_arch: 'tao-dataservices', host_url: direct, started_at: new Date().toISOString() }, latest: job_id }));
  const gwProc = spawn(process.execPath, [CLI, 'gateway', '--port', '0', '--json'], { env: { ...process.env, TAO_INF_STATE_FILE: stateFile, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(gwProc);
  const gw = JSON.parse((await waitFor(gwProc, /^(\{.*\})$/m, 'gateway'))[1]).url;
  gwProc.stderr.resume();
  await new Promise((r) => setTimeout(r, 1000));
  const idle = rss(gwProc.pid);
  console.log(`node ${process.version}, ${SEQ} sequential requests per side, ${CONC_S} s per throughput run`);
  console.log(`gateway idle RSS           ${idle.rss.toFixed(1)} MB   (target <= 80 MB)`);

  // Warm both paths, then interleave batches so both sides see the same machine state.
  await sequential(direct, 200);
  await sequential(gw, 200);
  const d = [];
  const g = [];
  for (let b = 0; b < 10; b++) {
    d.push(...(await sequential(direct, SEQ / 10)));
    g.push(...(await sequential(gw, SEQ / 10)));
  }
  const [d50, d99, g50, g99] = [pct(d, 50), pct(d, 99), pct(g, 50), pct(g, 99)];
  console.log(`sequential small  direct   p50 ${d50.toFixed(3)} ms  p99 ${d99.toFixed(3)} ms`);
  console.log(`sequential small  gateway  p50 ${g50.toFixed(3)} ms  p99 ${g99.toFixed(3)} ms`);
  console.log(`added latency              p50 ${(g50 - d50).toFixed(3)} ms (target <= 1)  p99 ${(g99 - d99).toFixed(3)} ms (target <= 5)`);

  const sd0 = cpuS(standin.pid);
  const td = await throughput(direct, 32, CONC_S);
  const sd1 = cpuS(standin.pid);
  const g0 = cpuS(gwProc.pid);
  const tg = await throughput(gw, 32, CONC_S);
  const g1 = cpuS(gwProc.pid);
  const perReq = (cpu, rps) => ((cpu / (rps * CONC_S)) * 1e6).toFixed(0);
  console.log(`32 concurrent     direct   ${td.rps.toFixed(0)} req/s (${td.failed} failed); stand-in CPU ${perReq(sd1 - sd0, td.rps)} us/request`);
  console.log(`32 concurrent     gateway  ${tg.rps.toFixed(0)} req/s (${tg.failed} failed); gateway CPU ${perReq(g1 - g0, tg.rps)} us/request   ratio ${(tg.rps / td.rps).toFixed(2)}x (target >= 0.9)`);

  // A 50 MB body whose bulk is one base64 video; `model` after `messages`, as the OpenAI SDKs send it.
  const b64 = Buffer.alloc(Math.floor((50 * 1024 * 1024 * 3) / 4), 1).toString('base64');
  const big = Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'text', text: 'describe' }, { type: 'video_url', video_url: { url: `data:video/mp4;base64,${b64}` } }] }], model: 'tao-dataservices' }));
  const mb = big.length / 1024 / 1024;
  await new Promise((r) => setTimeout(r, 500));
  const base = rss(gwProc.pid);
  const canReset = resetPeak(gwProc.pid);
  const t0 = Date.now();
  const st1 = await send(gw, big);
  const one = rss(gwProc.pid);
  console.log(`one ${mb.toFixed(1)} MB video body   status ${st1} in ${Date.now() - t0} ms; gateway RSS base ${base.rss.toFixed(1)} MB, peak ${canReset ? one.hwm.toFixed(1) : `${one.hwm.toFixed(1)} (lifetime; clear_refs unavailable)`} MB, peak - base ${(one.hwm - base.rss).toFixed(1)} MB (target <= ${(1.5 * mb).toFixed(1)} MB = 1.5 x body)`);
  resetPeak(gwProc.pid);
  const four = await Promise.all([0, 1, 2, 3].map(() => send(gw, big)));
  const after4 = rss(gwProc.pid);
  console.log(`four ${mb.toFixed(1)} MB bodies at once  statuses ${four.join(',')}; peak - base ${(after4.hwm - base.rss).toFixed(1)} MB (byte budget 1024 MiB; bodies above 4 MiB are spooled to disk)`);

  // Mixed traffic: small, streaming-flag, errors (404/400) and a 5 MB body now and then. Short unless --soak-min.
  const soakMs = SOAK_MIN > 0 ? SOAK_MIN * 60_000 : 20_000;
  const mid = Buffer.from(JSON.stringify({ model: 'tao-dataservices', messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${Buffer.alloc(3_900_000, 2).toString('base64')}` } }] }] }));
  const bodies = [small, small, small, JSON.stringify({ model: 'nope', messages: [] }), JSON.stringify({ model: 'tao-dataservices', messages: [{ role: 'user', content: 'x' }], guidance: 3 }), mid];
  const samples = [];
  let n = 0;
  const soakEnd = Date.now() + soakMs;
  const sampler = setInterval(() => samples.push(rss(gwProc.pid).rss), Math.max(1000, soakMs / 20));
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      for (let i = w; Date.now() < soakEnd; i++) {
        await send(gw, bodies[i % bodies.length]);
        n++;
      }
    }),
  );
  clearInterval(sampler);
  const firstS = samples[Math.min(2, samples.length - 1)];
  const lastS = samples.at(-1);
  console.log(`soak ${(soakMs / 60000).toFixed(1)} min mixed traffic, ${n} requests: RSS samples (MB) ${samples.map((x) => x.toFixed(0)).join(' ')}`);
  console.log(`soak RSS drift (last - third sample) ${(lastS - firstS).toFixed(1)} MB; idle RSS after ${rss(gwProc.pid).rss.toFixed(1)} MB`);
} finally {
  for (const c of children) c.kill('SIGTERM');
  await agent.close();
  rmSync(dir, { recursive: true, force: true });
}
