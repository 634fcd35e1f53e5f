// One simulated start for bench/registry-contention.mjs: the two registry transactions of `tao-infer start`.
import { pickPort } from '../dist/src/registry/ports.js';
import { Registry } from '../dist/src/registry/store.js';

const [file, i] = process.argv.slice(2);
const reg = new Registry(file);
const job_id = `bench-${i}-${process.pid}`;
await reg.mutate(async (s) => {
  const host_port = await pickPort(s, { holds: (e) => e.platform === 'local-docker', checkBound: false, bindAddress: '127.0.0.1' });
  s.entries[job_id] = { job_id, platform: 'local-docker', network_arch: 'cosmos-rl', host_url: '', host_port, started_at: new Date().toISOString(), state: 'starting' };
  s.latest = job_id;
});
const e = await reg.get(job_id);
await reg.update(job_id, { host_url: `http://localhost:${e.host_port}`, state: 'started' });
process.stdout.write(JSON.stringify(reg.stats));
