/**
 * Shared setup for tests that run the stand-in microservice on the real Docker engine.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CANARY } from './canary.js';
import { ROOT } from './cli.js';

export { CANARY };

export const TEST_IMAGE = 'tao-infer-test/standin:latest';

/** Build (or reuse) the local test image; throws with the build output when docker is not usable. */
export function ensureTestImage(): void {
  execFileSync('bash', [join(ROOT, 'test/fixtures/build-test-image.sh')], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The real docker client (never the shim). */
export function realDocker(): string {
  for (const p of ['/usr/bin/docker', '/usr/local/bin/docker', '/bin/docker']) if (existsSync(p)) return p;
  return 'docker';
}

export function docker(args: string[]): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(realDocker(), args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString() };
  } catch (e) {
    const err = e as { status?: number; stdout?: Buffer; stderr?: Buffer };
    return { code: err.status ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

/** Environment for a CLI run: own registry, test image for every arch, docker argv recorder, canary secret. */
export function dockerTestEnv(): { env: Record<string, string>; stateFile: string; argvLog: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tao-infer-docker-'));
  const stateFile = join(dir, 'state.json');
  const argvLog = join(dir, 'docker-argv.log');
  const env: Record<string, string> = {
    TAO_INF_STATE_FILE: stateFile,
    IMAGE_COSMOS_RL: TEST_IMAGE,
    IMAGE_COSMOS_PREDICT2_5: TEST_IMAGE,
    IMAGE_TAO_DATASERVICES: TEST_IMAGE,
    DOCKER_NETWORK: 'tao_infer_test',
    DOCKER_ARGV_LOG: argvLog,
    DOCKER_REAL: realDocker(),
    PATH: `${join(ROOT, 'test/fixtures/docker-shim')}:${process.env.PATH}`,
    HF_TOKEN: CANARY,
    STANDIN_LOAD_MS: '800',
  };
  return { env, stateFile, argvLog, dir };
}

/** Every docker argv recorded so far. */
export function recordedArgv(argvLog: string): string[][] {
  if (!existsSync(argvLog)) return [];
  return readFileSync(argvLog, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((rec) => rec.split('\0').slice(0, -1));
}

/** Remove test containers left behind by a failed test. */
export function removeContainers(jobIds: string[]): void {
  if (jobIds.length) docker(['rm', '-f', ...jobIds]);
}
