// Issue 8 point 3, applied to every file the CLI reads: kubeconfig, known_hosts and identity files must be
// regular files of at most 4 MiB; a FIFO or a device is exit 2 at once (no hang, no unbounded read).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exitCodeFor, InvalidInputError } from '../../src/errors.js';
import { loadKube } from '../../src/platforms/kubernetes/client.js';
import { loadKnownHosts } from '../../src/platforms/slurm/knownhosts.js';

const dir = mkdtempSync(join(tmpdir(), 'tao-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fifo = join(dir, 'pipe');
execFileSync('mkfifo', [fifo]);

describe('config and credential files are regular files below 4 MiB', () => {
  it('a FIFO or /dev/zero as kubeconfig is exit 2, without blocking', () => {
    for (const f of [fifo, '/dev/zero']) {
      let err: unknown;
      try {
        loadKube({ kubeconfig: f, env: {} });
      } catch (e) {
        err = e;
      }
      expect(err, f).toBeInstanceOf(InvalidInputError);
      expect(exitCodeFor(err)).toBe(2);
      expect((err as Error).message).toMatch(/--kubeconfig takes a regular file/);
    }
  });

  it('a FIFO or /dev/zero as known_hosts is exit 2, without blocking', () => {
    for (const f of [fifo, '/dev/zero']) expect(() => loadKnownHosts([f]), f).toThrow(/--known-hosts takes a regular file/);
  });
});
