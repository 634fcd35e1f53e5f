// Forwarder log files live in a per-user 0700 directory and are never written through a planted symlink.
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PlatformUnavailableError } from '../../src/errors.js';
import { forwarderLogFile } from '../../src/forwarder/log.js';
import { spawnDetached } from '../../src/util/detached.js';

let root: string;
let savedTmp: string | undefined;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'tao-detached-'));
  savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = root;
});
afterEach(() => {
  if (savedTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmp;
  rmSync(root, { recursive: true, force: true });
});

describe('forwarderLogFile', () => {
  it('puts the log in <tmpdir>/tao-infer-<uid>/forwarders with the directory private to the user', () => {
    const f = forwarderLogFile('slurm', 'job-1');
    const base = join(root, `tao-infer-${process.getuid!()}`);
    expect(f).toBe(join(base, 'forwarders', 'slurm-job-1.log'));
    expect(lstatSync(base).mode & 0o777).toBe(0o700);
  });

  it('refuses a per-user directory that is a symlink', () => {
    const elsewhere = join(root, 'elsewhere');
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, join(root, `tao-infer-${process.getuid!()}`));
    expect(() => forwarderLogFile('brev', 'job-2')).toThrow(PlatformUnavailableError);
    expect(() => forwarderLogFile('brev', 'job-2')).toThrow(/not a directory of this user/);
  });
});

describe('spawnDetached', () => {
  it('does not follow a symlink planted where the log file goes', () => {
    const target = join(root, 'victim');
    writeFileSync(target, 'untouched');
    const log = join(root, 'fwd.log');
    symlinkSync(target, log);
    expect(() => spawnDetached({ command: process.execPath, args: ['-e', 'console.log("x")'], logFile: log })).toThrow(/ELOOP/);
    expect(readFileSync(target, 'utf8')).toBe('untouched');
  });
});
