// Benchmark: `tao-infer gateway` side by side with direct requests to the stand-in TAO service
// (test/fixtures/standin) on loopback, in one run (issue 12 targets). Run after `npm run build`:
//   node bench/gateway.mjs                 short run (about a minute)
//   node bench/gateway.mjs --soak-min 10   adds a 10-minute mixed-traffic soak with RSS samples
// Env: SEQ (sequential requests per side, default 2000), CONC_S (seconds per side of each throughput run, default 5),
// REPLY_MS (the model-like reply time of the second throughput run, default 50).
// Prints figures and ratios; it does not assert. The gateway runs as its own process (the built CLI) so its
// RSS is read alone from /proc/<pid>/status (VmRSS now, VmHWM peak).
//
// Throughput with 32 concurrent clients is measured twice, each time side by side against one stand-in:
// direct, through a reference minimal proxy (bench/reference-proxy.mjs: node:http + an undici Pool, bytes
// forwarded, no routing) and through the gateway, in interleaved slices so all three see the same machine state.
// 1. Stand-in replying at once (STANDIN_REPLY_MS=0): client, proxy and stand-in burn CPU on the same cores, so
//    the ratio measures the proxy's CPU per request against the rest; the us/request figures of each process
//    show it (a proxy costing about as much CPU per request as the stand-in cannot reach 0.9x here).
// 2. Stand-in replying after REPLY_MS, as a GPU model does: the ratio shows whether the gateway limits
//    throughput when the service, not the CPU, is the bottleneck. 50 ms is on the fast side of what a TAO model
//    takes even for a short completion (a VLM's prefill plus a few decode steps), so it is the harder case for
//    the gateway; slower models only make its share smaller.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist/src/cli/main.js');
const STANDIN = join(ROOT, 'test/fixtures/standin/standin.mjs');
const REFERENCE = join(ROOT, 'bench/reference-proxy.mjs');
const SEQ = Number(process.env.SEQ ?? 2000);
const CONC_S = Number(process.env.CONC_S ?? 5);
const REPLY_MS = Number(process.env.REPLY_MS ?? 50);
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
/** Resolve the first match of `pattern` in a child's output; stops listening then (the stand-in logs every request). */
function waitFor(proc, pattern, what) {
  return new Promise((res, rej) => {
    let out = '';
    const stop = () => {
      clearTimeout(t);
      proc.stdout.off('data', on);
      proc.stderr.off('data', on);
    };
    const t = setTimeout(() => {
      stop();
      rej(new Error(`${what} did not start: ${out}`));
    }, 15_000);
    const on = (c) => {
      out += c;
      const m = pattern.exec(out);
      if (m) {
        stop();
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
/** CPU seconds this process (the clients) used so far. */
function selfCpuS() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
/** Requests done by `clients` loops for `seconds` (status 200 counted, others failed). */
async function throughput(base, clients, seconds) {
  let done = 0;
  let failed = 0;
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < until) (await send(base, small)) === 200 ? done++ : failed++;
    }),
  );
  return { done, failed };
}

/** Start a stand-in tao-dataservices service answering chats after `replyMs`; resolves {proc, url, job_id}. */
async function startStandin(replyMs) {
  const port = await freePort();
  const job_id = randomUUID();
  const job = JSON.stringify({ job_id, specs: { model_path: '/models/m' }, neural_network_name: 'tao-dataservices' });
  const denv = JSON.stringify({ TAO_EXECUTION_BACKEND: 'local-docker', TAO_API_JOB_ID: job_id, CLOUD_BASED: 'False' });
  const proc = spawn(process.execPath, [STANDIN, 'python', '-m', 'nvidia_tao_core.microservices.handlers.huggingface_inference_microservice_server', '--port', String(port), '--job', job, '--docker_env_vars', denv], {
    env: { ...process.env, STANDIN_HOST: '127.0.0.1', STANDIN_PORT: String(port), STANDIN_LOAD_MS: '0', STANDIN_REPLY_MS: String(replyMs), STANDIN_EXIT_WITH_PARENT: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  await waitFor(proc, /listening on/, 'stand-in');
  proc.stdout.resume();
  return { proc, url: `http://127.0.0.1:${port}`, job_id };
}
/** Start a gateway process (the built CLI) on a registry of its own holding the one stand-in; resolves {proc, url}. */
async function startGatewayFor(standin, name) {
  const stateFile = join(dir, `${name}.json`);
  const entry = { job_id: standin.job_id, platform: 'local-docker', network_arch: 'tao-dataservices', host_url: standin.url, started_at: new Date().toISOString() };
  writeFileSync(stateFile, JSON.stringify({ [standin.job_id]: entry, latest: standin.job_id }));
  const proc = spawn(process.execPath, [CLI, 'gateway', '--port', '0', '--json'], { env: { ...process.env, TAO_INF_STATE_FILE: stateFile, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const url = JSON.parse((await waitFor(proc, /^(\{.*\})$/m, 'gateway'))[1]).url;
  proc.stderr.resume();
  return { proc, url };
}
/** Start the reference minimal proxy in front of `upstream`; resolves {proc, url}. */
async function startReference(upstream) {
  const proc = spawn(process.execPath, [REFERENCE, upstream], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const url = JSON.parse((await waitFor(proc, /^(\{.*\})$/m, 'reference proxy'))[1]).url;
  proc.stderr.resume();
  return { proc, url };
}

/**
 * 32-client throughput direct, through the reference proxy and through the gateway against `standin`, in
 * three interleaved slices per side (CONC_S seconds per side in all), with the CPU each process used per request.
 */
async function compareThroughput(title, standin, gateway, reference) {
  const sides = [
    { name: 'direct', url: standin.url, proxy: undefined },
    { name: 'reference proxy', url: reference.url, proxy: reference.proc.pid },
    { name: 'gateway', url: gateway.url, proxy: gateway.proc.pid },
  ].map((x) => ({ ...x, done: 0, failed: 0, client: 0, standin: 0, proxyCpu: 0 }));
  for (const x of sides) await throughput(x.url, 32, 0.5);
  const slices = 3;
  for (let i = 0; i < slices; i++)
    for (const x of sides) {
      const c0 = selfCpuS();
      const s0 = cpuS(standin.proc.pid);
      const p0 = x.proxy ? cpuS(x.proxy) : 0;
      const r = await throughput(x.url, 32, CONC_S / slices);
      x.client += selfCpuS() - c0;
      x.standin += cpuS(standin.proc.pid) - s0;
      if (x.proxy) x.proxyCpu += cpuS(x.proxy) - p0;
      x.done += r.done;
      x.failed += r.failed;
    }
  const us = (cpu, n) => ((cpu / n) * 1e6).toFixed(0).padStart(4);
  const rps = (x) => x.done / CONC_S;
  console.log(`32 concurrent, ${title}; CPU us/request of client + stand-in + proxy = sum`);
  for (const x of sides) {
    const total = x.client + x.standin + x.proxyCpu;
    const ratio = x.proxy ? `   ratio ${(x.done / sides[0].done).toFixed(2)}x` : '';
    const proxy = x.proxy ? us(x.proxyCpu, x.done) : '   -';
    console.log(`  ${x.name.padEnd(16)} ${rps(x).toFixed(0).padStart(6)} req/s (${x.failed} failed)  CPU ${us(x.client, x.done)} + ${us(x.standin, x.done)} + ${proxy} = ${us(total, x.done)} us${ratio}`);
  }
  return sides;
}

try {
  // One stand-in service, one registry entry, one gateway process.
  const standin = await startStandin(0);
  const direct = standin.url;
  const gateway = await startGatewayFor(standin, 'state');
  const gwProc = gateway.proc;
  const gw = gateway.url;
  await new Promise((r) => setTimeout(r, 1000));
  const idle = rss(gwProc.pid);
  console.log(`node ${process.version}, ${cpus().length} CPUs (load average ${loadavg()[0].toFixed(2)}), ${SEQ} sequential requests per side, ${CONC_S} s per side of each throughput run`);
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

  // Throughput, the same three sides twice: a stand-in answering at once, then one answering like a model.
  const fast = await compareThroughput('stand-in replying at once (CPU-bound)', standin, gateway, await startReference(direct));
  const slowStandin = await startStandin(REPLY_MS);
  const slowGateway = await startGatewayFor(slowStandin, 'slow');
  const slow = await compareThroughput(`stand-in replying after ${REPLY_MS} ms (STANDIN_REPLY_MS)`, slowStandin, slowGateway, await startReference(slowStandin.url));
  const ratio = (sides, i) => (sides[i].done / sides[0].done).toFixed(2);
  console.log(`throughput gateway/direct ${ratio(fast, 2)}x at 0 ms reply (reference proxy ${ratio(fast, 1)}x), ${ratio(slow, 2)}x at ${REPLY_MS} ms reply (reference proxy ${ratio(slow, 1)}x); target >= 0.9`);
  for (const c of [slowStandin.proc, slowGateway.proc]) c.kill('SIGTERM');

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
