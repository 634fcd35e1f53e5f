/**
 * A real image registry for tests: Debian's `docker-registry` package (the CNCF distribution server,
 * installed by test/infra/setup.sh) on 127.0.0.1:<free port> with htpasswd (bcrypt) auth, storage in a temp dir.
 * dockerd treats 127.0.0.0/8 registries as insecure-allowed, so it pulls over plain HTTP. The test owns it:
 * started per test file, stopped (process and files) in afterAll.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { docker } from './docker.js';
import { freePort } from './ports.js';

export interface TestRegistry {
  /** `127.0.0.1:<port>`: the registry host in image references. */
  host: string;
  user: string;
  password: string;
  /** A DOCKER_CONFIG directory logged in to this registry (for pushing). */
  pushConfig: string;
  stop: () => Promise<void>;
}

/** Start the registry; the password is what NGC_KEY must be (user `$oauthtoken`, as on nvcr.io). */
export async function startRegistry(): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'tao-infer-registry-'));
  const user = '$oauthtoken';
  const password = `ngc-${randomBytes(12).toString('hex')}`;
  // -i: the password from stdin, not argv.
  const line = execFileSync('htpasswd', ['-Bin', user], { input: password, encoding: 'utf8' });
  writeFileSync(join(dir, 'htpasswd'), line);
  const port = await freePort();
  writeFileSync(
    join(dir, 'config.yml'),
    [
      'version: 0.1',
      'log: { level: warn }',
      `storage: { filesystem: { rootdirectory: ${join(dir, 'data')} }, delete: { enabled: true } }`,
      `http: { addr: 127.0.0.1:${port} }`,
      `auth: { htpasswd: { realm: tao-infer-test, path: ${join(dir, 'htpasswd')} } }`,
      '',
    ].join('\n'),
  );
  const proc: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const host = `127.0.0.1:${port}`;
  const until = Date.now() + 20_000;
  for (;;) {
    const r = await fetch(`http://${host}/v2/`).catch(() => undefined);
    if (r?.status === 401) break; // up, and asking for credentials
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`docker-registry did not start on ${host}: ${stderr}`);
    await sleep(100);
  }
  const pushConfig = join(dir, 'push-config');
  execFileSync('docker', ['--config', pushConfig, 'login', '-u', user, '--password-stdin', host], { input: password, stdio: ['pipe', 'ignore', 'pipe'] });
  return {
    host,
    user,
    password,
    pushConfig,
    stop: async () => {
      proc.kill('SIGTERM');
      if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Push a new image to the registry: `base` plus one layer of `mb` MB of random bytes (so a pull downloads it),
 * then drop it from the local engine. Returns the image reference.
 */
export function pushUniqueImage(reg: TestRegistry, base: string, repo: string, mb: number): string {
  const tag = randomBytes(6).toString('hex');
  const image = `${reg.host}/${repo}:${tag}`;
  const name = `tao-infer-test-build-${tag}`;
  const run = docker(['run', '--name', name, base, '/bin/sh', '-c', `head -c ${mb * 1000 * 1000} /dev/urandom > /pull-test.bin`]);
  if (run.code !== 0) throw new Error(`building the test image failed: ${run.out}`);
  try {
    const commit = docker(['commit', name, image]);
    if (commit.code !== 0) throw new Error(`docker commit failed: ${commit.out}`);
  } finally {
    docker(['rm', '-f', name]);
  }
  const push = docker(['--config', reg.pushConfig, 'push', image]);
  if (push.code !== 0) throw new Error(`docker push failed: ${push.out}`);
  docker(['rmi', image]);
  return image;
}
