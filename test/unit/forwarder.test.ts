// The one forwarder abstraction (src/forwarder): start detached with its log, readiness = alive and accepting
// connections, isOurs(pid, job_id) from /proc argv, stop, restart on the same port, one error type.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ForwarderError } from '../../src/forwarder/error.js';
import { isOurs, moduleFile, restartForwarder, startForwarder, stopForwarder, withForwarderNote, type ForwarderDescription } from '../../src/forwarder/forwarder.js';
import { tunnelDescription } from '../../src/platforms/slurm/forward.js';
import { execa } from 'execa';
import { forwarderLogFile } from '../../src/forwarder/log.js';
import { route } from '../../src/platforms/routing.js';
import type { PlatformAdapter, RegistryEntry } from '../../src/types.js';
import { isAlive, killPid } from '../../src/util/detached.js';
import { freePort } from '../helpers/ports.js';

const FIXTURE = new URL('../fixtures/tcp-forwarder.mjs', import.meta.url);
const ctx = { env: process.env, log: () => undefined, warn: (m: string) => warnings.push(m) };
let warnings: string[] = [];
let root: string;
let savedTmp: string | undefined;
const pids: number[] = [];

function describeFwd(job_id: string, port: number, extra: string[] = [], readyTimeoutMs = 10_000): ForwarderDescription {
  return {
    platform: 'test',
    job_id,
    kind: 'test forward',
    run: { module: FIXTURE, args: ['--job-id', job_id, '--listen-port', String(port), ...extra] },
    env: { PATH: process.env.PATH },
    logFile: forwarderLogFile('test', job_id),
    listen: { host: '127.0.0.1', port },
    target: 'nowhere:8080',
    hint: 'Test hint.',
    readyTimeoutMs,
  };
}

function entryOf(job_id: string, port: number, pid?: number): RegistryEntry {
  return { job_id, platform: 'test', network_arch: 'cosmos-rl', host_url: `http://localhost:${port}`, host_port: port, started_at: new Date().toISOString(), ...(pid ? { forwarder_pid: pid } : {}) };
}

beforeEach(() => {
  warnings = [];
  root = mkdtempSync(join(tmpdir(), 'tao-fwd-'));
  savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = root;
});
afterEach(async () => {
  for (const pid of pids.splice(0)) if (isOurs(pid, 'job-a') || isOurs(pid, 'job-b')) await killPid(pid);
  if (savedTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmp;
  rmSync(root, { recursive: true, force: true });
});

describe('startForwarder', () => {
  it('resolves the PID once the process accepts connections; its command line names its log, so it is ours for its job only', async () => {
    const port = await freePort();
    const d = describeFwd('job-a', port, ['--delay-ms', '300']);
    let recorded: number | undefined;
    const pid = await startForwarder(d, { onPid: async (p) => void (recorded = p) });
    pids.push(pid);
    expect(recorded).toBe(pid);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain(d.logFile);
    expect(isOurs(pid, 'job-a')).toBe(true);
    expect(isOurs(pid, 'job-b')).toBe(false);
    expect(isOurs(process.pid, 'job-a')).toBe(false);
    expect(readFileSync(d.logFile, 'utf8')).toContain('listening for job-a');
  });

  it('a forwarder that exits is a ForwarderError (exit 3) with the new lines of its log and the hint', async () => {
    const port = await freePort();
    const err = await startForwarder(describeFwd('job-a', port, ['--fail-first'])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ForwarderError);
    const fe = err as ForwarderError;
    expect(fe.message).toContain(`the test forward 127.0.0.1:${port} → nowhere:8080 exited`);
    expect(fe.logTail).toEqual(['cannot reach the target: connection refused']);
    expect(fe.hint).toContain('Test hint.');
  });

  it('a forwarder that never listens is ended after its ready timeout', async () => {
    const port = await freePort();
    let pid = 0;
    const err = await startForwarder(describeFwd('job-a', port, ['--delay-ms', '60000'], 1500), { onPid: async (p) => void (pid = p) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ForwarderError);
    expect((err as Error).message).toMatch(/did not accept connections in time/);
    expect(isAlive(pid)).toBe(false);
  });
  it('an abort (Ctrl-C during start) ends the process and rethrows the abort reason', async () => {
    const port = await freePort();
    const ac = new AbortController();
    const reason = new Error('interrupted by SIGINT');
    let pid = 0;
    setTimeout(() => ac.abort(reason), 400);
    const err = await startForwarder(describeFwd('job-a', port, ['--delay-ms', '60000']), { signal: ac.signal, onPid: async (p) => void (pid = p) }).catch((e: unknown) => e);
    expect(err).toBe(reason);
    expect(isAlive(pid)).toBe(false);
  });
});

describe('stop, status note, restart', () => {
  it('stopForwarder ends our process and removes its log; a PID that is not ours is left alone', async () => {
    const port = await freePort();
    const d = describeFwd('job-a', port);
    const pid = await startForwarder(d);
    pids.push(pid);
    await stopForwarder(entryOf('job-a', port, pid), ctx);
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(d.logFile)).toBe(false);

    // This test process is alive but is not a forwarder: never signalled.
    await stopForwarder(entryOf('job-b', port, process.pid), ctx);
    expect(isAlive(process.pid)).toBe(true);
    expect(warnings.join('\n')).toContain(`process ${process.pid} is no longer the forwarder of job-b`);
  });

  it('the status of a running job notes a dead forwarder and names the tunnel command', () => {
    const st = withForwarderNote({ state: 'running', native: 'RUNNING' }, entryOf('job-a', 18080, 999_999), 'SSH tunnel');
    expect(st.reason).toBe("the local SSH tunnel (pid 999999) is not running; requests to http://localhost:18080 fail until 'tao-infer tunnel job-a'");
    expect(withForwarderNote({ state: 'pending' }, entryOf('job-a', 18080, 999_999), 'SSH tunnel').reason).toBeUndefined();
  });

  it('restart: {} while alive and listening; a new process on the same port once it died; refused when another program holds the port', async () => {
    const port = await freePort();
    const support = { kind: 'test forward', describe: async (e: RegistryEntry) => ({ ...describeFwd(e.job_id, e.host_port!), fields: { slurm_node: 'n1' } }) };
    const pid = await startForwarder(describeFwd('job-a', port));
    pids.push(pid);
    expect(await restartForwarder(entryOf('job-a', port, pid), support, ctx)).toEqual({});

    await killPid(pid);
    const fields = await restartForwarder(entryOf('job-a', port, pid), support, ctx);
    pids.push(fields.forwarder_pid!);
    expect(fields.forwarder_pid).not.toBe(pid);
    expect(fields.slurm_node).toBe('n1');
    expect(isOurs(fields.forwarder_pid, 'job-a')).toBe(true);
    await killPid(fields.forwarder_pid);

    const squatter: Server = createServer((s) => s.end());
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', () => r()));
    try {
      const err = await restartForwarder(entryOf('job-a', port, fields.forwarder_pid), support, ctx).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ForwarderError);
      expect((err as Error).message).toContain(`local port ${port} of job-a is in use by another process`);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });

  it('routing: stop ends the forwarder even when the platform stop fails; tunnel on a platform without forwarder is a usage error', async () => {
    const port = await freePort();
    const pid = await startForwarder(describeFwd('job-a', port));
    pids.push(pid);
    const failing = {
      name: 'test',
      unsupported: {},
      reservesHostPort: false,
      stop: async () => {
        throw new Error('platform unreachable');
      },
    } as unknown as PlatformAdapter;
    await expect(route(failing).stop(entryOf('job-a', port, pid), ctx)).rejects.toThrow('platform unreachable');
    expect(isAlive(pid)).toBe(false);
    await expect(route(failing).restartForwarder(entryOf('job-a', port), ctx)).rejects.toThrow(/test services have no local forwarder to restart/);
  });
});

describe('the platforms\' forwarder programs', () => {
  const root = new URL('../../', import.meta.url).pathname;

  it('a module of src/ runs from its build under dist/ (tests run the sources)', () => {
    const d = tunnelDescription({ jobId: 'job-a', slurmJobId: '42', target: { user: 'u', host: 'login', port: 22 }, node: 'n1', remotePort: 8080, port: 18080, env: {} });
    expect('module' in d.run && moduleFile(d, d.run.module)).toBe(join(root, 'dist/src/platforms/slurm/tunnel.js'));
    expect(d.run.args).toEqual(['--job-id', 'job-a', '--slurm-job-id', '42', '--user', 'u', '--host', 'login', '--port', '22', '--node', 'n1', '--remote-port', '8080', '--listen-host', '127.0.0.1', '--listen-port', '18080']);
    expect(() => moduleFile(d, new URL('file:///nowhere/x.js'))).toThrow(ForwarderError);
  });

  it('the slurm tunnel and the kubernetes port-forward accept --log-file (the argument that names them)', async () => {
    const tunnel = await execa(process.execPath, [join(root, 'dist/src/platforms/slurm/tunnel.js'), '--log-file', '/x/forwarders/slurm-j.log'], { reject: false });
    expect(tunnel.stderr).toContain('missing --job-id');
    const pf = await execa(process.execPath, [join(root, 'dist/src/platforms/kubernetes/port-forward.js'), '--log-file', '/x/forwarders/kubernetes-j.log'], { reject: false });
    expect(pf.exitCode).toBe(2);
    expect(pf.stderr).toContain('usage: port-forward.js');
  });
});
