// The fake brev CLI follows brev's documented argument and output rules (see its header comment).
import { execa } from 'execa';
import { createServer } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { killPid, waitForPort } from '../../src/util/detached.js';
import { createFakeBrev } from '../fakes/brev/helpers.js';

const fake = createFakeBrev([{ name: 'box-a' }, { name: 'box-b', status: 'STOPPED' }]);
const brev = (args: string[], opts: { input?: string; env?: Record<string, string> } = {}) =>
  execa('brev', args, {
    env: { ...process.env, ...fake.env, ...opts.env },
    reject: false,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
  });

afterAll(async () => {
  for (const f of fake.forwards()) await killPid(f.pid);
});

describe('fake brev', () => {
  it('ls --json has the documented shape; empty list is null', async () => {
    const r = await brev(['ls', '--json']);
    expect(r.exitCode).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc.workspaces[0]).sort()).toEqual(
      ['build_status', 'gpu', 'health_status', 'id', 'instance_kind', 'instance_type', 'name', 'shell_status', 'status'].sort(),
    );
    expect(doc.workspaces.map((w: { name: string; status: string }) => `${w.name}:${w.status}`)).toEqual(['box-a:RUNNING', 'box-b:STOPPED']);
    const empty = createFakeBrev([]);
    const e = await execa('brev', ['ls', '--json'], { env: { ...process.env, ...empty.env }, stdin: 'ignore' });
    expect(JSON.parse(e.stdout)).toEqual({ workspaces: null });
  });

  it('piped ls prints names only', async () => {
    const r = await brev(['ls']);
    expect(r.stdout).toBe('box-a\nbox-b');
  });

  it('logged out: prompts on stdout, fails without an answer', async () => {
    const out = createFakeBrev([{ name: 'x' }], { loggedIn: false });
    const r = await execa('brev', ['ls', '--json'], { env: { ...process.env, ...out.env }, stdin: 'ignore', reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain('You are currently logged out');
    const login = await execa('brev', ['login', '--token', 'not-a-real-token'], { env: { ...process.env, ...out.env }, stdin: 'ignore', reject: false });
    expect(login.exitCode).toBe(0);
    const again = await execa('brev', ['ls', '--json'], { env: { ...process.env, ...out.env }, stdin: 'ignore', reject: false });
    expect(again.exitCode).toBe(0);
  });

  it('exec: only the last positional is the command; piped stdout gets the instance name after', async () => {
    const r = await brev(['exec', 'box-a', 'echo', 'hello']);
    // "echo" is taken as a second instance name, "hello" as the command.
    expect(r.exitCode).toBe(1);
    const ok = await brev(['exec', 'box-a', 'echo hello; echo two']);
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout).toBe('hello\ntwo\nbox-a');
  });

  it('exec reads instance names from a piped stdin and never gives stdin to the command', async () => {
    const r = await brev(['exec', 'cat; echo done'], { input: 'box-a\n' });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('done\nbox-a');
  });

  it('exec runs a failing command twice (brev takes it for a connection failure), then fails', async () => {
    const r = await brev(['exec', 'box-a', 'echo attempt; exit 4']);
    expect(r.exitCode).toBe(1);
    expect(r.stdout.split('\n').filter((l) => l === 'attempt')).toHaveLength(2);
    expect(r.stderr).toContain('Connection failed, checking instance status...');
  });

  it('exec on an unknown or STOPPING instance fails; on a STOPPED one it STARTS the instance and runs (runExecCommand)', async () => {
    expect((await brev(['exec', 'nope', 'true'])).exitCode).toBe(1);
    const f = createFakeBrev([{ name: 'halting', status: 'STOPPING' }, { name: 'asleep', status: 'STOPPED' }]);
    const run = (name: string) => execa('brev', ['exec', name, 'echo hi'], { env: { ...process.env, ...f.env }, stdin: 'ignore', reject: false });
    const s = await run('halting');
    expect(s.exitCode).toBe(1);
    expect(s.stderr).toContain('STOPPING');
    const woken = await run('asleep');
    expect(woken.exitCode).toBe(0);
    expect(woken.stdout).toBe('hi\nasleep');
    expect(f.starts()).toEqual([{ instance: 'asleep', by: 'exec' }]);
    expect(f.instances().find((w) => w.name === 'asleep')!.status).toBe('RUNNING');
  });

  it('ls --json lists a RUNNING instance with health_status UNHEALTHY as UNHEALTHY (getWorkspaceDisplayStatus)', async () => {
    const f = createFakeBrev([{ name: 'sick', health_status: 'UNHEALTHY' }]);
    const r = await execa('brev', ['ls', '--json'], { env: { ...process.env, ...f.env }, stdin: 'ignore' });
    expect(JSON.parse(r.stdout).workspaces[0]).toMatchObject({ name: 'sick', status: 'UNHEALTHY', health_status: 'UNHEALTHY' });
  });

  it('unreachable_execs: the first K execs fail like sshd not up yet', async () => {
    const f = createFakeBrev([{ name: 'fresh', unreachable_execs: 2 }]);
    const run = () => execa('brev', ['exec', 'fresh', 'echo ready'], { env: { ...process.env, ...f.env }, stdin: 'ignore', reject: false });
    expect((await run()).exitCode).toBe(1);
    expect((await run()).exitCode).toBe(1);
    const third = await run();
    expect(third.exitCode).toBe(0);
    expect(third.stdout).toBe('ready\nfresh');
  });

  it('port-forward starts a loopback forwarder and returns', async () => {
    const srv = createServer((_q, s) => s.end('pong'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const remote = (srv.address() as { port: number }).port;
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const lp = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await brev(['port-forward', 'box-a', '-p', `${lp}:${remote}`]);
    expect(r.exitCode).toBe(0);
    expect(await waitForPort('127.0.0.1', lp, 5000)).toBe(true);
    const body = await (await fetch(`http://127.0.0.1:${lp}/`)).text();
    expect(body).toBe('pong');
    const bad = await brev(['port-forward', 'box-a', '-p', '123']);
    expect(bad.exitCode).toBe(1);
    srv.close();
  });

  it('delete removes the instance', async () => {
    const f = createFakeBrev([{ name: 'tmp1' }]);
    const r = await execa('brev', ['delete', 'tmp1'], { env: { ...process.env, ...f.env }, stdin: 'ignore' });
    expect(r.stdout).toContain('Deleting instance tmp1');
    expect(f.instances()).toEqual([]);
  });

  it('records every argv', async () => {
    const log = fake.argvLog();
    expect(log).toContainEqual(['ls', '--json']);
    expect(log).toContainEqual(['exec', 'box-a', 'echo hello; echo two']);
  });
});
