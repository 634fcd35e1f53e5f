// Benchmark: peak memory (RSS high-water mark, VmHWM) of `tao-infer request` (issue 8.2/8.3):
//   1. with a 200 MB --video (sent as a base64 data URI, streamed from the file),
//   2. against a service whose reply never ends (text reply, and a video reply decoded to disk),
// each printed with the cap that bounds it. The service is an HTTP server of this process on a loopback
// port chosen by the OS. Run after `npm run build`.
import { spawn } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const cli = resolve(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'tao-bench-mem-'));
const MB = 1024 * 1024;

let mode = 'ok';
let received = 0;
const server = createServer((req, res) => {
  received = 0;
  req.on('data', (d) => (received += d.length));
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    if (mode === 'ok') return res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: `got ${received} bytes` } }] }));
    res.write(mode === 'endless-video' ? '{"choices":[{"message":{"role":"assistant","content":"data:video/mp4;base64,' : '{"choices":[{"message":{"role":"assistant","content":"');
    const chunk = Buffer.alloc(MB, 'A');
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}`;
const stateFile = join(dir, 'state.json');
const entry = (job_id, network_arch) => ({ job_id, platform: 'local-docker', network_arch, host_url: url, host_port: 1, started_at: '2026-01-01T00:00:00Z', state: 'started' });
writeFileSync(stateFile, JSON.stringify({ txt: entry('txt', 'tao-dataservices'), vid: entry('vid', 'cosmos-predict2.5') }), { mode: 0o600 });

/** Run the CLI, sampling /proc/<pid>/status VmHWM (peak RSS) until it exits. */
function measure(args) {
  return new Promise((res) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, CI: 'true', TAO_INF_STATE_FILE: stateFile }, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
    let peakKb = 0;
    const timer = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peakKb = Math.max(peakKb, Number(m[1]));
      } catch {
        /* exited */
      }
    }, 20);
    child.on('exit', (code) => {
      clearInterval(timer);
      res({ code, peakMb: peakKb / 1024, seconds: (Date.now() - t0) / 1000, lastError: stderr.trim().split('\n').find((l) => l.startsWith('error:')) ?? '' });
    });
  });
}

const video = join(dir, 'clip.mp4');
const fd = openSync(video, 'w');
const VIDEO_MB = Number(process.env.BENCH_VIDEO_MB ?? 200);
ftruncateSync(fd, VIDEO_MB * 1000 * 1000);
closeSync(fd);

const rows = [];
mode = 'ok';
let r = await measure(['request', '--job', 'txt', '--prompt', 'describe', '--video', video]);
rows.push([`request --video (${VIDEO_MB} MB file, ${Math.round((VIDEO_MB * 4) / 3)} MB base64 body)`, r, 'file limit 1 GiB; body streamed', `sent ${(received / MB).toFixed(0)} MiB`]);
mode = 'endless-text';
r = await measure(['request', '--job', 'txt', '--prompt', 'hi', '--max-reply-mb', '64']);
rows.push(['request, endless text reply', r, 'cap --max-reply-mb 64', '']);
mode = 'endless-text';
r = await measure(['request', '--job', 'txt', '--prompt', 'hi']);
rows.push(['request, endless text reply', r, 'cap 512 MiB (default)', '']);
mode = 'endless-video';
r = await measure(['request', '--job', 'vid', '--prompt', 'a cat', '--output', join(dir, 'out.mp4')]);
rows.push(['request, endless video reply (decoded to disk)', r, 'cap 512 MiB (default)', '']);

server.closeAllConnections();
server.close();
rmSync(dir, { recursive: true, force: true });
for (const [what, m, cap, note] of rows)
  console.log(`${what.padEnd(50)} peak RSS ${m.peakMb.toFixed(0).padStart(5)} MiB  exit ${m.code}  ${m.seconds.toFixed(1)} s  ${cap}${note ? `  (${note})` : ''}${m.code ? `  ${m.lastError}` : ''}`);
