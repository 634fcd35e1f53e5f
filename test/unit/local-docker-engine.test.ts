/**
 * local-docker's Engine API reads for `ls` (src/platforms/local-docker/engine.ts): which socket the docker CLI
 * would use (DOCKER_HOST, DOCKER_CONTEXT, the config's currentContext), and the list + inspect calls against a
 * loopback HTTP server on a unix socket that answers in the Engine API's shapes (moby api/swagger.yaml
 * ContainerList / ContainerInspect). The real daemon is asked in test/integration/local-docker.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { containerStates, engineSocket } from '../../src/platforms/local-docker/engine.js';

const dir = mkdtempSync(join(tmpdir(), 'tao-infer-engine-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function config(content: string | undefined): string {
  const d = mkdtempSync(join(dir, 'cfg-'));
  if (content !== undefined) writeFileSync(join(d, 'config.json'), content);
  return d;
}

describe('engineSocket: the socket the docker CLI would use, else undefined (the CLI is asked)', () => {
  it('follows DOCKER_HOST, DOCKER_CONTEXT and the config currentContext, in that order', async () => {
    const none = config(undefined);
    expect(await engineSocket({ DOCKER_CONFIG: none })).toBe('/var/run/docker.sock');
    expect(await engineSocket({ DOCKER_CONFIG: none, DOCKER_HOST: 'unix:///run/user/1000/docker.sock' })).toBe('/run/user/1000/docker.sock');
    expect(await engineSocket({ DOCKER_CONFIG: none, DOCKER_HOST: 'tcp://10.0.0.5:2376' })).toBeUndefined();
    expect(await engineSocket({ DOCKER_CONFIG: none, DOCKER_HOST: 'ssh://me@gpu-host' })).toBeUndefined();
    expect(await engineSocket({ DOCKER_CONFIG: none, DOCKER_CONTEXT: 'remote' })).toBeUndefined();
    expect(await engineSocket({ DOCKER_CONFIG: none, DOCKER_CONTEXT: 'default' })).toBe('/var/run/docker.sock');
    expect(await engineSocket({ DOCKER_CONFIG: config('{"currentContext":"remote"}') })).toBeUndefined();
    expect(await engineSocket({ DOCKER_CONFIG: config('{"currentContext":"default","auths":{}}') })).toBe('/var/run/docker.sock');
    expect(await engineSocket({ DOCKER_CONFIG: config('{not json') })).toBeUndefined();
    // A config over 1 MiB is not read (the CLI is asked, and says what it makes of it).
    expect(await engineSocket({ DOCKER_CONFIG: config(`{"currentContext":"default","x":"${'x'.repeat(1024 * 1024)}"}`) })).toBeUndefined();
    // DOCKER_HOST wins over the config's context (docker/cli resolveContextName).
    expect(await engineSocket({ DOCKER_CONFIG: config('{"currentContext":"remote"}'), DOCKER_HOST: 'unix:///x.sock' })).toBe('/x.sock');
  });
});

describe('containerStates: one list call, an inspect only for ended containers', () => {
  let server: Server;
  const seen: string[] = [];
  const socket = join(dir, 'engine.sock');
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('maps names to states; a container removed between list and inspect is absent; a non-200 answer throws', async () => {
    server = createServer((req, res) => {
      seen.push(decodeURIComponent(req.url!));
      const u = new URL(req.url!, 'http://docker');
      res.setHeader('content-type', 'application/json');
      if (u.pathname === '/containers/json') {
        const names = (JSON.parse(u.searchParams.get('filters')!) as { name: string[] }).name;
        if (names.some((n) => n.includes('boom'))) return res.writeHead(500).end('{"message":"server error"}');
        return res.end(
          JSON.stringify([
            { Id: 'id-run', Names: ['/job-run'], State: 'running' },
            { Id: 'id-exit', Names: ['/job-exit'], State: 'exited' },
            { Id: 'id-vanished', Names: ['/job-vanished'], State: 'exited' },
            { Id: 'id-other', Names: ['/someone-else'], State: 'running' },
          ]),
        );
      }
      if (u.pathname === '/containers/id-exit/json') return res.end(JSON.stringify({ State: { Status: 'exited', ExitCode: 137, OOMKilled: true, Error: '' } }));
      res.writeHead(404).end('{"message":"No such container"}');
    });
    await new Promise<void>((r) => server.listen(socket, () => r()));
    const states = await containerStates(socket, ['job-run', 'job-exit', 'job-vanished', 'job-missing', 'a.b']);
    expect(Object.fromEntries(states)).toEqual({
      'job-run': { Status: 'running' },
      'job-exit': { Status: 'exited', ExitCode: 137, OOMKilled: true, Error: '' },
    });
    // The names are exact, anchored regular expressions (a "." matches only a dot).
    expect(seen[0]).toContain('"name":["^/job-run$","^/job-exit$","^/job-vanished$","^/job-missing$","^/a\\\\.b$"]');
    expect(seen.filter((u) => u.startsWith('/containers/id-')).sort()).toEqual(['/containers/id-exit/json', '/containers/id-vanished/json']);
    await expect(containerStates(socket, ['boom'])).rejects.toThrow(/HTTP 500/);
    await expect(containerStates(join(dir, 'no.sock'), ['x'])).rejects.toThrow(/ENOENT/);
  });
});
